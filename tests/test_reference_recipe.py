"""Our optimiser recipe takes the reference's steps: Adam with coupled L2 in two groups on a *summed* loss, OneCycle.

The reference re-implementation below is written from the description of CSL's ``train.py`` (add_weight_decay's two
groups, ``torch.optim.Adam(weight_decay=...)``, ``OneCycleLR(pct_start=0.2)`` stepped per batch, loss summed over
the batch). Our default recipe averages the loss over the batch; ``--weight-decay`` must still mean the same.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from partial_csl.engine.config import TrainConfig
from partial_csl.engine.distributed import DistInfo
from partial_csl.engine.setup.build import build_criterion, build_training, reference_gradient_scale
from partial_csl.engine.setup.run_data import LabelSpace
from partial_csl.engine.training.trainer import train_one_epoch

NAMES = [f"c{i}" for i in range(5)]
STEPS, BATCH = 10, 4


def _batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS):
        images = torch.rand(BATCH, 3, 32, 32, generator=generator)
        targets = torch.randint(-1, 2, (BATCH, len(NAMES)), generator=generator).float()
        out.append((images, targets))
    return out


def _reference_train(model: torch.nn.Module, criterion: torch.nn.Module, batches, lr: float, weight_decay: float,
                     epochs: int, steps_per_epoch: int) -> dict[str, torch.Tensor]:
    """The reference's loop: summed loss, Adam with L2 in two groups (no decay on 1-D params and biases), OneCycle."""
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias")]
    decay = [p for n, p in model.named_parameters() if not (p.ndim <= 1 or n.endswith(".bias"))]
    optimizer = torch.optim.Adam([{"params": no_decay, "weight_decay": 0.0},
                                  {"params": decay, "weight_decay": weight_decay}], lr=lr, weight_decay=0)
    scheduler = OneCycleLR(optimizer, max_lr=lr, steps_per_epoch=steps_per_epoch, epochs=epochs, pct_start=0.2)
    model.train()
    for images, targets in batches:
        loss = criterion(model(images).float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ours(cfg: TrainConfig, batches):
    torch.manual_seed(0)
    labels = LabelSpace(NAMES)
    prior = np.linspace(0.1, 0.9, len(NAMES))
    parts = build_training(cfg, labels, prior, torch.device("cpu"), DistInfo(), epochs=2,
                           steps_per_epoch=STEPS // 2, amp_dtype=None)
    initial = copy.deepcopy(parts.model)
    train_one_epoch(parts.train_model, batches, parts.criterion, parts.optimizer, parts.scheduler,
                    torch.device("cpu"), epoch=0, stage="main", ema=parts.ema, scaler=parts.scaler, amp_dtype=None,
                    grad_clip=0.0)
    summed = build_criterion(replace(cfg, loss_reduction="sum"), prior, labels)
    return parts.model.state_dict(), initial, summed


# a weight decay large enough to steer Adam's steps, so that a wrong L2 coefficient shows in the weights
STRONG = {"model_name": "test_resnet", "image_size": 32, "batch_size": BATCH, "lr": 1e-2, "weight_decay": 5e-2,
          "ema_decay": 0.9, "augment": "none", "device": "cpu", "arch": "csl", "class_weights": "none",
          "logit_adjust": "none"}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_our_recipe_takes_the_reference_steps_with_weight_decay(reduction):
    batches = _batches()
    cfg = TrainConfig(**STRONG, loss_reduction=reduction)
    assert cfg.partial_loss_mode == "selective"  # the default recipe, priors and top-k included
    ours, initial, summed = _ours(cfg, batches)
    start = {k: v.clone() for k, v in initial.state_dict().items()}
    reference = _reference_train(initial, summed, batches, cfg.lr, cfg.weight_decay, epochs=2, steps_per_epoch=5)
    assert max((reference[k] - v).abs().max().item() for k, v in start.items() if v.is_floating_point()) > 1e-3
    for key, value in reference.items():
        if value.is_floating_point():
            torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_gradient_scale_of_each_reduction_and_world_size():
    assert reference_gradient_scale("sum", 32) == 1.0
    assert reference_gradient_scale("mean", 32) == pytest.approx(1 / 32)
    assert reference_gradient_scale("mean", 16, world_size=2) == pytest.approx(1 / 32)
    assert reference_gradient_scale("sum", 16, world_size=2) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="unknown loss reduction"):
        reference_gradient_scale("none", 8)


def _stage_warnings(caplog, **overrides) -> list[str]:
    cfg = TrainConfig(**{**STRONG, **overrides})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="partial_csl.engine.setup.build"):
        build_training(cfg, LabelSpace(NAMES), None, torch.device("cpu"), DistInfo(), epochs=30,
                       steps_per_epoch=44, amp_dtype=None)
    return [r.getMessage() for r in caplog.records if "EMA" in r.getMessage()]


def test_a_run_too_short_for_the_ema_decay_is_warned_about(caplog):
    # 1,320 steps at the reference decay: 0.9997^1320 = 0.67 of the EMA still on the initial weights
    (message,) = _stage_warnings(caplog, ema_decay=0.9997)
    assert "1320 steps" in message and "67%" in message and "--ema-warmup" in message and "--ema-decay" in message
    assert not _stage_warnings(caplog, ema_decay=0.99)  # 0.99^1320: nothing left of the start
    assert not _stage_warnings(caplog, ema_decay=0.9997, ema_warmup=True)
    assert not _stage_warnings(caplog, ema_decay=0.0)
