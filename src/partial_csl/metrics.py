"""Multi-label metrics as plain functions of arrays. Targets use {1, 0, -1 unknown}; scores are probabilities.

Two mAPs, each with its own convention (:data:`CONVENTIONS` is what the reports print):

* ``mAP``, partial-aware (the default): per class, :func:`average_precision` over the images where that class is
  *known*, with tied scores grouped (a tie block counts as one threshold, the value of
  ``sklearn.metrics.average_precision_score``); the mean is over the classes with a known positive *and* a known
  negative, the others are listed in ``excluded_classes`` with the reason. This is CSL's ``AP_partial`` (which the
  maintainers recommend for partially labelled evaluation sets) except for the ties.
* ``mAP_unknown_as_negative``: exactly the reference's ``mAP`` (:func:`reference_map`), to compare with CSL's
  tables: unknown counted as negative, ties broken by numpy's argsort order, AP 0 for a class without a positive,
  the mean over every class.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = -1
REFERENCE_AP_EPS = 1e-8  # the reference divides by (#positives + 1e-8)

CONVENTIONS = {
    "mAP": "partial-aware: per class, AP over the images where the class is known, tied scores one threshold "
           "(as sklearn's average_precision_score); mean over the classes with a known positive and a known "
           "negative (the others are in excluded_classes, with the reason); CSL's AP_partial except for the ties",
    "mAP_unknown_as_negative": "the reference's mAP (CSL/ASL helper_functions.mAP): unknown counted as negative, "
                               "ties broken by numpy argsort order, AP 0 for a class without a positive, mean over "
                               "every class",
    "CP, CR, CF1": "known entries only, positive when the probability >= threshold; CP and CR are means over every "
                   "class of its precision and recall, 0 for a class without a true positive (as the reference's "
                   "validate.py); CF1 = 2 CP CR / (CP + CR)",
    "OP, OR, OF1": "known entries only, counts pooled over the classes; OF1 = 2 OP OR / (OP + OR)",
}


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of binary ``labels`` (1 positive, 0 negative) ranked by ``scores``; NaN when there is no positive."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    n_pos = int((labels == 1).sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], (labels[order] == 1).astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]  # equal infinities tie too
    tp = np.cumsum(hits)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / n_pos
    return float((recall_gain * precision).sum())


def reference_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """The reference's AP, bit for bit, so that its tables can be compared: the ranking is numpy's default argsort
    of the scores reversed (tied scores keep that arbitrary order), the precision at each rank holding a positive
    (``labels == 1``; anything else is a negative) is summed and divided by (#positives + 1e-8); 0 without one."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    hits = labels[np.argsort(scores)[::-1]] == 1
    precision_at_hits = np.where(hits, np.cumsum(hits), 0) / np.arange(1, len(hits) + 1, dtype=np.float64)
    return float(precision_at_hits.sum() / (hits.sum() + REFERENCE_AP_EPS))


def reference_map(targets: np.ndarray, scores: np.ndarray) -> float:
    """The reference's ``mAP`` in percent: the mean over every class of :func:`reference_average_precision`, unknown
    (-1) targets counting as negatives and a class without a positive counting as AP 0."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    if scores.size == 0:
        return 0.0
    return float(100 * np.mean([reference_average_precision(scores[:, c], targets[:, c])
                                for c in range(scores.shape[1])]))


def exclusion_reasons(targets: np.ndarray) -> list[str | None]:
    """Why each class has no partial-aware AP (None where it has one): AP needs a known positive to rank, and a
    known negative to rank it against (with positives only, any ranking scores 1.0)."""
    targets = np.asarray(targets)
    known, positives = (targets != UNKNOWN).sum(axis=0), (targets == 1).sum(axis=0)
    reasons: list[str | None] = []
    for n_known, n_pos in zip(known, positives):
        if n_known == 0:
            reasons.append("no known label")
        elif n_pos == 0:
            reasons.append("no known positive")
        elif n_pos == n_known:
            reasons.append("no known negative")
        else:
            reasons.append(None)
    return reasons


def ap_of_entries(classes: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes,) :func:`average_precision` of every class over its known entries, given as parallel arrays
    (class id, score, label 1 / 0) in any order, all classes at once (one sort, no loop over classes: Open Images'
    9,600 classes cost what one does); NaN for a class without a known positive or without a known negative."""
    classes, scores, labels = np.asarray(classes, np.int64), np.asarray(scores, np.float64), np.asarray(labels)
    order = np.lexsort((-scores, classes))  # by class, then by score, highest first
    classes, scores, hits = classes[order], scores[order], (labels[order] == 1).astype(np.float64)
    n = len(classes)
    starts = np.searchsorted(classes, classes, side="left")  # each entry's class block start
    new_block = np.r_[True, (np.diff(classes) != 0)]
    last_of_tie = np.flatnonzero(np.r_[(np.diff(classes) != 0) | (scores[1:] != scores[:-1]), True]) if n else np.zeros(
        0, np.int64)
    cum_hits = np.cumsum(hits)
    before_class = (cum_hits - hits)[starts]  # hits of the earlier classes
    tp = cum_hits[last_of_tie] - before_class[last_of_tie]
    rank = last_of_tie - starts[last_of_tie] + 1
    tie_classes = classes[last_of_tie]
    first_tie_of_class = new_block[np.r_[0, last_of_tie[:-1] + 1]] if n else np.zeros(0, bool)
    previous_tp = np.where(first_tie_of_class, 0.0, np.r_[0.0, tp[:-1]])
    positives = np.bincount(classes, weights=hits, minlength=num_classes)
    known = np.bincount(classes, minlength=num_classes)
    gain = (tp - previous_tp) / np.maximum(positives[tie_classes], 1)
    ap = np.bincount(tie_classes, weights=gain * tp / rank, minlength=num_classes)
    return np.where((positives > 0) & (positives < known), ap, np.nan)


def ap_per_class(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(C,) partial-aware AP of every class over its known images; NaN for a class :func:`exclusion_reasons`
    excludes."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    rows, classes = np.nonzero(targets != UNKNOWN)
    return ap_of_entries(classes, scores[rows, classes], targets[rows, classes], targets.shape[1])


def mean_average_precision(targets: np.ndarray, scores: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Partial-aware ``{'mAP': percent, 'ap_per_class': {name: percent or None}, 'excluded_classes': {name: why}}``."""
    ap = ap_per_class(targets, scores)
    names = class_names or [str(c) for c in range(len(ap))]
    valid = ~np.isnan(ap)
    return {"mAP": float(100 * ap[valid].mean()) if valid.any() else float("nan"),
            "ap_per_class": {n: (None if np.isnan(a) else float(100 * a)) for n, a in zip(names, ap)},
            "excluded_classes": {n: r for n, r in zip(names, exclusion_reasons(targets)) if r is not None}}


def group_accuracy(targets: np.ndarray, scores: np.ndarray, group_slice: slice) -> tuple[float, int]:
    """Accuracy of the argmax within a group, over rows where the group is known; returns (accuracy, n_known)."""
    block_t, block_s = np.asarray(targets)[:, group_slice], np.asarray(scores)[:, group_slice]
    known = (block_t == 1).any(axis=1)
    if not known.any():
        return float("nan"), 0
    correct = block_s[known].argmax(axis=1) == block_t[known].argmax(axis=1)
    return float(correct.mean()), int(known.sum())


def macro_accuracy(targets: np.ndarray, scores: np.ndarray, group_slice: slice) -> float:
    """Mean over the group's classes (with a known example) of the recall of the within-group argmax."""
    block_t, block_s = np.asarray(targets)[:, group_slice], np.asarray(scores)[:, group_slice]
    known = (block_t == 1).any(axis=1)
    truth, pred = block_t[known].argmax(axis=1), block_s[known].argmax(axis=1)
    recalls = [(pred[truth == c] == c).mean() for c in np.unique(truth)]
    return float(np.mean(recalls)) if recalls else float("nan")


def majority_accuracy(targets: np.ndarray, group_slice: slice, majority_class: int) -> float:
    """Accuracy of always predicting ``majority_class`` (index within the group), on rows where the group is known."""
    block = np.asarray(targets)[:, group_slice]
    known = (block == 1).any(axis=1)
    return float((block[known].argmax(axis=1) == majority_class).mean()) if known.any() else float("nan")


def class_counts(targets: np.ndarray) -> np.ndarray:
    """(C,) number of known positives per class."""
    return (np.asarray(targets) == 1).sum(axis=0)


def threshold_metrics(targets: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """CP, CR, CF1 (per class, averaged over every class) and OP, OR, OF1 (pooled), at ``threshold``.

    Unknown entries take part in nothing. A class without a true positive has precision and recall 0 and still
    counts in the class average, as in the reference's validate.py (which had no unknowns to leave out).
    """
    targets, pred = np.asarray(targets), np.asarray(scores) >= threshold
    known = targets != UNKNOWN
    pos = (targets == 1) & known
    tp = (pred & pos).sum(axis=0).astype(float)
    fp = (pred & known & ~pos).sum(axis=0).astype(float)
    fn = (~pred & pos).sum(axis=0).astype(float)

    def ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
        a, b = np.asarray(a, float), np.asarray(b, float)
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    cp = float(ratio(tp, tp + fp).mean()) if tp.size else float("nan")
    cr = float(ratio(tp, tp + fn).mean()) if tp.size else float("nan")
    op = float(ratio(tp.sum(), tp.sum() + fp.sum()))
    o_r = float(ratio(tp.sum(), tp.sum() + fn.sum()))
    return {"threshold": threshold, "CP": 100 * cp, "CR": 100 * cr, "CF1": 100 * f1(cp, cr),
            "OP": 100 * op, "OR": 100 * o_r, "OF1": 100 * f1(op, o_r)}


def mean_ap_per_class_group(ap_per_class: dict[str, float | None], class_names: list[str],
                            class_groups: dict[str, list[int]]) -> dict[str, float | None]:
    """Mean AP over each group's classes that have an AP (LVIS: rare / common / frequent); None for a group with
    none (every class in it excluded, or no class in it)."""
    out = {}
    for group, indices in class_groups.items():
        aps = [ap_per_class[class_names[i]] for i in indices if ap_per_class.get(class_names[i]) is not None]
        out[group] = float(np.mean(aps)) if aps else None
    return out


def evaluate_predictions(targets: np.ndarray, scores: np.ndarray, class_names: list[str],
                         groups: dict[str, slice] | None = None, majority: dict[str, int] | None = None,
                         threshold: float = 0.5) -> dict:
    """Every metric of the evaluation report, on the same predictions, with the convention each follows.

    ``groups`` (attribute name -> class slice) adds per-attribute mAP and accuracy; ``majority`` (attribute name ->
    index of the training set's most frequent class) adds the majority-class baseline.
    """
    partial = mean_average_precision(targets, scores, class_names)
    report = {
        "num_images": len(targets),
        "mAP": partial["mAP"],
        "mAP_unknown_as_negative": reference_map(targets, scores),
        "ap_per_class": partial["ap_per_class"],
        "excluded_classes": partial["excluded_classes"],
        "known_positives_per_class": dict(zip(class_names, class_counts(targets).tolist())),
        **threshold_metrics(targets, scores, threshold),
        "conventions": dict(CONVENTIONS),
    }
    if groups:
        report["mAP_per_attribute"] = {}
        report["accuracy_per_attribute"] = {}
        report["known_per_attribute"] = {}
        report["macro_accuracy_per_attribute"] = {}
        for name, sl in groups.items():
            aps = [a for a in list(partial["ap_per_class"].values())[sl] if a is not None]
            report["mAP_per_attribute"][name] = float(np.mean(aps)) if aps else float("nan")
            acc, n_known = group_accuracy(targets, scores, sl)
            report["accuracy_per_attribute"][name] = 100 * acc
            if n_known == 0:
                report.setdefault("undefined_attributes", {})[name] = (
                    f"no image of this data has a known {name} label, so its accuracy, macro accuracy, mAP and "
                    "majority baseline are undefined (null in report.json)")
            report["known_per_attribute"][name] = n_known
            report["macro_accuracy_per_attribute"][name] = 100 * macro_accuracy(targets, scores, sl)
        if majority:
            report["majority_accuracy_per_attribute"] = {
                name: 100 * majority_accuracy(targets, sl, majority[name]) for name, sl in groups.items()}
    return report
