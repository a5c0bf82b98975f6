"""Seeded, stratified train/valid/test split of a partially labelled attribute table.

The split is *iterative stratification* (Sechidis, Tsoumakas & Vlahavas, ECML 2011) over the known positive classes,
with one change: a class with at least as many known examples as there are splits asks every split for at least one
example (its desired count per split is ``max(1, ratio * n)``), so rare classes reach valid and test too. Labels are
processed rarest first; each example of the current class goes to the split that still wants that class most (ties:
the split that wants most examples overall, then the seeded random generator). Rows whose attributes are all
``#N/A`` carry no class and go to the split that wants most examples. No row is ever dropped.

An example is placed while its *rarest* class is processed, so a class whose examples all carry rarer classes can
still miss a split. A repair pass then moves, for each such (split, class), one example of the class from the split
holding most of it, choosing an example whose other classes all stay present in that split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import LabelTable
from .schema import UNKNOWN


def known_positive_matrix(table: LabelTable) -> np.ndarray:
    """(N, C) boolean: class c is a known positive of row i."""
    return table.targets == 1


def iterative_stratification(labels: np.ndarray, ratios: list[float], seed: int) -> np.ndarray:
    """Assign each row of the boolean label matrix (N, C) to a split; returns (N,) split indices."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if np.any(ratios < 0) or not np.isclose(ratios.sum(), 1.0):
        raise ValueError(f"ratios must be non-negative and sum to 1, got {ratios.tolist()}")
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    n_splits = len(ratios)
    per_class = labels.sum(axis=0).astype(np.float64)
    want_rows = ratios * n
    want_class = np.outer(ratios, per_class)
    enough = per_class >= n_splits
    want_class[:, enough] = np.maximum(want_class[:, enough], (ratios[:, None] > 0).astype(float))
    assignment = np.full(n, -1, dtype=np.int64)
    remaining = labels.copy()

    def pick(candidates: np.ndarray) -> int:
        best = candidates[want_rows[candidates] == want_rows[candidates].max()]
        return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])

    while remaining.any():
        counts = remaining.sum(axis=0)
        counts[counts == 0] = n + 1
        c = int(np.argmin(counts))
        rows = np.flatnonzero(remaining[:, c])
        rng.shuffle(rows)
        for i in rows:
            wants = want_class[:, c]
            split = pick(np.flatnonzero(wants == wants.max()))
            assignment[i] = split
            want_class[split] -= labels[i]
            want_rows[split] -= 1
            remaining[i] = False
    for i in rng.permutation(np.flatnonzero(assignment < 0)):
        split = pick(np.arange(n_splits))
        assignment[i] = split
        want_rows[split] -= 1
    _ensure_every_split_has_each_class(labels, assignment, ratios, enough)
    return assignment


def _ensure_every_split_has_each_class(labels: np.ndarray, assignment: np.ndarray, ratios: np.ndarray,
                                      eligible: np.ndarray) -> None:
    """Move single examples so that every eligible class appears in every split with a non-zero ratio."""
    splits = np.flatnonzero(ratios > 0)
    counts = np.stack([labels[assignment == s].sum(axis=0) for s in range(len(ratios))])
    for _ in range(labels.shape[1] * len(ratios)):
        missing = [(s, c) for c in np.flatnonzero(eligible) for s in splits if counts[s, c] == 0]
        moved = False
        for s, c in missing:
            if counts[s, c] > 0:
                continue
            for donor in np.argsort(-counts[:, c], kind="stable"):
                if counts[donor, c] < 2:
                    break
                rows = np.flatnonzero((assignment == donor) & labels[:, c])
                safe = [i for i in rows if np.all((counts[donor] >= 2) | ~labels[i] | ~eligible)]
                if safe:
                    i = min(safe, key=lambda r: (labels[r].sum(), r))
                    assignment[i] = s
                    counts[donor] -= labels[i]
                    counts[s] += labels[i]
                    moved = True
                    break
        if not moved:
            return


def class_distribution(tables: dict[str, LabelTable]) -> pd.DataFrame:
    """Long table: split, attribute, class, count and share among known, plus a ``#N/A`` row per attribute."""
    records = []
    for split_name, table in tables.items():
        for j, group in enumerate(table.schema.groups):
            col = table.values[:, j]
            n_known = int((col != UNKNOWN).sum())
            for k, class_name in enumerate(group.class_names):
                count = int((col == k).sum())
                records.append({"split": split_name, "attribute": group.name, "class": class_name, "count": count,
                                "share": count / n_known if n_known else 0.0})
            n_missing = len(col) - n_known
            records.append({"split": split_name, "attribute": group.name, "class": "#N/A", "count": n_missing,
                            "share": n_missing / len(col) if len(col) else 0.0})
    return pd.DataFrame.from_records(records)
