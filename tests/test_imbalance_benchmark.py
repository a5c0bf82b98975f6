"""benchmarks/imbalance_compare.py: the quick grid trains, tests, skips finished cells and tabulates mean ± std."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
from conftest import ROOT
from tiny_runs import split_data

SPEC = importlib.util.spec_from_file_location("imbalance_compare", ROOT / "benchmarks" / "imbalance_compare.py")
imbalance_compare = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(imbalance_compare)


def test_quick_grid_runs_resumes_and_writes_its_tables(tmp_path, capsys):
    split, images = split_data(tmp_path, n=48)
    argv = ["--quick", "--split", str(split), "--images", str(images), "--out", str(tmp_path / "out"),
            "--model-name", "test_resnet", "--image-size", "32", "--device", "cpu"]
    imbalance_compare.main(argv)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["row"]) == set(imbalance_compare.QUICK["arms"]) and set(results["seed"]) == {0, 1}
    assert {"overall mAP", "pattern balanced accuracy", "pattern rare-class AP"} <= set(results["column"])
    table = (tmp_path / "out" / "table.md").read_text()
    assert "## demo: pattern" in table and "| uniform, plain loss (baseline) |" in table and "±" in table
    kept = {p.relative_to(tmp_path / "out" / "runs") for p in (tmp_path / "out" / "runs").rglob("*.pt")}
    assert kept == {Path(f"demo/baseline/seed{s}/checkpoints/{f}") for s in (0, 1) for f in ("best.pt", "last.pt")}
    capsys.readouterr()
    imbalance_compare.main(argv)  # every cell is done: nothing trains again
    assert "training the" not in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "out" / "results.csv").equals(results)


def test_rare_classes_are_the_bottom_third_by_training_frequency(tmp_path):
    train = tmp_path / "train.csv"
    rows = ["filename,neck,sleeve_length,pattern"] + [f"{i}.png,6,3,9" for i in range(5)]
    rows += ["a.png,0,0,0", "b.png,1,1,#N/A", "c.png,1,2,1"]
    train.write_text("\n".join(rows) + "\n")
    names = imbalance_compare.default_schema().class_names
    report = {"mAP": 50.0, "accuracy_per_attribute": {}, "macro_accuracy_per_attribute": {},
              "mAP_per_attribute": {}, "ap_per_class": {name: float(i) for i, name in enumerate(names)}}
    for group in ("neck", "sleeve_length", "pattern"):
        for key in ("accuracy_per_attribute", "macro_accuracy_per_attribute", "mAP_per_attribute"):
            report[key][group] = 1.0
    metrics = imbalance_compare.attribute_metrics(report, train)
    # neck: the rarest 2 of 7 by training count (0, 1, 2 and 5 images; ties by index): never seen 2, 3, 4, 5 -> 2, 3
    neck = names.index("neck_2"), names.index("neck_3")
    assert metrics["neck rare-class AP"] == (neck[0] + neck[1]) / 2


def test_end_to_end_posthoc_cell_is_the_baselines_network_adjusted(tmp_path):
    split, images = split_data(tmp_path, n=48)
    baseline, posthoc = "uniform, plain loss (baseline)", "logit adjustment, post hoc"
    out = tmp_path / "out"
    imbalance_compare.main(["--end-to-end", "--epochs", "1", "--datasets", "demo", "--seeds", "0", "--arms", baseline,
                            posthoc, "--split", str(split), "--images", str(images), "--out", str(out),
                            "--model-name", "test_resnet", "--image-size", "32", "--device", "cpu"])
    results = pd.read_csv(out / "results.csv").pivot(index="column", columns="row", values="value")
    cell = out / "runs" / "demo" / imbalance_compare.slug(posthoc) / "seed0"
    assert not (cell / "metrics.csv").exists() and not list(cell.rglob("*.pt"))  # nothing trained, nothing kept
    assert (out / "runs" / "demo" / "baseline" / "seed0" / "checkpoints" / "best.pt").is_file()
    # a per-class shift of sigmoid logits reorders no class's scores: every AP is the baseline's
    for column in ("overall mAP", "pattern mAP", "pattern rare-class AP", "neck mAP"):
        assert results.loc[column, posthoc] == results.loc[column, baseline]
    reports = [json.loads((folder / "test_report" / "report.json").read_text())
               for folder in (cell, out / "runs" / "demo" / "baseline" / "seed0")]
    thresholded = [[report[key] for key in ("CP", "CR", "OP", "OR")] for report in reports]
    assert thresholded[0] != thresholded[1]  # the offset moved scores across the 0.5 threshold
