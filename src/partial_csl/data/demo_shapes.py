"""A second garment-attribute dataset, built differently from the demo, for evidence that transfers.

Same CSV format and schema as :mod:`.demo` (neck 7, sleeve_length 4, pattern 10), but every attribute is shown by
another cue, the classes are skewed another way, the attributes are correlated and the labels are missing *not* at
random:

* ``neck``: a neckline shape drawn at the top centre (V, round, square, boat, halter, slit, collar), over any
  Fashion-MNIST product (the product type carries no label here);
* ``sleeve_length``: bars on both sides whose length is the sleeve (none, short, three-quarter, long);
* ``pattern``: the garment's colour, one of ten hues (the demo's pattern is a texture, its colour the sleeve);
* class frequencies fall off as a power law with a different dominant class per attribute (neck 2, sleeve_length 1,
  pattern 4; the demo's is always the last);
* an image with a rare class of one attribute takes the dominant class of the others more often
  (``RARE_PULLS_COMMON``), as in real garment data;
* ``#N/A`` depends on the class: the rarer the class, the more often it is missing (``MISSING_RATE_RANGE``, from
  the dominant class's rate to the rarest class's), so the annotated frequencies understate the rare classes.

The build is a pure function of its arguments and the seed; a manifest makes a second call with the same arguments
a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm import tqdm

from .demo import DEMO_IMAGE_SIZE, FASHION_MNIST_DIR, load_fashion_mnist

DOMINANT = {"neck": 2, "sleeve_length": 1, "pattern": 4}
POWER = {"neck": 1.3, "sleeve_length": 1.6, "pattern": 1.1}  # frequency of the r-th most common class ~ r^-power
SIZES = {"neck": 7, "sleeve_length": 4, "pattern": 10}
RARE_PULLS_COMMON = 0.5  # with a rare class drawn, each other attribute is set to its dominant class this often
MISSING_RATE_RANGE = (0.08, 0.45)  # #N/A rate of the dominant class .. of the rarest class
HUES = np.array([[0.9, 0.2, 0.2], [0.95, 0.55, 0.1], [0.9, 0.85, 0.15], [0.35, 0.8, 0.2], [0.45, 0.45, 0.45],
                 [0.15, 0.75, 0.75], [0.2, 0.35, 0.95], [0.55, 0.25, 0.85], [0.9, 0.3, 0.7], [0.55, 0.35, 0.2]])
SLEEVE_LENGTHS = (0.0, 0.3, 0.6, 0.9)  # share of the image height the side bars cover


def shape_frequencies() -> dict[str, np.ndarray]:
    """Per attribute, class frequencies r^-power over the ranks, the dominant class first in rank order."""
    out = {}
    for name, size in SIZES.items():
        order = [DOMINANT[name], *(c for c in range(size) if c != DOMINANT[name])]
        freq = np.zeros(size)
        freq[order] = np.arange(1, size + 1, dtype=float) ** -POWER[name]
        out[name] = freq / freq.sum()
    return out


def missing_rates(freq: np.ndarray) -> np.ndarray:
    """#N/A rate per class: linear in log frequency, from the dominant class's rate to the rarest class's."""
    low, high = MISSING_RATE_RANGE
    logs = np.log(freq)
    position = (logs.max() - logs) / max(logs.max() - logs.min(), 1e-12)
    return low + (high - low) * position


def draw_classes(rng: np.random.Generator, frequencies: dict[str, np.ndarray]) -> dict[str, int]:
    """One garment's classes; a rare class pulls the other attributes to their dominant class."""
    classes = {name: int(rng.choice(len(freq), p=freq)) for name, freq in frequencies.items()}
    rare = [name for name, value in classes.items() if frequencies[name][value] < 0.5 / len(frequencies[name])]
    if rare:
        for name in frequencies:
            if name not in rare and rng.random() < RARE_PULLS_COMMON:
                classes[name] = DOMINANT[name]
    return classes


def _neckline(draw: ImageDraw.ImageDraw, neck: int, size: int) -> None:
    """A bright neckline shape on a dark patch at the top centre, visible over any product."""
    c, top, w = size / 2, size * 0.02, size * 0.18
    draw.rectangle([c - 2.2 * w, 0, c + 2.2 * w, top + 2.2 * w], fill=0)
    shapes = {
        0: lambda: draw.polygon([(c - w, top), (c + w, top), (c, top + 2 * w)], fill=255),  # V
        1: lambda: draw.pieslice([c - w, top - w, c + w, top + w], 0, 180, fill=255),  # round
        2: lambda: draw.rectangle([c - w, top, c + w, top + w], fill=255),  # square
        3: lambda: draw.rectangle([c - 2 * w, top, c + 2 * w, top + w / 3], fill=255),  # boat
        4: lambda: draw.polygon([(c - 2 * w, top), (c - w / 2, top), (c - 2 * w, top + 2 * w)], fill=255),  # halter
        5: lambda: draw.rectangle([c - w / 5, top, c + w / 5, top + 2 * w], fill=255),  # slit
        6: lambda: draw.rectangle([c - w, top + w, c + w, top + 1.4 * w], fill=255),  # collar band
    }
    shapes[neck]()


def render_shapes(product: np.ndarray, classes: dict[str, int], size: int = DEMO_IMAGE_SIZE) -> Image.Image:
    """A grey product at ``size``, coloured by its pattern hue, with its neckline and sleeve bars drawn on."""
    grey = Image.fromarray(product).resize((size, size), Image.BILINEAR)
    draw = ImageDraw.Draw(grey)
    _neckline(draw, classes["neck"], size)
    length = SLEEVE_LENGTHS[classes["sleeve_length"]] * size
    if length:
        bar = max(size // 10, 2)
        draw.rectangle([0, size * 0.05, bar, size * 0.05 + length], fill=230)
        draw.rectangle([size - 1 - bar, size * 0.05, size - 1, size * 0.05 + length], fill=230)
    shade = np.asarray(grey, dtype=np.float64)[..., None] / 255.0 * HUES[classes["pattern"]][None, None, :]
    return Image.fromarray(np.clip(shade * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def build_shapes_dataset(out_dir: str | Path, num_images: int = 3000, seed: int = 0,
                         source: Path = FASHION_MNIST_DIR, image_size: int = DEMO_IMAGE_SIZE) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/attributes.csv``; returns the CSV path."""
    out_dir = Path(out_dir)
    manifest = {"generator": "shapes", "num_images": num_images, "seed": seed, "image_size": image_size,
                "version": 1}
    manifest_path, csv_path = out_dir / "manifest.json", out_dir / "attributes.csv"
    if manifest_path.is_file() and csv_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return csv_path
    images, _ = load_fashion_mnist(Path(source))
    rng = np.random.default_rng(seed)
    frequencies = shape_frequencies()
    missing = {name: missing_rates(freq) for name, freq in frequencies.items()}
    order = rng.permutation(len(images))
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(num_images), desc="building shapes images", unit="img", disable=None):
        classes = draw_classes(rng, frequencies)
        filename = f"{i:05d}.png"
        render_shapes(images[order[i % len(order)]], classes, image_size).save(out_dir / "images" / filename)
        row = {"filename": filename}
        for name, value in classes.items():
            row[name] = "#N/A" if rng.random() < missing[name][value] else str(value)
        rows.append(row)
    pd.DataFrame(rows).to_csv(csv_path, index=False, lineterminator="\n")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return csv_path
