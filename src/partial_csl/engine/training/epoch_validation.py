"""One epoch's validation: the regular and the EMA weights scored on the validation split, and the epoch's row of
``metrics.csv``."""

from __future__ import annotations

import time

import numpy as np

from ...losses import MultiTaskLoss
from ...metrics import evaluate_predictions
from ..inference.probabilities import predict_dataset
from ..setup.build import TrainingParts
from .embeddings import StageInputs
from .run import Run
from .unreadable import readable_rows, record_skipped_images


def _report(scores: np.ndarray, targets: np.ndarray, keep: np.ndarray, run: Run) -> dict:
    """Evaluation report (see :func:`partial_csl.metrics.evaluate_predictions`) of the ``keep`` rows."""
    labels = run.labels
    return evaluate_predictions(targets[keep], scores[keep], labels.class_names, labels.groups, labels.majority,
                                run.cfg.threshold)


def validate_epoch(run: Run, parts: TrainingParts, inputs: StageInputs, stage: str, epoch: int, stats: dict,
                   started: float) -> tuple[dict, dict, bool]:
    """Score the regular and EMA weights; returns (metrics row, {"regular": its report, "chosen": the better report,
    "teacher_scores": the EMA's validation scores, else the regular weights'}, whether the chosen is the EMA's).
    An image that could not be read in either pass is left out of both reports, so that they compare alike."""
    cfg, skipped = run.cfg, {}
    models = [parts.model] + ([parts.ema.module] if parts.ema is not None else [])
    scores = [predict_dataset(inputs.view(model), inputs.val, cfg.batch_size, cfg.workers, run.device, run.amp_dtype,
                              info=run.dist, skipped=skipped) for model in models]
    keep, targets = readable_rows(len(scores[0]), skipped), inputs.val.targets.numpy()
    report = _report(scores[0], targets, keep, run)
    report_ema = _report(scores[1], targets, keep, run) if parts.ema is not None else None
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
    return row, {"regular": report, "chosen": chosen, "teacher_scores": scores[-1]}, use_ema
