"""One epoch's validation: the regular and the EMA weights scored on the validation split, and the epoch's row of
``metrics.csv``."""

from __future__ import annotations

import time

import numpy as np
from torch import nn

from ...losses import MultiTaskLoss
from ...metrics import evaluate_predictions
from ..inference.probabilities import predict_dataset
from ..setup.build import TrainingParts
from .embeddings import StageInputs
from .run import Run
from .unreadable import readable_rows, record_skipped_images


def evaluate(model: nn.Module, dataset, run: Run, skipped: dict[int, str]) -> tuple[dict, np.ndarray]:
    """Evaluation report (see :func:`partial_csl.metrics.evaluate_predictions`) of ``model`` on ``dataset``, without
    the images that could not be read (added to ``skipped``), and the scores (N, C; NaN rows for those images)."""
    cfg, labels = run.cfg, run.labels
    scores = predict_dataset(model, dataset, cfg.batch_size, cfg.workers, run.device, run.amp_dtype, info=run.dist,
                             skipped=skipped)
    keep = readable_rows(len(scores), skipped)
    return evaluate_predictions(dataset.targets.numpy()[keep], scores[keep], labels.class_names, labels.groups,
                                labels.majority, cfg.threshold), scores


def validate_epoch(run: Run, parts: TrainingParts, inputs: StageInputs, stage: str, epoch: int, stats: dict,
                   started: float) -> tuple[dict, dict, bool]:
    """Score the regular and EMA weights; returns (metrics row, {"regular": its report, "chosen": the better report,
    "teacher_scores": the EMA's validation scores, else the regular weights'}, whether the chosen is the EMA's)."""
    skipped: dict[int, str] = {}
    report, scores = evaluate(inputs.view(parts.model), inputs.val, run, skipped)
    report_ema = None
    if parts.ema is not None:
        report_ema, scores = evaluate(inputs.view(parts.ema.module), inputs.val, run, skipped)
    if run.dist.is_primary:
        record_skipped_images(run.run_dir, f"{stage} validation", epoch, skipped, run.val.filenames)
    use_ema = report_ema is not None and report_ema["mAP"] > report["mAP"]
    chosen = report_ema if use_ema else report
    row = {"stage": stage, "epoch": epoch + 1, "train_loss": round(stats["loss"], 6), "lr": stats["lr"],
           "val_mAP": round(report["mAP"], 4), "val_mAP_ema": round(report_ema["mAP"], 4) if report_ema else "",
           "val_mAP_unknown_as_negative": round(chosen["mAP_unknown_as_negative"], 4)}
    for name, acc in chosen.get("accuracy_per_attribute", {}).items():
        row[f"acc_{name}"] = round(acc, 4)
    if isinstance(parts.criterion, MultiTaskLoss):
        row.update({f"weight_{g}": round(w, 6) for g, w in zip(run.labels.schema.group_names,
                                                                parts.criterion.task_weights())})
    row.update(stats.get("pseudo_labels", {}))
    row["seconds"] = round(time.time() - started, 1)
    return row, {"regular": report, "chosen": chosen, "teacher_scores": scores}, use_ema
