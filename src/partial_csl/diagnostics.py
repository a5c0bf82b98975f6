"""Error analysis as plain functions of arrays: what the summary metrics of :mod:`partial_csl.metrics` hide.

A 76 % accuracy beside a 37 % macro accuracy says that some classes are rarely found, not which classes they are
mistaken for, how sure the model was, or which images fail. These functions give the confusion matrix and the
per-class precision/recall/F1 of every attribute, precision-recall curves, calibration (reliability bins and the
expected calibration error) and the most confident mistakes. Targets use {1, 0, -1 unknown}; scores are
probabilities; unknown entries take part in nothing.
"""

from __future__ import annotations

import numpy as np

from .thresholds import UNKNOWN, class_threshold_vector, ranked_cuts, top_label


def confusion_matrix(targets: np.ndarray, scores: np.ndarray, group: slice) -> np.ndarray:
    """(K, K) counts of one attribute: row = true class, column = predicted (most probable) class, known rows only."""
    block_t, block_s = np.asarray(targets)[:, group], np.asarray(scores)[:, group]
    known = (block_t == 1).any(axis=1)
    size = block_t.shape[1]
    flat = block_t[known].argmax(axis=1) * size + block_s[known].argmax(axis=1)
    return np.bincount(flat, minlength=size * size).reshape(size, size)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def prf_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 (0 where undefined) and support (tp + fn) of each class."""
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": precision, "recall": recall, "f1": _ratio(2 * precision * recall, precision + recall),
            "support": np.asarray(tp + fn, dtype=np.int64)}


def confusion_prf(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision/recall/F1/support of an attribute's confusion matrix."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion)
    return prf_from_counts(tp, confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp)


def label_prf(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision/recall/F1/support of multi-label predictions (score >= the class's threshold)."""
    targets, pred = np.asarray(targets), np.asarray(scores) >= np.asarray(thresholds)[None, :]
    pos, neg = targets == 1, targets == 0
    return prf_from_counts((pred & pos).sum(axis=0), (pred & neg).sum(axis=0), (~pred & pos).sum(axis=0))


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every threshold of one class's known entries, from the highest; empty without a
    positive."""
    labels = np.asarray(labels)
    positives = int((labels == 1).sum())
    if positives == 0:
        return np.zeros(0), np.zeros(0)
    _, taken, tp = ranked_cuts(scores, labels == 1)
    return tp / taken, tp / positives


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram data over ``bins`` equal-width confidence bins, and the expected calibration error
    (the count-weighted mean gap |accuracy - confidence| of the bins), in [0, 1]; NaN without data."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    mean_conf = _ratio(np.bincount(index, weights=confidence, minlength=bins), count)
    accuracy = _ratio(np.bincount(index, weights=correct, minlength=bins), count)
    ece = float((count * np.abs(accuracy - mean_conf)).sum() / count.sum()) if count.sum() else float("nan")
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(), "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist(), "ece": ece}


def calibration_inputs(targets: np.ndarray, scores: np.ndarray,
                       groups: dict[str, slice] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(confidence, correct) pairs to calibrate: per attribute, the predicted class's probability and whether it is
    right (known rows); without attributes, every known (probability, label) entry ('labels')."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    if not groups:
        known = targets != UNKNOWN
        return {"labels": (scores[known], targets[known] == 1)}
    out = {}
    for name, group in groups.items():
        confidence, correct, known = top_label(targets, scores, group)
        out[name] = (confidence[known], correct[known])
    return out


def calibration(targets: np.ndarray, scores: np.ndarray, groups: dict[str, slice] | None, bins: int = 10) -> dict:
    """Reliability data and ECE per attribute (or for all labels), and overall (every pair pooled)."""
    parts = calibration_inputs(targets, scores, groups)
    pooled = (np.concatenate([c for c, _ in parts.values()]), np.concatenate([k for _, k in parts.values()]))
    return {"overall": reliability(*pooled, bins=bins),
            "per_attribute": {name: reliability(c, k, bins=bins) for name, (c, k) in parts.items()}}


def confident_mistakes(targets: np.ndarray, scores: np.ndarray, group: slice, limit: int = 8) -> list[dict]:
    """The ``limit`` known rows of one attribute answered wrongly with the highest confidence (most confident first):
    row index, true and predicted class (index within the attribute), confidence."""
    confidence, correct, known = top_label(targets, scores, group)
    rows = np.flatnonzero(known & ~correct)
    rows = rows[np.argsort(-confidence[rows], kind="stable")][:limit]
    block_t, block_s = np.asarray(targets)[:, group], np.asarray(scores)[:, group]
    return [{"row": int(r), "truth": int(block_t[r].argmax()), "prediction": int(block_s[r].argmax()),
             "confidence": float(confidence[r])} for r in rows]


def confident_label_mistakes(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray,
                             limit: int = 8) -> list[dict]:
    """Multi-label data: the ``limit`` wrong known (image, class) decisions furthest from their threshold (false
    positives with high scores, false negatives with low ones): row, class, label, score."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    thresholds = np.asarray(thresholds)[None, :]
    wrong = ((scores >= thresholds) & (targets == 0)) | ((scores < thresholds) & (targets == 1))
    rows, classes = np.nonzero(wrong)
    margin = np.abs(scores[rows, classes] - thresholds[0, classes])
    order = np.argsort(-margin, kind="stable")[:limit]
    return [{"row": int(rows[i]), "class": int(classes[i]), "label": int(targets[rows[i], classes[i]]),
             "score": float(scores[rows[i], classes[i]])} for i in order]


def error_analysis(targets: np.ndarray, scores: np.ndarray, class_names: list[str],
                   groups: dict[str, slice] | None, thresholds: dict | None = None, default: float = 0.5) -> dict:
    """The report's error analysis (plain types): per attribute its confusion matrix and per-class precision,
    recall, F1 and support; without attributes, per-class values at the (tuned or ``default``) thresholds; and the
    calibration (ECE in percent)."""
    out: dict = {"per_class": {}, "confusion": {}}
    if groups:
        for name, group in groups.items():
            confusion = confusion_matrix(targets, scores, group)
            out["confusion"][name] = confusion.tolist()
            prf = confusion_prf(confusion)
            out["per_class"].update(_per_class(class_names[group], prf))
    else:
        prf = label_prf(targets, scores, class_threshold_vector(thresholds, len(class_names), default))
        out["per_class"] = _per_class(class_names, prf)
    cal = calibration(targets, scores, groups)
    out["calibration"] = cal
    out["ece"] = 100 * cal["overall"]["ece"]
    out["ece_per_attribute"] = {n: 100 * r["ece"] for n, r in cal["per_attribute"].items()}
    return out


def _per_class(names: list[str], prf: dict[str, np.ndarray]) -> dict[str, dict]:
    return {n: {"precision": 100 * float(prf["precision"][i]), "recall": 100 * float(prf["recall"][i]),
                "f1": 100 * float(prf["f1"][i]), "support": int(prf["support"][i])} for i, n in enumerate(names)}
