"""A seconds-long training run for tests of what comes after training (reports, thresholds, inference, CLI)."""

from __future__ import annotations

from pathlib import Path

from conftest import csl_flags_only_for_csl, make_attribute_dataset

import images_train_test_valid_split as split_script
import train as train_script

TINY = ["--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--no-amp",
        "--lr", "1e-3", "--ema-decay", "0.9", "--arch", "csl", "--partial_loss_mode", "ignore", "--seed", "1"]


def split_data(root: Path, n: int = 48, seed: int = 0) -> tuple[Path, Path]:
    """Attribute data split into train/valid/test; returns (split folder, image folder)."""
    csv_path = make_attribute_dataset(root / "data", n=n, seed=seed)
    images = root / "data" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--output-dir", str(root / "split"),
                              "--ratios", "0.5", "0.25", "0.25"]) == 0
    return root / "split", images


def train_args(split: Path, images: Path, out: Path, *extra: str, epochs: int = 2) -> list[str]:
    return csl_flags_only_for_csl(["--train-csv", str(split / "train.csv"), "--val-csv", str(split / "valid.csv"),
                                   "--images", str(images), *TINY, "--epochs", str(epochs), "--output-dir", str(out),
                                   *extra])


def train_tiny(split: Path, images: Path, out: Path, *extra: str, epochs: int = 2) -> Path:
    """Train and return the run's best.pt."""
    assert train_script.main(train_args(split, images, out, *extra, epochs=epochs)) == 0
    return out / "checkpoints" / "best.pt"
