"""Self-describing checkpoints: the format's writer and reader side by side.

A checkpoint is a dict of tensors and plain types, written atomically and read with ``weights_only=True``::

    format_version, arch, arch_args, model_name, num_classes, norm, class_names, schema (attribute groups or None),
    image_size, normalization, model (state dict of the weights it was saved for), weights ('regular' or 'ema'),
    ema (EMA state dict or None), priors (list or None), partial_loss_mode, loss, stage, train_class_counts,
    metrics, config, history, world_size, train_state (optimizer, scheduler, scaler, criterion, epoch,
    best_metric, best_weights, rng)

:func:`training_payload` writes it, :func:`restore_training` continues a stage from it, :func:`load_checkpoint` and
:func:`model_from_checkpoint` rebuild the model without any flag (the architecture registry knows how).
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..data.schema import AttributeSchema
from ..data.transforms import NORMALIZATION
from ..models import norm_backend_of
from .architectures import build_model, get_architecture
from .config import TrainConfig
from .data import LabelSpace

if TYPE_CHECKING:
    from .build import TrainingParts

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_name", "num_classes", "class_names", "image_size", "normalization", "model")


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {missing}); "
                              "pretrained backbones go to --model-path instead")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {ckpt['format_version']} is newer than this code supports")
    return ckpt


def checkpoint_schema(ckpt: dict) -> AttributeSchema | None:
    return AttributeSchema.from_dict(ckpt["schema"]) if ckpt.get("schema") else None


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu", norm: str = "auto") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (either ABN backend fits the same weights)."""
    model = build_model(ckpt.get("arch", "csl"), ckpt["model_name"], ckpt["num_classes"], norm=norm, device=device,
                        **(ckpt.get("arch_args") or {}))
    model.load_state_dict(ckpt["model"])
    return model.eval()


@dataclass
class StageProgress:
    """Where a stage stands: the last finished epoch (-1 before the first) and its best validation mAP so far."""

    epoch: int = -1
    best_metric: float = -float("inf")
    best_weights: str = "regular"


def _rng_state() -> dict:
    return {"python": list(random.getstate()[1]), "numpy": np.random.get_state()[1].tolist(),
            "torch": torch.get_rng_state()}


def model_metadata(cfg: TrainConfig, labels: LabelSpace, model: nn.Module, prior: np.ndarray | None, mode: str,
                   stage: str) -> dict:
    """What a checkpoint needs to rebuild and use ``model`` without any flag."""
    return {"format_version": FORMAT_VERSION, "arch": cfg.arch,
            "arch_args": get_architecture(cfg.arch).arch_args(cfg, labels), "model_name": cfg.model_name,
            "num_classes": len(labels.class_names), "norm": norm_backend_of(model), "class_names": labels.class_names,
            "schema": labels.schema.to_dict() if labels.schema else None, "image_size": cfg.image_size,
            "normalization": NORMALIZATION, "priors": None if prior is None else [float(p) for p in prior],
            "partial_loss_mode": mode, "loss": cfg.loss, "stage": stage,
            "train_class_counts": labels.train_class_counts, "config": cfg.to_dict()}


def training_payload(metadata: dict, parts: TrainingParts, weights: str, metrics: dict, progress: StageProgress,
                     history: list[dict], world_size: int) -> dict:
    """A full checkpoint: ``metadata``, the ``weights`` ('regular' or 'ema') scored by ``metrics``, and the training
    state that :func:`restore_training` needs to continue exactly where this one stopped."""
    state = parts.ema.module.state_dict() if weights == "ema" else parts.model.state_dict()
    return {**metadata, "model": state, "weights": weights, "metrics": metrics,
            "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            "history": list(history), "world_size": world_size,
            "train_state": {"optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict(),
                            "scaler": parts.scaler.state_dict(), "criterion": parts.criterion.state_dict(),
                            "epoch": progress.epoch, "best_metric": progress.best_metric,
                            "best_weights": progress.best_weights, "rng": _rng_state()}}


def restore_training(path: str | Path, parts: TrainingParts) -> tuple[StageProgress, list[dict]]:
    """Load the weights, EMA, optimiser, schedule, scaler and criterion state of ``path`` (a ``last.pt``) into
    ``parts``; returns the stage's progress and the metric history up to it. Every epoch reseeds itself, so the RNG
    state saved in the file is a record, not something to restore."""
    state = load_checkpoint(path)
    parts.model.load_state_dict(state["model"])
    if parts.ema is not None and state.get("ema") is not None:
        parts.ema.module.load_state_dict(state["ema"])
    ts = state["train_state"]
    parts.optimizer.load_state_dict(ts["optimizer"])
    parts.scheduler.load_state_dict(ts["scheduler"])
    parts.scaler.load_state_dict(ts["scaler"])
    parts.criterion.load_state_dict(ts["criterion"])
    return StageProgress(ts["epoch"], ts["best_metric"], ts["best_weights"]), list(state["history"])
