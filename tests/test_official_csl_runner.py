"""benchmarks/official_csl.py's machinery, against a stand-in for the official repository (the real one is not in
the tests: it is an external baseline, fetched by whoever runs the benchmark). The stand-in's train.py asserts, in
the child process, every run-time patch the runner promises, and reports a mAP that depends on the seed."""

from __future__ import annotations

import json
import random
import textwrap

import official_csl  # benchmarks/ is on the test path (conftest)
import pandas as pd
import pytest

STAND_IN_TRAIN = '''
import argparse, importlib, os, random
import numpy as np
import torch

# the official train.py imports these from its top-level src package
CocoDetection = importlib.import_module("src.helper_functions.helper_functions").CocoDetection
loss_module = importlib.import_module("src.loss_functions.partial_asymmetric_loss")

parser = argparse.ArgumentParser()
parser.add_argument("--num-classes", default=80)
parser.add_argument("--model-name")
parser.add_argument("--partial_loss_mode")
parser.add_argument("--prior_path", default=None)


def create_model(args):
    raise AssertionError("the official factory builds TResNets only")


def main():
    args, _ = parser.parse_known_args()
    assert isinstance(args.num_classes, int)
    model = create_model(args).cuda()  # the runner's factory, and .cuda() stays on the CPU
    assert model.eval()(torch.rand(1, 3, 32, 32).cuda()).shape == (1, args.num_classes)
    assert loss_module.torch.device("cuda") == torch.device("cpu")
    assert np.int is int
    dataset = CocoDetection.__new__(CocoDetection)
    dataset.ids, dataset.cat2cat = [], {}
    assert dataset.get_targets() == {}
    if args.partial_loss_mode == "selective":
        assert os.path.isfile(args.prior_path), args.prior_path
    os.makedirs("outputs", exist_ok=True)
    open("outputs/train_avg_preds.csv", "w").write("Classes,avg_pred\\na,0.5\\n")
    open("outputs/model-1-1.ckpt", "w").write("weights")
    score = 40 + random.random() * 10
    print(f"current_mAP = {score - 1:.2f}, highest_mAP = {score - 1:.2f}")
    print(f"current_mAP = {score:.2f}, highest_mAP = {score:.2f}")
'''


@pytest.fixture
def stand_in_repo(tmp_path):
    repo = tmp_path / "PartialLabelingCSL"
    (repo / "src" / "helper_functions").mkdir(parents=True)
    (repo / "src" / "loss_functions").mkdir(parents=True)
    (repo / "src" / "helper_functions" / "helper_functions.py").write_text(textwrap.dedent('''
        class CocoDetection:
            def get_targets(self):
                raise AssertionError("the official reader hard-codes 80 classes")
        '''))
    (repo / "src" / "loss_functions" / "partial_asymmetric_loss.py").write_text("import torch\n")
    (repo / "train.py").write_text(STAND_IN_TRAIN)
    return repo


@pytest.fixture
def coco_layout(tmp_path):
    data = tmp_path / "coco"
    (data / "annotations").mkdir(parents=True)
    categories = [{"id": i, "name": f"c{i}"} for i in (3, 5, 9)]
    (data / "annotations" / "instances_train2014.json").write_text(json.dumps({"categories": categories}))
    return data


def test_official_runs_in_patched_child_processes_resume_and_tabulate(stand_in_repo, coco_layout, tmp_path):
    out = tmp_path / "out"
    argv = ["--repo", str(stand_in_repo), "--data", str(coco_layout), "--out", str(out), "--codes", "official",
            "--protocols", "FPC(200)", "--seeds", "7", "--model-name", "test_resnet", "--epochs", "1"]
    text = official_csl.main(argv)
    results = pd.read_csv(out / "results.csv")
    assert list(results["mode"]) == ["ignore", "negative", "selective"] and set(results["seed"]) == {7}
    # seeded: every mode's child draws the stand-in's score as Python's generator seeded with 7 draws it first
    assert results["mAP"].tolist() == [round(40 + random.Random(7).random() * 10, 2)] * 3
    run = out / "runs" / "fpc_200" / "seed7" / "official_selective"
    assert not list(run.rglob("*.ckpt"))  # its per-epoch checkpoints are deleted once the result is written
    result = json.loads((run / "result.json").read_text())
    assert result["epochs"] == [result["mAP"] - 1, result["mAP"]]
    assert result["config"]["argv"][-2:] == ["--prior_path", str(
        (out / "runs" / "fpc_200" / "seed7" / "official_ignore" / "outputs" / "train_avg_preds.csv").resolve())]
    assert "--num-classes" in result["config"]["argv"] and "3" in result["config"]["argv"]
    assert "| official selective |" in text and (out / "table.md").read_text() == text
    (run / "log.txt").unlink()  # a second call trains nothing again
    official_csl.main(argv)
    assert not (run / "log.txt").exists()
    assert pd.read_csv(out / "results.csv")["mAP"].tolist() == results["mAP"].tolist()
    official_csl.main([*argv, "--modes", "ignore"])  # one mode's run tabulates every finished cell of the grid
    assert pd.read_csv(out / "results.csv")["mode"].tolist() == ["ignore", "negative", "selective"]
    official_csl.main([*argv[:-1], "2", "--modes", "ignore"])  # other settings: the 1-epoch cells are not theirs
    assert len(pd.read_csv(out / "results.csv")) == 1


def test_mode_settings_follow_the_official_readme_per_protocol():
    assert official_csl.mode_settings("selective", "fpc") == dict(
        partial_loss_mode="selective", gamma_pos=0, gamma_neg=3, gamma_unann=4, likelihood_topk=5, prior_threshold=0.5)
    assert official_csl.mode_settings("selective", "rps")["gamma_neg"] == 1
    assert official_csl.mode_settings("negative", "rps") == dict(partial_loss_mode="negative", gamma_pos=1,
                                                                 gamma_neg=4, gamma_unann=4, clip=0.05)


def test_a_folder_without_the_official_code_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit, match="is not a checkout of the official CSL code"):
        official_csl.main(["--repo", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_project_cells_share_the_grid_settings_and_raw_inputs_change_only_the_normalisation():
    args = official_csl.parse_args(["--codes", "project", "project-raw"])
    ours = official_csl.project_config(args, "rps", 0.5, "ignore", 1)
    raw = official_csl.project_config(args, "rps", 0.5, "ignore", 1, raw_inputs=True)
    assert (ours.image_size, ours.epochs, ours.batch_size, ours.lr, ours.augment) == (64, 15, 64, 1e-3, "csl")
    assert ours.mean is None and ours.std is None  # the backbone's own normalisation
    assert (raw.mean, raw.std) == ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert {k: v for k, v in raw.to_dict().items() if k not in ("mean", "std")} == {
        k: v for k, v in ours.to_dict().items() if k not in ("mean", "std")}
