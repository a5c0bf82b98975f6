"""What every script guarantees about its outputs: checked before any work (a file where a folder belongs, a folder
where a file belongs, no permission), never inside the image folder except as a new table, and a re-run of the
offline rebalancing leaves no stale copies."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import file_digest, make_attribute_dataset, tree_digest
from test_hostile_inputs import HEADER, StubPredictor, save_image

import export as export_script
import images_train_test_valid_split as split_script
import infer as infer_script
import validate as validate_script
from partial_csl import safe_io
from partial_csl.data.schema import default_schema
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.engine.tools import split_csv as engine_split


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    csv_path = make_attribute_dataset(tmp_path / "d", n=20)
    return csv_path, tmp_path / "d" / "images"


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """A folder this process may not write in (root ignores permission bits, so os.access says no instead)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    access = os.access
    monkeypatch.setattr(safe_io.os, "access", lambda path, mode: Path(path) != folder and access(path, mode))
    return folder


def test_unwritable_output_folders_are_refused_before_any_work(data, tmp_path, capsys, locked):
    csv_path, images = data
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not read: the output is checked first")
    denied = f"cannot write in {locked} (permission denied)"
    runs = [(split_script, ["--csv", csv_path, "--images", images, "--output-dir", locked / "split"]),
            (validate_script, ["--checkpoint", junk, "--csv", csv_path, "--images", images, "--output-dir",
                               locked / "report"]),
            (infer_script, ["--checkpoint", junk, "--images", images, "--output", locked / "p.csv"]),
            (export_script, ["--checkpoint", junk, "--format", "onnx", "--output", locked / "m.onnx"])]
    for script, argv in runs:
        assert script.main([*map(str, argv)]) == 2, script
        err = capsys.readouterr().err
        assert err.startswith("error: ") and denied in err and "Traceback" not in err, (script, err)
    assert not any(locked.iterdir())


def test_an_output_folder_that_is_a_file_and_an_output_file_that_is_a_folder_are_named(data, tmp_path, capsys):
    csv_path, images = data
    a_file, a_folder, junk = tmp_path / "a_file", tmp_path / "a_folder", tmp_path / "junk.pt"
    a_file.write_text("x")
    a_folder.mkdir()
    junk.write_bytes(b"not read")
    assert split_script.main([*map(str, ["--csv", csv_path, "--images", images, "--output-dir", a_file])]) == 2
    assert f"--output-dir {a_file} is a file, not a folder" in capsys.readouterr().err
    assert validate_script.main([*map(str, ["--checkpoint", junk, "--csv", csv_path, "--images", images,
                                            "--output-dir", a_file / "report"])]) == 2
    assert f"--output-dir {a_file / 'report'}: {a_file} is a file, not a folder" in capsys.readouterr().err
    assert export_script.main([*map(str, ["--checkpoint", junk, "--format", "onnx", "--output", a_folder])]) == 2
    assert f"--output {a_folder} is a folder; give the path of the file to write" in capsys.readouterr().err
    assert a_file.read_text() == "x" and not any(a_folder.iterdir())


def test_a_write_that_fails_anyway_is_one_line_not_a_traceback(data, tmp_path, capsys, monkeypatch):
    csv_path, images = data

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "train.csv"))

    monkeypatch.setattr(engine_split, "write_label_csv", denied)
    assert split_script.main([*map(str, ["--csv", csv_path, "--images", images, "--output-dir",
                                         tmp_path / "out"])]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'out' / 'train.csv'}: Permission denied\n"


def test_a_failed_write_names_the_file_being_written_and_leaves_the_old_one(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("the previous file")
    with pytest.raises(OSError) as info, safe_io.atomic_open(target) as f:
        f.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert safe_io.describe_os_error(info.value) == f"{target}: the disk is full (No space left on device)"
    assert target.read_text() == "the previous file" and os.listdir(tmp_path) == ["metrics.csv"]


def test_infer_writes_into_the_image_folder_only_a_new_table(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(lambda cls, *args, **kwargs: StubPredictor()))
    images = data[1]
    listed = tmp_path / "listed.csv"
    listed.write_text(HEADER + "img_000.png,1,1,1\n")
    (images / "notes.txt").write_text("the user's")
    before = tree_digest(images)
    model = ["--checkpoint", tmp_path / "best.pt"]
    refused = {images / "img_005.png": "already exists and would be replaced",  # an image the CSV does not list
               images / "notes.txt": "already exists and would be replaced",
               images / "new.png": "is not a .csv/.tsv file"}
    for output, reason in refused.items():
        assert infer_script.main([*map(str, [*model, "--csv", listed, "--images", images, "--output", output])]) == 2
        err = capsys.readouterr().err
        assert f"--output {output} lies inside the image folder {images}" in err and reason in err
    assert tree_digest(images) == before
    assert infer_script.main([*map(str, [*model, "--images", images, "--output", images / "preds.csv"])]) == 0
    assert len(pd.read_csv(images / "preds.csv")) == 20
    assert {k: v for k, v in tree_digest(images).items() if k != "preds.csv"} == before


@pytest.mark.parametrize("before_manifests", [False, True])
def test_a_second_rebalancing_removes_the_first_ones_stale_copies_only(tmp_path, before_manifests):
    images = tmp_path / "images"
    lines = [HEADER.strip()]
    for k in range(24):
        save_image(images / f"i{k:02d}.png", value=10 * k)
        lines.append(f"i{k:02d}.png,{6 if k < 3 else 0},0,0")
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    first = engine_split.rebalance_train_split(train_csv, images, out, default_schema(), threshold=1.0, max_copies=4)
    (out / "rebalanced_images" / "my_notes.txt").write_text("mine")
    first_listed = set(pd.read_csv(first["csv"])["filename"])
    if before_manifests:  # a folder rebalanced before rebalance_files.json existed: copies known by their names
        (out / "rebalance_files.json").unlink()
    originals = {n: file_digest(images / n) for n in os.listdir(images)}
    second = engine_split.rebalance_train_split(train_csv, images, out, default_schema(), threshold=1.0, max_copies=1)
    listed = set(pd.read_csv(second["csv"])["filename"])
    on_disk = {p.relative_to(out / "rebalanced_images").as_posix() for p in (out / "rebalanced_images").rglob("*")}
    assert on_disk == listed | {"my_notes.txt"} and first["copies"] > second["copies"] > 0  # no temp file either
    assert second["removed"] == sorted(f"rebalanced_images/{n}" for n in first_listed - listed)
    assert all("_rb2_" in n for n in second["removed"]) and len(second["removed"]) == 3
    assert second["kept"] == ["rebalanced_images/my_notes.txt"]
    assert {n: file_digest(images / n) for n in os.listdir(images)} == originals
