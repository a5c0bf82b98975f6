"""Turn a :class:`~.config.TrainConfig` into the objects one training stage needs.

    parts = build_training(cfg, labels, prior=None, device=device, info=info, epochs=3, steps=75)

The choices come from registries: the architecture (:data:`.architectures.ARCHITECTURES`: model, criterion,
checkpoint args), the loss (:data:`partial_csl.losses.LOSSES`), the dataset format (:data:`.formats.DATASETS`) and the
partial-label simulator (:data:`partial_csl.data.partial.SIMULATORS`). The optimiser is the CSL recipe: Adam with L2
decay on weights only, OneCycle stepped per iteration, an EMA copy of the weights.

``--weight-decay`` means what it means in the reference, which sums the loss over the batch and adds the L2 term to
that gradient. A per-sample mean (our default), or DDP's averaging of gradients over processes, makes the loss
gradient smaller by a constant factor; Adam's step does not depend on that scale (once its ``eps`` is scaled with
it), but it does on the ratio of the L2 term to the loss gradient. So the L2 coefficient and ``eps`` are scaled by the
same factor (:func:`reference_gradient_scale`), and every step is the reference's step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from ...models import convert_sync_norm
from ...models.backbone_head import freeze_backbone, reset_head
from ..config import TrainConfig
from ..distributed import DistInfo
from .architectures import build_model, get_architecture
from .run_data import LabelSpace

log = logging.getLogger(__name__)

ADAM_EPS = 1e-8  # torch.optim.Adam's default, the reference's value
EMA_START_WEIGHT_LIMIT = 0.1  # warn when the EMA would still hold more than this share of the initial weights


@dataclass
class TrainingParts:
    """Everything a stage trains with. ``model`` is the bare network (what checkpoints hold); ``train_model`` is the
    same network, wrapped in DistributedDataParallel under torchrun (what the training step calls)."""

    model: nn.Module
    train_model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: OneCycleLR
    ema: ModelEmaV3 | None
    scaler: torch.amp.GradScaler
    regulariser: Callable[[], torch.Tensor] | None


def reference_gradient_scale(reduction: str, batch_size: int, world_size: int = 1) -> float:
    """How much smaller our gradient is than the reference's (a loss summed over the global batch).

    A per-process ``mean`` divides by the per-process batch ``batch_size``, and DDP averages over the ``world_size``
    processes: 1 / (W * b). A per-process ``sum`` is only averaged by DDP: 1 / W. The configured batch size is used;
    an epoch smaller than one batch (whose only batch is smaller) is then decayed slightly less than the reference.
    """
    if reduction == "sum":
        return 1.0 / world_size
    if reduction == "mean":
        return 1.0 / (batch_size * world_size)
    raise ValueError(f"unknown loss reduction {reduction!r}; expected mean or sum")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, gradient_scale: float = 1.0,
                    label_store: nn.Module | None = None) -> torch.optim.Adam:
    """Adam with coupled L2 decay on weights only; biases and norm parameters (1-D) get none (the CSL recipe).

    ``gradient_scale`` (see :func:`reference_gradient_scale`) multiplies the L2 coefficient and Adam's ``eps``, so
    that training on a gradient that many times the reference's takes exactly the reference's steps. The parameters
    of ``label_store`` (a loss's per-image label estimates, e.g. ROLE's) form a third group without decay, at its
    ``lr_multiplier`` times ``lr``: each row is trained only when its image is in a batch.
    """
    store = {id(p) for p in label_store.parameters()} if label_store is not None else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in store:
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0},
              {"params": decay, "weight_decay": weight_decay * gradient_scale}]
    if store:
        groups.append({"params": list(label_store.parameters()), "weight_decay": 0.0,
                       "lr": lr * label_store.lr_multiplier})
    return torch.optim.Adam(groups, lr=lr, eps=ADAM_EPS * gradient_scale)


def ema_start_weight(decay: float, steps: int) -> float:
    """Share of an EMA (without warm-up) that is still the weights it started from after ``steps`` updates."""
    return decay ** steps


def warn_if_ema_too_slow(decay: float, warmup: bool, steps: int) -> None:
    """A decay made for reference-sized runs (0.9997 over COCO's ~40k steps) leaves a short run's EMA mostly at its
    initial weights, and its score is then noise; say so at the start of the stage, with a decay that would fit."""
    if decay <= 0 or warmup or steps <= 0:
        return
    left = ema_start_weight(decay, steps)
    if left > EMA_START_WEIGHT_LIMIT:
        fitting = 0.01 ** (1.0 / steps)  # 1 % left on the initial weights at the end
        log.warning("EMA decay %g over this stage's %d steps leaves %.0f%% of the EMA on the initial weights "
                    "(decay^steps); its weights will hardly have trained: use --ema-warmup, or --ema-decay %.4f or "
                    "lower (1%% left)", decay, steps, 100 * left, fitting)


def build_stage_model(cfg: TrainConfig, labels: LabelSpace, device: torch.device) -> nn.Module:
    """A fresh model of ``cfg.arch`` for ``labels`` (pretrained weights loaded when ``cfg.model_path`` is set)."""
    arch_args = get_architecture(cfg.arch).arch_args(cfg, labels)
    model = build_model(cfg.arch, cfg.model_name, len(labels.class_names), pretrained=cfg.model_path, norm=cfg.norm,
                        device=device, **arch_args)
    if hasattr(model, "set_label_graph") and labels.label_graph is not None:  # a label-graph head
        model.set_label_graph(labels.label_graph)
    return model


def build_criterion(cfg: TrainConfig, prior: np.ndarray | None, labels: LabelSpace) -> nn.Module:
    """The loss ``cfg.arch`` trains under (with ``prior`` for the selective mode)."""
    return get_architecture(cfg.arch).criterion(cfg, prior, labels)


def _wrap_for_training(model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo) -> nn.Module:
    """Under torchrun: synchronised norm layers on request, then DDP, which all-reduces (averages) the gradients of
    every backward pass across processes. The caller keeps the bare model for checkpoints and evaluation."""
    if not info.enabled:
        return model
    if cfg.sync_bn:
        model = convert_sync_norm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def build_training(cfg: TrainConfig, labels: LabelSpace, prior: np.ndarray | None, device: torch.device,
                   info: DistInfo, epochs: int, steps_per_epoch: int, amp_dtype: torch.dtype | None) -> TrainingParts:
    """Model, criterion, optimiser, OneCycle schedule over ``epochs * steps_per_epoch`` steps, EMA and scaler.

    The L2 decay and Adam's eps are scaled to the loss reduction and the number of processes (see
    :func:`reference_gradient_scale`); a warning says when the run is too short for the EMA decay."""
    model = build_stage_model(cfg, labels, device)
    if cfg.reset_head:  # cRT: a new classifier on the --model-path backbone
        reset_head(model, build_stage_model(replace(cfg, model_path=None), labels, device))
    if cfg.freeze_backbone:
        freeze_backbone(model)  # the optimiser below then holds the head's parameters only
    criterion = build_criterion(cfg, prior, labels).to(device)
    if info.enabled and getattr(criterion, "uses_sample_index", False):
        # each process would keep its own label store, and --resume would restore rank 0's alone
        raise ValueError(f"--loss {cfg.loss} keeps a per-image label store, which is not shared across processes: "
                         "train it on one process (not under torchrun)")
    train_model = _wrap_for_training(model, cfg, device, info)
    model = getattr(train_model, "module", train_model)  # the wrapped copy when sync-norm layers were swapped in
    # the criterion's parameters (e.g. uncertainty weighting's log-variances) train with the model
    scale = reference_gradient_scale(getattr(criterion, "reduction", cfg.loss_reduction), cfg.batch_size,
                                     info.world_size)
    label_store = criterion if hasattr(criterion, "lr_multiplier") else None
    optimizer = build_optimizer(nn.ModuleList([model, criterion]), cfg.lr, cfg.weight_decay, scale, label_store)
    pct_start = 0.2
    if pct_start * epochs * steps_per_epoch == 1:  # OneCycleLR divides by (pct_start * steps - 1): 5 steps crash
        pct_start = 0.3
    scheduler = OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], epochs=epochs,
                           steps_per_epoch=steps_per_epoch, pct_start=pct_start)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup) if cfg.ema_decay > 0 else None
    warn_if_ema_too_slow(cfg.ema_decay, cfg.ema_warmup, epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    regulariser = (lambda: cfg.latent_reg * model.regulariser()) if hasattr(model, "regulariser") else None
    return TrainingParts(model, train_model, criterion, optimizer, scheduler, ema, scaler, regulariser)
