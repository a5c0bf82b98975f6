"""Class priors for the selective loss: estimate them with an ignore-mode model, save, load by class name, score.

CSL's temporary model is trained in ``ignore`` mode (unknown labels carry no loss), so its sigmoid outputs estimate
how often each class is present. :func:`priors_from_probabilities` turns its eval-mode probabilities over the training
images (no augmentation; the engine computes them) into one prior per class (the estimators live in
:mod:`.prior_estimates`). (The reference instead kept a running mean over every training step since the first,
near-random one.)

The prior CSV has one row per class, ``class,prior``, with the class *names* in model order; the number of images
and the method go to a JSON sidecar (``<file>.json``). Loading also reads the reference's files (``Classes,avg_pred``:
``train_avg_preds.csv``, the shipped ``outputs/priors/prior_fpc_1000.csv``). Either way rows are matched to the
model's classes by name, and a missing, unknown or duplicated class, a NaN and a value outside [0, 1] are refused:
the reference matched by row order through a name-keyed dict, and a fork whose first seven rows were all named
``Neck 0`` ignored the wrong classes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .safe_io import atomic_write_text

log = logging.getLogger(__name__)

PRIOR_COLUMNS = ("class", "prior")
REFERENCE_PRIOR_COLUMNS = ("Classes", "avg_pred")  # CSL's ComputePrior.save_prior


class PriorFileError(ValueError):
    pass


def save_priors(path: str | Path, class_names: list[str], priors: np.ndarray, n_images: int,
                method: str = "mean", details: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``class,prior`` rows in model order (plus the method and any ``details`` columns, e.g. the annotated
    base rates and EM iterations) and a JSON sidecar with the count and method."""
    priors = np.asarray(priors, dtype=np.float64)
    if len(class_names) != len(priors):
        raise ValueError(f"{len(class_names)} class names but {len(priors)} priors")
    path = Path(path)
    columns = {"class": class_names, "prior": priors, "method": method, **(details or {})}
    meta = {"n_images": int(n_images), "method": method, "classes": len(class_names)}
    # the sidecar first, the CSV last: a run resumes from the CSV, so it must appear only when complete
    atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2) + "\n")
    atomic_write_text(path, pd.DataFrame(columns).to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    return path


def _prior_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(physical line, fields) of the data rows of a prior CSV in our layout or the reference's.

    The reference's shipped ``prior_fpc_1000.csv`` ends with a stray one-field line (``1542867``) that its loader
    read as an 81st class with a NaN prior; in that layout a last row without a value is skipped, with a warning.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PriorFileError(f"{path}: not a readable CSV ({err})") from err
    if not rows:
        raise PriorFileError(f"{path}: the file is empty")
    (_, header), data = rows[0], rows[1:]
    if tuple(header[:2]) == REFERENCE_PRIOR_COLUMNS:
        if data and len(data[-1][1]) == 1:
            line, stray = data.pop()
            log.warning("%s: line %d (%r) has no prior value and is skipped (the reference's prior files end with "
                        "such a line)", path, line, stray[0])
    elif tuple(header[:2]) != PRIOR_COLUMNS:
        raise PriorFileError(f"{path}: expected the columns {list(PRIOR_COLUMNS)} (or the reference's "
                             f"{list(REFERENCE_PRIOR_COLUMNS)}), found {header}")
    return data


def load_priors(path: str | Path, class_names: list[str]) -> np.ndarray:
    """Priors (C,) in the order of ``class_names``, matched by name, from a ``class,prior`` CSV (ours) or a
    ``Classes,avg_pred`` one (the reference's); every inconsistency is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prior file not found: {path}")
    problems = []
    seen: dict[str, int] = {}
    values: dict[str, float] = {}
    for line, row in _prior_rows(path):
        name, raw = row[0], (row[1] if len(row) > 1 else "")
        if name in seen:
            problems.append(f"line {line}: class {name!r} is duplicated (first on line {seen[name]})")
            continue
        seen[name] = line
        try:
            value = float(raw)
        except (TypeError, ValueError):
            problems.append(f"line {line}: class {name!r} has a non-numeric prior {raw!r}")
            continue
        if math.isnan(value):
            problems.append(f"line {line}: class {name!r} has a NaN prior")
        elif not 0.0 <= value <= 1.0:
            problems.append(f"line {line}: class {name!r} has prior {value} outside [0, 1]")
        values[name] = value
    unknown = [n for n in seen if n not in class_names]
    missing = [n for n in class_names if n not in seen]
    if unknown:
        problems.append(f"unknown class(es) not in the model: {unknown}")
    if missing:
        problems.append(f"missing class(es) of the model: {missing}")
    if problems:
        raise PriorFileError(f"{path}: " + "; ".join(problems))
    return np.array([values[n] for n in class_names], dtype=np.float32)


def prior_quality(estimate: np.ndarray, true_frequency: np.ndarray, class_names: list[str],
                  top: int = 10) -> dict:
    """Spearman correlation with the true class frequencies and the top classes of each, side by side."""
    estimate, true_frequency = np.asarray(estimate, float), np.asarray(true_frequency, float)
    varies = len(estimate) > 1 and np.ptp(estimate) > 0 and np.ptp(true_frequency) > 0
    rho = float(spearmanr(estimate, true_frequency).statistic) if varies else float("nan")  # undefined if constant
    order_est, order_true = np.argsort(-estimate, kind="stable")[:top], np.argsort(-true_frequency, kind="stable")[:top]
    rows = [{"rank": r + 1, "estimated_class": class_names[e], "estimated_prior": float(estimate[e]),
             "true_class": class_names[t], "true_frequency": float(true_frequency[t])}
            for r, (e, t) in enumerate(zip(order_est, order_true))]
    return {"spearman": rho, "top": rows}


def prior_quality_report(priors: np.ndarray, targets: np.ndarray, class_names: list[str],
                         true_frequency: np.ndarray | None = None, mean_posterior: np.ndarray | None = None) -> dict:
    """The prior estimate, the plain mean posterior and the naive count of annotated positives, each against the
    best reference available: the true class frequency for simulations, else the annotated positive rate."""
    targets = np.asarray(targets)
    known = targets != -1
    annotated_rate = (targets == 1).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    if true_frequency is not None:
        reference, name = true_frequency, "true class frequency (full labels)"
    else:
        reference, name = annotated_rate, "positive rate among the annotated training labels"
    naive = (targets == 1).sum(axis=0).astype(float)
    report = {"reference": name, "estimate": prior_quality(priors, reference, class_names),
              "naive_annotation_count": prior_quality(naive, reference, class_names)}
    if mean_posterior is not None:
        report["mean_posterior"] = prior_quality(mean_posterior, reference, class_names)
    return report
