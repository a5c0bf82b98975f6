"""What is guaranteed about checkpoints and reports: a checkpoint whose model, weights or schema were edited is
named, not loaded (no size-mismatch traceback, no silent column), and a report never holds a bare NaN."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_train_val
from test_hostile_runs import args

import export as export_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny attribute set and a one-epoch run on it."""
    root = tmp_path_factory.mktemp("checkpoints")
    data = make_train_val(root, seed=7)
    assert train_script.main(args(data, root / "run", "--partial_loss_mode", "ignore")) == 0
    return data, root / "run" / "checkpoints" / "best.pt"


def edited(best: Path, tmp_path: Path, change) -> Path:
    ckpt = load_checkpoint(best)
    change(ckpt)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    return path


def every_reader_refuses(data: Path, checkpoint: Path, tmp_path: Path, capsys) -> str:
    """infer, validate and export each fail with one line naming the file; returns that line."""
    runs = [(infer_script, ["--checkpoint", checkpoint, "--images", data / "images", "--output", tmp_path / "p.csv"]),
            (validate_script, ["--checkpoint", checkpoint, "--csv", data / "valid.csv", "--images", data / "images",
                               "--output-dir", tmp_path / "report"]),
            (export_script, ["--checkpoint", checkpoint, "--format", "torch-export", "--output", tmp_path / "m.pt2"])]
    lines = set()
    for script, argv in runs:
        assert script.main([*map(str, argv)]) == 2, script
        err = capsys.readouterr().err
        assert err.startswith(f"error: {checkpoint}: ") and "Traceback" not in err, err
        lines.add(err)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m.pt").exists()
    assert len(lines) == 1
    return lines.pop()


def test_a_checkpoint_naming_another_model_is_refused_naming_what_differs(trained, tmp_path, capsys):
    data, best = trained
    path = edited(best, tmp_path, lambda c: c.update(model_name="resnet18"))
    err = every_reader_refuses(data, path, tmp_path, capsys)
    assert "its weights do not fit the model it describes (model_name 'resnet18', arch 'csl', 21 classes" in err
    assert "missing (" in err and "unexpected (" in err


def test_a_reshaped_tensor_is_refused_naming_the_tensor_and_both_shapes(trained, tmp_path, capsys):
    data, best = trained
    name = list(load_checkpoint(best)["model"])[-1]
    shape = tuple(load_checkpoint(best)["model"][name].shape)
    path = edited(best, tmp_path, lambda c: c["model"].update({name: torch.zeros(shape[0] + 1, *shape[1:])}))
    err = every_reader_refuses(data, path, tmp_path, capsys)
    assert f"{name} is {(shape[0] + 1, *shape[1:])} in the file, {shape} in the model" in err


def test_a_schema_edited_away_from_the_class_names_is_refused(trained, tmp_path, capsys):
    data, best = trained

    def rename(ckpt: dict) -> None:
        ckpt["schema"]["groups"][0]["classes"][3] = "x"

    err = every_reader_refuses(data, edited(best, tmp_path, rename), tmp_path, capsys)
    assert "its schema disagrees with its class_names" in err
    assert "class 3: 'x' in the schema, 'neck_3' in class_names" in err


def test_an_attribute_without_known_labels_is_null_in_report_json_and_warned_once(trained, tmp_path, caplog):
    data, best = trained
    valid = pd.read_csv(data / "valid.csv", dtype=str, keep_default_na=False)
    valid["sleeve_length"] = "#N/A"
    valid.to_csv(tmp_path / "valid.csv", index=False)
    caplog.set_level(logging.WARNING)
    assert validate_script.main([*map(str, ["--checkpoint", best, "--csv", tmp_path / "valid.csv", "--images",
                                            data / "images", "--output-dir", tmp_path / "report"])]) == 0

    def no_bare_constants(token: str):
        raise AssertionError(f"report.json holds {token}, which strict JSON parsers refuse")

    report = json.loads((tmp_path / "report" / "report.json").read_text(), parse_constant=no_bare_constants)
    assert report["accuracy_per_attribute"]["sleeve_length"] is None
    assert report["mAP_per_attribute"]["sleeve_length"] is None
    assert "no image of this data has a known sleeve_length label" in report["undefined_attributes"]["sleeve_length"]
    assert caplog.text.count("no image of this data has a known sleeve_length label") == 1
    caplog.clear()
    caplog.set_level(logging.INFO)
    cli = args(data, tmp_path / "run", "--partial_loss_mode", "ignore")
    cli[cli.index("--val-csv") + 1] = str(tmp_path / "valid.csv")
    assert train_script.main(cli) == 0
    assert caplog.text.count("the validation data has no known sleeve_length label") == 1
    epoch_line = next(r.getMessage() for r in caplog.records if "epoch 1/1" in r.getMessage())
    assert "sleeve_length n/a" in epoch_line and "nan" not in epoch_line
