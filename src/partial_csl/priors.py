"""Class priors for the selective loss: estimate them with an ignore-mode model, save, load by class name, score.

CSL's temporary model is trained in ``ignore`` mode (unknown labels carry no loss), so its sigmoid outputs estimate
how often each class is present. :func:`priors_from_probabilities` turns its eval-mode probabilities over the training
images (no augmentation; the engine computes them) into one prior per class. (The reference instead kept a running
mean over every training step since the first, near-random one; :class:`RunningPrior` reproduces it for comparisons.)

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
import torch
from scipy.stats import spearmanr

from .safe_io import atomic_write_text

log = logging.getLogger(__name__)

PRIOR_COLUMNS = ("class", "prior")
REFERENCE_PRIOR_COLUMNS = ("Classes", "avg_pred")  # CSL's ComputePrior.save_prior
PRIOR_ESTIMATES = ("mean", "em")


class PriorFileError(ValueError):
    pass


def evidence_priors(targets: np.ndarray, groups: list[slice] | None = None) -> tuple[np.ndarray, list[str]]:
    """Priors (C,) of the classes whose labels leave a model nothing to estimate, NaN for the others, and why.

    A class annotated on some images but never positive gets 0: the data say it is rare, while an ignore-mode model,
    which never saw a positive, outputs whatever its initialisation gives (about 0.5, which the default threshold
    would then act on). A class never annotated at all (its attribute all ``#N/A``) gets 1/K within its attribute of
    K classes, or, without attribute groups, the mean annotated positive rate of the other classes: no evidence, so
    the least committal value.
    """
    targets = np.asarray(targets)
    known, positives = (targets != -1).sum(axis=0), (targets == 1).sum(axis=0)
    priors = np.full(targets.shape[1], np.nan)
    evidence = ["model"] * targets.shape[1]
    rates = positives / np.maximum(known, 1)
    for c in range(targets.shape[1]):
        if known[c] == 0:
            group = next((g for g in groups or [] if g.start <= c < g.stop), None)
            if group is not None:
                priors[c] = 1.0 / (group.stop - group.start)
            else:
                priors[c] = float(rates[known > 0].mean()) if (known > 0).any() else 0.5
            evidence[c] = "no annotated label"
        elif positives[c] == 0:
            priors[c], evidence[c] = 0.0, "no annotated positive"
    return priors, evidence


def priors_from_probabilities(probs: np.ndarray, targets: np.ndarray | torch.Tensor | None,
                              method: str = "mean", groups: list[slice] | None = None) -> tuple[np.ndarray, dict]:
    """Class priors from an ignore-mode model's probabilities (N, C) over the training images and their targets.

    ``mean``: the average probability per class (the CSL estimate). ``em``: :func:`em_prior_shift` from the annotated
    base rates of ``targets`` ({1, 0, -1}), after :func:`recalibrate_to_annotated`. Returns (priors, details) where
    details holds ``n_images``, ``mean_posterior``, ``annotated_rate``, ``em_iterations`` and, with ``targets``,
    ``evidence``: classes without an annotated positive get :func:`evidence_priors` instead (``groups``: the attribute
    slices, for classes never annotated).
    """
    if method not in PRIOR_ESTIMATES:
        raise ValueError(f"unknown prior estimate {method!r}; expected one of {PRIOR_ESTIMATES}")
    if len(probs) == 0:
        raise ValueError("cannot estimate priors from no images")
    mean = probs.mean(axis=0)
    if targets is None:
        if method == "em":
            raise ValueError("the em estimate needs the loader's dataset to expose its targets ({1, 0, -1})")
        annotated_rate = np.full(len(mean), np.nan)
    else:
        targets = np.asarray(targets)
        annotated_rate = (targets == 1).sum(axis=0) / np.maximum((targets != -1).sum(axis=0), 1)
    if method == "em":
        priors, iterations = em_prior_shift(recalibrate_to_annotated(probs, targets), annotated_rate)
    else:
        priors, iterations = mean, np.zeros(len(mean), dtype=np.int64)
    details = {"n_images": len(probs), "mean_posterior": mean, "annotated_rate": annotated_rate,
               "em_iterations": iterations}
    if targets is not None:
        decided, details["evidence"] = evidence_priors(targets, groups)
        priors = np.where(np.isnan(decided), priors, decided)
    return priors, details


def em_prior_shift(posteriors: np.ndarray, annotated_rate: np.ndarray, tol: float = 1e-6,
                   max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Population priors from posteriors calibrated to the annotated base rate (Saerens et al., Neural Comp. 2002).

    The ignore-mode model learns from annotated entries only, so for class c its output estimates
    P(y=1 | x, annotated), calibrated to the annotated positive rate ``a_c``. When annotation is class-dependent
    (FPC keeps as many positives as negatives; OpenImages annotators verify likely classes), ``a_c`` is not the class
    frequency and neither is the mean output. Treating the unannotated population as a *prior shift* of the annotated
    one, EM alternates: adjust every posterior by the ratio of the new to the annotated prior,
    ``p' = (pi/a) p / ((pi/a) p + ((1-pi)/(1-a)) (1-p))``, then set ``pi`` to the mean adjusted posterior.

    Assumption: within a class, which images were annotated does not depend on the image (p(x | y, annotated) =
    p(x | y)). It fails when annotators pick easy or typical images of a class, or when the model is poorly calibrated
    (overfitted posteriors near 0/1 pull the estimate toward ``a``). Classes with no annotated positive (or negative)
    keep the mean posterior. Returns (priors (C,), iterations (C,)).
    """
    p = np.clip(np.asarray(posteriors, dtype=np.float64), 0.0, 1.0)
    a = np.asarray(annotated_rate, dtype=np.float64)
    priors = p.mean(axis=0)
    iterations = np.zeros(p.shape[1], dtype=np.int64)
    for c in np.flatnonzero((a > 0) & (a < 1)):
        pi, n_iter = a[c], 0
        while n_iter < max_iter:
            n_iter += 1
            up, down = pi / a[c] * p[:, c], (1 - pi) / (1 - a[c]) * (1 - p[:, c])
            new = float(np.mean(np.divide(up, up + down, out=np.zeros_like(up), where=(up + down) > 0)))
            converged = abs(new - pi) < tol
            pi = new
            if converged or pi in (0.0, 1.0):
                break
        priors[c], iterations[c] = pi, n_iter
    return priors, iterations


def recalibrate_to_annotated(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Shift each class's posteriors so that their mean over the annotated images equals the annotated rate.

    EM assumes posteriors calibrated to the annotated base rate; a model that is not (too few epochs, focusing,
    augmentation) would otherwise send EM far from the truth even when there is no shift at all. A prior change is a
    constant shift of the logit, so each class gets the shift b (found by bisection) that makes
    mean(sigmoid(logit(p) + b)) over its annotated images equal to its annotated rate. Classes without annotated
    positives or negatives are left as they are.
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(probs) - np.log1p(-probs)
    targets = np.asarray(targets)
    out = probs.copy()
    for c in range(probs.shape[1]):
        known = targets[:, c] != -1
        a = float((targets[known, c] == 1).mean()) if known.any() else 0.0
        if not 0 < a < 1:
            continue
        low, high = -30.0, 30.0
        for _ in range(60):
            shift = (low + high) / 2
            if np.mean(1 / (1 + np.exp(-(logits[known, c] + shift)))) > a:
                high = shift
            else:
                low = shift
        out[:, c] = 1 / (1 + np.exp(-(logits[:, c] + (low + high) / 2)))
    return out


class RunningPrior:
    """The reference's estimate: running mean of training-step sigmoid outputs since the first step."""

    def __init__(self, num_classes: int):
        self.sum = torch.zeros(num_classes, dtype=torch.float64)
        self.count = 0

    def update(self, logits: torch.Tensor) -> None:
        self.sum += torch.sigmoid(logits.detach().float()).sum(dim=0).double().cpu()
        self.count += logits.shape[0]

    def value(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("RunningPrior has seen no outputs")
        return (self.sum / self.count).numpy()


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
    rho = float(spearmanr(estimate, true_frequency).statistic) if len(estimate) > 1 else float("nan")
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
