"""benchmarks/end_to_end.py and the shared grid: the quick grid trains whole networks on two generated datasets,
resumes, tabulates mean ± std with the held-out dataset last; a finished cell is reused only for the same settings."""

from __future__ import annotations

import importlib.util
import json

import grid
import pandas as pd
from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("end_to_end", ROOT / "benchmarks" / "end_to_end.py")
end_to_end = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(end_to_end)


def test_quick_grid_trains_both_recipes_on_both_datasets_and_resumes(tmp_path, fake_fashion_mnist, capsys):
    argv = ["--quick", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--source",
            str(fake_fashion_mnist), "--model-name", "test_resnet", "--image-size", "32", "--device", "cpu"]
    end_to_end.main(argv)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["dataset"]) == {"demo", "shapes"} and set(results["row"]) == set(end_to_end.RECIPES)
    csl = json.loads(next((tmp_path / "out" / "runs" / "demo").glob("CSL*/seed0/config.json")).read_text())
    assert csl["config"]["arch"] == "csl" and csl["config"]["prior_epochs"] == 1
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.index("## demo: overall") < table.index("## shapes (held out: never tuned on): overall")
    assert not list((tmp_path / "out" / "runs").rglob("*.pt"))
    capsys.readouterr()
    end_to_end.main(argv)  # every cell is done: nothing trains again
    assert pd.read_csv(tmp_path / "out" / "results.csv").equals(results)
    first = next(iter(end_to_end.RECIPES))
    end_to_end.main([*argv, "--recipes", first, "--table", "subset"])  # a subset's table leaves the full grid's
    assert (tmp_path / "out" / "table.md").read_text() == table
    assert set(pd.read_csv(tmp_path / "out" / "subset_results.csv")["row"]) == {first}
    assert first in (tmp_path / "out" / "subset.md").read_text()


def test_a_finished_cell_is_reused_only_for_the_settings_it_was_computed_with(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"mAP": 50.0 + len(calls)}

    first = grid.resumable(tmp_path / "cell", compute, {"lr": 1e-3})
    assert grid.resumable(tmp_path / "cell", compute, {"lr": 1e-3}) == first and len(calls) == 1
    changed = grid.resumable(tmp_path / "cell", compute, {"lr": 2e-3})
    assert changed["mAP"] == 52.0 and changed["config"] == {"lr": 2e-3}
    assert grid.long_rows("d", "r", 0, changed)[0] == {"dataset": "d", "row": "r", "seed": 0, "column": "mAP",
                                                       "value": 52.0}
    assert all(row["column"] != "config" for row in grid.long_rows("d", "r", 0, changed))


def test_a_finished_cell_survives_a_setting_added_at_its_default(tmp_path):
    calls = []
    first = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 1.0}, {"lr": 0.1})
    again = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 2.0}, {"lr": 0.1, "pseudo_labels": False},
                           defaults={"pseudo_labels": False})
    assert calls == [1] and again["mAP"] == first["mAP"] == 1.0  # the new setting changes nothing computed
    changed = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 3.0},
                             {"lr": 0.1, "pseudo_labels": True}, defaults={"pseudo_labels": False})
    assert calls == [1, 1] and changed["mAP"] == 3.0  # at another value it does


def test_a_finished_cell_moved_to_another_grid_folder_is_not_trained_again(tmp_path):
    calls = []
    old, new = tmp_path / "old" / "cell", tmp_path / "new" / "cell"
    first = grid.resumable(old, lambda: calls.append(1) or {"mAP": 1.0}, {"lr": 0.1, "output_dir": str(old)})
    old.parent.rename(new.parent)
    again = grid.resumable(new, lambda: calls.append(1) or {"mAP": 2.0}, {"lr": 0.1, "output_dir": str(new)})
    assert calls == [1] and again["mAP"] == first["mAP"] == 1.0  # where it was written is not what it computed
    changed = grid.resumable(new, lambda: calls.append(1) or {"mAP": 3.0}, {"lr": 0.2, "output_dir": str(new)})
    assert calls == [1, 1] and changed["mAP"] == 3.0


def test_an_interrupted_cell_of_an_auto_recipe_resumes_instead_of_starting_again(tmp_path):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.architectures import resolve_auto

    cfg = TrainConfig(epochs=3)  # arch and logit_adjust "auto": the run folder records what they stood for
    recorded = {**resolve_auto(cfg).to_dict(), "output_dir": str(tmp_path), "resume": False, "overwrite": True}
    assert recorded["arch"] != "auto"
    (tmp_path / "config.json").write_text(json.dumps({"config": recorded}))
    resumed = grid.fresh_or_resumed(cfg, tmp_path)
    assert resumed.resume and not resumed.overwrite
    other = grid.fresh_or_resumed(TrainConfig(epochs=4), tmp_path)
    assert other.overwrite and not other.resume  # other settings: the folder is replaced


def test_an_interrupted_cell_started_before_the_code_gained_a_setting_resumes(tmp_path):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.architectures import resolve_auto

    cfg = TrainConfig(epochs=3)
    recorded = {**resolve_auto(cfg).to_dict(), "output_dir": str(tmp_path)}
    del recorded["pseudo_labels"]  # the run started before the flag existed
    (tmp_path / "config.json").write_text(json.dumps({"config": recorded}))
    assert grid.fresh_or_resumed(cfg, tmp_path).resume
    assert grid.fresh_or_resumed(TrainConfig(epochs=3, pseudo_labels=True), tmp_path).overwrite


def test_a_finished_cell_records_what_auto_stood_for_so_a_new_default_keeps_it(tmp_path, monkeypatch):
    from dataclasses import replace

    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup import formats

    trained = []
    monkeypatch.setattr(grid, "run_training", lambda cfg: trained.append(cfg) or {"best_checkpoint": "x"})
    cfg = TrainConfig(epochs=8, arch="auto")
    first = grid.train_cell(cfg, tmp_path, lambda summary: {"mAP": 1.0})
    recorded = json.loads((tmp_path / "result.json").read_text())["config"]
    assert (recorded["arch"], recorded["likelihood_topk"], recorded["prior_epochs"]) == ("csl", 3, 3)
    # what --arch auto stands for changes: the cell's recorded settings still name what it trained
    heads = replace(formats.DATASETS["attributes"], default_arch="mtl", auto_settings={})
    monkeypatch.setitem(formats.DATASETS, "attributes", heads)
    explicit = replace(cfg, arch="csl", likelihood_topk=3, gamma_unann=4.0, prior_epochs=3)
    again = grid.train_cell(explicit, tmp_path, lambda summary: {"mAP": 2.0})
    assert len(trained) == 1 and again["mAP"] == first["mAP"] == 1.0
    assert grid.train_cell(cfg, tmp_path, lambda summary: {"mAP": 3.0})["mAP"] == 3.0  # auto is heads now: trained


def test_seeds_on_disk_reads_seed_folders_once_each(tmp_path):
    for name in ("seed2", "seed0", "seed01", "seedx", "seed10"):
        (tmp_path / name).mkdir()
    (tmp_path / "seed3").write_text("a file, not a cell")
    assert grid.seeds_on_disk(tmp_path) == [0, 2, 10]
    assert grid.seeds_on_disk(tmp_path / "absent") == []
