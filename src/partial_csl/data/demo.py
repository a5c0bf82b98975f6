"""The embedded demo: a garment-attribute dataset in the user's exact CSV format, built from Fashion-MNIST.

Fashion-MNIST (Zalando product photos, MIT licence) comes from the Debian package ``dataset-fashion-mnist``. Every
attribute is visible in the pixels:

* ``neck`` (7): the product type, one of 7 Fashion-MNIST classes;
* ``sleeve_length`` (4): the colour the product is rendered in (red, green, blue, or neutral grey);
* ``pattern`` (10): a texture printed on the product (stripes of several kinds, checks, dots, gradient, ... or solid).

Class frequencies are skewed like the real garment data (the last class of each attribute dominates, as ``neck_6``,
``sleeve_length_3`` and ``pattern_9`` do there) and each attribute is ``#N/A`` for 20-30 % of the rows, independently.
The build is a pure function of its arguments and the seed: the same call writes byte-identical files.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
# neck class k <- Fashion-MNIST product class NECK_PRODUCTS[k]; visually distinct types only.
NECK_PRODUCTS = [1, 3, 5, 7, 8, 9, 0]
SLEEVE_COLOURS = np.array([[1.0, 0.25, 0.25], [0.25, 1.0, 0.25], [0.3, 0.45, 1.0], [0.85, 0.85, 0.85]])
CLASS_FREQUENCIES = {
    "neck": [0.07, 0.08, 0.06, 0.09, 0.07, 0.08, 0.55],
    "sleeve_length": [0.09, 0.1, 0.11, 0.7],
    "pattern": [0.035, 0.035, 0.035, 0.035, 0.04, 0.04, 0.035, 0.035, 0.04, 0.67],
}
MISSING_RATES = {"neck": 0.2, "sleeve_length": 0.25, "pattern": 0.3}
DEMO_IMAGE_SIZE = 64


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(source: Path = FASHION_MNIST_DIR, part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and product labels of Fashion-MNIST's ``train`` (60,000) or ``t10k`` (10,000) file."""
    images_path, labels_path = source / f"{part}-images-idx3-ubyte.gz", source / f"{part}-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST not found under {source}. Install it with "
            "'apt-get install -y dataset-fashion-mnist' (as root), or pass --source DIR with the idx .gz files."
        )
    return read_idx(images_path), read_idx(labels_path)


def pattern_mask(pattern: int, size: int) -> np.ndarray:
    """Brightness multiplier in [0, 1] of a texture; pattern 9 is solid."""
    y, x = np.mgrid[0:size, 0:size]
    stripes_h, stripes_v = (y // 4) % 2 == 0, (x // 4) % 2 == 0
    masks = {
        0: stripes_h,
        1: stripes_v,
        2: ((x + y) // 4) % 2 == 0,
        3: ((x - y) // 4) % 2 == 0,
        4: stripes_h ^ stripes_v,
        5: ((x % 8 - 4) ** 2 + (y % 8 - 4) ** 2) <= 4,
        6: (y // 10) % 2 == 0,
        7: (x % 6 == 0) | (y % 6 == 0),
        8: y / (size - 1) < 0.5,
    }
    if pattern == 9:
        return np.ones((size, size))
    return np.where(masks[pattern], 1.0, 0.3)


def render(product: np.ndarray, sleeve: int, pattern: int, size: int = DEMO_IMAGE_SIZE) -> Image.Image:
    """A 28x28 grey product, scaled to ``size``, coloured by ``sleeve`` and textured by ``pattern``."""
    grey = np.asarray(Image.fromarray(product).resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
    shaded = grey * pattern_mask(pattern, size)
    rgb = shaded[..., None] * SLEEVE_COLOURS[sleeve][None, None, :]
    return Image.fromarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def class_frequencies(skew: float = 1.0) -> dict[str, np.ndarray]:
    """Each attribute's class frequencies raised to ``skew`` and renormalised: 1 is the garment-like default, 1.5 a
    harder long tail (pattern's rare classes at about 1 % instead of 3.5 %: a benchmark for imbalance handling)."""
    out = {}
    for name, freq in CLASS_FREQUENCIES.items():
        powered = np.asarray(freq, dtype=float) ** skew
        out[name] = powered / powered.sum()
    return out


def build_demo_dataset(out_dir: str | Path, num_images: int = 3000, seed: int = 0,
                       source: Path = FASHION_MNIST_DIR, image_size: int = DEMO_IMAGE_SIZE, skew: float = 1.0) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/attributes.csv``; returns the CSV path.

    Skips the work when ``out_dir/manifest.json`` says the same build is already there.
    """
    out_dir = Path(out_dir)
    manifest = {"num_images": num_images, "seed": seed, "image_size": image_size, "version": 1}
    frequencies = CLASS_FREQUENCIES if skew == 1.0 else class_frequencies(skew)
    if skew != 1.0:  # the default build's manifest (and files) stay as they were
        manifest["skew"] = skew
    manifest_path, csv_path = out_dir / "manifest.json", out_dir / "attributes.csv"
    if manifest_path.is_file() and csv_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return csv_path
    images, products = load_fashion_mnist(Path(source))
    rng = np.random.default_rng(seed)
    by_product = {p: rng.permutation(np.flatnonzero(products == p)) for p in NECK_PRODUCTS}
    used = dict.fromkeys(NECK_PRODUCTS, 0)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(num_images), desc="building demo images", unit="img", disable=None):
        classes = {name: int(rng.choice(len(freq), p=freq)) for name, freq in frequencies.items()}
        product = NECK_PRODUCTS[classes["neck"]]
        pool = by_product[product]
        source_index = pool[used[product] % len(pool)]  # wraps only when asked for more than the source has
        used[product] += 1
        filename = f"{i:05d}_{FASHION_MNIST_NAMES[product]}.png"
        render(images[source_index], classes["sleeve_length"], classes["pattern"], image_size).save(
            out_dir / "images" / filename)
        row = {"filename": filename}
        for name, value in classes.items():
            row[name] = "#N/A" if rng.random() < MISSING_RATES[name] else str(value)
        rows.append(row)
    pd.DataFrame(rows).to_csv(csv_path, index=False, lineterminator="\n")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return csv_path
