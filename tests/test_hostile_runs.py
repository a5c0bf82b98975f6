"""Hostile runs: one run folder per run, resume only as started, kill -9 at every write, bad checkpoints and labels.

The training side of the hostile-input cases (``test_case_<n>_...``, numbered as in the issue); the data side is in
``test_hostile_inputs.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, make_train_val, tree_digest

import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.checkpoint import load_checkpoint
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.training import run_folder
from partial_csl.engine.training.run_folder import claim_run_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """16 training and 8 validation rows of the tiny attribute set."""
    return make_train_val(tmp_path_factory.mktemp("hostile-runs"), seed=4)


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--train-csv", str(data / "train.csv"), "--val-csv", str(data / "valid.csv"), "--images",
            str(data / "images"), "--arch", "csl",
            "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8",
            "--workers", "0", "--epochs", "1", "--prior-epochs", "1", "--no-amp", "--ema-decay", "0.9",
            "--likelihood-topk", "1", "--output-dir", str(out), *extra]


def metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["seconds"])


def without_lock(tree: dict) -> dict:
    return {k: v for k, v in tree.items() if k != ".lock"}


def test_case_4_a_second_run_into_a_held_folder_fails_at_once_naming_the_holder(data, tmp_path, capsys):
    run = tmp_path / "run"
    with claim_run_folder(TrainConfig(output_dir=str(run))):
        assert train_script.main(args(data, run)) == 2
    err = capsys.readouterr().err
    assert "is in use by another run (pid" in err and str(os.getpid()) in err
    assert not (run / "checkpoints").exists()


def test_case_4_a_finished_run_is_kept_unless_resume_or_overwrite(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    before = without_lock(tree_digest(run))
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert without_lock(tree_digest(run)) == before
    (run / "my_notes.txt").write_text("not a run file")
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2", "--overwrite")) == 0
    assert metrics(run)["epoch"].tolist() == [1, 2]
    assert (run / "my_notes.txt").read_text() == "not a run file"  # --overwrite deletes the run's files only


def test_case_5_resume_with_other_settings_is_refused_before_touching_anything(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    before = without_lock(tree_digest(run))
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "3", "--lr", "0.01",
                                  "--resume")) == 2
    err = capsys.readouterr().err
    assert "epochs: saved 1, now 3" in err and "lr: saved 0.0002, now 0.01" in err
    assert without_lock(tree_digest(run)) == before
    # how the run executes may change; the same settings spelled with another path resume
    same = args(data, run, "--partial_loss_mode", "ignore", "--resume", "--workers", "1")
    same[same.index("--images") + 1] = str(data / "images") + "/."
    assert train_script.main(same) == 0


def test_case_9_classes_without_evidence_are_warned_and_get_evidence_priors(data, tmp_path, caplog):
    frame = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    frame["neck"] = frame["neck"].replace({"2": "3"})  # neck_2 annotated, never positive
    frame["sleeve_length"] = "#N/A"  # a whole attribute unknown
    frame.to_csv(tmp_path / "train.csv", index=False)
    run = tmp_path / "run"
    cli = args(data, run)
    cli[cli.index("--train-csv") + 1] = str(tmp_path / "train.csv")
    assert train_script.main(cli) == 0
    warned = {w["class"]: w["reason"] for w in json.loads((run / "label_warnings.json").read_text())["classes"]}
    assert warned["neck_2"].startswith("no annotated positive")
    assert all(warned[f"sleeve_length_{k}"].startswith("no annotated training label") for k in range(4))
    assert "neck_2: no annotated positive" in caplog.text
    priors = pd.read_csv(run / "priors" / "prior_ignore.csv").set_index("class")
    assert priors.loc["neck_2", "prior"] == 0.0 and priors.loc["neck_2", "evidence"] == "no annotated positive"
    assert (priors.loc[[f"sleeve_length_{k}" for k in range(4)], "prior"] == 0.25).all()


def test_case_12_validation_without_known_labels_is_refused_at_start(data, tmp_path, capsys):
    frame = pd.read_csv(data / "valid.csv", dtype=str, keep_default_na=False)
    for column in ("neck", "sleeve_length", "pattern"):
        frame[column] = "#N/A"
    frame.to_csv(tmp_path / "valid.csv", index=False)
    run = tmp_path / "run"
    cli = args(data, run)
    cli[cli.index("--val-csv") + 1] = str(tmp_path / "valid.csv")
    assert train_script.main(cli) == 2
    assert "no class with both a known positive and a known negative" in capsys.readouterr().err
    assert not (run / "checkpoints").exists() and not (run / "prior_stage").exists()


# One Python process imports the project once (about 7 of the 8 seconds a killed run takes), then forks a child per
# kill point; the child sets the point, runs train.py's main and is SIGKILLed by its own write. The parent forks
# before any tensor work, so each child starts as a fresh run would.
KILLED_RUNS = """
import json, os, sys, traceback
import train
points, argvs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
codes = {}
for point, argv in zip(points, argvs):
    pid = os.fork()
    if pid == 0:
        os.environ["PARTIAL_CSL_KILL_AT"] = point
        sys.stdout = sys.stderr  # the parent's JSON is the only stdout
        try:
            code = train.main(argv)
        except BaseException:
            traceback.print_exc()
            code = 70
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes[point] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
print(json.dumps(codes))
"""


def _killed_runs(data: Path, runs: dict[str, Path]) -> dict[str, int]:
    """Exit code of train.py killed at each point (-9: killed there; 0: the run has fewer writes and finished)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argvs = [args(data, run) for run in runs.values()]
    result = subprocess.run([sys.executable, "-c", KILLED_RUNS, json.dumps(list(runs)), json.dumps(argvs)], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_case_13_resume_succeeds_after_a_kill_at_every_write(data, tmp_path):
    """SIGKILL at every atomic write of a selective run (both stages), before and after its rename, then --resume:
    the resumed run ends with the uninterrupted run's metrics, and no temporary file is left."""
    reference = tmp_path / "reference"
    assert train_script.main(args(data, reference)) == 0
    expected = metrics(reference)
    points = [f"{k}:before-rename" for k in range(1, 16)] + [f"{k}:after-rename" for k in (3, 9)]
    runs = {point: tmp_path / point.replace(":", "-") for point in points}
    codes = _killed_runs(data, runs)
    killed = 0
    for point, code in codes.items():
        run = runs[point]
        if code == 0:  # the run has fewer writes than k: it finished
            continue
        assert code == -9, point
        killed += 1
        assert train_script.main(args(data, run, "--resume")) == 0, point
        pd.testing.assert_frame_equal(metrics(run), expected, obj=point)
        assert not list(run.rglob(".*.tmp")), point
        assert load_checkpoint(run / "checkpoints" / "best.pt")["stage"] == "main"
    assert killed >= 14


def test_case_14_unusable_output_folders_are_named(data, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert train_script.main(args(data, a_file)) == 2
    assert f"--output-dir {a_file} is a file" in capsys.readouterr().err
    monkeypatch.setattr(run_folder.os, "access", lambda path, mode: False)  # root ignores permission bits
    assert train_script.main(args(data, tmp_path / "read_only")) == 2
    assert "is not writable" in capsys.readouterr().err


def test_case_14_output_folder_that_is_an_input_is_refused(data, tmp_path, capsys):
    assert train_script.main(args(data, data / "images")) == 2
    assert "refusing to write" in capsys.readouterr().err


def test_case_14_corrupt_last_checkpoint_and_model_path_are_named_before_training(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2",
                                  "--stop-after-steps", "3")) == 3
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2", "--resume")) == 2
    assert f"{last}: cannot be read as a checkpoint" in capsys.readouterr().err
    bad_weights = tmp_path / "weights.pth"
    bad_weights.write_bytes(b"\x80\x04 not pickle either")
    assert train_script.main(args(data, tmp_path / "other", "--model-path", str(bad_weights))) == 2
    assert str(bad_weights) in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"format_version": 99}, "format version 99 is not one this code reads"),
    ({"format_version": "1"}, "format version '1' is not one this code reads"),
    ({"num_classes": 5}, "num_classes 5 does not match its 21 class names"),
    ({"model_name": ""}, "model_name '' is not a model name"),
    ({"arch": "transformer"}, "unknown architecture 'transformer'"),
])
def test_case_14_checkpoints_with_wrong_fields_get_one_clear_message(data, tmp_path, capsys, change, message):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    bad = tmp_path / "bad.pt"
    torch.save({**load_checkpoint(run / "checkpoints" / "best.pt"), **change}, bad)
    assert infer_script.main(["--checkpoint", str(bad), "--images", str(data / "images"), "--output",
                              str(tmp_path / "pred.csv")]) == 2
    assert message in capsys.readouterr().err
    assert validate_script.main(["--checkpoint", str(bad), "--csv", str(data / "valid.csv"), "--images",
                                 str(data / "images"), "--output-dir", str(tmp_path / "report")]) == 2
    assert message in capsys.readouterr().err


def test_export_and_validate_refuse_outputs_that_are_their_inputs(data, tmp_path, capsys):
    import export as export_script

    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    best = run / "checkpoints" / "best.pt"
    digest = tree_digest(run / "checkpoints")
    assert export_script.main(["--checkpoint", str(best), "--format", "onnx", "--output", str(best)]) == 2
    assert "refusing to write" in capsys.readouterr().err
    assert validate_script.main(["--checkpoint", str(best), "--csv", str(data / "valid.csv"), "--images",
                                 str(data / "images"), "--output-dir", str(data / "images")]) == 2
    assert "refusing to write" in capsys.readouterr().err
    assert tree_digest(run / "checkpoints") == digest
