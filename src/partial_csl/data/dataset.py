"""A map-style dataset of (image tensor, target vector) for any multi-label target matrix.

Images are read by :func:`partial_csl.data.images.load_rgb` (re-exported here), the package's one image reader, so
a file that cannot be decoded at training time raises :class:`~partial_csl.data.images.ImageLoadError` naming it
instead of PIL's anonymous ``OSError: image file is truncated``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import ImageLoadError, load_rgb, resolve_image_path

__all__ = ["ImageLoadError", "MultiLabelImageDataset", "load_rgb"]


class MultiLabelImageDataset(Dataset):
    """Images under ``image_dir`` named by ``filenames``, with targets (N, C) in {-1, 0, 1}."""

    def __init__(self, image_dir: str | Path, filenames: Sequence[str], targets: np.ndarray,
                 transform: Callable | None = None):
        if len(filenames) != len(targets):
            raise ValueError(f"{len(filenames)} filenames but {len(targets)} target rows")
        self.image_dir = Path(image_dir)
        self.filenames = list(filenames)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get(index, self.transform)

    def get(self, index: int, transform: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` under another ``transform`` (e.g. a stronger augmentation for a repeated draw)."""
        name = self.filenames[index]
        try:
            path = resolve_image_path(self.image_dir, name)
        except ValueError as err:
            raise ImageLoadError(str(err)) from err
        img = load_rgb(path, name=f"{name!r} (in {self.image_dir})")
        if transform is not None:
            img = transform(img)
        return img, self.targets[index]
