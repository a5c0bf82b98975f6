"""Training: ``train_one_epoch`` and ``validate_epoch``, composed by ``fit`` into a stage, ``run_training`` a run.

A ``selective`` run without ``--prior_path`` has two stages, in one command (CSL's workflow):

1. ``prior``: a temporary model trained in ``ignore`` mode for ``prior_epochs``; its best weights estimate the class
   priors over the training images (eval mode, no augmentation), written to ``<run>/priors/prior_ignore.csv``;
2. ``main``: the target model under the selective loss with those priors.

Every epoch starts from a seed derived from (seed, stage, epoch), so an epoch replays identically after ``--resume``,
and the same command gives the same metrics. Each epoch writes ``best.pt`` (when val mAP improved, from whichever of
the regular and EMA weights scored higher) and then ``last.pt``, both atomically: a crash between the two leaves a
``last.pt`` whose best is on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import tqdm

from ...losses import MultiTaskLoss
from ...prior_estimates import priors_from_probabilities
from ...priors import load_priors, prior_quality_report, save_priors
from ..checkpoint import (
    StageProgress,
    best_payload,
    load_checkpoint,
    model_from_checkpoint,
    model_metadata,
    restore_training,
    save_checkpoint,
    training_payload,
)
from ..config import TrainConfig, derive_seed, resolve_device, seed_everything
from ..distributed import barrier, init_distributed, mean_across_ranks, merged_across_ranks
from ..inference.probabilities import predict_dataset
from ..setup.architectures import resolve_auto
from ..setup.build import TrainingParts, build_training
from ..setup.train_loader import steps_per_epoch
from .embeddings import StageInputs, stage_inputs
from .epoch_validation import validate_epoch, validated_weights
from .finish import check_run_settings, finish_training
from .pseudo import PseudoLabeller, pseudo_labeller
from .records import append_epoch, write_json, write_metrics_csv
from .run import Run, prior_stage_run, start_run, uses_prior_stage
from .run_folder import claim_run_folder
from .settings import check_settings
from .unreadable import readable_rows, record_skipped_images

log = logging.getLogger(__name__)

STAGES = ("prior", "main")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (the last good checkpoint is kept)."""


class TrainingStopped(Exception):
    """Ctrl-C: the run stopped cleanly; the message says where (its last checkpoint is intact, ``--resume`` goes on)."""


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, device: torch.device, *, epoch: int, stage: str, ema: ModelEmaV3 | None,
                    scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None, grad_clip: float,
                    regulariser: Callable[[], torch.Tensor] | None = None,
                    on_step: Callable[[], None] | None = None, relabel: Callable | None = None) -> dict:
    """One pass over ``loader``; returns {'loss': mean per-sample loss, 'lr', 'steps', 'samples', 'skipped': {row:
    reason} of the images the loader could not read and replaced}.

    ``relabel(teacher view, targets, sample rows) -> targets`` fills in pseudo-labels (:mod:`.pseudo`); a batch of
    two views (student, teacher) trains on the first. ``on_step`` is called after every step: the run's clock
    (:class:`.records.RunClock`), which also stops the run as if killed after ``--stop-after-steps`` (how the tests
    crash a run at a chosen step).
    """
    model.train()
    total, seen, steps, skipped = 0.0, 0, 0, {}
    bar = tqdm(loader, desc=f"{stage} epoch {epoch + 1}", leave=False, unit="batch", disable=None)
    for images, targets, *indices in bar:  # sample indices, skipped images: see partial_csl.engine.setup.train_loader
        if len(indices) > 1:
            skipped.update(indices.pop())
        images, teacher_view = images if isinstance(images, (list, tuple)) else (images, images)
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if relabel is not None:  # --pseudo-labels: the teacher (same precision) labels unknowns it is sure of
                targets = relabel(teacher_view, targets, indices[0] if indices else None)
            logits = model(images)  # (B, C); the loss applies the sigmoid/softmax itself, in float32
        if getattr(criterion, "uses_sample_index", False):
            loss = criterion(logits.float(), targets, indices[0].to(device) if indices else None)
        else:
            loss = criterion(logits.float(), targets)
        if regulariser is not None:
            loss = loss + regulariser()
        per_sample = loss.item() / len(images) if criterion.reduction == "sum" else loss.item()
        if not math.isfinite(per_sample):
            raise NonFiniteLossError(f"non-finite loss ({per_sample}) in stage {stage!r}, epoch {epoch + 1}, "
                                     f"step {steps + 1}; the last good checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        # an fp16 step with inf/NaN gradients is skipped by the scaler (which then lowers its scale); the schedule
        # must not advance either, or OneCycle would run past its last step before the epochs are done
        if scale_before is None or scaler.get_scale() >= scale_before:
            scheduler.step()
        if ema is not None:
            ema.update(getattr(model, "module", model), step=scheduler.last_epoch)
        total += per_sample * len(images)
        seen += len(images)
        steps += 1
        bar.set_postfix(loss=f"{per_sample:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if on_step is not None:
            on_step()
    return {"loss": total / max(seen, 1), "lr": scheduler.get_last_lr()[0], "steps": steps, "samples": seen,
            "skipped": skipped}


def _train_epoch(run: Run, parts: TrainingParts, inputs: StageInputs, stage: str, epoch: int,
                 labeller: PseudoLabeller | None) -> dict:
    """One epoch of training with its bookkeeping: the loss averaged over ranks, the skipped images recorded, the
    pseudo-label counts."""
    if hasattr(parts.criterion, "set_epoch"):  # the schedules of SPLC and the large-loss methods
        parts.criterion.set_epoch(epoch)
    stats = train_one_epoch(inputs.step_model, inputs.loader(derive_seed(run.cfg.seed, STAGES.index(stage), epoch)),
                            parts.criterion, parts.optimizer, parts.scheduler, run.device, epoch=epoch, stage=stage,
                            ema=parts.ema, scaler=parts.scaler, amp_dtype=run.amp_dtype, grad_clip=run.cfg.grad_clip,
                            regulariser=parts.regulariser, on_step=run.clock.step,
                            relabel=labeller.relabel if labeller is not None and labeller.active(epoch) else None)
    if isinstance(parts.criterion, MultiTaskLoss):
        parts.criterion.end_epoch()
    stats["loss"] = mean_across_ranks(stats["loss"], stats["samples"], run.dist)
    skipped = merged_across_ranks(stats.pop("skipped"), run.dist)
    if run.dist.is_primary:
        record_skipped_images(run.run_dir, f"{stage} training", epoch, skipped, run.train.filenames)
    if labeller is not None:
        stats["pseudo_labels"] = labeller.epoch_row(run.dist)
    return stats


def fit(run: Run, stage: str, epochs: int, prior: np.ndarray | None, stage_dir: Path) -> tuple[Path, StageProgress]:
    """Train one model under ``run.cfg`` for ``epochs``; resumes from ``stage_dir/checkpoints/last.pt``.
    Returns the stage's best checkpoint and its progress (best metric, which weights)."""
    cfg = run.cfg
    last_path, best_path = stage_dir / "checkpoints" / "last.pt", stage_dir / "checkpoints" / "best.pt"
    seed_everything(derive_seed(cfg.seed, STAGES.index(stage), 10_000))  # the initial weights
    steps = steps_per_epoch(cfg, len(run.train), run.sample_weights, run.dist)
    parts = build_training(cfg, run.labels, prior, run.device, run.dist, epochs, steps, run.amp_dtype)
    progress = StageProgress()
    metadata = model_metadata(cfg, run.labels, parts.model, run.data_config, prior, stage)
    if cfg.resume and last_path.is_file():
        progress, run.history[:] = restore_training(last_path, parts, metadata)
        if run.dist.is_primary:  # a kill may have come between last.pt and metrics.csv
            write_metrics_csv(run.history, run.run_dir / "metrics.csv")
        log.info("resumed stage %r from %s at epoch %d", stage, last_path, progress.epoch + 2)
    inputs = stage_inputs(run, parts)
    labeller = pseudo_labeller(run, inputs, parts, stage, resumed_after=progress.epoch)
    for epoch in tqdm(range(progress.epoch + 1, epochs), desc=f"{stage} stage", unit="epoch",
                      initial=progress.epoch + 1, total=epochs, disable=None if run.dist.is_primary else True):
        epoch_seed = derive_seed(cfg.seed, STAGES.index(stage), epoch)
        run.clock.start_epoch(stage, epoch + 1)
        seed_everything(epoch_seed)
        started = time.time()
        stats = _train_epoch(run, parts, inputs, stage, epoch, labeller)
        row, reports, use_ema = validate_epoch(run, parts, inputs, stage, epoch, stats, started)
        if labeller is not None:
            labeller.after_validation(validated_weights(parts), reports["scores"], use_ema, run.val.targets, epoch)
        run.history.append(row)
        improved = reports["chosen"]["mAP"] > progress.best_metric
        progress.epoch = epoch
        if improved:
            progress.best_metric, progress.best_weights = reports["chosen"]["mAP"], "ema" if use_ema else "regular"
        if run.dist.is_primary:
            if improved:  # best first: a crash before last.pt is written replays this epoch and rewrites it
                save_checkpoint(best_payload(metadata, parts, progress.best_weights, reports["chosen"], progress,
                                             run.history), best_path)
            save_checkpoint(training_payload(metadata, parts, reports["regular"], progress, run.history,
                                             run.dist.world_size), last_path)
            append_epoch(run.run_dir, run.history, row, run.writer, epochs, improved)
        barrier(run.dist)
    if not best_path.is_file():
        raise RuntimeError(f"stage {stage!r} finished without a best checkpoint in {best_path.parent}")
    return best_path, progress


def _prior_stage(run: Run) -> tuple[np.ndarray, str]:
    """Stage 1: temporary ignore-mode model -> priors CSV (skipped when a finished one is in the run folder).

    Only the priors (and the stage's metric rows) are kept: the temporary model's checkpoints go once the CSV is
    written, since nothing re-uses them and they are several times the size of the target model's best.pt.
    """
    cfg, labels = run.cfg, run.labels
    prior_path, stage_dir = run.run_dir / "priors" / "prior_ignore.csv", run.run_dir / "prior_stage"
    if cfg.resume and prior_path.is_file():
        run.history[:] = json.loads((stage_dir / "history.json").read_text())["history"]
        _remove_stage_checkpoints(stage_dir)  # left behind by a kill just after the CSV
        return load_priors(prior_path, labels.class_names), str(prior_path)
    prior_run, holdout = prior_stage_run(run, derive_seed(cfg.seed, STAGES.index("prior"), 20_000))
    best_path, progress = fit(prior_run, "prior", cfg.prior_epochs or cfg.epochs, None, stage_dir)
    model = model_from_checkpoint(load_checkpoint(best_path), run.device, cfg.norm, source=best_path)
    skipped: dict[int, str] = {}
    probs = predict_dataset(model, run.train.dataset(run.data_config, train=False), cfg.batch_size, cfg.workers,
                            run.device, run.amp_dtype, info=run.dist, desc="estimating priors", skipped=skipped)
    keep = readable_rows(len(probs), skipped)
    if run.dist.is_primary:
        record_skipped_images(run.run_dir, "prior estimate", None, skipped, run.train.filenames)
    groups = list(labels.groups.values()) if labels.groups else None
    priors, details = priors_from_probabilities(probs[keep], run.train.targets[keep], cfg.prior_estimate, groups,
                                                None if holdout is None else holdout[keep], labels.class_names)
    if run.dist.is_primary:
        quality = prior_quality_report(priors, run.train.targets, labels.class_names, labels.true_frequency,
                                       details["mean_posterior"])
        write_json(prior_path.parent / "prior_quality.json", quality)  # before the CSV, which marks the stage done
        write_json(stage_dir / "history.json", {"history": run.history})
        save_priors(prior_path, labels.class_names, priors, details.pop("n_images"), cfg.prior_estimate, details)
        _remove_stage_checkpoints(stage_dir)
        top = np.argsort(-priors)[:10]
        log.info("%s priors from the ignore-mode model (%s weights): %s; Spearman vs %s: %.3f", cfg.prior_estimate,
                 progress.best_weights, ", ".join(f"{labels.class_names[i]} {priors[i]:.3f}" for i in top),
                 quality["reference"], quality["estimate"]["spearman"])
    barrier(run.dist)
    return priors, str(prior_path)


def _remove_stage_checkpoints(stage_dir: Path) -> None:
    for name in ("best.pt", "last.pt"):
        (stage_dir / "checkpoints" / name).unlink(missing_ok=True)


def run_training(cfg: TrainConfig) -> dict:
    """Run every stage of ``cfg`` and return a summary (paths, best metric and weights, priors).

    The primary process (rank 0 under torchrun, the only one otherwise) holds the run folder for the whole run
    (:func:`.run_folder.claim_run_folder`) and is the only one that writes files; every process trains. Ctrl-C
    becomes :class:`TrainingStopped`, saying where training stood.
    """
    cfg = resolve_auto(cfg)
    check_settings(cfg)  # before the run folder is touched, not after the training
    check_run_settings(cfg)
    info = init_distributed(resolve_device(cfg.device))
    run = None
    try:
        with claim_run_folder(cfg) if info.is_primary else contextlib.nullcontext():
            barrier(info)
            run = start_run(cfg, info)
            return _train_stages(run)
    except KeyboardInterrupt:
        raise TrainingStopped(run.clock.where() if run else "stopped before training started") from None


def _train_stages(run: Run) -> dict:
    cfg = run.cfg
    summary: dict = {"run_dir": str(run.run_dir)}
    prior = None
    thresholds = check_run_settings(cfg)
    try:
        if uses_prior_stage(cfg):
            if cfg.prior_path:
                prior, summary["prior_path"] = load_priors(cfg.prior_path, run.labels.class_names), cfg.prior_path
            else:
                prior, summary["prior_path"] = _prior_stage(run)
        best_path, progress = fit(run, "main", cfg.epochs, prior, run.run_dir)
        summary["thresholds"] = finish_training(run, best_path, thresholds)
    finally:
        if run.writer is not None:
            run.writer.close()
    summary.update({"best_checkpoint": str(best_path), "last_checkpoint": str(run.run_dir / "checkpoints" / "last.pt"),
                    "best_val_mAP": progress.best_metric, "best_weights": progress.best_weights,
                    "metrics_csv": str(run.run_dir / "metrics.csv")})
    if run.dist.is_primary:
        write_json(run.run_dir / "summary.json", summary)
    return summary
