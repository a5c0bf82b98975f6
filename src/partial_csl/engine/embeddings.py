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

from ..safe_io import atomic_open
from .data import LabelledImages, make_loader
from .sampling import feature_loader, train_loader

if TYPE_CHECKING:
    from .build import TrainingParts
    from .run import Run

log = logging.getLogger(__name__)


def check_separable(model: nn.Module) -> None:
    if not hasattr(model, "embed") and not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"--freeze-backbone needs a model with a separable backbone; {type(model).__name__} has "
                         "none (the afa branches are joined inside the network)")


def embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone part of ``model``: our models' ``embed``, or a timm classifier's ``forward_features``."""
    return model.embed(images) if hasattr(model, "embed") else model.forward_features(images)


def classify(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The head part of ``model``, from the features :func:`embed` gives."""
    return model.classify(features) if hasattr(model, "classify") else model.forward_head(features)


def head_parameter_names(model: nn.Module) -> set[str]:
    """The parameters a frozen-backbone run trains: everything outside the backbone."""
    if hasattr(model, "backbone"):
        return {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return {f"{prefix}.{n}" for n, _ in classifier.named_parameters()}


def reset_head(model: nn.Module, fresh: nn.Module) -> None:
    """Give ``model`` the head of ``fresh``, a newly built model of the same architecture (``--reset-head``):
    classifier re-training (cRT, Kang et al., ICLR 2020) learns a new classifier on a trained backbone, not a
    fine-tuned copy of the old one, and each head keeps its own initialisation (queries, class embeddings, scales)."""
    model.load_state_dict({k: v for k, v in fresh.state_dict().items() if _is_head_entry(model, k)}, strict=False)


def _is_head_entry(model: nn.Module, key: str) -> bool:
    """Whether state-dict entry ``key`` (a parameter or a buffer) belongs to the head of ``model``."""
    if hasattr(model, "backbone"):
        return not key.startswith("backbone.")
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return key.startswith(f"{prefix}.")


def freeze_backbone(model: nn.Module) -> None:
    """Only the head keeps ``requires_grad`` (the optimiser then holds the head's parameters alone)."""
    check_separable(model)
    trainable = head_parameter_names(model)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


class HeadOnly(nn.Module):
    """``model``'s head as a module of the features, for the training step and evaluation; it shares the parameters
    (and the output activation) of ``model``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model  # named like DDP's wrapped module, so the EMA update reaches the whole model
        self.output_activation = getattr(model, "output_activation", "sigmoid")
        self.group_bounds = getattr(model, "group_bounds", None)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return classify(self.module, features)


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


def feature_set(model: nn.Module, images: LabelledImages, data_config, description: dict, cache_dir: Path | None,
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
    sets = [feature_set(parts.model, images, run.data_config, description, cache_dir, cfg.batch_size, cfg.workers,
                        run.device, run.amp_dtype) for images in (run.train, run.val)]
    return StageInputs(lambda seed: feature_loader(cfg, sets[0], run.sample_weights, seed, run.dist), sets[1],
                       HeadOnly(parts.model), HeadOnly)
