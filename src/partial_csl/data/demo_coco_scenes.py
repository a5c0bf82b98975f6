"""A third COCO-format benchmark set, built differently from :mod:`.demo_coco`'s two: labels that co-occur by scene.

Where :mod:`.demo_coco` draws every object of an image independently from one category distribution (long-tailed or
uniform) and draws it as a grey or red product in a black 2x2 grid, this set is built the way COCO's labels arise:

* **scenes**: an image belongs to one of ``SCENES`` scenes (drawn with unequal, seeded weights), and its objects are
  drawn from that scene's category distribution: ``HOME_SHARE`` of it on the scene's own six categories (each
  category has one home scene; Dirichlet-weighted among the six), the rest spread over all 30. So categories
  co-occur with their scene-mates, and the class frequencies are neither Zipf nor uniform but what the mixture of
  scenes gives (about 11:1 between the most and least frequent);
* **context in the pixels**: each scene has its own background colour, with noise, so the background says which
  categories are likely (as a kitchen does for a fork);
* **30 categories**, (product, colour) with three colours (grey, red, blue), ids 1-30 without gaps;
* 96 px images (a user's 64 px runs downscale them), 1-5 objects an image (3 on average: COCO has 2.9), each a
  Fashion-MNIST photo of 20-32 px at a random place in its own cell of a 3x3 grid, blended onto the background (the
  photo's brightness is its opacity), so objects differ in size and place and never overlap.

Train and validation images use disjoint photos, as in :mod:`.demo_coco`; the layout is COCO 2014's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .demo import FASHION_MNIST_DIR, FASHION_MNIST_NAMES, load_fashion_mnist
from .demo_coco import disjoint_halves, save_image, write_annotations

IMAGE, GRID = 96, 3
CELL = IMAGE // GRID
OBJECT_SIZES = (20, 32)  # smallest and largest side in pixels
COLOURS = {"grey": (0.9, 0.9, 0.9), "red": (1.0, 0.25, 0.2), "blue": (0.25, 0.45, 1.0)}
SCENES = 5
HOME_SHARE = 0.85  # of a scene's objects, the share drawn from its own categories


def scene_categories() -> list[dict]:
    """(product, colour) categories, ids 1-30: the ten grey products, then the red ones, then the blue ones."""
    out = []
    for colour in COLOURS:
        for product in range(10):
            name = ("" if colour == "grey" else f"{colour} ") + FASHION_MNIST_NAMES[product]
            out.append({"id": len(out) + 1, "name": name, "supercategory": colour, "product": product,
                        "tint": COLOURS[colour]})
    return out


@dataclass(frozen=True)
class Scenes:
    """Each scene's category distribution (SCENES x categories), its weight among images and its dark background."""

    categories: np.ndarray
    weights: np.ndarray
    backgrounds: np.ndarray


def draw_scenes(num_categories: int, rng: np.random.Generator) -> Scenes:
    """Seeded scenes: every category gets one home scene (a random partition into equal groups)."""
    homes = rng.permutation(num_categories).reshape(SCENES, num_categories // SCENES)
    distributions = np.full((SCENES, num_categories), (1 - HOME_SHARE) / num_categories)
    for scene, home in enumerate(homes):
        distributions[scene, home] += HOME_SHARE * rng.dirichlet(np.ones(len(home)))
    return Scenes(distributions, rng.dirichlet(np.full(SCENES, 2.0)), rng.uniform(0.0, 0.3, size=(SCENES, 3)))


def _blend(canvas: np.ndarray, photo: np.ndarray, tint: tuple, size: int, top: int, left: int) -> None:
    alpha = np.asarray(Image.fromarray(photo).resize((size, size), Image.BILINEAR), dtype=np.float64)[..., None] / 255
    region = canvas[top:top + size, left:left + size]
    region[:] = (1 - alpha) * region + alpha * np.asarray(tint)[None, None, :]


def _render(rng: np.random.Generator, background: np.ndarray, objects: list[tuple[dict, np.ndarray]],
            image_id: int, first_annotation_id: int) -> tuple[np.ndarray, list[dict]]:
    """One image: the scene's noisy background and each (category, photo) in its own random cell; its annotations."""
    canvas = np.clip(background[None, None, :] + rng.normal(0, 0.04, size=(IMAGE, IMAGE, 3)), 0, 1)
    annotations = []
    for (cat, photo), cell in zip(objects, rng.choice(GRID * GRID, size=len(objects), replace=False), strict=True):
        size = int(rng.integers(OBJECT_SIZES[0], OBJECT_SIZES[1] + 1))
        row, col = divmod(int(cell), GRID)
        top = row * CELL + int(rng.integers(0, CELL - size + 1))
        left = col * CELL + int(rng.integers(0, CELL - size + 1))
        _blend(canvas, photo, cat["tint"], size, top, left)
        annotations.append({"id": first_annotation_id + len(annotations), "image_id": image_id,
                            "category_id": cat["id"], "bbox": [left, top, size, size], "area": size * size,
                            "iscrowd": 0, "segmentation": []})
    return canvas, annotations


def _write_split(root: Path, split: str, n_images: int, photos: np.ndarray, pools: dict[int, np.ndarray],
                 scenes: Scenes, rng: np.random.Generator) -> None:
    folder = root / f"{split}2014"
    folder.mkdir(parents=True, exist_ok=True)
    cats = scene_categories()
    used = dict.fromkeys(range(10), 0)
    records, annotations = [], []
    for image_id in tqdm(range(1, n_images + 1), desc=f"building COCO scenes {split}", unit="img", disable=None):
        scene = int(rng.choice(SCENES, p=scenes.weights))
        objects = []
        for _ in range(1 + rng.binomial(4, 0.5)):
            cat = cats[int(rng.choice(len(cats), p=scenes.categories[scene]))]
            pool = pools[cat["product"]]
            objects.append((cat, photos[pool[used[cat["product"]] % len(pool)]]))
            used[cat["product"]] += 1
        canvas, image_annotations = _render(rng, scenes.backgrounds[scene], objects, image_id, len(annotations) + 1)
        annotations += image_annotations
        records.append(save_image(folder, split, image_id, canvas))
    write_annotations(root, split, records, annotations, cats, "Fashion-MNIST COCO-format scenes benchmark")


def build_coco_scenes(root: str | Path, n_train: int = 1500, n_val: int = 500, seed: int = 0,
                      source: Path = FASHION_MNIST_DIR) -> Path:
    """Write the scenes set under ``root`` (skipped when ``root/manifest.json`` matches); returns ``root``."""
    root = Path(root)
    manifest = {"n_train": n_train, "n_val": n_val, "seed": seed, "version": 1, "kind": "scenes"}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return root
    photos, products = load_fashion_mnist(Path(source))
    rng = np.random.default_rng(seed)
    scenes = draw_scenes(len(scene_categories()), rng)
    halves = disjoint_halves(products, rng)
    _write_split(root, "train", n_train, photos, halves[0], scenes, rng)
    _write_split(root, "val", n_val, photos, halves[1], scenes, rng)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return root
