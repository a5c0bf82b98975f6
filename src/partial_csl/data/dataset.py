"""A map-style dataset of (image tensor, target vector) for any multi-label target matrix.

Images are read by :func:`partial_csl.data.images.load_rgb` (re-exported here), the package's one image reader, so
a file that cannot be decoded at training time raises :class:`~partial_csl.data.images.ImageLoadError` naming it
instead of PIL's anonymous ``OSError: image file is truncated``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from .images import ImageLoadError, load_rgb, resolve_image_path
from .sparse_targets import SparseTargets

__all__ = ["ImageCache", "ImageLoadError", "MultiLabelImageDataset", "load_rgb"]


class ImageCache:
    """Every image of a split decoded once and resized to the model's square input, kept in memory as uint8.

    Decoding PNG/JPEG files is a large share of a small-image epoch on a CPU; the cache pays it once per run. The
    transforms start with the same resize, which is then a no-op, so the pixels a model sees are those of the
    uncached path. Memory: N x S x S x 3 bytes (2,400 images at 64 px: 29 MB; at 224 px: 361 MB).
    """

    def __init__(self, image_size: int, resample: Image.Resampling = Image.Resampling.BILINEAR):
        self.image_size, self.resample = image_size, resample
        self.images: dict[int, np.ndarray] = {}

    def fill(self, dataset: MultiLabelImageDataset) -> None:
        """Decode every image that can be read; one that cannot is left out, to fail (and be named) when drawn."""
        for index in tqdm(range(len(dataset)), desc="caching images", unit="image", leave=False, disable=None):
            with contextlib.suppress(ImageLoadError):
                self.images[index] = np.asarray(self.resize(dataset.load(index)))

    def resize(self, img: Image.Image) -> Image.Image:
        size = (self.image_size, self.image_size)
        return img if img.size == size else img.resize(size, self.resample)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.images.values())


class MultiLabelImageDataset(Dataset):
    """Images under ``image_dir`` named by ``filenames``, with targets (N, C) in {-1, 0, 1}, dense or
    :class:`SparseTargets` (densified an item at a time); with ``cache``, images come from an :class:`ImageCache`
    (filled before the DataLoader starts, so worker processes share it)."""

    def __init__(self, image_dir: str | Path, filenames: Sequence[str], targets: np.ndarray | SparseTargets,
                 transform: Callable | None = None, cache: ImageCache | None = None):
        if len(filenames) != len(targets):
            raise ValueError(f"{len(filenames)} filenames but {len(targets)} target rows")
        self.image_dir = Path(image_dir)
        self.filenames = list(filenames)
        self.targets = targets if isinstance(targets, SparseTargets) else torch.as_tensor(
            np.asarray(targets, dtype=np.float32))
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get(index, self.transform)

    def load(self, index: int) -> Image.Image:
        """Image ``index`` decoded from its file, as RGB."""
        name = self.filenames[index]
        try:
            path = resolve_image_path(self.image_dir, name)
        except ValueError as err:
            raise ImageLoadError(str(err)) from err
        return load_rgb(path, name=f"{name!r} (in {self.image_dir})")

    def get(self, index: int, transform: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` under another ``transform`` (e.g. a stronger augmentation for a repeated draw)."""
        cached = self.cache.images.get(index) if self.cache is not None else None
        img = Image.fromarray(cached) if cached is not None else self.load(index)
        if transform is not None:
            img = transform(img)
        return img, self.targets[index]
