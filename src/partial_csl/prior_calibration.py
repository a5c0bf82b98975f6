"""Recalibration of an ignore-mode model's posteriors before the EM prior estimate (:mod:`.prior_estimates`).

EM assumes posteriors calibrated to each class's annotated base rate. :func:`recalibrate_to_annotated` makes them so,
fitted on held-out annotated entries (:func:`calibration_mask`): a logit shift, or Platt scaling (a scale and a
shift) where those labels show a scale, fitted by :func:`platt_scaling` (Newton's method with a line search, which
converges from any start; a fit that does not converge is not used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def calibration_mask(targets: np.ndarray, holdout: np.ndarray | None) -> np.ndarray | None:
    """The entries :func:`recalibrate_to_annotated` fits on: the held-out ones, except for a class whose held-out
    entries lack a positive or a negative (too few labels to hold any out), which falls back to all of its own."""
    if holdout is None:
        return None
    targets, fit = np.asarray(targets), np.asarray(holdout, dtype=bool).copy()
    both = ((targets == 1) & fit).any(axis=0) & ((targets == 0) & fit).any(axis=0)
    fit[:, ~both] = True
    return fit


PLATT_RIDGE = 0.1  # pulls the scale to 1 and the shift to 0: finite even on separable entries
PLATT_MIN_EACH = 5  # fewer held-out positives or negatives than this: fit the shift only


@dataclass(frozen=True)
class PlattFit:
    """A Platt scaling fit: sigmoid(scale * logit + shift), the standard error of the scale, and whether the fit
    converged (its gradient vanished within the iteration budget)."""

    scale: float
    shift: float
    scale_error: float
    converged: bool


def _platt_objective(theta: np.ndarray, features: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Ridge-penalised cross-entropy of sigmoid(features @ theta) against ``y``, its gradient and Hessian."""
    z = features @ theta
    p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
    offset = theta - [1.0, 0.0]
    value = float(np.sum(np.logaddexp(0, z) - y * z) + PLATT_RIDGE / 2 * offset @ offset)
    gradient = features.T @ (p - y) + PLATT_RIDGE * offset
    hessian = (features * (p * (1 - p))[:, None]).T @ features + PLATT_RIDGE * np.eye(2)
    return value, gradient, hessian


def platt_scaling(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> PlattFit:
    """The scale a and shift b minimising the cross-entropy of sigmoid(a logit + b) against ``labels`` (0/1), plus
    ``PLATT_RIDGE / 2 ((a - 1)^2 + b^2)``, with the standard error of a from the inverse Hessian at the optimum.

    Newton's method with a backtracking line search: the objective is convex, but on an over-confident model
    (saturated sigmoids, a near-zero Hessian at the start) a full Newton step overshoots by orders of magnitude and
    the undamped iteration ran off to a scale of ten thousand; halving the step until the objective decreases
    (Armijo) converges from any start. ``converged`` is False when the gradient has not vanished.
    """
    x, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    features = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.array([1.0, 0.0])
    value, gradient, hessian = _platt_objective(theta, features, y)
    tolerance = 1e-8 * max(len(x), 1)
    converged = False
    for _ in range(iterations):
        if np.abs(gradient).max() < tolerance:
            converged = True
            break
        step, t = np.linalg.solve(hessian, gradient), 1.0
        while t > 1e-10:
            candidate = _platt_objective(theta - t * step, features, y)
            if candidate[0] <= value - 1e-4 * t * float(gradient @ step):
                break
            t /= 2
        theta = theta - t * step
        value, gradient, hessian = candidate
    converged = converged or np.abs(gradient).max() < tolerance
    error = float(np.sqrt(np.linalg.inv(hessian)[0, 0]))
    return PlattFit(float(theta[0]), float(theta[1]), error, bool(converged))


def recalibrate_to_annotated(probs: np.ndarray, targets: np.ndarray, fit_mask: np.ndarray | None = None,
                             fit_scale: bool = False) -> tuple[np.ndarray, list[str]]:
    """Shift each class's posteriors so that their mean over its annotated fit entries equals their positive rate.

    EM assumes posteriors calibrated to the annotated base rate; a model that is not (too few epochs, focusing,
    augmentation) would otherwise send EM far from the truth even when there is no shift at all. A prior change is a
    constant shift of the logit, so each class gets the shift b (found by bisection) that makes
    mean(sigmoid(logit(p) + b)) over its fit entries equal to their positive rate; the shift then applies to every
    posterior of the class. The fit entries are the annotated ones, within ``fit_mask`` (N, C) when given (entries
    the model did not train on: in-sample posteriors of an overfitted model are too confident). With ``fit_scale``,
    a class with at least ``PLATT_MIN_EACH`` fit positives and negatives gets :func:`platt_scaling` (scale and shift)
    when its scale differs from 1 by more than two standard errors (a Wald test: with a few hundred entries a fitted
    scale is noisy, and EM on a rare class amplifies that noise; a calibrated model keeps the one-parameter shift).
    Classes whose fit entries lack a positive or a negative are left as they are. A Platt fit that does not converge
    is not used: the class gets the shift instead. Returns (posteriors, calibration per class: ``shift``, ``platt``,
    ``shift_platt_unconverged`` or ``none``).
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(probs) - np.log1p(-probs)
    targets = np.asarray(targets)
    out = probs.copy()
    calibration = ["none"] * probs.shape[1]
    for c in range(probs.shape[1]):
        known = targets[:, c] != -1
        if fit_mask is not None:
            known &= np.asarray(fit_mask[:, c], dtype=bool)
        a = float((targets[known, c] == 1).mean()) if known.any() else 0.0
        if not 0 < a < 1:
            continue
        labels = targets[known, c] == 1
        calibration[c] = "shift"
        if fit_scale and min(labels.sum(), (~labels).sum()) >= PLATT_MIN_EACH:
            fit = platt_scaling(logits[known, c], labels)
            if not fit.converged:
                calibration[c] = "shift_platt_unconverged"
            elif abs(fit.scale - 1) > 2 * fit.scale_error:
                out[:, c] = 1 / (1 + np.exp(-np.clip(fit.scale * logits[:, c] + fit.shift, -40, 40)))
                calibration[c] = "platt"
                continue
        low, high = -30.0, 30.0
        for _ in range(60):
            shift = (low + high) / 2
            if np.mean(1 / (1 + np.exp(-(logits[known, c] + shift)))) > a:
                high = shift
            else:
                low = shift
        out[:, c] = 1 / (1 + np.exp(-(logits[:, c] + (low + high) / 2)))
    return out, calibration
