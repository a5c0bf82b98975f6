"""A small COCO-format benchmark set built from Fashion-MNIST, in the real COCO 2014 layout.

Each 64x64 image is a 2x2 grid of cells; a cell holds one product (a Fashion-MNIST photo), plain grey or tinted red,
or stays empty. The 20 categories are (product, colour) pairs, e.g. ``sneaker`` and ``red sneaker``; an image is
labelled with every category it shows (one annotation per product, with its box). Category frequencies are
long-tailed like COCO's (Zipf-distributed: a few frequent categories, many rare ones; ``zipf_exponent=0`` makes
them uniform instead), category ids have gaps like COCO's (10, 12 and 23 are unused), and about 2 % of the images are
empty (no annotation).

:func:`build_pretraining_set` writes a disjoint *pretraining* set in the same layout, for benchmarks that need a
backbone trained elsewhere (as an ImageNet backbone is for COCO): one product per image, categories uniform, photos
from Fashion-MNIST's t10k file, which the benchmark set (built from the train file) never uses.

    ROOT/annotations/instances_train2014.json   ROOT/train2014/COCO_train2014_000000000001.jpg ...
    ROOT/annotations/instances_val2014.json     ROOT/val2014/...
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .demo import FASHION_MNIST_DIR, FASHION_MNIST_NAMES, load_fashion_mnist

CELL, GRID = 32, 2
CATEGORY_IDS = [i for i in range(1, 24) if i not in (10, 12, 23)]
EMPTY_SHARE = 0.02
ZIPF_EXPONENT = 1.1  # the shipped set's long tail: its most frequent category is about 10x the median one


def categories() -> list[dict]:
    """(product, colour) categories in id order; names like ``sneaker`` and ``red sneaker``."""
    out = []
    for k, cid in enumerate(CATEGORY_IDS):
        product, red = k % 10, k >= 10
        name = ("red " if red else "") + FASHION_MNIST_NAMES[product]
        out.append({"id": cid, "name": name, "supercategory": "red" if red else "grey", "product": product,
                    "red": red})
    return out


def category_weights(num: int, seed: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Zipf weights over the categories in a seeded random order (so frequency is not tied to the id); exponent 0
    gives every category the same weight."""
    weights = 1.0 / np.arange(1, num + 1) ** exponent
    return np.random.default_rng(seed).permutation(weights / weights.sum())


def disjoint_halves(products: np.ndarray, rng: np.random.Generator) -> list[dict[int, np.ndarray]]:
    """Photo indices per product for (train, val): each product's photos shuffled, the first half for training, so
    the two splits never share a photo."""
    shuffled = {p: rng.permutation(np.flatnonzero(products == p)) for p in range(10)}
    return [{p: idx[: len(idx) // 2] for p, idx in shuffled.items()},
            {p: idx[len(idx) // 2:] for p, idx in shuffled.items()}]


def _render_cell(photo: np.ndarray, red: bool) -> np.ndarray:
    grey = np.asarray(Image.fromarray(photo).resize((CELL, CELL), Image.BILINEAR), dtype=np.float64) / 255.0
    tint = np.array([1.0, 0.2, 0.2]) if red else np.array([0.9, 0.9, 0.9])
    return grey[..., None] * tint[None, None, :]


def _filled_cells(rng: np.random.Generator, single_object: bool) -> list[int]:
    if single_object:
        return [int(rng.integers(GRID * GRID))]
    if rng.random() < EMPTY_SHARE:
        return []
    return [c for c in range(GRID * GRID) if rng.random() < 0.6] or [int(rng.integers(GRID * GRID))]


def _write_split(root: Path, split: str, n_images: int, images: np.ndarray, pools: dict[int, np.ndarray],
                 weights: np.ndarray, rng: np.random.Generator, single_object: bool = False) -> None:
    folder = root / f"{split}2014"
    folder.mkdir(parents=True, exist_ok=True)
    cats = categories()
    used = dict.fromkeys(range(10), 0)
    image_records, annotations = [], []
    for image_id in tqdm(range(1, n_images + 1), desc=f"building COCO {split}", unit="img", disable=None):
        canvas = np.zeros((CELL * GRID, CELL * GRID, 3))
        for cell in _filled_cells(rng, single_object):
            cat = cats[int(rng.choice(len(cats), p=weights))]
            pool = pools[cat["product"]]
            photo = images[pool[used[cat["product"]] % len(pool)]]
            used[cat["product"]] += 1
            y, x = divmod(cell, GRID)
            canvas[y * CELL:(y + 1) * CELL, x * CELL:(x + 1) * CELL] = _render_cell(photo, cat["red"])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat["id"],
                                "bbox": [x * CELL, y * CELL, CELL, CELL], "area": CELL * CELL, "iscrowd": 0,
                                "segmentation": []})
        image_records.append(save_image(folder, split, image_id, canvas))
    write_annotations(root, split, image_records, annotations, cats, "Fashion-MNIST COCO-format benchmark")


def save_image(folder: Path, split: str, image_id: int, canvas: np.ndarray) -> dict:
    """Write ``canvas`` (H, W, 3 floats in [0, 1]) as the split's COCO 2014 file of ``image_id``; its image record."""
    name = f"COCO_{split}2014_{image_id:012d}.jpg"
    Image.fromarray(np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)).save(folder / name, quality=95)
    return {"id": image_id, "file_name": name, "width": canvas.shape[1], "height": canvas.shape[0]}


def write_annotations(root: Path, split: str, images: list[dict], annotations: list[dict], cats: list[dict],
                      description: str) -> None:
    """``root/annotations/instances_<split>2014.json``: the COCO record of one split."""
    dataset = {"info": {"description": f"{description} ({split})"}, "images": images, "annotations": annotations,
               "categories": [{k: c[k] for k in ("id", "name", "supercategory")} for c in cats]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(dataset))


def build_coco_benchmark(root: str | Path, n_train: int = 1500, n_val: int = 500, seed: int = 0,
                         source: Path = FASHION_MNIST_DIR, zipf_exponent: float = ZIPF_EXPONENT) -> Path:
    """Write the benchmark set under ``root`` (skipped when ``root/manifest.json`` matches); returns ``root``.

    ``zipf_exponent`` shapes the category frequencies: 1.1 (the default) a long tail, 0 uniform."""
    root = Path(root)
    manifest = {"n_train": n_train, "n_val": n_val, "seed": seed, "version": 1}
    if zipf_exponent != ZIPF_EXPONENT:  # absent for the default, so sets built before the option are still current
        manifest["zipf_exponent"] = zipf_exponent
    manifest_path = root / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return root
    images, products = load_fashion_mnist(Path(source))
    weights = category_weights(len(CATEGORY_IDS), seed, zipf_exponent)
    rng = np.random.default_rng(seed)
    halves = disjoint_halves(products, rng)
    _write_split(root, "train", n_train, images, halves[0], weights, rng)
    _write_split(root, "val", n_val, images, halves[1], weights, rng)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def build_pretraining_set(root: str | Path, n_train: int = 4000, n_val: int = 400, seed: int = 0,
                          source: Path = FASHION_MNIST_DIR) -> Path:
    """A single-object set of the same 20 categories from the t10k photos (disjoint from the benchmark set's),
    in the COCO 2014 layout under ``root`` (skipped when ``root/manifest.json`` matches); returns ``root``."""
    root = Path(root)
    manifest = {"n_train": n_train, "n_val": n_val, "seed": seed, "version": 1, "kind": "pretraining"}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return root
    images, products = load_fashion_mnist(Path(source), part="t10k")
    weights = np.full(len(CATEGORY_IDS), 1.0 / len(CATEGORY_IDS))
    rng = np.random.default_rng(seed)
    halves = disjoint_halves(products, rng)
    _write_split(root, "train", n_train, images, halves[0], weights, rng, single_object=True)
    _write_split(root, "val", n_val, images, halves[1], weights, rng, single_object=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return root
