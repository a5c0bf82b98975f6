"""Image transforms of the CSL recipe (squish-resize to a square, Cutout + RandAugment for training), normalised the
way the backbone's weights expect.

The preprocessing travels with the model, as in timm: :func:`resolve_data_config` takes the model's own pretrained
config (ImageNet mean/std and bicubic interpolation for most timm models; mean 0 / std 1 and bilinear for the MIIL
TResNets), lets the ``config.json`` beside downloaded weights and then the command line override it, and the result
(:class:`DataConfig`) is stored in every checkpoint, so validation, inference, export and the web page apply exactly
what training used. Images are resized whole to the square input size (no crop: a garment's sleeves and hem are
labels, and the CSL recipe squishes), so timm's ``crop_pct`` is recorded but not applied.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import timm
import torch
from PIL import Image, ImageDraw
from torchvision import transforms as T

from .rand_augment import ReferenceRandAugment

AUGMENTATIONS = ("csl", "light", "none")
INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                  "nearest": T.InterpolationMode.NEAREST}
PIL_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                  "nearest": Image.Resampling.NEAREST}
MIIL_NORMALIZATION = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # checkpoints of format 1 carry only this


@dataclass(frozen=True)
class DataConfig:
    """What a model's input must look like: square size, per-channel mean and std (of [0, 1] RGB), interpolation."""

    image_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"
    crop_pct: float | None = None  # recorded from the pretrained config; not applied (see the module docstring)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; expected one of {sorted(INTERPOLATIONS)}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self.mean} and {self.std}")

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> DataConfig:
        return cls(int(data["image_size"]), tuple(data["mean"]), tuple(data["std"]), data["interpolation"],
                   data.get("crop_pct"))


def resolve_data_config(model_name: str, image_size: int, weights_config: dict | None = None,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                        interpolation: str | None = None) -> DataConfig:
    """The model's pretrained config (timm's), then ``weights_config`` (a hub ``config.json``'s ``pretrained_cfg``),
    then the explicit ``mean``/``std``/``interpolation``: the later wins."""
    try:
        base = timm.get_pretrained_cfg(model_name)
    except RuntimeError:
        base = None
    merged = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "interpolation": "bilinear", "crop_pct": None}
    if base is not None:
        merged.update(mean=base.mean, std=base.std, interpolation=base.interpolation or "bilinear",
                      crop_pct=base.crop_pct)
    for key, value in (weights_config or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    for key, value in (("mean", mean), ("std", std), ("interpolation", interpolation)):
        if value is not None:
            merged[key] = value
    return DataConfig(int(image_size), tuple(float(v) for v in merged["mean"]),
                      tuple(float(v) for v in merged["std"]), str(merged["interpolation"]), merged["crop_pct"])


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


def build_transform(data_config: DataConfig, train: bool, augment: str = "csl") -> T.Compose:
    """``csl``: Cutout(0.5) + the reference code's RandAugment (:mod:`.rand_augment`), the CSL recipe; ``light``:
    flips and small shifts; ``none``."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; expected one of {AUGMENTATIONS}")
    size = data_config.image_size
    steps: list = [T.Resize((size, size), interpolation=INTERPOLATIONS[data_config.interpolation])]
    if train and augment == "csl":
        steps += [CutoutPIL(0.5), ReferenceRandAugment()]
    elif train and augment == "light":
        steps += [T.RandomHorizontalFlip(), T.RandomAffine(degrees=5, translate=(0.05, 0.05))]
    steps += [T.ToTensor(), T.Normalize(data_config.mean, data_config.std)]
    return T.Compose(steps)


class TwoViews:
    """(student view, teacher view) of one image: the training augmentation and the un-augmented view a teacher
    labels (``--pseudo-labels``)."""

    def __init__(self, student: Callable, teacher: Callable):
        self.student, self.teacher = student, teacher

    def __call__(self, img):
        return self.student(img), self.teacher(img)


def build_strong_transform(data_config: DataConfig) -> T.Compose:
    """For repeated draws of one image (imbalance-aware sampling): geometry, light and occlusion change, hue does not
    (colour can be an attribute)."""
    return T.Compose([
        T.RandomResizedCrop(data_config.image_size, scale=(0.6, 1.0), ratio=(0.8, 1.25),
                            interpolation=INTERPOLATIONS[data_config.interpolation]),
        T.RandomHorizontalFlip(),
        T.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=8),
        T.ColorJitter(brightness=0.3, contrast=0.3),
        T.ToTensor(),
        T.RandomErasing(p=0.5, scale=(0.02, 0.15), value="random"),
        T.Normalize(data_config.mean, data_config.std),
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
