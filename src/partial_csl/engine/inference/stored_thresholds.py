"""Thresholds in checkpoints: tuned on validation data at the end of training or by ``validate.py
--tune-thresholds``, stored under the ``thresholds`` key, read by inference, export and the web page.

The tuning itself is :mod:`partial_csl.thresholds` (functions of arrays); this module decides which settings apply
(the flags, else what the checkpoint was tuned for, else its run's config) and what a checkpoint says about its own
thresholds.
"""

from __future__ import annotations

import logging

import numpy as np

from ...thresholds import ThresholdSettings, abstentions, class_threshold_vector, tune_thresholds
from ..checkpoint import CheckpointInfo
from ..config import TrainConfig

log = logging.getLogger(__name__)
THRESHOLD_FIELDS = ("class_thresholds", "target_precision", "abstain_accuracy", "abstain_coverage")


def settings_from_values(values: dict) -> ThresholdSettings:
    """Settings from TrainConfig-named values (``class_thresholds``, ...); absent ones take their defaults."""
    return ThresholdSettings(values.get("class_thresholds") or "none", float(values.get("target_precision") or 0.9),
                             values.get("abstain_accuracy"), values.get("abstain_coverage"))


def settings_from_config(cfg: TrainConfig) -> ThresholdSettings:
    return settings_from_values({k: getattr(cfg, k, None) for k in THRESHOLD_FIELDS})


def stored_settings(info: CheckpointInfo) -> dict:
    """The settings a checkpoint's thresholds were tuned with, else those of its run's config (TrainConfig names)."""
    entry, config = info.thresholds or {}, info.config
    values = {k: config.get(k) for k in THRESHOLD_FIELDS}
    if entry:
        classes, abstain = entry.get("classes"), entry.get("abstain")
        values["class_thresholds"] = classes["mode"] if classes else "none"
        if classes and classes.get("target_precision") is not None:
            values["target_precision"] = classes["target_precision"]
        values["abstain_accuracy"] = abstain["target"] if abstain and abstain["mode"] == "accuracy" else None
        values["abstain_coverage"] = abstain["target"] if abstain and abstain["mode"] == "coverage" else None
    return values


def settings_for_checkpoint(info: CheckpointInfo, overrides: dict) -> ThresholdSettings:
    """What ``validate.py --tune-thresholds`` tunes: the given flags (``overrides``, None = not given) over the
    checkpoint's own settings; a multi-label checkpoint with no setting at all gets F1-maximising class thresholds."""
    values = stored_settings(info)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("abstain_accuracy") is not None:
        values["abstain_coverage"] = None
    if given.get("abstain_coverage") is not None:
        values["abstain_accuracy"] = None
    values.update(given)
    settings = settings_from_values(values)
    if not settings.enabled and info.schema is None:
        settings = ThresholdSettings("f1", settings.target_precision)
    if not settings.enabled:
        raise ValueError("nothing to tune: give --class-thresholds f1|precision, --abstain-accuracy A or "
                         "--abstain-coverage C")
    return settings


def check_settings_fit(settings: ThresholdSettings, has_attributes: bool) -> None:
    """Refuse, before any work, to abstain on data without attributes (there is no answer to withhold)."""
    if settings.abstain is not None and not has_attributes:
        raise ValueError("--abstain-accuracy/--abstain-coverage need attribute data (#N/A answers per attribute); "
                         "for multi-label data use --class-thresholds")


def tune_checkpoint(info: CheckpointInfo, targets: np.ndarray, scores: np.ndarray, settings: ThresholdSettings,
                    source: str, default: float = 0.5) -> dict:
    """The ``thresholds`` entry for the checkpoint ``info`` describes, tuned on (``targets``, ``scores``)."""
    schema = info.schema
    check_settings_fit(settings, schema is not None)
    entry = tune_thresholds(targets, scores, info.class_names, schema.group_slices() if schema else None,
                            settings, source, default)
    missed = [name for part in ("classes", "abstain") if entry[part]
              for name, detail in entry[part]["details"].items() if detail["reached"] is False]
    if missed:
        log.warning("the threshold target is not reached for %s on %s; their thresholds are the best there are",
                    ", ".join(missed), source)
    return entry


def label_thresholds(entry: dict | None, num_classes: int, threshold: float | None = None) -> np.ndarray:
    """(C,) thresholds of multi-label outputs: an explicit ``threshold`` wins, then the tuned ones of ``entry``
    (a checkpoint's ``thresholds``), then 0.5."""
    if threshold is not None:
        return np.full(num_classes, float(threshold))
    return class_threshold_vector(entry, num_classes, 0.5)


def abstain_values(entry: dict | None) -> dict[str, float] | None:
    """Attribute -> confidence threshold below which the answer is ``#N/A``; None when ``entry`` has none."""
    abstain = (entry or {}).get("abstain")
    return dict(abstain["values"]) if abstain else None


def abstained(entry: dict | None, scores: np.ndarray, groups: dict[str, slice] | None) -> dict[str, np.ndarray] | None:
    """Per attribute, the rows answered ``#N/A``; None when nothing abstains (no thresholds, or no attributes)."""
    values = abstain_values(entry)
    if values is None or not groups:
        return None
    return abstentions(scores, groups, values)


def thresholds_summary(entry: dict | None) -> dict | None:
    """The short form for logs and summary.json: modes, targets, values (no per-class details)."""
    if not entry:
        return None
    out: dict = {"tuned_on": entry.get("tuned_on"), "num_images": entry.get("num_images")}
    if entry.get("classes"):
        out["classes"] = {k: entry["classes"][k] for k in ("mode", "target_precision", "values")}
    if entry.get("abstain"):
        abstain = entry["abstain"]
        out["abstain"] = {"mode": abstain["mode"], "target": abstain["target"], "values": abstain["values"],
                          "coverage": {n: d["coverage"] for n, d in abstain["details"].items()},
                          "accuracy": {n: d["accuracy"] for n, d in abstain["details"].items()}}
    return out
