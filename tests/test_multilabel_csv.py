"""--dataset multilabel_csv: long CSVs (filename,label,value) read into exact targets, every bad row named before
training, and a run that trains, validates on the verified labels and infers end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from PIL import Image

import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.data import open_images, sparse_targets
from partial_csl.data.labels import LabelFileError
from partial_csl.data.long_labels import read_class_list, read_long_csv


def save_images(folder, names, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 20 * i % 255, dtype=np.uint8)).save(folder / name)


@pytest.fixture
def images(tmp_path):
    save_images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    return tmp_path / "images"


def write(path, *lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_become_targets_with_unknown_where_no_row_says(tmp_path, images):
    csv_path = write(tmp_path / "train.csv", "filename,label,value", "b.png,dog,1", "a.png,cat,0", "b.png,cat,0",
                     " a.png , dog , 1 ", "c.png,bird,1")
    labels = read_long_csv(csv_path, images)
    assert labels.filenames == ["b.png", "a.png", "c.png"]  # in the order they first appear
    assert labels.class_names == ["bird", "cat", "dog"]  # the file's labels, sorted
    np.testing.assert_array_equal(labels.targets, [[-1, 0, 1], [-1, 0, 1], [1, -1, -1]])
    fixed = read_long_csv(csv_path, images, ["dog", "cat", "bird", "fish"])
    np.testing.assert_array_equal(fixed.targets, [[1, 0, -1, -1], [1, 0, -1, -1], [-1, -1, 1, -1]])


def test_every_bad_row_is_named_with_its_line_column_and_value(tmp_path, images):
    csv_path = write(tmp_path / "bad.csv", "filename,label,value", "a.png,dog,1", "a.png,dog,yes", "b.png,,1",
                     "b.png,cat,1", "b.png,cat,0", "a.png,dog,1", "../x.png,dog,1", "missing.png,dog,0",
                     "c.png,fish,1")
    with pytest.raises(LabelFileError) as caught:
        read_long_csv(csv_path, images, ["dog", "cat"])
    text = str(caught.value)
    assert f"{csv_path}: 7 bad row(s):" in text
    for expected in ("line 3, column 'value', value 'yes': expected 1 (positive) or 0 (verified negative)",
                     "line 4, column 'label', value '': empty label",
                     "line 6, column 'label', value 'cat': verified both positive and negative for this image "
                     "(first on line 5)",
                     "line 7, column 'label', value 'dog': a duplicate row (first on line 2)",
                     "line 8, column 'filename', value '../x.png': points outside the image folder",
                     "line 9, column 'filename', value 'missing.png': image file not found in",
                     "line 10, column 'label', value 'fish': not one of the 2 classes"):
        assert expected in text, expected
    assert text.index("line 3,") < text.index("line 10,")  # in file order


def test_a_missing_column_and_a_repeated_class_are_refused(tmp_path, images):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['value'\]"):
        read_long_csv(write(tmp_path / "x.csv", "filename,label", "a.png,dog"), images)
    with pytest.raises(ValueError, match=r"classes.txt, line 3: class 'dog' is listed twice \(first on line 1\)"):
        read_class_list(write(tmp_path / "classes.txt", "dog", "cat", "dog"))
    assert read_class_list(write(tmp_path / "ok.txt", "dog", "", " cat ")) == ["dog", "cat"]


def long_split(root, n, seed):
    """n images whose brightness says which of 3 classes they hold; each image verifies 2 of the 3 classes."""
    rng = np.random.default_rng(seed)
    names = [f"img_{seed}_{i:02d}.png" for i in range(n)]
    rows = ["filename,label,value"]
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in names:
        present = rng.random(3) < 0.5
        pixels = np.zeros((32, 32, 3), dtype=np.uint8)
        for c in np.flatnonzero(present):
            pixels[:, 10 * c:10 * c + 10, c] = 250
        Image.fromarray(pixels).save(root / "images" / name)
        for c in rng.choice(3, size=2, replace=False):
            rows.append(f"{name},{['red', 'green', 'blue'][c]},{int(present[c])}")
    return write(root / f"split{seed}.csv", *rows)


def test_a_run_trains_validates_on_verified_labels_and_infers(tmp_path):
    train_csv, val_csv = long_split(tmp_path, 24, 0), long_split(tmp_path, 12, 1)
    classes = write(tmp_path / "classes.txt", "red", "green", "blue")
    run, images = tmp_path / "run", tmp_path / "images"
    assert train_script.main(["--dataset", "multilabel_csv", "--train-csv", str(train_csv), "--val-csv",
                              str(val_csv), "--images", str(images), "--classes", str(classes), "--model-name",
                              "test_resnet", "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--workers",
                              "0", "--no-amp", "--output-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["dataset"] == "multilabel_csv" and config["arch"] == "csl"
    best = run / "checkpoints" / "best.pt"
    report_dir = tmp_path / "report"
    assert validate_script.main(["--checkpoint", str(best), "--dataset", "multilabel_csv", "--csv", str(val_csv),
                                 "--images", str(images), "--output-dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["num_images"] == 12 and 0 <= report["mAP"] <= 100
    verified = read_long_csv(val_csv, images, ["red", "green", "blue"]).targets
    known = {c: int((verified[:, i] != -1).sum()) for i, c in enumerate(["red", "green", "blue"])}
    assert report["known_positives_per_class"].keys() == known.keys()
    predictions = tmp_path / "predictions.csv"
    assert infer_script.main(["--checkpoint", str(best), "--images", str(images), "--output", str(predictions),
                              "--no-amp"]) == 0
    table = pd.read_csv(predictions)
    assert len(table) == 36 and {"prob_red", "prob_green", "prob_blue"} <= set(table.columns)


def train_tiny(tmp_path, images, val_row):
    """train.py on a three-row training CSV and a one-row validation CSV; its exit code."""
    train_csv = write(tmp_path / "t.csv", "filename,label,value", "a.png,dog,1", "b.png,dog,0", "b.png,cat,1")
    val_csv = write(tmp_path / "v.csv", "filename,label,value", val_row)
    return train_script.main(["--dataset", "multilabel_csv", "--train-csv", str(train_csv), "--val-csv",
                              str(val_csv), "--images", str(images), "--model-name", "test_resnet", "--image-size",
                              "32", "--epochs", "1", "--workers", "0", "--output-dir", str(tmp_path / "run")])


def test_validation_labels_outside_the_trained_classes_are_refused(tmp_path, images, capsys):
    code = train_tiny(tmp_path, images, "c.png,fish,1")
    err = capsys.readouterr().err
    assert code == 2 and "line 2, column 'label', value 'fish': not one of the 2 classes" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "checkpoints").exists()


def test_targets_too_large_to_densify_stop_the_run_in_one_line_naming_the_memory(tmp_path, images, capsys,
                                                                                monkeypatch):
    monkeypatch.setattr(sparse_targets, "DENSE_TARGET_LIMIT_BYTES", 2 * 2 * 8 - 1)  # 2 images x 2 classes, int64
    code = train_tiny(tmp_path, images, "c.png,dog,1")
    err = capsys.readouterr().err
    assert code == 2 and "error: dense targets of 2 images x 2 classes need 0.0 GiB as int64" in err
    assert "Traceback" not in err


def open_images_root(root, rows_train, rows_val):
    """A tiny Open Images layout: descriptions (Bat twice, so named with its LabelName), human labels, images."""
    root.mkdir(parents=True)
    write(root / "oidv6-class-descriptions.csv", "LabelName,DisplayName", "/m/01,Dog", "/m/02,Cat", "/m/03,Bat",
          "/m/04,Bat")
    for split, rows in (("oidv6-train", rows_train), ("validation", rows_val)):
        write(root / f"{split}-annotations-human-imagelabels.csv", "ImageID,Source,LabelName,Confidence", *rows)
    save_images(root / "train", ["t1.jpg", "t2.jpg", "t3.jpg", "t4.jpg"])
    save_images(root / "validation", ["v1.jpg", "v2.jpg"])
    return root


def test_open_images_verified_labels_train_validate_and_name_bad_rows(tmp_path, capsys):
    root = open_images_root(tmp_path / "oi", [
        "t1,verification,/m/01,1", "t1,verification,/m/02,0", "t2,crowdsource,/m/03,1", "t3,verification,/m/01,0",
        "t4,verification,/m/04,1", "t4,verification,/m/02,1"],
        ["v1,verification,/m/01,1", "v2,verification,/m/01,0", "v2,verification,/m/04,0"])
    run = tmp_path / "run"
    assert train_script.main(["--dataset", "openimages", "--data", str(root), "--model-name", "test_resnet",
                              "--image-size", "32", "--batch-size", "2", "--epochs", "1", "--workers", "0",
                              "--no-amp", "--output-dir", str(run)]) == 0
    from partial_csl.engine.checkpoint import checkpoint_info, load_checkpoint
    info = checkpoint_info(load_checkpoint(run / "checkpoints" / "best.pt"))
    assert info.class_names == ["Dog", "Cat", "Bat (/m/03)", "Bat (/m/04)"] and info.arch == "csl"
    report_dir = tmp_path / "report"
    assert validate_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--dataset", "openimages",
                                 "--data", str(root), "--output-dir", str(report_dir)]) == 0
    assert json.loads((report_dir / "report.json").read_text())["num_images"] == 2
    out = tmp_path / "val_predictions.csv"  # infer.py spells the dataset as train.py and validate.py do
    assert infer_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--dataset", "openimages",
                              "--data", str(root), "--output", str(out)]) == 0
    assert pd.read_csv(out)["filename"].tolist() == ["v1.jpg", "v2.jpg"]
    bad = open_images_root(tmp_path / "bad", ["t1,verification,/m/01,1", "t1,verification,/m/01,0",
                                              "t2,verification,/m/99,1", "t9,verification,/m/02,1"], ["v1,x,/m/01,1"])
    capsys.readouterr()
    assert train_script.main(["--dataset", "openimages", "--data", str(bad), "--model-name", "test_resnet",
                              "--image-size", "32", "--epochs", "1", "--output-dir", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    for expected in ("line 3, column 'LabelName', value '/m/01': verified both positive and negative for this image",
                     "line 4, column 'LabelName', value '/m/99': not one of the 4 classes of the class descriptions",
                     "line 5, column 'ImageID', value 't9.jpg': image file not found in"):
        assert expected in err, (expected, err)


def lvis_json(path, images, annotations, categories=None):
    categories = categories or [{"id": 1, "name": "apple", "frequency": "r"}, {"id": 2, "name": "bus",
                                                                              "frequency": "c"},
                                {"id": 7, "name": "cat", "frequency": "f"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def lvis_image(image_id, folder, negatives=(), not_exhaustive=()):
    return {"id": image_id, "coco_url": f"http://images.cocodataset.org/{folder}/{image_id:012d}.jpg",
            "neg_category_ids": list(negatives), "not_exhaustive_category_ids": list(not_exhaustive)}


def test_lvis_labels_from_annotations_and_negatives_and_map_by_frequency(tmp_path, capsys):
    root = tmp_path / "lvis"
    save_images(root / "train2017", [f"{i:012d}.jpg" for i in (1, 2, 3, 4, 6)])
    save_images(root / "val2017", [f"{5:012d}.jpg"])
    ann = [{"id": k, "image_id": i, "category_id": c} for k, (i, c) in enumerate(
        [(1, 1), (1, 1), (2, 7), (3, 2), (4, 7), (5, 7), (6, 1), (6, 2)], 1)]
    lvis_json(root / "lvis_v1_train.json", [lvis_image(1, "train2017", [7], not_exhaustive=[1]),
                                             lvis_image(2, "train2017", [1, 2]), lvis_image(3, "train2017", [7]),
                                             lvis_image(4, "train2017", [1])], ann[:5])
    # a validation image that is a COCO train2017 photo: its folder comes from the URL
    lvis_json(root / "lvis_v1_val.json", [lvis_image(5, "val2017", [1, 2]), lvis_image(6, "train2017", [7])], ann[5:])
    from partial_csl.data.lvis import read_lvis_split
    split = read_lvis_split(root / "lvis_v1_train.json", root)
    assert split.filenames[0] == "train2017/000000000001.jpg" and split.class_names == ["apple", "bus", "cat"]
    np.testing.assert_array_equal(split.targets, [[1, -1, 0], [0, 0, 1], [-1, 1, 0], [0, -1, 1]])
    assert split.class_groups == {"rare": [0], "common": [1], "frequent": [2]}
    run = tmp_path / "run"
    assert train_script.main(["--dataset", "lvis", "--data", str(root), "--model-name", "test_resnet", "--image-size",
                              "32", "--batch-size", "2", "--epochs", "1", "--workers", "0", "--no-amp",
                              "--output-dir", str(run)]) == 0
    report_dir = tmp_path / "report"
    assert validate_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--dataset", "lvis", "--data",
                                 str(root), "--output-dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    groups = report["mAP_per_class_group"]
    assert set(groups) == {"rare", "common", "frequent"}
    for group, (name,) in (("rare", ["apple"]), ("common", ["bus"]), ("frequent", ["cat"])):
        assert groups[group] == report["ap_per_class"][name]  # one class per group: its AP
    assert "| mAP, rare classes |" in (report_dir / "report.md").read_text()
    out = tmp_path / "val_predictions.csv"
    assert infer_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--dataset", "lvis", "--data",
                              str(root), "--output", str(out)]) == 0
    assert pd.read_csv(out)["filename"].tolist() == ["val2017/000000000005.jpg", "train2017/000000000006.jpg"]
    bad = tmp_path / "bad.json"
    lvis_json(bad, [lvis_image(1, "train2017", [7, 9]), lvis_image(8, "train2017")],
              [{"id": 1, "image_id": 1, "category_id": 7}, {"id": 2, "image_id": 1, "category_id": 5}])
    capsys.readouterr()
    with pytest.raises(LabelFileError) as caught:
        read_lvis_split(bad, root)
    text = str(caught.value)
    for expected in ("line 1, column 'neg_category_ids', value '9': no such category",
                     "line 1, column 'neg_category_ids', value '7': annotated and verified negative on this image",
                     "line 2, column 'category_id', value '5': no such category",
                     "line 8, column 'coco_url', value 'train2017/000000000008.jpg': image file not found in"):
        assert expected in text, (expected, text)


@pytest.mark.parametrize("name, expected", [
    ("lvis", {"dataset": "lvis", "lr": 6e-4, "weight_decay": 3e-4, "gamma_pos": 0.0, "gamma_neg": 0.0,
              "gamma_unann": 1.0, "image_size": 448}),
    ("openimages", {"dataset": "openimages", "image_size": 224, "partial_loss_mode": "selective"})])
def test_shipped_dataset_configs_parse_into_the_published_settings(name, expected):
    from partial_csl.cli import config_file_argv
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.architectures import resolve_auto

    parser = train_script.get_args_parser()
    config = ROOT / "configs" / f"{name}.yaml"
    args = vars(parser.parse_args(config_file_argv(parser, ["--config", str(config), "--data", "DIR"])))
    del args["config"]
    cfg = resolve_auto(TrainConfig.from_dict(args))
    assert cfg.arch == "csl" and cfg.data == "DIR"
    assert {key: getattr(cfg, key) for key in expected} == expected


def test_open_images_rows_of_classes_outside_the_trainable_list_are_left_out_not_refused(tmp_path):
    root = open_images_root(tmp_path / "oi", [
        "t1,verification,/m/01,1", "t1,verification,/m/03,0", "t2,verification,/m/03,1", "t3,verification,/m/02,0",
        "t3,verification,/m/99,1"], ["v1,verification,/m/01,1"])
    descriptions = open_images.read_descriptions(root)
    annotations, images = open_images.split_paths("train", root, None, None)
    with pytest.raises(LabelFileError) as err:  # a LabelName the descriptions lack is still a bad row
        open_images.read_open_images_split(annotations, images, descriptions, ["/m/01", "/m/02"])
    assert [str(p) for p in err.value.problems] == [
        "line 6, column 'LabelName', value '/m/99': not one of the 4 classes of the class descriptions"]
    lines = annotations.read_text().splitlines()
    annotations.write_text("\n".join(lines[:-1]) + "\n")
    labels, names = open_images.read_open_images_split(annotations, images, descriptions, ["/m/01", "/m/02"])
    # /m/03's two rows are left out, and t2, which had only that class, with them
    assert labels.filenames == ["t1.jpg", "t3.jpg"] and names == ["Dog", "Cat"] and labels.other_class_rows == 2
    assert labels.targets.tolist() == [[1, -1], [-1, 0]]


def test_infer_lists_an_image_of_a_long_csv_once_under_its_first_name(tmp_path, images):
    from partial_csl.engine.tools.infer import collect_inputs
    long_csv = write(tmp_path / "long.csv", "filename,label,value", "b.png,dog,1", "a.png,dog,0", "b.png,cat,1",
                     "./a.png,cat,0", "c.png,bird,1", "a.png,bird,0")
    paths, names = collect_inputs(None, str(images), str(long_csv))
    assert names == ["b.png", "a.png", "c.png"] and [p.name for p in paths] == names
