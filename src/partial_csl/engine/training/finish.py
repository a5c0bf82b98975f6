"""The end of a training run, after its main stage: thresholds tuned on the validation split and stored in
``best.pt``, and the final per-class AP in TensorBoard.

Tuning is asked for with ``--class-thresholds`` or ``--abstain-accuracy``/``--abstain-coverage`` (off by default, so
that a run's outputs stay what they were). The settings are checked when the run starts (:func:`check_run_settings`),
not after hours of training. Under torchrun every process predicts its shard and only the primary one writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...thresholds import ThresholdSettings
from ..checkpoint import checkpoint_info, load_checkpoint, model_from_checkpoint, save_checkpoint, with_thresholds
from ..config import TrainConfig
from ..distributed import barrier
from ..inference.probabilities import predict_dataset
from ..inference.stored_thresholds import check_settings_fit, settings_from_config, thresholds_summary, tune_checkpoint
from ..setup.formats import get_dataset
from .run import Run
from .unreadable import readable_rows, record_skipped_images

log = logging.getLogger(__name__)


def check_run_settings(cfg: TrainConfig) -> ThresholdSettings:
    """The run's threshold settings, refused before the run folder is touched when they cannot apply to its data
    (abstaining needs attributes: COCO-format data has none)."""
    settings = settings_from_config(cfg)
    check_settings_fit(settings, get_dataset(cfg.dataset).attribute_groups)
    return settings


def tune_best_checkpoint(run: Run, best_path: Path, settings: ThresholdSettings) -> dict | None:
    """Tune on the validation split with ``best.pt``'s weights and write ``best.pt`` again with them (same weights,
    one key more); returns the thresholds' summary, or None when nothing is to be tuned."""
    if not settings.enabled:
        return None
    cfg = run.cfg
    ckpt = load_checkpoint(best_path)
    model = model_from_checkpoint(ckpt, run.device, cfg.norm, source=best_path)
    skipped: dict[int, str] = {}
    scores = predict_dataset(model, run.val.dataset(run.data_config, train=False), cfg.batch_size, cfg.workers,
                             run.device, run.amp_dtype, info=run.dist, desc="tuning thresholds", skipped=skipped)
    keep = readable_rows(len(scores), skipped)
    if run.dist.is_primary:
        record_skipped_images(run.run_dir, "threshold tuning", None, skipped, run.val.filenames)
    source = cfg.val_csv or cfg.val_annotations or cfg.data or ""
    entry = tune_checkpoint(checkpoint_info(ckpt), run.val.targets[keep], scores[keep], settings,
                            f"{source} (validation split)", cfg.threshold)
    if run.dist.is_primary:
        save_checkpoint(with_thresholds(ckpt, entry), best_path)
    barrier(run.dist)
    summary = thresholds_summary(entry)
    log.info("thresholds tuned on the validation split and stored in %s: %s", best_path, summary)
    return summary


def log_final_ap(run: Run, best_path: Path) -> None:
    """Per-class AP (and mAP) of the best weights, at their epoch, under ``final/`` in TensorBoard."""
    if run.writer is None:
        return
    info = checkpoint_info(load_checkpoint(best_path))
    metrics, epoch = info.metrics, int(info.epoch or 0)
    for name, ap in (metrics.get("ap_per_class") or {}).items():
        if ap is not None:
            run.writer.add_scalar(f"final/AP/{name}", ap, epoch)
    if metrics.get("mAP") is not None:
        run.writer.add_scalar("final/mAP", metrics["mAP"], epoch)
    run.writer.flush()


def finish_training(run: Run, best_path: Path, settings: ThresholdSettings) -> dict | None:
    """Everything after the main stage; returns the tuned thresholds' summary (None when not tuned)."""
    summary = tune_best_checkpoint(run, best_path, settings)
    if run.dist.is_primary:
        log_final_ap(run, best_path)
    return summary
