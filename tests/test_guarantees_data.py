"""What is guaranteed about the data a run reads: COCO ids and files that cannot be told apart, truncated COCO
images, validation data that is training data, CSVs the split cannot use, and an --images that is not a folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_attribute_dataset, make_train_val
from PIL import Image
from test_coco import ANNS, CATS, IMAGES, write_coco
from test_hostile_runs import args

import images_train_test_valid_split as split_script
import infer as infer_script
import train as train_script
from partial_csl.data.coco import load_coco


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_train_val(tmp_path_factory.mktemp("data-guarantees"), seed=6)


def test_coco_image_ids_listed_twice_and_files_under_two_ids_are_refused_by_name(tmp_path):
    images = [*IMAGES, {"id": 5, "file_name": "c.jpg"}, {"id": 11, "file_name": "./b.jpg"}]
    path = write_coco(tmp_path, images, ANNS, CATS)
    with pytest.raises(ValueError) as info:
        load_coco(path, tmp_path / "imgs")
    message = str(info.value)
    assert f"{path}: 2 problem(s)" in message
    assert "image id 5 is listed 2 times (file names 'a.jpg', 'c.jpg')" in message
    assert "file name 'b.jpg' is listed under 2 image ids (1, 11)" in message


def test_truncated_coco_images_are_all_named_before_the_run_writes_anything(tmp_path, capsys):
    path = write_coco(tmp_path, IMAGES, ANNS, CATS)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(noise).save(tmp_path / "imgs" / name, quality=90)
        whole = (tmp_path / "imgs" / name).read_bytes()
        (tmp_path / "imgs" / name).write_bytes(whole[: len(whole) // 2])
    run = tmp_path / "run"
    cli = ["--dataset", "coco", "--train-annotations", path, "--train-images", tmp_path / "imgs",
           "--val-annotations", path, "--val-images", tmp_path / "imgs", "--model-name", "test_resnet",
           "--image-size", "32", "--workers", "0", "--epochs", "1", "--output-dir", run]
    assert train_script.main([*map(str, cli)]) == 2
    err = capsys.readouterr().err
    for image_id, name in ((5, "a.jpg"), (1, "b.jpg")):
        assert f"image id {image_id}: '{name}': unreadable or corrupt image" in err
    assert "truncated" in err and not (run / "config.json").exists()


def test_validation_data_that_is_training_data_is_refused_or_counted(data, tmp_path, capsys, caplog):
    os.link(data / "train.csv", tmp_path / "train_link.csv")
    for same in (data / "train.csv", tmp_path / "train_link.csv"):
        cli = args(data, tmp_path / "run", "--partial_loss_mode", "ignore")
        cli[cli.index("--val-csv") + 1] = str(same)
        assert train_script.main(cli) == 2
        assert f"--val-csv {same} is the --train-csv file" in capsys.readouterr().err
        assert not (tmp_path / "run" / "config.json").exists()
    train_rows = (data / "train.csv").read_text().splitlines()[1:4]
    valid = (data / "valid.csv").read_text() + "".join(f"./{row}\n" for row in train_rows)
    (tmp_path / "valid.csv").write_text(valid)
    cli = args(data, tmp_path / "run", "--partial_loss_mode", "ignore")
    cli[cli.index("--val-csv") + 1] = str(tmp_path / "valid.csv")
    caplog.set_level(logging.WARNING)
    assert train_script.main(cli) == 0
    assert "3 of the 11 validation images are training images too" in caplog.text


def test_the_split_refuses_a_header_only_csv_and_keeps_byte_identical_copies_in_one_split(tmp_path, capsys):
    csv_path = make_attribute_dataset(tmp_path / "d", n=30)
    images = tmp_path / "d" / "images"
    header_only = tmp_path / "header.csv"
    header_only.write_text(csv_path.read_text().splitlines()[0] + "\n")
    out = tmp_path / "out"
    assert split_script.main(["--csv", str(header_only), "--images", str(images), "--output-dir", str(out)]) == 2
    assert f"{header_only}: no usable rows" in capsys.readouterr().err and not out.exists()
    lines = csv_path.read_text().splitlines()
    for k in range(1, 31):  # distinct images, so that the one copy below is the only one
        Image.fromarray(np.full((8, 8, 3), k, dtype=np.uint8)).save(images / f"img_{k - 1:03d}.png")
    (images / "img_000.PNG").write_bytes((images / "img_000.png").read_bytes())
    csv_path.write_text("\n".join([*lines, lines[1].replace("img_000.png", "img_000.PNG")]) + "\n")
    for seed in range(4):
        assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--output-dir", str(out),
                                  "--seed", str(seed)]) == 0
        where = {n: s for s in ("train", "valid", "test") for n in pd.read_csv(out / f"{s}.csv")["filename"]}
        assert len(where) == 31 and where["img_000.PNG"] == where["img_000.png"]
    assert "1 image(s) are byte-identical copies of another listed image, each put in its original's split " \
           "(all in split_summary.json): img_000.PNG (line 32) = img_000.png (line 2)" in capsys.readouterr().out
    assert json.loads((out / "split_summary.json").read_text())["content_duplicates"] == [
        {"line": 32, "filename": "img_000.PNG", "copy_of_line": 2, "copy_of": "img_000.png"}]


def test_images_that_is_a_file_is_said_once_not_per_row(data, tmp_path, capsys):
    a_file = data / "train.csv"
    cli = args(data, tmp_path / "run")
    cli[cli.index("--images") + 1] = str(a_file)
    assert train_script.main(cli) == 2
    err = capsys.readouterr().err
    assert f"the image folder {a_file} is a file, not a folder" in err and "not found" not in err
    assert split_script.main(["--csv", str(a_file), "--images", str(a_file), "--output-dir",
                              str(tmp_path / "out")]) == 2
    assert f"the image folder {a_file} is a file, not a folder" in capsys.readouterr().err
    assert infer_script.main(["--checkpoint", str(a_file), "--images", str(a_file), "--output",
                              str(tmp_path / "p.csv")]) == 2
    assert f"--images {a_file} is a file, not a folder" in capsys.readouterr().err
