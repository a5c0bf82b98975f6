"""Multi-label metrics as plain functions of arrays. Targets use {1, 0, -1 unknown}; scores are probabilities.

* :func:`average_precision`: non-interpolated AP with tied scores grouped (a tie block counts as one threshold), the
  same value as ``sklearn.metrics.average_precision_score``. The reference broke ties by argsort order instead.
* partial-aware mAP (the default): per class, AP over the images where that class is *known*; the mean is over the
  classes with at least one known positive, and the others are listed as excluded.
* ``unknown_as_negative``: the reference convention (unknown counted as negative), to compare with CSL's tables.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = -1


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of binary ``labels`` (1 positive, 0 negative) ranked by ``scores``; NaN when there is no positive."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    n_pos = int((labels == 1).sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], (labels[order] == 1).astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(hits)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / n_pos
    return float((recall_gain * precision).sum())


def ap_per_class(targets: np.ndarray, scores: np.ndarray, unknown_as_negative: bool = False) -> np.ndarray:
    """(C,) AP of every class; NaN for a class without a (known) positive."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    out = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        t, s = targets[:, c], scores[:, c]
        if unknown_as_negative:
            t = np.where(t == UNKNOWN, 0, t)
        else:
            known = t != UNKNOWN
            t, s = t[known], s[known]
        out[c] = average_precision(s, t)
    return out


def mean_average_precision(targets: np.ndarray, scores: np.ndarray, class_names: list[str] | None = None,
                           unknown_as_negative: bool = False) -> dict:
    """``{'mAP': percent, 'ap_per_class': [...], 'excluded_classes': [...]}``."""
    ap = ap_per_class(targets, scores, unknown_as_negative)
    names = class_names or [str(c) for c in range(len(ap))]
    valid = ~np.isnan(ap)
    return {"mAP": float(100 * ap[valid].mean()) if valid.any() else float("nan"),
            "ap_per_class": {n: (None if np.isnan(a) else float(100 * a)) for n, a in zip(names, ap)},
            "excluded_classes": [n for n, v in zip(names, valid) if not v]}


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
    """CP, CR, CF1 (per class, averaged over classes with a known positive) and OP, OR, OF1 (over all known entries).

    Unknown entries take part in nothing. A class that predicts no positive has precision 0 (as in the reference).
    """
    targets, pred = np.asarray(targets), np.asarray(scores) >= threshold
    known = targets != UNKNOWN
    pos = (targets == 1) & known
    tp = (pred & pos).sum(axis=0).astype(float)
    fp = (pred & known & ~pos).sum(axis=0).astype(float)
    fn = (~pred & pos).sum(axis=0).astype(float)
    included = pos.sum(axis=0) > 0

    def ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
        a, b = np.asarray(a, float), np.asarray(b, float)
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    cp = float(ratio(tp, tp + fp)[included].mean()) if included.any() else float("nan")
    cr = float(ratio(tp, tp + fn)[included].mean()) if included.any() else float("nan")
    op = float(ratio(tp.sum(), tp.sum() + fp.sum()))
    o_r = float(ratio(tp.sum(), tp.sum() + fn.sum()))
    return {"threshold": threshold, "CP": 100 * cp, "CR": 100 * cr, "CF1": 100 * f1(cp, cr),
            "OP": 100 * op, "OR": 100 * o_r, "OF1": 100 * f1(op, o_r)}


def evaluate_predictions(targets: np.ndarray, scores: np.ndarray, class_names: list[str],
                         groups: dict[str, slice] | None = None, majority: dict[str, int] | None = None,
                         threshold: float = 0.5) -> dict:
    """Every metric of the evaluation report, on the same predictions.

    ``groups`` (attribute name -> class slice) adds per-attribute mAP and accuracy; ``majority`` (attribute name ->
    index of the training set's most frequent class) adds the majority-class baseline.
    """
    partial = mean_average_precision(targets, scores, class_names)
    report = {
        "num_images": len(targets),
        "mAP": partial["mAP"],
        "mAP_unknown_as_negative": mean_average_precision(targets, scores, class_names, True)["mAP"],
        "ap_per_class": partial["ap_per_class"],
        "excluded_classes": partial["excluded_classes"],
        "known_positives_per_class": dict(zip(class_names, class_counts(targets).tolist())),
        **threshold_metrics(targets, scores, threshold),
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
            report["known_per_attribute"][name] = n_known
            report["macro_accuracy_per_attribute"][name] = 100 * macro_accuracy(targets, scores, sl)
        if majority:
            report["majority_accuracy_per_attribute"] = {
                name: 100 * majority_accuracy(targets, sl, majority[name]) for name, sl in groups.items()}
    return report
