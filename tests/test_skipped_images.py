"""An image that cannot be read in the middle of training is replaced by the next readable one, named in the run
folder's skipped_images.csv and counted in the log; the run goes on. Many in a row (a lost folder) stop it."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from conftest import make_attribute_dataset

import images_train_test_valid_split as split_script
import train as train_script
from partial_csl.data.dataset import MultiLabelImageDataset
from partial_csl.data.images import ImageLoadError
from partial_csl.engine.setup.train_loader import MAX_UNREADABLE_IN_A_ROW, IndexedDataset, collate_training


class Items(torch.utils.data.Dataset):
    """Item i is (tensor [i], target [i]); the rows in ``bad`` raise ImageLoadError."""

    def __init__(self, n: int, bad: set[int]):
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):
        row = item[0] if isinstance(item, tuple) else item
        if row in self.bad:
            raise ImageLoadError(f"cannot read image 'img{row}.jpg': truncated")
        return torch.tensor([float(row)]), torch.tensor([float(row)])


def test_an_unreadable_image_is_replaced_by_the_next_row_and_reported():
    dataset = IndexedDataset(Items(5, bad={1, 2, 4}))
    image, target, row, skipped = dataset[1]
    assert (image.item(), target.item(), row) == (3.0, 3.0, 3)
    assert skipped == {1: "cannot read image 'img1.jpg': truncated", 2: "cannot read image 'img2.jpg': truncated"}
    assert dataset[(4, 1)][2:] == (0, {4: "cannot read image 'img4.jpg': truncated"})  # wraps; repeat draws too
    assert dataset[0][2:] == (0, {})
    images, targets, rows, merged = collate_training([dataset[0], dataset[1], dataset[4]])
    assert targets.tolist() == [[0.0], [3.0], [0.0]]
    assert images.tolist() == [[0.0], [3.0], [0.0]] and rows.tolist() == [0, 3, 0]
    assert sorted(merged) == [1, 2, 4]


def test_a_lost_folder_stops_the_run_naming_the_last_image():
    dataset = IndexedDataset(Items(40, bad=set(range(40))))
    with pytest.raises(ImageLoadError, match=rf"{MAX_UNREADABLE_IN_A_ROW} images in a row could not be read .*"
                                             rf"img{MAX_UNREADABLE_IN_A_ROW - 1}\.jpg"):
        dataset[0]


def break_after_checks(monkeypatch, broken: set[str]) -> None:
    """The images named in ``broken`` pass the start-up checks, then cannot be read."""
    load = MultiLabelImageDataset.load

    def load_or_fail(self, index):
        if self.filenames[index] in broken:
            raise ImageLoadError(f"cannot read image {self.filenames[index]!r}: image file is truncated")
        return load(self, index)

    monkeypatch.setattr(MultiLabelImageDataset, "load", load_or_fail)


def train_with_broken_images(tmp_path, monkeypatch, caplog, extra: list[str]) -> tuple[str, str, pd.DataFrame]:
    csv_path = make_attribute_dataset(tmp_path / "d", n=40)
    images = tmp_path / "d" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(tmp_path / "s")]) == 0
    train_image = pd.read_csv(tmp_path / "s" / "train.csv")["filename"].iloc[3]
    val_image = pd.read_csv(tmp_path / "s" / "valid.csv")["filename"].iloc[1]
    break_after_checks(monkeypatch, {train_image, val_image})
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert train_script.main(["--train-csv", str(tmp_path / "s" / "train.csv"), "--val-csv",
                                  str(tmp_path / "s" / "valid.csv"), "--images", str(images), "--model-name",
                                  "test_resnet", "--image-size", "32", "--batch-size", "8", "--workers", "0",
                                  "--arch", "csl", "--output-dir", str(run), *extra]) == 0
    assert len(pd.read_csv(run / "metrics.csv")) >= 2  # every epoch ran and was scored
    return train_image, val_image, pd.read_csv(run / "skipped_images.csv", keep_default_na=False)


def test_training_and_validation_go_on_past_images_that_break_mid_run(tmp_path, monkeypatch, caplog):
    train_image, val_image, skipped = train_with_broken_images(tmp_path, monkeypatch, caplog,
                                                               ["--epochs", "2", "--partial_loss_mode", "ignore"])
    assert skipped.columns.tolist() == ["where", "epoch", "filename", "reason"]
    assert list(zip(skipped["where"], skipped["epoch"], skipped["filename"])) == [
        ("main training", 1, train_image), ("main validation", 1, val_image),
        ("main training", 2, train_image), ("main validation", 2, val_image)]
    assert skipped["reason"].str.contains("image file is truncated").all()
    assert "main training epoch 1: 1 image(s) could not be read and were skipped" in caplog.text


def test_the_prior_estimate_leaves_out_an_image_that_breaks(tmp_path, monkeypatch, caplog):
    train_image, _, skipped = train_with_broken_images(tmp_path, monkeypatch, caplog, [
        "--epochs", "1", "--prior_epochs", "1", "--partial_loss_mode", "selective", "--prior_holdout", "0"])
    estimate = skipped[skipped["where"] == "prior estimate"]
    assert estimate["filename"].tolist() == [train_image] and estimate["epoch"].tolist() == [""]
    assert {"prior training", "prior validation", "main training", "main validation"} <= set(skipped["where"])
