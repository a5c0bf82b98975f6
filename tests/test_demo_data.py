import numpy as np
import pandas as pd
import pytest
from conftest import tree_digest
from PIL import Image

from partial_csl.data.demo import build_demo_dataset, load_fashion_mnist
from partial_csl.data.labels import read_attribute_csv
from partial_csl.data.schema import default_schema


def test_demo_dataset_format_skew_and_missing_share(tmp_path, fake_fashion_mnist):
    csv_path = build_demo_dataset(tmp_path / "demo", num_images=400, seed=1, source=fake_fashion_mnist)
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(raw.columns) == ["filename", "neck", "sleeve_length", "pattern"]
    table = read_attribute_csv(csv_path, default_schema(), image_dir=tmp_path / "demo" / "images")
    assert len(table) == 400
    with Image.open(tmp_path / "demo" / "images" / table.filenames[0]) as img:
        assert img.mode == "RGB" and img.size == (64, 64)
    for j, group in enumerate(default_schema().groups):
        col = table.values[:, j]
        missing = (col == -1).mean()
        assert 0.15 <= missing <= 0.35, f"{group.name}: {missing:.2f} missing"
        counts = np.bincount(col[col >= 0], minlength=group.num_classes)
        assert counts.argmax() == group.num_classes - 1
        assert counts.max() / counts.sum() > 0.45
        assert (counts > 0).all()


def test_demo_dataset_is_deterministic_and_skips_a_finished_build(tmp_path, fake_fashion_mnist):
    build_demo_dataset(tmp_path / "a", num_images=50, seed=3, source=fake_fashion_mnist)
    build_demo_dataset(tmp_path / "b", num_images=50, seed=3, source=fake_fashion_mnist)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    stamp = (tmp_path / "a" / "attributes.csv").stat().st_mtime_ns
    build_demo_dataset(tmp_path / "a", num_images=50, seed=3, source=fake_fashion_mnist)
    assert (tmp_path / "a" / "attributes.csv").stat().st_mtime_ns == stamp


def test_missing_source_gives_install_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
