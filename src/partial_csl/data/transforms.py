"""Image transforms of the CSL recipe: squish-resize to a square, Cutout + RandAugment for training, no normalisation.

Inputs stay in [0, 1] (mean 0, std 1), as the MIIL TResNet weights expect; the values are stored in every checkpoint
(:data:`NORMALIZATION`) so that inference never guesses them.
"""

from __future__ import annotations

import random

import torch
from PIL import Image, ImageDraw
from torchvision import transforms as T

NORMALIZATION = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
AUGMENTATIONS = ("csl", "light", "none")


class CutoutPIL:
    """Paint one rectangle of about ``factor`` x the image size, at a random centre, in one random colour."""

    def __init__(self, factor: float = 0.5):
        self.factor = factor

    def __call__(self, img: Image.Image) -> Image.Image:
        img = img.copy()
        w, h = img.size
        cw, ch = int(self.factor * w + 0.5), int(self.factor * h + 0.5)
        cx, cy = random.randint(0, w - 1), random.randint(0, h - 1)
        box = (max(cx - cw // 2, 0), max(cy - ch // 2, 0), min(cx + cw // 2, w), min(cy + ch // 2, h))
        colour = tuple(random.randint(0, 255) for _ in range(3))
        ImageDraw.Draw(img).rectangle(box, fill=colour)
        return img


def build_transform(image_size: int, train: bool, augment: str = "csl") -> T.Compose:
    """``csl``: Cutout(0.5) + RandAugment (the reference recipe); ``light``: flips and small shifts; ``none``."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; expected one of {AUGMENTATIONS}")
    steps: list = [T.Resize((image_size, image_size))]
    if train and augment == "csl":
        steps += [CutoutPIL(0.5), T.RandAugment()]
    elif train and augment == "light":
        steps += [T.RandomHorizontalFlip(), T.RandomAffine(degrees=5, translate=(0.05, 0.05))]
    steps += [T.ToTensor(), T.Normalize(NORMALIZATION["mean"], NORMALIZATION["std"])]
    return T.Compose(steps)


def build_strong_transform(image_size: int) -> T.Compose:
    """For repeated draws of one image (imbalance-aware sampling): geometry, light and occlusion change, hue does not
    (colour can be an attribute)."""
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.6, 1.0), ratio=(0.8, 1.25)),
        T.RandomHorizontalFlip(),
        T.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=8),
        T.ColorJitter(brightness=0.3, contrast=0.3),
        T.ToTensor(),
        T.RandomErasing(p=0.5, scale=(0.02, 0.15), value="random"),
        T.Normalize(NORMALIZATION["mean"], NORMALIZATION["std"]),
    ])


def build_offline_augmentation() -> T.Compose:
    """PIL -> PIL augmentation for copies written to disk (offline rebalancing); size and hue are kept."""
    return T.Compose([
        T.RandomHorizontalFlip(),
        T.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.85, 1.1), shear=8),
        T.ColorJitter(brightness=0.3, contrast=0.3),
    ])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python's ``random`` (used by Cutout) from the worker's torch seed."""
    random.seed(torch.initial_seed() % 2**32)
