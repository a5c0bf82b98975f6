"""Shared fixtures: small generated images and attribute CSVs (nothing is downloaded)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partial_csl.data.schema import default_schema

ROOT = Path(__file__).resolve().parent.parent


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_digest(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def make_attribute_dataset(root: Path, n: int = 60, seed: int = 0, size: int = 32, missing: float = 0.2) -> Path:
    """Images whose colour encodes sleeve_length, brightness pattern and a bar position neck; returns the CSV."""
    rng = np.random.default_rng(seed)
    schema = default_schema()
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = ["filename,neck,sleeve_length,pattern"]
    for i in range(n):
        values = [int(rng.integers(g.num_classes)) for g in schema.groups]
        pixels = np.zeros((size, size, 3), dtype=np.uint8)
        pixels[..., values[1] % 3] = 60 + 40 * values[1]
        pixels[values[0] * 4: values[0] * 4 + 4, :, :] = 255
        pixels[:, values[2] * 3: values[2] * 3 + 3, 2] = 200
        name = f"img_{i:03d}.png"
        Image.fromarray(pixels).save(images / name)
        cells = ["#N/A" if rng.random() < missing else str(v) for v in values]
        lines.append(",".join([name, *cells]))
    csv_path = root / "attributes.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def make_train_val(root: Path, seed: int, n_train: int = 16, n_val: int = 8) -> Path:
    """The tiny attribute set split into ``root/train.csv`` and ``root/valid.csv`` (images in ``root/images``)."""
    lines = make_attribute_dataset(root, n=n_train + n_val, seed=seed).read_text().splitlines()
    (root / "train.csv").write_text("\n".join([lines[0], *lines[1:n_train + 1]]) + "\n")
    (root / "valid.csv").write_text("\n".join([lines[0], *lines[n_train + 1:]]) + "\n")
    return root


@pytest.fixture
def attribute_data(tmp_path: Path) -> tuple[Path, Path]:
    csv_path = make_attribute_dataset(tmp_path / "data")
    return csv_path, tmp_path / "data" / "images"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path: Path) -> Path:
    """A Fashion-MNIST-shaped source: 200 images per product class, 28x28, in the real idx.gz format."""
    return write_fake_fashion_mnist(tmp_path / "fashion-mnist")


@pytest.fixture(scope="module")
def fake_fashion_mnist_module(tmp_path_factory) -> Path:
    """:func:`fake_fashion_mnist`, shared by a module's tests."""
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


def write_fake_fashion_mnist(source: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 200)
    images = rng.integers(0, 255, size=(len(labels), 28, 28))
    source.mkdir(exist_ok=True)
    write_idx(source / "train-images-idx3-ubyte.gz", images)
    write_idx(source / "train-labels-idx1-ubyte.gz", labels)
    write_idx(source / "t10k-images-idx3-ubyte.gz", images[::4])
    write_idx(source / "t10k-labels-idx1-ubyte.gz", labels[::4])
    return source


def csl_flags_only_for_csl(args: list[str]) -> list[str]:
    """``args`` without the flags the last ``--arch`` does not read (train.py refuses those; under ``auto`` every
    architecture's settings go, so that the data format's default trains with its own): the tests' shared argument
    lists carry CSL settings for the CSL runs."""
    from itertools import pairwise

    from partial_csl.engine.setup.architectures import ARCH_SETTINGS, unread_settings

    archs = [value for flag, value in pairwise(args) if flag == "--arch"]
    if not archs or archs[-1] == "csl":
        return list(args)
    unread = ARCH_SETTINGS if archs[-1] == "auto" else unread_settings(archs[-1])
    flags = {f"--{name}" for name in unread} | {f"--{name.replace('_', '-')}" for name in unread}
    out, skip = [], False
    for arg in args:
        if skip and not arg.startswith("--"):
            skip = False  # the dropped flag's value
        elif arg in flags:
            skip = True
        else:
            skip = False
            out.append(arg)
    return out
