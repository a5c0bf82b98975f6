"""A map-style dataset of (image tensor, target vector) for any multi-label target matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .labels import resolve_image_path


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB (grayscale, palette and RGBA inputs included)."""
    with Image.open(path) as img:
        return img.convert("RGB")


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
        img = load_rgb(resolve_image_path(self.image_dir, self.filenames[index]))
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
