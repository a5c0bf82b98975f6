"""What every stage of one training run shares, and how a run starts: data read and checked, records written."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...data.schema import UNKNOWN
from ...data.transforms import DataConfig, resolve_data_config
from ...losses import loss_uses_expected_positives, loss_uses_priors
from ...models.pretrained import pretrained_data_config
from ...prior_estimates import holdout_mask
from ...safe_io import announce_writes
from ..config import TrainConfig, library_versions, resolve_amp, resolve_device
from ..distributed import DistInfo, process_device
from ..setup.architectures import get_architecture
from ..setup.formats import load_training_data
from ..setup.run_data import (
    LabelledImages,
    LabelSpace,
    check_validation_labels,
    label_warnings,
    single_positive_labels,
    unscored_attributes,
)
from ..setup.train_loader import steps_per_epoch, training_sample_weights, write_sampler_report
from .records import RunClock, write_json, write_run_config

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What every stage of one training run shares (computed once per run)."""

    cfg: TrainConfig
    labels: LabelSpace
    train: LabelledImages
    val: LabelledImages
    run_dir: Path
    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None
    sample_weights: np.ndarray | None
    data_config: DataConfig  # the model's preprocessing, stored in every checkpoint
    writer: object | None  # TensorBoard SummaryWriter on the primary process, else None
    history: list[dict] = field(default_factory=list)
    clock: RunClock = field(default_factory=lambda: RunClock(0))


def _selective_with_priors(cfg: TrainConfig) -> bool:
    return (get_architecture(cfg.arch).uses_priors and loss_uses_priors(cfg.loss)
            and cfg.partial_loss_mode == "selective")


def uses_prior_stage(cfg: TrainConfig) -> bool:
    """The selective mode of a loss that takes priors needs them (from a file, or from the prior stage), unless
    ``--prior_threshold 0`` turns its prior step off: the loss then ignores no class by its prior (only the most
    likely unknowns), so priors would be estimated, or read, for nothing; the ``adaptive`` top-k still needs them."""
    return _selective_with_priors(cfg) and (cfg.prior_threshold != 0 or cfg.likelihood_topk_scope == "adaptive")


def _log_prior_plan(cfg: TrainConfig) -> None:
    """Say why a selective run trains no prior stage when the threshold switches the priors off."""
    if not _selective_with_priors(cfg) or uses_prior_stage(cfg):
        return
    unused = f"; --prior_path {cfg.prior_path} is not read" if cfg.prior_path else ""
    (log.warning if cfg.prior_path else log.info)(
        "--prior_threshold 0: the selective loss ignores only the most likely unknowns (--likelihood_topk %d, "
        "scope %s) and no class by its prior, so no priors are needed and the ignore-mode prior stage is skipped%s",
        cfg.likelihood_topk, cfg.likelihood_topk_scope, unused)


def prior_stage_run(run: Run, seed: int) -> tuple[Run, np.ndarray | None]:
    """The prior stage's view of ``run`` and its holdout mask (N, C), or None under ``--prior_holdout 0`` or
    ``--prior_estimate mean`` (which calibrates nothing, so it hides no labels from the prior model).

    The view has its own loss (``--prior_loss`` in ignore mode, so none of the main stage's focusing or clip skews
    its posteriors) and training targets with the holdout entries (drawn with ``seed``) hidden as unknown: the EM
    estimate fits its calibration on them, labels the model never trained on. ``run.train`` itself is unchanged.
    """
    cfg, train, holdout = run.cfg, run.train, None
    calibration = ("by a shift only (no Platt scale), fitted on the labels it trains on (--prior_holdout 0: "
                   "in-sample labels cannot show the over- or under-confidence a scale would correct)")
    if cfg.prior_estimate != "em":
        calibration = "not at all (--prior_estimate mean averages them; only em recalibrates, on held-out labels)"
    elif cfg.prior_holdout > 0:
        holdout = holdout_mask(train.targets, cfg.prior_holdout, seed)
        targets = train.targets.copy()
        targets[holdout] = UNKNOWN
        train = dataclasses.replace(train, targets=targets)
        calibration = (f"on {int(holdout.sum())} of its {int((run.train.targets != UNKNOWN).sum())} annotated "
                       f"labels, held out from its training (--prior_holdout {cfg.prior_holdout})")
    log.info("prior stage: %s loss in ignore mode (--prior_loss), posteriors calibrated %s", cfg.prior_loss,
             calibration)
    # the prior model estimates the natural class frequencies: no class weights or logit adjustment
    prior_cfg = dataclasses.replace(cfg, loss=cfg.prior_loss, partial_loss_mode="ignore", class_weights="none",
                                    logit_adjust="none", pseudo_labels=False)  # nor its own guesses as labels
    return dataclasses.replace(run, cfg=prior_cfg, train=train), holdout


def expected_positives_record(cfg: TrainConfig, labels: LabelSpace) -> dict | None:
    """k of EPR and ROLE and its source, logged (with a warning outside [1, C / 2]) and kept for config.json; None
    when the run's loss does not take it."""
    if not get_architecture(cfg.arch).uses_priors or not loss_uses_expected_positives(cfg.loss):
        return None
    k, classes = labels.expected_positives, len(labels.class_names)
    log.info("--loss %s: %.3f expected positives per image (k), from %s", cfg.loss, k, labels.expected_positives_source)
    if cfg.expected_positives is None and k <= 1 + 1e-6 and single_positive_labels(labels.train_targets):
        log.warning("--loss %s: the labels have one positive per image and no negatives (single positives), so k = "
                    "%.3f from %s undercounts an image's positives; give --expected-positives (Cole et al. take the "
                    "data set's true mean, 2.9 for COCO)", cfg.loss, k, labels.expected_positives_source)
    elif not 1 <= k <= classes / 2:
        log.warning("--loss %s: k = %.3f positives per image is outside [1, %g] (1 to half the %d classes); if the "
                    "labels do not say how many positives an image has, give --expected-positives", cfg.loss, k,
                    classes / 2, classes)
    return {"value": k, "source": labels.expected_positives_source}


def open_tensorboard(folder: Path):
    """A SummaryWriter on ``folder``; its new event file is announced to the run's manifest (it is not written
    through :mod:`partial_csl.safe_io`)."""
    from torch.utils.tensorboard import SummaryWriter

    before = set(folder.glob("events.out.tfevents.*"))
    writer = SummaryWriter(str(folder))
    announce_writes(sorted(set(folder.glob("events.out.tfevents.*")) - before))
    return writer


def planned_run_files(cfg: TrainConfig, run_dir: Path) -> list[Path]:
    """The files every run of ``cfg`` writes, recorded in its manifest at once when it starts: one write of the
    manifest instead of one per file (any other file is still recorded as it is written)."""
    files = ["config.json", "label_warnings.json", "metrics.csv", "summary.json", "checkpoints/best.pt",
             "checkpoints/last.pt"]
    if uses_prior_stage(cfg) and not cfg.prior_path:
        files += ["prior_stage/checkpoints/best.pt", "prior_stage/checkpoints/last.pt", "prior_stage/history.json",
                  "priors/prior_ignore.csv", "priors/prior_ignore.csv.json", "priors/prior_quality.json"]
    return [run_dir / f for f in files]


def start_run(cfg: TrainConfig, info: DistInfo) -> Run:
    """Read and check the data, write the run's config and sampler report, open TensorBoard."""
    run_dir = Path(cfg.output_dir)
    _log_prior_plan(cfg)
    device = process_device(resolve_device(cfg.device), info)
    labels, train, val = load_training_data(cfg, run_dir)
    check_validation_labels(val, cfg.val_csv or cfg.val_annotations or cfg.data)
    expected = expected_positives_record(cfg, labels)
    for name in unscored_attributes(labels, val):
        log.warning("the validation data has no known %s label: its accuracy is undefined at every epoch (n/a in "
                    "the log, nan in metrics.csv) and no %s class counts in the validation mAP", name, name)
    warnings = label_warnings(labels, train)
    for warning in warnings:
        log.warning("%s: %s", warning["class"], warning["reason"])
    amp_dtype = resolve_amp(cfg.amp, cfg.amp_dtype, device)
    weights = training_sample_weights(cfg, labels, train)
    data_config = resolve_data_config(get_architecture(cfg.arch).input_model(cfg), cfg.image_size,
                                      pretrained_data_config(cfg.model_path) if cfg.model_path else None,
                                      cfg.mean, cfg.std, cfg.interpolation)
    log.info("preprocessing: %s", data_config)
    if cfg.cache_images:
        used = train.cache_images(data_config) + val.cache_images(data_config)
        log.info("cached %d images in memory (%.0f MB)", len(train) + len(val), used / 2**20)
    writer = None
    if info.is_primary:
        announce_writes(planned_run_files(cfg, run_dir))
        write_run_config(run_dir, cfg, {"device": str(device), "world_size": info.world_size,
                                        "versions": library_versions(),
                                        "mixed_precision": str(amp_dtype).removeprefix("torch.") if amp_dtype
                                        else "off", "num_train_images": len(train), "num_val_images": len(val),
                                        "class_names": labels.class_names,
                                        "train_unknown_share": float((train.targets == UNKNOWN).mean()),
                                        "label_warnings": warnings, "data_config": data_config.to_dict(),
                                        **({"expected_positives": expected} if expected else {})})
        write_json(run_dir / "label_warnings.json", {"classes": warnings})
        write_sampler_report(cfg, labels, train, weights, run_dir)
        writer = open_tensorboard(run_dir / "tensorboard")
    epochs = cfg.epochs + (cfg.prior_epochs or cfg.epochs if uses_prior_stage(cfg) and not cfg.prior_path else 0)
    clock = RunClock(epochs * steps_per_epoch(cfg, len(train), weights, info), stop_after=cfg.stop_after_steps)
    return Run(cfg, labels, train, val, run_dir, device, info, amp_dtype, weights, data_config, writer, clock=clock)
