"""Decision thresholds tuned on validation data, as plain functions of arrays.

Two decisions need them. On multi-label data (COCO-style: any number of labels per image) a class is predicted when
its probability reaches a threshold, and 0.5 is rarely the best one: each class's probabilities follow its own base
rate. :func:`tune_class_thresholds` picks, per class, the threshold that maximises F1 or reaches a precision target.
On attribute data every attribute is answered with its most probable class, also when that class is only slightly
more probable than the others; annotators write ``#N/A`` instead. :func:`tune_abstention` picks, per attribute, the
confidence (probability of the predicted class) below which the model abstains, for a target accuracy of what it
still answers or for a target coverage (share of images answered).

A threshold ``t`` means "positive (or answered) when the score is >= t", and the candidates are the scores themselves,
so on the tuning data the reported precision, recall, accuracy and coverage are exactly those of ``t``. Targets use
{1, 0, -1 unknown}; unknown entries take part in nothing. The result (:func:`tune_thresholds`) is a dict of plain
types, stored under ``thresholds`` in the checkpoint and checked on load by :func:`thresholds_problem`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UNKNOWN = -1
CLASS_MODES = ("none", "f1", "precision")
ABSTAIN_MODES = ("accuracy", "coverage")
THRESHOLDS_VERSION = 1


@dataclass(frozen=True)
class ThresholdSettings:
    """What to tune: per-class thresholds (``class_mode``) and/or the abstention threshold of every attribute, for a
    target accuracy or a target coverage (at most one of the two; both None: no abstention)."""

    class_mode: str = "none"
    target_precision: float = 0.9
    abstain_accuracy: float | None = None
    abstain_coverage: float | None = None

    def __post_init__(self) -> None:
        if self.class_mode not in CLASS_MODES:
            raise ValueError(f"unknown class threshold mode {self.class_mode!r}; expected one of {CLASS_MODES}")
        if self.abstain_accuracy is not None and self.abstain_coverage is not None:
            raise ValueError("give a target accuracy or a target coverage for abstaining, not both")
        for name in ("target_precision", "abstain_accuracy", "abstain_coverage"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must lie in (0, 1], got {value}")

    @property
    def abstain(self) -> tuple[str, float] | None:
        """(mode, target) of the abstention, or None when off."""
        if self.abstain_accuracy is not None:
            return "accuracy", float(self.abstain_accuracy)
        if self.abstain_coverage is not None:
            return "coverage", float(self.abstain_coverage)
        return None

    @property
    def enabled(self) -> bool:
        return self.class_mode != "none" or self.abstain is not None


def ranked_cuts(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every threshold of a descending ranking: the distinct scores (a tie block is one threshold), how many items
    have a score >= each, and how many of those are hits."""
    scores, hits = np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    return scores[last_of_tie], last_of_tie + 1.0, np.cumsum(hits)[last_of_tie]


def tune_class_threshold(scores: np.ndarray, labels: np.ndarray, mode: str = "f1",
                         target_precision: float = 0.9, default: float = 0.5) -> dict:
    """The threshold of one class over its known entries (``labels`` 1/0): maximal F1 (ties: the highest threshold),
    or the lowest threshold whose precision reaches ``target_precision`` (the most recall at that precision; when no
    threshold reaches it, the most precise one, and ``reached`` is False). ``default`` without a known positive."""
    labels = np.asarray(labels)
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if positives == 0:
        return {"threshold": float(default), "precision": None, "recall": None, "f1": None, "reached": None,
                "positives": 0, "negatives": negatives}
    cut, taken, tp = ranked_cuts(scores, labels == 1)
    precision, recall = tp / taken, tp / positives
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=tp > 0)
    if mode == "f1":
        k, reached = int(np.argmax(f1)), True
    elif mode == "precision":
        meets = np.flatnonzero(precision >= target_precision - 1e-12)
        reached = bool(len(meets))
        k = int(meets[-1]) if reached else int(np.flatnonzero(precision == precision.max())[-1])
    else:
        raise ValueError(f"unknown class threshold mode {mode!r}; expected f1 or precision")
    return {"threshold": float(cut[k]), "precision": float(precision[k]), "recall": float(recall[k]),
            "f1": float(f1[k]), "reached": reached, "positives": positives, "negatives": negatives}


def tune_class_thresholds(targets: np.ndarray, scores: np.ndarray, mode: str = "f1", target_precision: float = 0.9,
                          default: float = 0.5) -> list[dict]:
    """:func:`tune_class_threshold` for every class (column), on the entries where it is known."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    out = []
    for c in range(targets.shape[1]):
        known = targets[:, c] != UNKNOWN
        out.append(tune_class_threshold(scores[known, c], targets[known, c], mode, target_precision, default))
    return out


def top_label(targets: np.ndarray, scores: np.ndarray, group: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, correct, known) of one attribute: the probability of its predicted (most probable) class, whether
    that is the true class, and on which rows the attribute is known (``correct`` only means something there)."""
    block_t, block_s = np.asarray(targets)[:, group], np.asarray(scores)[:, group]
    known = (block_t == 1).any(axis=1)
    return block_s.max(axis=1), block_s.argmax(axis=1) == block_t.argmax(axis=1), known


def accuracy_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, accuracy): answering when the confidence is >= each threshold, the share answered and
    the accuracy of the answers; from the highest threshold (fewest answers) to the lowest (all answered)."""
    cut, taken, good = ranked_cuts(confidence, correct)
    return cut, taken / max(len(confidence), 1), good / taken


def tune_abstention(confidence: np.ndarray, correct: np.ndarray, mode: str, target: float) -> dict:
    """The confidence threshold of one attribute (over the images where it is known).

    ``accuracy``: the lowest threshold whose answers are at least ``target`` accurate (the most coverage at that
    accuracy); when none is, the most accurate one, with ``reached`` False. ``coverage``: the highest threshold that
    still answers at least a ``target`` share of the images (ties may answer more).
    """
    if len(confidence) == 0:
        return {"threshold": 0.0, "coverage": None, "accuracy": None, "reached": None, "known": 0}
    cut, coverage, accuracy = accuracy_coverage(confidence, correct)
    if mode == "accuracy":
        meets = np.flatnonzero(accuracy >= target - 1e-12)
        reached = bool(len(meets))
        k = int(meets[-1]) if reached else int(np.flatnonzero(accuracy == accuracy.max())[-1])
    elif mode == "coverage":
        k, reached = int(np.flatnonzero(coverage >= target - 1e-12)[0]), True
    else:
        raise ValueError(f"unknown abstention mode {mode!r}; expected one of {ABSTAIN_MODES}")
    return {"threshold": float(cut[k]), "coverage": float(coverage[k]), "accuracy": float(accuracy[k]),
            "reached": reached, "known": len(confidence)}


def tune_thresholds(targets: np.ndarray, scores: np.ndarray, class_names: list[str],
                    groups: dict[str, slice] | None, settings: ThresholdSettings, source: str = "",
                    default: float = 0.5) -> dict:
    """What ``settings`` asks for, tuned on (``targets``, ``scores``): the checkpoint's ``thresholds`` entry."""
    entry: dict = {"version": THRESHOLDS_VERSION, "tuned_on": str(source), "num_images": len(targets),
                   "classes": None, "abstain": None}
    if settings.class_mode != "none":
        details = tune_class_thresholds(targets, scores, settings.class_mode, settings.target_precision, default)
        entry["classes"] = {"mode": settings.class_mode, "values": [d["threshold"] for d in details],
                            "target_precision": settings.target_precision if settings.class_mode == "precision"
                            else None, "details": dict(zip(class_names, details))}
    if settings.abstain is not None:
        if not groups:
            raise ValueError("abstaining (#N/A answers) needs attribute data; this model has no attribute groups")
        mode, target = settings.abstain
        details = {}
        for name, group in groups.items():
            confidence, correct, known = top_label(targets, scores, group)
            details[name] = tune_abstention(confidence[known], correct[known], mode, target)
        entry["abstain"] = {"mode": mode, "target": target, "values": {n: d["threshold"] for n, d in details.items()},
                            "details": details}
    return entry


def abstentions(scores: np.ndarray, groups: dict[str, slice], values: dict[str, float]) -> dict[str, np.ndarray]:
    """Per attribute, the rows whose confidence is below its threshold: there the answer is ``#N/A``."""
    scores = np.asarray(scores)
    return {name: scores[:, group].max(axis=1) < float(values.get(name, 0.0)) for name, group in groups.items()}


def class_threshold_vector(entry: dict | None, num_classes: int, default: float = 0.5) -> np.ndarray:
    """(C,) thresholds of the labels: the tuned per-class ones when ``entry`` has them, else ``default``."""
    if entry and entry.get("classes"):
        return np.asarray(entry["classes"]["values"], dtype=np.float64)
    return np.full(num_classes, float(default))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def thresholds_problem(entry: object, class_names: list[str], group_names: list[str] | None) -> str | None:
    """Why a checkpoint's ``thresholds`` cannot be used (None when it can): the parts code relies on."""
    if not isinstance(entry, dict) or entry.get("version") != THRESHOLDS_VERSION:
        return f"not a thresholds record of version {THRESHOLDS_VERSION}"
    classes, abstain = entry.get("classes"), entry.get("abstain")
    if classes is not None:
        values = classes.get("values") if isinstance(classes, dict) else None
        if not isinstance(values, list) or len(values) != len(class_names) or not all(map(_number, values)):
            return f"classes.values must be {len(class_names)} numbers, one per class"
    if abstain is not None:
        values = abstain.get("values") if isinstance(abstain, dict) else None
        if not isinstance(values, dict) or not all(map(_number, values.values())):
            return "abstain.values must map attribute names to numbers"
        unknown = sorted(set(values) - set(group_names or []))
        if unknown:
            return f"abstain.values names attributes the model does not have: {unknown}"
    return None
