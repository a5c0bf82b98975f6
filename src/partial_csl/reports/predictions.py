"""``predictions.csv`` of an evaluation: per image, what was true, what was predicted, how sure, and whether right.

It is the table to sort and filter when looking for the images that fail (the HTML report shows the worst of them).
Unknown truths are ``#N/A`` and their ``correct`` cell is empty; an answer withheld by an abstention threshold is
``#N/A`` in the ``answer`` column (present only when the checkpoint has such thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..thresholds import UNKNOWN

MISSING = "#N/A"


def attribute_predictions_table(filenames: Sequence[str], targets: np.ndarray, scores: np.ndarray,
                                group_classes: dict[str, list[str]], groups: dict[str, slice],
                                abstained: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Per attribute: ``<a>_true``, ``<a>_pred``, ``<a>_confidence``, ``<a>_correct`` (1, 0, empty when unknown)
    and, with ``abstained``, ``<a>_answer`` (the prediction, or ``#N/A`` below the threshold)."""
    columns: dict[str, list] = {"filename": list(filenames)}
    for name, group in groups.items():
        classes = group_classes[name]
        block_t, block_s = np.asarray(targets)[:, group], np.asarray(scores)[:, group]
        known = (block_t == 1).any(axis=1)
        truth, pred = block_t.argmax(axis=1), block_s.argmax(axis=1)
        columns[f"{name}_true"] = [classes[t] if k else MISSING for t, k in zip(truth, known)]
        columns[f"{name}_pred"] = [classes[p] for p in pred]
        columns[f"{name}_confidence"] = np.round(block_s.max(axis=1).astype(np.float64), 6).tolist()
        columns[f"{name}_correct"] = [int(t == p) if k else "" for t, p, k in zip(truth, pred, known)]
        if abstained is not None:
            columns[f"{name}_answer"] = [MISSING if a else classes[p] for p, a in zip(pred, abstained[name])]
    return pd.DataFrame(columns)


def label_predictions_table(filenames: Sequence[str], targets: np.ndarray, scores: np.ndarray,
                            class_names: Sequence[str], thresholds: np.ndarray) -> pd.DataFrame:
    """Multi-label data: known true labels, predicted labels (score >= the class's threshold), the wrong ones
    (false positives and negatives among the known entries) and how many labels are unknown."""
    targets, pred = np.asarray(targets), np.asarray(scores) >= np.asarray(thresholds)[None, :]

    def names(mask: np.ndarray) -> list[str]:
        return [";".join(class_names[c] for c in np.flatnonzero(row)) for row in mask]

    return pd.DataFrame({"filename": list(filenames), "true_labels": names(targets == 1),
                         "predicted_labels": names(pred), "false_positives": names(pred & (targets == 0)),
                         "false_negatives": names(~pred & (targets == 1)),
                         "unknown_labels": (targets == UNKNOWN).sum(axis=1).tolist(),
                         "all_known_correct": (~((pred & (targets == 0)) | (~pred & (targets == 1)))).all(
                             axis=1).astype(int).tolist()})
