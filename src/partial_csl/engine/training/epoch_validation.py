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


def _report(scores: np.ndarray, targets: np.ndarray, keep: np.ndarray, run: Run) -> dict:
    """Evaluation report (see :func:`partial_csl.metrics.evaluate_predictions`) of the ``keep`` rows."""
    labels = run.labels
    return evaluate_predictions(targets[keep], scores[keep], labels.class_names, labels.groups, labels.majority,
                                run.cfg.threshold)


def validated_weights(parts: TrainingParts) -> list[nn.Module]:
    """The weights each validation scores, in its order: the regular, then (with ``--ema-decay`` > 0) the EMA's."""
    return [parts.model] + ([parts.ema.module] if parts.ema is not None else [])


def score_weights(run: Run, parts: TrainingParts, inputs: StageInputs,
                  skipped: dict | None = None) -> tuple[list[np.ndarray], list[dict]]:
    """Validation scores and reports of the regular weights, then (with ``--ema-decay`` > 0) of the EMA weights. An
    image that could not be read in either pass is left out of both reports, so that they compare alike."""
    cfg, skipped = run.cfg, {} if skipped is None else skipped
    scores = [predict_dataset(inputs.view(model), inputs.val, cfg.batch_size, cfg.workers, run.device, run.amp_dtype,
                              info=run.dist, skipped=skipped) for model in validated_weights(parts)]
    keep, targets = readable_rows(len(scores[0]), skipped), inputs.val.targets.numpy()
    return scores, [_report(s, targets, keep, run) for s in scores]


def ema_is_better(reports: list[dict]) -> bool:
    """Whether the EMA weights (the second report, if any) validate better than the regular weights."""
    return len(reports) > 1 and reports[1]["mAP"] > reports[0]["mAP"]


def validate_epoch(run: Run, parts: TrainingParts, inputs: StageInputs, stage: str, epoch: int, stats: dict,
                   started: float) -> tuple[dict, dict, bool]:
    """Score the regular and EMA weights (:func:`score_weights`); returns (metrics row, {"regular": its report,
    "chosen": the better report, "scores": each weights' validation scores, regular first}, whether the chosen is
    the EMA's)."""
    skipped = {}
    scores, reports = score_weights(run, parts, inputs, skipped)
    report, report_ema = reports[0], (reports[1] if len(reports) > 1 else None)
    if run.dist.is_primary:
        record_skipped_images(run.run_dir, f"{stage} validation", epoch, skipped, run.val.filenames)
    use_ema = ema_is_better(reports)
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
    return row, {"regular": report, "chosen": chosen, "scores": scores}, use_ema
