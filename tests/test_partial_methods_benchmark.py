"""benchmarks/partial_methods.py: the quick grid runs end to end, skips finished cells, and tabulates mean ± std."""

from __future__ import annotations

import importlib.util
import json
import sys

import pandas as pd
import pytest
from conftest import ROOT

from partial_csl.data.demo_coco import build_coco_benchmark, build_pretraining_set

SPEC = importlib.util.spec_from_file_location("partial_methods", ROOT / "benchmarks" / "partial_methods.py")
partial_methods = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(partial_methods)


def test_quick_grid_runs_resumes_and_writes_its_tables(tmp_path, fake_fashion_mnist, monkeypatch, capsys):
    data = build_coco_benchmark(tmp_path / "bench", n_train=48, n_val=16, source=fake_fashion_mnist)
    argv = ["partial_methods.py", "--quick", "--data", str(data), "--out", str(tmp_path / "out"),
            "--pretraining-data", str(tmp_path / "pre"), "--pretraining-images", "40", "--pretraining-epochs", "1",
            "--model-name", "test_resnet", "--image-size", "32"]
    monkeypatch.setattr(partial_methods, "build_pretraining_set",
                        lambda root, n_train: build_pretraining_set(
                            root, n_train=n_train, n_val=16, source=fake_fashion_mnist))
    monkeypatch.setattr(sys, "argv", argv)
    partial_methods.main()
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) == 8 and set(results["protocol"]) == {"FPC(200)", "single_positive"}
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| ROLE |" in table and "Spearman rho" in table and "**" in table
    assert not list((tmp_path / "out" / "runs").rglob("*.pt"))  # checkpoints dropped once a cell is done
    capsys.readouterr()
    partial_methods.main()  # every cell is done: nothing trains again
    assert "training the backbone" not in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "out" / "results.csv").equals(results)
    before = {path: path.read_text() for path in (tmp_path / "out" / "runs").rglob("result.json")}
    monkeypatch.setitem(partial_methods.METHODS, "ROLE", {"loss": "role", "epr_weight": 0.5})
    partial_methods.main()  # a row whose settings changed is trained again, the others are not
    changed = sorted(path.parent.parent.name for path, text in before.items() if path.read_text() != text)
    assert changed == ["ROLE", "ROLE"]  # one cell per protocol
    config = json.loads(next((tmp_path / "out" / "runs").rglob("ROLE/seed0/result.json")).read_text())["config"]
    assert config["epr_weight"] == 0.5
    subset = [a for a in argv if a != "--quick"] + ["--methods", "ROLE", "--protocols", "FPC(200)", "--seeds", "0",
                                                    "--epochs", "2"]  # the quick grid's settings, one cell of it
    monkeypatch.setitem(partial_methods.METHODS, "LL-Cp", {"loss": "ll_cp", "ll_delta_rel": 0.5})
    monkeypatch.setattr(sys, "argv", subset)
    partial_methods.main()  # a run of one cell tabulates every finished cell of the grid's settings
    tabulated = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(tabulated) == 6 and "LL-Cp" not in set(tabulated["method"])  # its cells are of other settings now
    assert "| AN (assume negative) |" in (tmp_path / "out" / "table.md").read_text()


def test_mean_std_table_bolds_the_best_and_marks_ties():
    frame = pd.DataFrame({"row": ["a"] * 3 + ["b"] * 3 + ["c"] * 3, "column": ["x"] * 9,
                          "mAP": [50, 52, 54, 49, 51, 53, 40, 41, 42]})
    lines = partial_methods.mean_std_table(frame, ["a", "b", "c"], ["x"], "mAP")
    assert lines[2] == "| a | **52.00 ± 2.00** |"
    assert lines[3] == "| b | ≈ 51.00 ± 2.00 |"  # 1 point behind, inside the spread: a tie
    assert lines[4] == "| c | 41.00 ± 1.00 |"
    fewer = pd.concat([frame, pd.DataFrame({"row": ["d", "d"], "column": ["x", "x"], "mAP": [30.0, 32.0]})])
    fewer["seed"] = [0, 1, 2] * 3 + [0, 1]
    assert partial_methods.mean_std_table(fewer, ["a", "d"], ["x"], "mAP")[3] == "| d | 31.00 ± 1.41 (2 seeds) |"
    pooled = fewer.assign(seed=[0, 1, 2] * 3 + [0, 0])  # two runs of one seed (the pooled prior rows): 1 seed
    assert partial_methods.mean_std_table(pooled, ["a", "d"], ["x"], "mAP")[3] == "| d | 31.00 ± 1.41 (1 seed) |"
    assert "seed" not in partial_methods.mean_std_table(pooled, ["a", "b"], ["x"], "mAP")[3]
    undefined = pd.DataFrame({"row": ["a", "b"], "column": ["x", "x"], "mAP": [float("nan"), 3.0]})
    table = partial_methods.mean_std_table(undefined, ["a", "b"], ["x"], "mAP")
    assert table[2:] == ["| a | n/a |", "| b | **3.00** |"]
    errors = frame.rename(columns={"mAP": "mae"})
    assert partial_methods.mean_std_table(errors, ["c"], ["x"], "mae", higher_is_better=False)[2].startswith(
        "| c | **41.000")


@pytest.mark.parametrize("name", list(partial_methods.METHODS))
def test_every_method_row_names_a_registered_loss(name):
    from partial_csl.losses import LOSSES
    assert partial_methods.METHODS[name]["loss"] in LOSSES


def test_pseudo_label_counts_weigh_each_epochs_precision_by_its_count(tmp_path):
    pd.DataFrame({"epoch": [1, 2, 3], "pseudo_positives": [0, 10, 30], "pseudo_negatives": [0, 100, 0],
                  "pseudo_positives_precision": [None, 0.5, 0.9], "pseudo_negatives_precision": [None, 0.99, None]}
                 ).to_csv(tmp_path / "metrics.csv", index=False)
    counts = partial_methods.pseudo_label_counts(tmp_path)
    assert counts["pseudo_positives"] == 40 and counts["pseudo_positives_precision"] == pytest.approx(32 / 40)
    assert counts["pseudo_negatives"] == 100 and counts["pseudo_negatives_precision"] == pytest.approx(0.99)
    pd.DataFrame({"epoch": [1]}).to_csv(tmp_path / "metrics.csv", index=False)
    assert partial_methods.pseudo_label_counts(tmp_path) == {}
