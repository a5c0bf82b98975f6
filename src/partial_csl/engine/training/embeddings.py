"""Two-stage training from cached embeddings: the backbone runs once, the head trains on its features.

``train.py --freeze-backbone`` computes every image's backbone features once (eval mode, no augmentation) and trains
only the head on them, under any head and any loss (the partial-label modes and the prior stage included), with
batches that cost a matrix product instead of a network. ``--cache-embeddings`` also keeps those features in
``<run>/embeddings/`` (or ``--embeddings-dir``, which a sweep of head and loss settings shares), named by a key over
everything they depend on (architecture, backbone, its weights, the preprocessing, and every image's name, size and
modification time): a stale file is never used, since any change gives another key.

The checkpoints hold the whole model (the frozen backbone and the trained head), so validation, inference and export
work exactly as for end-to-end runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...models.backbone_head import HeadOnly, embed
from ...safe_io import atomic_open
from ..setup.run_data import LabelledImages, make_loader
from ..setup.train_loader import feature_loader, train_loader

if TYPE_CHECKING:
    from ..setup.build import TrainingParts
    from .run import Run

log = logging.getLogger(__name__)


class FeatureSet(Dataset):
    """(features, target) pairs; accepts the ``(index, repeat)`` items of the repeat-aware sampler."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = item[0] if isinstance(item, tuple) else item
        return self.features[index], self.targets[index]


def _backbone_digest(model: nn.Module) -> str:
    """A hash of the backbone's tensors only: each stage starts a fresh head, and the features do not depend on it."""
    if hasattr(model, "backbone"):
        state = model.backbone.state_dict()
    else:
        classifier = model.get_classifier()
        prefix = next(name for name, module in model.named_modules() if module is classifier)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{prefix}.")}
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: nn.Module, description: dict, images: LabelledImages) -> str:
    """A key over the backbone's weights, ``description`` (architecture, model, preprocessing) and every image's
    name, size and modification time."""
    files = []
    for name in images.filenames:
        stat = (images.image_dir / name).stat()
        files.append([name, stat.st_size, stat.st_mtime_ns])
    payload = json.dumps({"description": description, "weights": _backbone_digest(model), "images": files,
                          "folder": str(images.image_dir.resolve())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@torch.inference_mode()
def compute_features(model: nn.Module, images: LabelledImages, data_config, batch_size: int, workers: int,
                     device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """Every image's backbone features, in eval mode without augmentation, as float32 on the CPU."""
    was_training = model.training
    model.eval()
    loader = make_loader(images.dataset(data_config, train=False), batch_size, workers, train=False)
    out = []
    for batch, _ in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out.append(embed(model, batch.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def feature_set(model: nn.Module, images: LabelledImages, *, data_config, description: dict, cache_dir: Path | None,
                batch_size: int, workers: int, device: torch.device, amp_dtype: torch.dtype | None) -> FeatureSet:
    """The features of ``images``, read from ``cache_dir`` when a file with the same key is there, else computed
    (and written there when ``cache_dir`` is given)."""
    targets = torch.as_tensor(images.targets, dtype=torch.float32)
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{cache_key(model, description, images)}.pt"
        if path.is_file():
            log.info("backbone features from %s", path)
            return FeatureSet(torch.load(path, map_location="cpu", weights_only=True), targets)
    features = compute_features(model, images, data_config, batch_size, workers, device, amp_dtype)
    if path is not None:
        with atomic_open(path, "wb") as f:
            torch.save(features, f)
        log.info("backbone features of %d images cached in %s (%.0f MB)", len(features), path,
                 features.numel() * 4 / 2**20)
    return FeatureSet(features, targets)


@dataclass
class StageInputs:
    """What a stage trains and scores on: images through the whole network, or cached features through the head."""

    loader: Callable[[int], DataLoader]  # epoch seed -> that epoch's training loader
    val: Dataset
    step_model: nn.Module  # what the training step calls
    view: Callable[[nn.Module], nn.Module]  # a model (regular or EMA) -> what evaluation calls


def stage_inputs(run: Run, parts: TrainingParts) -> StageInputs:
    """Images for an end-to-end stage; the backbone's features, computed (or read) once, for ``--freeze-backbone``."""
    cfg = run.cfg
    if not cfg.freeze_backbone:
        return StageInputs(lambda seed: train_loader(cfg, run.train, run.data_config, run.sample_weights, seed,
                                                     run.dist),
                           run.val.dataset(run.data_config, train=False), parts.train_model, lambda model: model)
    if run.dist.enabled:
        raise ValueError("--freeze-backbone trains on one process (its head is too small to need torchrun)")
    cache_dir = None
    if cfg.cache_embeddings:
        cache_dir = Path(cfg.embeddings_dir) if cfg.embeddings_dir else run.run_dir / "embeddings"
    description = {"arch": cfg.arch, "model_name": cfg.model_name, "data_config": run.data_config.to_dict(),
                   "model_path": cfg.model_path}
    sets = [feature_set(parts.model, images, data_config=run.data_config, description=description,
                        cache_dir=cache_dir, batch_size=cfg.batch_size, workers=cfg.workers, device=run.device,
                        amp_dtype=run.amp_dtype) for images in (run.train, run.val)]
    return StageInputs(lambda seed: feature_loader(cfg, sets[0], run.sample_weights, seed, run.dist), sets[1],
                       HeadOnly(parts.model), HeadOnly)
