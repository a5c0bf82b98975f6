"""What a run folder guarantees: --overwrite removes the run's own files only, a moved folder resumes, bad settings
touch nothing, Ctrl-C and a full disk stop with one clear line and a resumable folder."""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_train_val
from test_hostile_runs import args, metrics

import train as train_script
from partial_csl.engine import checkpoint
from partial_csl.engine.checkpoint import load_checkpoint
from partial_csl.engine.training import records


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_train_val(tmp_path_factory.mktemp("run-folder"), seed=5)


USER_FILES = {"checkpoints/best_epoch1_backup.pt": "a backup", "priors/hand_tuned.csv": "class,prior\n",
              "tensorboard/my_notes.txt": "notes", "my_notes.txt": "top"}


def add_user_files(run: Path) -> None:
    for name, text in USER_FILES.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)


def user_files_intact(run: Path) -> bool:
    return all((run / name).read_text() == text for name, text in USER_FILES.items())


def test_overwrite_removes_the_files_the_run_recorded_and_names_the_others(data, tmp_path, caplog):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    recorded = json.loads((run / "run_files.json").read_text())["files"]
    assert {"config.json", "metrics.csv", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt"} <= set(
        recorded)
    old_events = sorted(run.glob("tensorboard/events.out.tfevents.*"))
    assert [f"tensorboard/{p.name}" for p in old_events] == [f for f in recorded if f.startswith("tensorboard/")]
    add_user_files(run)
    caplog.set_level(logging.WARNING)
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2", "--overwrite")) == 0
    assert user_files_intact(run) and not any(p.exists() for p in old_events)
    assert metrics(run)["epoch"].tolist() == [1, 2]
    removed = next(r.getMessage() for r in caplog.records if "--overwrite: removed" in r.getMessage())
    assert "checkpoints/best.pt" in removed and old_events[0].name in removed and "backup" not in removed
    left = next(r.getMessage() for r in caplog.records if "did not write" in r.getMessage())
    assert "left 4 file(s)" in left and all(name in left for name in USER_FILES)


def test_overwrite_of_a_run_from_before_the_manifest_removes_only_run_file_names(data, tmp_path, caplog):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore")) == 0
    (run / "run_files.json").unlink()
    add_user_files(run)
    (run / "checkpoints" / "best.pt").write_text("the old run's")
    caplog.set_level(logging.WARNING)
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--overwrite")) == 0
    assert user_files_intact(run) and (run / "checkpoints" / "best.pt").read_bytes()[:2] == b"PK"
    assert "has no run_files.json (a run from before it existed)" in caplog.text
    assert "left 4 file(s)" in caplog.text


def test_a_moved_or_copied_run_folder_resumes_where_it_is(data, tmp_path):
    reference = tmp_path / "reference"
    assert train_script.main(args(data, reference, "--partial_loss_mode", "ignore", "--epochs", "2")) == 0
    run = tmp_path / "run"
    assert train_script.main(args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2",
                                  "--stop-after-steps", "3")) == 3
    copied, moved = tmp_path / "copied", tmp_path / "elsewhere" / "moved"
    shutil.copytree(run, copied)
    moved.parent.mkdir()
    shutil.move(run, moved)
    for folder in (moved, copied):
        assert train_script.main(args(data, folder, "--partial_loss_mode", "ignore", "--epochs", "2",
                                      "--resume")) == 0
        pd.testing.assert_frame_equal(metrics(folder), metrics(reference))
        assert json.loads((folder / "config.json").read_text())["config"]["output_dir"] == str(folder)


@pytest.mark.parametrize("flag,value,message", [("--epochs", "0", "--epochs 0 (must be at least 1)"),
                                                ("--image-size", "0", "--image-size 0 (must be at least 1)"),
                                                ("--lr", "-1", "--lr -1.0 (must be above 0)")])
def test_invalid_settings_are_refused_before_anything_is_created(data, tmp_path, capsys, flag, value, message):
    run = tmp_path / "run"
    assert train_script.main(args(data, run, flag, value)) == 2
    assert message in capsys.readouterr().err and not run.exists()
    run.mkdir()
    assert train_script.main(args(data, run, flag, value, "--ema-decay", "1")) == 2
    err = capsys.readouterr().err
    assert message in err and "--ema-decay 1.0 (must be in [0, 1))" in err and not any(run.iterdir())


def test_ctrl_c_stops_with_one_line_that_says_how_to_resume(data, tmp_path, capsys, monkeypatch):
    reference = tmp_path / "reference"
    assert train_script.main(args(data, reference, "--partial_loss_mode", "ignore", "--epochs", "2")) == 0
    capsys.readouterr()
    step, calls = records.RunClock.step, []

    def interrupted_step(clock):
        step(clock)
        calls.append(1)
        if len(calls) == 3:  # 2 steps per epoch: the first step of epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(records.RunClock, "step", interrupted_step)
    run = tmp_path / "run"
    cli = args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2")
    try:
        assert train_script.main(cli) == 130
    except KeyboardInterrupt:  # pytest would take it for the user's and stop the session
        pytest.fail("Ctrl-C escaped train.py (a traceback)")
    err = capsys.readouterr().err
    expected = f"stopped at epoch 2 step 1; resume with: python train.py {shlex.join(cli)} --resume"
    assert err.strip().splitlines()[-1] == expected and "Traceback" not in err
    monkeypatch.undo()
    assert train_script.main([*cli, "--resume"]) == 0
    pd.testing.assert_frame_equal(metrics(run), metrics(reference))


def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_checkpoint(data, tmp_path, capsys, monkeypatch):
    save, calls = torch.save, []

    def disk_fills(obj, f, *rest, **kwargs):
        calls.append(1)
        if len(calls) <= 2:  # epoch 1: best.pt, last.pt
            return save(obj, f, *rest, **kwargs)
        f.write(b"part of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(checkpoint.torch, "save", disk_fills)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096))
    run = tmp_path / "run"
    cli = args(data, run, "--partial_loss_mode", "ignore", "--epochs", "2")
    assert train_script.main(cli) == 2
    err = capsys.readouterr().err
    assert re.search(r"cannot save .*checkpoints/(best|last)\.pt: the disk is full \(the checkpoint needs about "
                     r"[\d,]+ bytes, 4,096 are free there\); the previous (best|last)\.pt is intact", err), err
    assert "Traceback" not in err and not list(run.rglob(".*.tmp"))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["epoch"] == 0  # epoch 1's, whole
    monkeypatch.undo()
    assert train_script.main([*cli, "--resume"]) == 0


def test_resume_accepts_a_setting_the_code_gained_since_at_its_default_and_names_any_other(tmp_path):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.training.run_folder import RunFolderError, check_resume_matches

    saved = TrainConfig(epochs=3).to_dict()
    del saved["pseudo_labels"]  # the run started before the flag existed
    path = tmp_path / "config.json"
    check_resume_matches(TrainConfig(epochs=3), saved, path)
    with pytest.raises(RunFolderError, match=r"pseudo_labels: saved False \(not saved: the default\), now True"):
        check_resume_matches(TrainConfig(epochs=3, pseudo_labels=True), saved, path)
    with pytest.raises(RunFolderError, match=r"epochs: saved 3, now 4"):
        check_resume_matches(TrainConfig(epochs=4), saved, path)
