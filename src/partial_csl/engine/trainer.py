"""Training: ``train_one_epoch`` and ``evaluate``, composed by ``fit`` into a stage and by ``run_training`` into a run.

A ``selective`` run without ``--prior_path`` has two stages, in one command (CSL's workflow):

1. ``prior``: a temporary model trained in ``ignore`` mode for ``prior_epochs``; its best weights estimate the class
   priors over the training images (eval mode, no augmentation), written to ``<run>/priors/prior_ignore.csv``;
2. ``main``: the target model under the selective loss with those priors.

Every epoch starts from a seed derived from (seed, stage, epoch), so an epoch replays identically after ``--resume``,
and the same command gives the same metrics. Checkpoints (``last.pt`` every epoch, ``best.pt`` when val mAP improves,
from whichever of the regular and EMA weights scored higher) are written atomically.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import Subset
from tqdm import tqdm

from ..data.sampling import RepeatAwareDataset, RepeatAwareSampler
from ..data.schema import UNKNOWN
from ..data.transforms import NORMALIZATION, build_strong_transform
from ..losses import MultiTaskLoss, PartialSelectiveLoss
from ..metrics import evaluate_predictions
from ..models import build_model, convert_sync_norm, logits_to_probabilities, norm_backend_of
from ..priors import load_priors, predict_probabilities, priors_from_probabilities, save_priors
from .checkpoint import FORMAT_VERSION, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig, derive_seed, library_versions, resolve_amp, resolve_device, seed_everything
from .data import LabelledImages, make_loader
from .distributed import (
    DistInfo,
    ShardedShuffleSampler,
    barrier,
    gather_rows,
    init_distributed,
    mean_across_ranks,
    process_device,
    shard_indices,
)
from .tasks import Task, build_task, prior_quality_report, training_sample_weights, write_sampler_report

log = logging.getLogger(__name__)

STAGES = ("prior", "main")


class NonFiniteLossError(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` to simulate a crash (resume with ``--resume``)."""


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with L2 decay on weights only; biases and norm parameters (1-D) get none (the CSL recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return torch.optim.Adam([{"params": no_decay, "weight_decay": 0.0},
                             {"params": decay, "weight_decay": weight_decay}], lr=lr)


def arch_args(cfg: TrainConfig, task: Task) -> dict:
    """What :func:`partial_csl.models.build_model` needs besides the name (recorded in checkpoints)."""
    sizes = [g.num_classes for g in task.schema.groups] if task.schema else None
    return {"group_sizes": sizes, "latent_tasks": cfg.latent_tasks, "branch_model": cfg.branch_model,
            "afa_stages": tuple(int(s) for s in str(cfg.afa_stages).split(",")),
            "afa_grad_balance": cfg.afa_grad_balance}


def build_criterion(cfg: TrainConfig, mode: str, prior: np.ndarray | None, task: Task | None = None) -> nn.Module:
    """The partial-label loss for ``csl``; per-attribute softmax CE with task weighting for the multi-head archs."""
    if cfg.arch != "csl":
        if task is None or task.schema is None:
            raise ValueError(f"--arch {cfg.arch} needs attribute data (one head per attribute)")
        return MultiTaskLoss(list(task.schema.group_slices().values()), cfg.task_weighting, cfg.dwa_temperature)
    return PartialSelectiveLoss(
        partial_loss_mode=mode, gamma_pos=cfg.gamma_pos, gamma_neg=cfg.gamma_neg, gamma_unann=cfg.gamma_unann,
        alpha_pos=cfg.alpha_pos, alpha_neg=cfg.alpha_neg, alpha_unann=cfg.alpha_unann, clip=cfg.clip,
        likelihood_topk=cfg.likelihood_topk, likelihood_topk_scope=cfg.likelihood_topk_scope,
        prior_threshold=cfg.prior_threshold, prior=None if prior is None else torch.as_tensor(prior),
        reduction=cfg.loss_reduction)


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, device: torch.device, *, epoch: int, stage: str, ema: ModelEmaV3 | None,
                    scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None, grad_clip: float,
                    step_budget: list[int | None], regulariser: Callable[[], torch.Tensor] | None = None) -> dict:
    """One pass over ``loader``; returns {'loss': mean per-sample loss, 'lr', 'steps', 'samples'}."""
    model.train()
    total, seen, steps = 0.0, 0, 0
    bar = tqdm(loader, desc=f"{stage} epoch {epoch + 1}", leave=False, unit="batch", disable=None)
    for images, targets in bar:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
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
        if scale_before is None or scaler.get_scale() >= scale_before:  # no scheduler step on a skipped AMP step
            scheduler.step()
        if ema is not None:
            ema.update(getattr(model, "module", model), step=scheduler.last_epoch)
        total += per_sample * len(images)
        seen += len(images)
        steps += 1
        bar.set_postfix(loss=f"{per_sample:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if step_budget[0] is not None:
            step_budget[0] -= 1
            if step_budget[0] <= 0:
                raise TrainingInterrupted(f"stopped after the requested number of steps (in stage {stage!r}, "
                                          f"epoch {epoch + 1}); continue with --resume")
    return {"loss": total / max(seen, 1), "lr": scheduler.get_last_lr()[0], "steps": steps, "samples": seen}


def predict_dataset(model: nn.Module, dataset, batch_size: int, workers: int, device: torch.device,
                    amp_dtype: torch.dtype | None, info: DistInfo, desc: str = "evaluating") -> np.ndarray:
    """Probabilities (N, C) of the whole ``dataset``; under DDP each rank predicts its shard and all gather."""
    indices = shard_indices(len(dataset), info)
    subset = Subset(dataset, indices.tolist()) if info.enabled else dataset
    loader = make_loader(subset, batch_size, workers, train=False)
    probs = predict_probabilities(model, loader, device, amp_dtype, desc=desc,
                                  to_probabilities=partial(logits_to_probabilities, model))
    return gather_rows(probs, indices, len(dataset), info)


def evaluate(model: nn.Module, dataset, task: Task, run: Run, amp_dtype: torch.dtype | None) -> dict:
    """Evaluation report (see :func:`partial_csl.metrics.evaluate_predictions`) of ``model`` on ``dataset``."""
    scores = predict_dataset(model, dataset, run.cfg.batch_size, run.cfg.workers, run.device, amp_dtype, run.dist)
    targets = dataset.targets.numpy()
    return evaluate_predictions(targets, scores, task.class_names, task.groups, task.majority, run.cfg.threshold)


def _rng_state() -> dict:
    return {"python": list(random.getstate()[1]), "numpy": np.random.get_state()[1].tolist(),
            "torch": torch.get_rng_state()}


def _write_metrics_csv(history: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


@dataclass
class StageResult:
    best_path: Path
    best_metric: float
    best_weights: str
    history: list[dict]


@dataclass
class Run:
    """What every stage of one training run shares."""

    cfg: TrainConfig
    task: Task
    train: LabelledImages
    val: LabelledImages
    run_dir: Path
    device: torch.device
    dist: DistInfo
    writer: object | None  # TensorBoard SummaryWriter on the primary process, else None
    history: list[dict] = field(default_factory=list)
    step_budget: list[int | None] = field(default_factory=lambda: [None])


def _train_loader(run: Run, weights: np.ndarray | None, seed: int):
    cfg = run.cfg
    dataset = run.train.dataset(cfg.image_size, train=True, augment=cfg.augment)
    if weights is None:
        sampler = ShardedShuffleSampler(len(dataset), seed, run.dist.rank, run.dist.world_size)
    else:
        sampler = RepeatAwareSampler(weights, len(dataset), seed, run.dist.rank, run.dist.world_size)
        dataset = RepeatAwareDataset(dataset, build_strong_transform(cfg.image_size))
    return make_loader(dataset, cfg.batch_size, cfg.workers, train=True, seed=seed, sampler=sampler)


def _wrap_for_training(model: nn.Module, run: Run) -> nn.Module:
    """DDP wrapper (with synchronised norm layers on request) when running under torchrun."""
    if not run.dist.enabled:
        return model
    if run.cfg.sync_bn:
        model = convert_sync_norm(model)
    device_ids = [run.device.index] if run.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def fit(run: Run, stage: str, mode: str, epochs: int, prior: np.ndarray | None, stage_dir: Path) -> StageResult:
    """Train one model under one loss mode for ``epochs``; resumes from ``stage_dir/checkpoints/last.pt``."""
    cfg, task, device = run.cfg, run.task, run.device
    ckpt_dir = stage_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    seed_everything(derive_seed(cfg.seed, STAGES.index(stage), 10_000))
    model = build_model(cfg.arch, cfg.model_name, len(task.class_names), **arch_args(cfg, task),
                        pretrained=cfg.model_path, norm=cfg.norm, device=device)
    train_model = _wrap_for_training(model, run)
    model = getattr(train_model, "module", train_model)
    sample_weights = training_sample_weights(cfg, task, run.train)
    criterion = build_criterion(cfg, mode, prior, task).to(device)
    optimizer = build_optimizer(nn.ModuleList([model, criterion]), cfg.lr, cfg.weight_decay)
    steps_per_epoch = max(len(_train_loader(run, sample_weights, 0)), 1)
    scheduler = OneCycleLR(optimizer, max_lr=cfg.lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup) if cfg.ema_decay > 0 else None
    amp_dtype = resolve_amp(cfg.amp, cfg.amp_dtype, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    regulariser = (lambda: cfg.latent_reg * model.regulariser()) if cfg.arch == "latent" else None
    start_epoch, best_metric, best_weights = 0, -math.inf, "regular"
    if cfg.resume and last_path.is_file():
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        ts = state["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        criterion.load_state_dict(ts["criterion"])
        start_epoch, best_metric, best_weights = ts["epoch"] + 1, ts["best_metric"], ts["best_weights"]
        run.history[:] = state["history"]
        log.info("resumed stage %r from %s at epoch %d", stage, last_path, start_epoch + 1)
    val_dataset = run.val.dataset(cfg.image_size, train=False)
    norm_used = norm_backend_of(model)

    def payload(weights_state: dict, which: str, metrics: dict, epoch: int) -> dict:
        return {
            "format_version": FORMAT_VERSION, "arch": cfg.arch, "arch_args": arch_args(cfg, task),
            "model_name": cfg.model_name,
            "num_classes": len(task.class_names), "norm": norm_used, "class_names": task.class_names,
            "schema": task.schema.to_dict() if task.schema else None, "image_size": cfg.image_size,
            "normalization": NORMALIZATION, "model": weights_state, "weights": which,
            "ema": ema.module.state_dict() if ema is not None else None,
            "priors": None if prior is None else [float(p) for p in prior], "partial_loss_mode": mode,
            "stage": stage, "train_class_counts": task.train_class_counts, "metrics": metrics,
            "config": cfg.to_dict(), "history": list(run.history), "world_size": run.dist.world_size,
            "train_state": {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "scaler": scaler.state_dict(), "criterion": criterion.state_dict(), "epoch": epoch,
                            "best_metric": best_metric,
                            "best_weights": best_weights, "rng": _rng_state()},
        }

    epochs_bar = tqdm(range(start_epoch, epochs), desc=f"{stage} stage", unit="epoch", initial=start_epoch,
                      total=epochs, disable=None if run.dist.is_primary else True)
    for epoch in epochs_bar:
        epoch_seed = derive_seed(cfg.seed, STAGES.index(stage), epoch)
        seed_everything(epoch_seed)
        started = time.time()
        stats = train_one_epoch(train_model, _train_loader(run, sample_weights, epoch_seed), criterion, optimizer,
                                scheduler, device, epoch=epoch, stage=stage, ema=ema, scaler=scaler,
                                amp_dtype=amp_dtype, grad_clip=cfg.grad_clip, step_budget=run.step_budget,
                                regulariser=regulariser)
        task_weights = {}
        if isinstance(criterion, MultiTaskLoss):
            criterion.end_epoch()
            task_weights = {f"weight_{g}": round(w, 6) for g, w in zip(task.schema.group_names,
                                                                        criterion.task_weights())}
        stats["loss"] = mean_across_ranks(stats["loss"], stats["samples"], run.dist)
        report = evaluate(model, val_dataset, task, run, amp_dtype)
        report_ema = evaluate(ema.module, val_dataset, task, run, amp_dtype) if ema else None
        use_ema = report_ema is not None and report_ema["mAP"] > report["mAP"]
        chosen = report_ema if use_ema else report
        row = {"stage": stage, "epoch": epoch + 1, "train_loss": round(stats["loss"], 6), "lr": stats["lr"],
               "val_mAP": round(report["mAP"], 4),
               "val_mAP_ema": round(report_ema["mAP"], 4) if report_ema else "",
               "val_mAP_unknown_as_negative": round(chosen["mAP_unknown_as_negative"], 4)}
        for name, acc in chosen.get("accuracy_per_attribute", {}).items():
            row[f"acc_{name}"] = round(acc, 4)
        row.update(task_weights)
        row["seconds"] = round(time.time() - started, 1)
        run.history.append(row)
        improved = chosen["mAP"] > best_metric
        if improved:
            best_metric, best_weights = chosen["mAP"], "ema" if use_ema else "regular"
        if run.dist.is_primary:
            save_checkpoint(payload(model.state_dict(), "regular", chosen, epoch), last_path)
            if improved:
                weights = ema.module.state_dict() if use_ema else model.state_dict()
                save_checkpoint(payload(weights, best_weights, chosen, epoch), best_path)
            _write_metrics_csv(run.history, run.run_dir / "metrics.csv")
            for key in ("train_loss", "val_mAP", "val_mAP_ema"):
                if row[key] != "":
                    run.writer.add_scalar(f"{stage}/{key}", row[key], epoch + 1)
            acc_text = " ".join(f"{k[4:]} {v:.1f}" for k, v in row.items() if k.startswith("acc_"))
            log.info("[%s] epoch %d/%d loss %.4f lr %.2e val mAP %.2f ema %s %s (%.0fs)%s", stage, epoch + 1, epochs,
                     stats["loss"], stats["lr"], report["mAP"], row["val_mAP_ema"], acc_text, row["seconds"],
                     " *best*" if improved else "")
        barrier(run.dist)
    if not best_path.is_file():
        raise RuntimeError(f"stage {stage!r} finished without a best checkpoint in {ckpt_dir}")
    return StageResult(best_path, best_metric, best_weights, run.history)


def run_training(cfg: TrainConfig, task_and_data: tuple[Task, LabelledImages, LabelledImages] | None = None) -> dict:
    """Run every stage of ``cfg`` and return a summary (paths, best metric, priors).

    Under torchrun every process runs this; only the primary one (rank 0) writes files.
    """
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(cfg.output_dir)
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    device = process_device(device, info)
    if info.is_primary:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    task, train, val = task_and_data or build_task(cfg, run_dir)
    amp_dtype = resolve_amp(cfg.amp, cfg.amp_dtype, device)
    writer = None
    if info.is_primary:
        config_record = {"config": cfg.to_dict(), "device": str(device), "world_size": info.world_size,
                         "versions": library_versions(),
                         "mixed_precision": str(amp_dtype).removeprefix("torch.") if amp_dtype else "off",
                         "num_train_images": len(train), "num_val_images": len(val),
                         "class_names": task.class_names,
                         "train_unknown_share": float((train.targets == UNKNOWN).mean())}
        (run_dir / "config.json").write_text(json.dumps(config_record, indent=2) + "\n")
        write_sampler_report(cfg, task, train, run_dir)
        writer = SummaryWriter(str(run_dir / "tensorboard"))
    run = Run(cfg, task, train, val, run_dir, device, info, writer, step_budget=[cfg.stop_after_steps])
    prior = None
    summary: dict = {"run_dir": str(run_dir)}
    try:
        if cfg.arch == "csl" and cfg.partial_loss_mode == "selective":
            if cfg.prior_path:
                prior = load_priors(cfg.prior_path, task.class_names)
                summary["prior_path"] = cfg.prior_path
            else:
                prior, summary["prior_path"] = _prior_stage(run)
        result = fit(run, "main", cfg.partial_loss_mode, cfg.epochs, prior, run_dir)
    finally:
        if writer is not None:
            writer.close()
    summary.update({"best_checkpoint": str(result.best_path), "last_checkpoint": str(run_dir / "checkpoints" /
                                                                                      "last.pt"),
                    "best_val_mAP": result.best_metric, "best_weights": result.best_weights,
                    "metrics_csv": str(run_dir / "metrics.csv")})
    if info.is_primary:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _prior_stage(run: Run) -> tuple[np.ndarray, str]:
    """Stage 1: temporary ignore-mode model -> priors CSV (skipped when a finished one is in the run folder)."""
    cfg, task = run.cfg, run.task
    prior_path = run.run_dir / "priors" / "prior_ignore.csv"
    if cfg.resume and prior_path.is_file():
        stage_last = run.run_dir / "prior_stage" / "checkpoints" / "last.pt"
        if stage_last.is_file():
            run.history[:] = load_checkpoint(stage_last)["history"]
        return load_priors(prior_path, task.class_names), str(prior_path)
    result = fit(run, "prior", "ignore", cfg.prior_epochs or cfg.epochs, None, run.run_dir / "prior_stage")
    model = model_from_checkpoint(load_checkpoint(result.best_path), run.device, cfg.norm)
    amp_dtype = resolve_amp(cfg.amp, cfg.amp_dtype, run.device)
    probs = predict_dataset(model, run.train.dataset(cfg.image_size, train=False), cfg.batch_size, cfg.workers,
                            run.device, amp_dtype, run.dist, desc="estimating priors")
    priors, details = priors_from_probabilities(probs, run.train.targets, cfg.prior_estimate)
    if run.dist.is_primary:
        save_priors(prior_path, task.class_names, priors, details.pop("n_images"), cfg.prior_estimate, details)
        quality = prior_quality_report(priors, run.train.targets, task, details["mean_posterior"])
        (prior_path.parent / "prior_quality.json").write_text(json.dumps(quality, indent=2) + "\n")
        top = np.argsort(-priors)[:10]
        log.info("%s priors from the ignore-mode model (%s weights): %s; Spearman vs %s: %.3f", cfg.prior_estimate,
                 result.best_weights, ", ".join(f"{task.class_names[i]} {priors[i]:.3f}" for i in top),
                 quality["reference"], quality["estimate"]["spearman"])
    barrier(run.dist)
    return priors, str(prior_path)
