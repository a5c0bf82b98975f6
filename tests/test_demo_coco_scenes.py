"""The third COCO-format benchmark set (data/demo_coco_scenes.py): its layout, objects, scenes and reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from partial_csl.data.coco import load_coco
from partial_csl.data.demo_coco import disjoint_halves
from partial_csl.data.demo_coco_scenes import (
    GRID,
    HOME_SHARE,
    IMAGE,
    OBJECT_SIZES,
    build_coco_scenes,
    draw_scenes,
    scene_categories,
)
from partial_csl.data.partial import simulate_partial


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, fake_fashion_mnist_module):
    return build_coco_scenes(tmp_path_factory.mktemp("scenes"), n_train=600, n_val=40,
                             source=fake_fashion_mnist_module)


def _records(root, split="train"):
    return json.loads((root / "annotations" / f"instances_{split}2014.json").read_text())


def test_thirty_categories_without_gaps_in_the_2014_layout(scenes):
    names = [c["name"] for c in scene_categories()]
    assert len(names) == 30 and names[0] == "tshirt" and names[10] == "red tshirt"
    assert names[29] == "blue " + names[9] and names[20] == "blue tshirt"
    for split in ("train", "val"):
        coco = load_coco(scenes / "annotations" / f"instances_{split}2014.json", scenes / f"{split}2014")
        assert coco.category_ids == list(range(1, 31))
        assert coco.filenames[0] == f"COCO_{split}2014_000000000001.jpg"
        assert Image.open(scenes / f"{split}2014" / coco.filenames[0]).size == (IMAGE, IMAGE)


def test_every_image_has_one_to_five_objects_of_20_to_32_px_each_in_its_own_cell(scenes):
    by_image: dict[int, list] = {}
    for ann in _records(scenes)["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
    assert len(by_image) == 600 and {len(b) for b in by_image.values()} <= {1, 2, 3, 4, 5}
    cell = IMAGE // GRID
    for boxes in by_image.values():
        cells = set()
        for left, top, w, h in boxes:
            assert w == h and OBJECT_SIZES[0] <= w <= OBJECT_SIZES[1]
            assert left // cell == (left + w - 1) // cell and top // cell == (top + h - 1) // cell  # inside one cell
            cells.add((top // cell, left // cell))
        assert len(cells) == len(boxes)  # no two objects share a cell, so none overlaps another


def test_labels_co_occur_by_scene(scenes):
    """The same labels with each category's column shuffled on its own keep the frequencies and lose the
    co-occurrence: the real labels' mean absolute correlation between categories is well above theirs (about
    0.075 against 0.03 at 600 images), and every category's home scene is where most of its draws come from."""
    targets = load_coco(scenes / "annotations" / "instances_train2014.json", scenes / "train2014").targets

    def mean_abs_correlation(t: np.ndarray) -> float:
        c = np.corrcoef(t[:, t.std(axis=0) > 0].T)
        return float(np.abs(c[np.triu_indices(len(c), 1)]).mean())

    rng = np.random.default_rng(0)
    independent = np.stack([rng.permutation(column) for column in targets.T], axis=1)
    assert mean_abs_correlation(targets) > 1.5 * mean_abs_correlation(independent)
    scenes_drawn = draw_scenes(30, np.random.default_rng(0))
    assert np.allclose(scenes_drawn.categories.sum(axis=1), 1) and np.isclose(scenes_drawn.weights.sum(), 1)
    homes = scenes_drawn.categories > (1 - HOME_SHARE) / 30
    assert (homes.sum(axis=0) == 1).all() and (homes.sum(axis=1) == 6).all()


def test_the_same_seed_builds_the_same_set_and_a_built_set_is_kept(tmp_path, fake_fashion_mnist):
    a = build_coco_scenes(tmp_path / "a", n_train=12, n_val=4, source=fake_fashion_mnist)
    b = build_coco_scenes(tmp_path / "b", n_train=12, n_val=4, source=fake_fashion_mnist)
    assert _records(a) == _records(b) and _records(a, "val") == _records(b, "val")
    assert all((b / "train2014" / p.name).read_bytes() == p.read_bytes() for p in (a / "train2014").iterdir())
    stamp = (a / "train2014" / "COCO_train2014_000000000001.jpg").stat().st_mtime_ns
    build_coco_scenes(tmp_path / "a", n_train=12, n_val=4, source=fake_fashion_mnist)
    assert (a / "train2014" / "COCO_train2014_000000000001.jpg").stat().st_mtime_ns == stamp
    assert json.loads((a / "manifest.json").read_text())["kind"] == "scenes"


def test_train_and_validation_draw_on_disjoint_photos():
    products = np.repeat(np.arange(10), 7)
    train, val = disjoint_halves(products, np.random.default_rng(0))
    for p in range(10):
        assert set(train[p]).isdisjoint(val[p]) and set(train[p]) | set(val[p]) == set(np.flatnonzero(products == p))


def test_the_simulators_apply_to_the_scenes_set(scenes):
    targets = load_coco(scenes / "annotations" / "instances_train2014.json", scenes / "train2014").targets
    partial = simulate_partial(targets, "rps", 0.5, seed=0)
    known = partial != -1
    assert 0.3 < known.mean() < 0.7 and np.array_equal(partial[known], targets[known])
