"""Self-describing checkpoints: written atomically, read with ``weights_only=True``, rebuilt without any flag.

A checkpoint is a dict of tensors and plain types::

    format_version, arch, arch_args, model_name, num_classes, norm, class_names, schema (attribute groups or None),
    image_size,
    normalization, model (state dict of the weights it was saved for), weights ('regular' or 'ema'),
    ema (EMA state dict or None), priors (list or None), train_class_counts, metrics, config, train_state
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..data.schema import AttributeSchema
from ..models import build_model

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
    model = build_model(ckpt.get("arch", "csl"), ckpt["model_name"], ckpt["num_classes"],
                        **(ckpt.get("arch_args") or {}), norm=norm, device=device)
    model.load_state_dict(ckpt["model"])
    return model.eval()
