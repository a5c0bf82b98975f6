"""Class priors from an ignore-mode model's probabilities: the plain mean (CSL), or a label-shift EM that does not
collapse.

The ignore-mode model learns from annotated entries only, so its outputs estimate P(y=1 | x, annotated), calibrated
to each class's annotated positive rate; under class-dependent annotation (FPC) that is not the class frequency, and
``em`` corrects for it (:func:`em_prior_shift`). EM amplifies any miscalibration, and the reference-style prior stage
(its posteriors scored on the very labels it trained on, under the main stage's focusing) sent rare classes to a
prior of about 0. So ``em`` here is cross-fitted and bounded:

* the prior stage hides a seeded share of each class's annotated entries from its training (:func:`holdout_mask`),
  and :func:`recalibrate_to_annotated` is fitted on those entries only: Platt scaling (a scale and a shift of the
  logit), since an over- or under-confident model is wrong by a *scale* that no shift can undo (an under-confident
  model with logits at 1/3 sent a class of prior 0.05 to 0.000003 after the shift alone);
* whatever the model says, the prior of a class lies in [n_pos / N, 1 - n_neg / N] (:func:`prior_bounds`:
  annotated positives are positives, annotated negatives are negatives); where EM ends outside, it is clipped to them
  (the maximum likelihood within the bounds); where EM or the Platt fit does not converge, the mean posterior clipped
  to the bounds (or a shift-only calibration) is used instead, with a warning, and the records say so.

All functions take and return arrays; the engine decides what the holdout is and where the records go.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .prior_calibration import calibration_mask, recalibrate_to_annotated

log = logging.getLogger(__name__)

PRIOR_ESTIMATES = ("mean", "em")
EM_MAX_ITER = 1000
BOUND_TOLERANCE = 1e-9


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


def holdout_mask(targets: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Entries (N, C) to hide from the prior model's training, so that its calibration is fitted on unseen labels.

    For every class, ``share`` of its annotated positives and, separately, of its annotated negatives (rounded, halves
    to even), drawn with ``seed`` (the same mask on every call and every process); unknown entries are never chosen,
    and a label with two or more entries keeps at least one for training (a single one is never held out).
    """
    if not 0 <= share < 1:
        raise ValueError(f"the prior holdout share must be in [0, 1), got {share}")
    targets = np.asarray(targets)
    mask = np.zeros(targets.shape, dtype=bool)
    rng = np.random.default_rng(seed)
    for c in range(targets.shape[1]):
        for label in (1, 0):
            rows = np.flatnonzero(targets[:, c] == label)
            if len(rows) < 2:
                continue
            k = min(round(share * len(rows)), len(rows) - 1)
            mask[rng.permutation(rows)[:k], c] = True
    return mask


def prior_bounds(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) (C,): the prior of class c lies in [n_pos / N, 1 - n_neg / N] over the N training images,
    since its annotated positives are positives and its annotated negatives negatives, whatever the rest are."""
    targets = np.asarray(targets)
    n = max(len(targets), 1)
    return (targets == 1).sum(axis=0) / n, 1 - (targets == 0).sum(axis=0) / n


def em_prior_shift(posteriors: np.ndarray, annotated_rate: np.ndarray, tol: float = 1e-6,
                   max_iter: int = EM_MAX_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Population priors from posteriors calibrated to the annotated base rate (Saerens et al., Neural Comp. 2002).

    The ignore-mode model learns from annotated entries only, so for class c its output estimates
    P(y=1 | x, annotated), calibrated to the annotated positive rate ``a_c``. When annotation is class-dependent
    (FPC keeps as many positives as negatives; OpenImages annotators verify likely classes), ``a_c`` is not the class
    frequency and neither is the mean output. Treating the unannotated population as a *prior shift* of the annotated
    one, EM alternates: adjust every posterior by the ratio of the new to the annotated prior,
    ``p' = (pi/a) p / ((pi/a) p + ((1-pi)/(1-a)) (1-p))``, then set ``pi`` to the mean adjusted posterior.

    Assumption: within a class, which images were annotated does not depend on the image (p(x | y, annotated) =
    p(x | y)). It fails when annotators pick easy or typical images of a class, or when the model is poorly calibrated
    (overconfident posteriors pull the estimate toward ``a``, underconfident ones push it to 0 or 1). Classes with no
    annotated positive (or negative) keep the mean posterior. Returns (priors (C,), iterations (C,)); ``max_iter``
    iterations mean it did not converge.
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


def bounded_em(probs: np.ndarray, targets: np.ndarray, annotated_rate: np.ndarray,
               holdout: np.ndarray | None = None, max_iter: int | None = None) -> tuple[np.ndarray, dict]:
    """The ``em`` estimate: recalibration fitted on the ``holdout`` entries (with a scale where the data show one;
    without a holdout, the shift alone on every annotated entry), EM on every posterior, and the clipped mean
    posterior for classes where EM fails (see the module docstring).

    Returns (priors (C,), details): ``em_iterations``, ``lower_bound``, ``upper_bound``, ``calibration`` (see
    :func:`recalibrate_to_annotated`) and ``estimator`` per class: ``em``; ``em_clipped`` (EM ended outside the
    bounds: the nearest bound, the maximum likelihood within them); ``fallback_unconverged`` (the clipped mean
    replaced EM); ``clipped_mean`` (no annotated positive or negative, so no EM); ``annotated`` (every image
    annotated: the bounds meet).
    ``max_iter`` defaults to :data:`EM_MAX_ITER`; EM that runs all of them counts as not converged.
    """
    max_iter = max_iter or EM_MAX_ITER
    calibrated, calibration = recalibrate_to_annotated(probs, targets, calibration_mask(targets, holdout),
                                                       fit_scale=holdout is not None)
    em, iterations = em_prior_shift(calibrated, annotated_rate, max_iter=max_iter)
    lower, upper = prior_bounds(targets)
    determined = upper - lower < BOUND_TOLERANCE  # every image annotated: the labels give the prior, nothing to fit
    ran = (annotated_rate > 0) & (annotated_rate < 1) & ~determined
    unconverged = ran & (iterations >= max_iter)
    outside = ran & ~unconverged & ((em < lower - BOUND_TOLERANCE) | (em > upper + BOUND_TOLERANCE))
    used = ran & ~unconverged & ~outside
    estimator = np.select([determined, unconverged, outside, used],
                          ["annotated", "fallback_unconverged", "em_clipped", "em"], "clipped_mean")
    clipped_mean = np.clip(np.asarray(probs, dtype=np.float64).mean(axis=0), lower, upper)
    # EM maximises sum_i log(pi p_i / a + (1 - pi) (1 - p_i) / (1 - a)), concave in pi: the bounded maximum is the
    # unbounded one clipped to the bounds
    priors = np.where(used, em, np.where(outside, np.clip(em, lower, upper), clipped_mean))
    return priors, {"em_iterations": iterations, "lower_bound": lower, "upper_bound": upper,
                    "estimator": estimator.tolist(), "calibration": calibration}


def _warn_fallbacks(details: dict, priors: np.ndarray, class_names: list[str] | None) -> None:
    """Name the classes whose EM estimate was clipped to its bounds or replaced by the clipped mean posterior, and
    those whose Platt fit failed (their posteriors were shifted instead)."""
    unfitted = [c for c, how in enumerate(details.get("calibration", [])) if how == "shift_platt_unconverged"]
    if unfitted:
        log.warning("the Platt scaling fit did not converge for %d class(es); their posteriors were recalibrated by a "
                    "shift only: %s", len(unfitted),
                    ", ".join(class_names[c] if class_names else str(c) for c in unfitted))
    reasons = (("fallback_unconverged", f"did not converge in {EM_MAX_ITER} iterations",
                "the mean posterior clipped to [annotated positives / N, 1 - annotated negatives / N]"),
               ("em_clipped", "ended outside [annotated positives / N, 1 - annotated negatives / N]",
                "the nearest bound"))
    for code, why, instead in reasons:
        hit = [c for c, e in enumerate(details["estimator"]) if e == code]
        if hit:
            names = [class_names[c] if class_names else str(c) for c in hit]
            log.warning("EM prior estimate %s for %d class(es); using %s: %s",
                        why, len(hit), instead, ", ".join(f"{n} {priors[c]:.4f} [{details['lower_bound'][c]:.4f}, "
                                                 f"{details['upper_bound'][c]:.4f}]" for n, c in zip(names, hit)))


def priors_from_probabilities(probs: np.ndarray, targets: np.ndarray | torch.Tensor | None,
                              method: str = "mean", groups: list[slice] | None = None,
                              holdout: np.ndarray | None = None,
                              class_names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Class priors from an ignore-mode model's probabilities (N, C) over the training images and their targets.

    ``mean``: the average probability per class (the CSL estimate). ``em``: :func:`bounded_em` from the annotated
    base rates of ``targets`` ({1, 0, -1}), its recalibration fitted on the ``holdout`` entries (N, C; those the model
    did not train on) when given. Returns (priors, details) where details holds ``n_images``, ``mean_posterior``,
    ``annotated_rate``, ``em_iterations``, ``estimator`` and, with ``targets``, the bounds and ``evidence``: classes
    without an annotated positive get :func:`evidence_priors` instead (``groups``: the attribute slices, for classes
    never annotated). ``class_names`` name the classes in the warnings.
    """
    if method not in PRIOR_ESTIMATES:
        raise ValueError(f"unknown prior estimate {method!r}; expected one of {PRIOR_ESTIMATES}")
    if len(probs) == 0:
        raise ValueError("cannot estimate priors from no images")
    mean = probs.mean(axis=0)
    details = {"n_images": len(probs), "mean_posterior": mean, "annotated_rate": np.full(len(mean), np.nan),
               "em_iterations": np.zeros(len(mean), dtype=np.int64), "estimator": ["mean"] * len(mean)}
    if targets is None:
        if method == "em":
            raise ValueError("the em estimate needs the loader's dataset to expose its targets ({1, 0, -1})")
        return mean, details
    targets = np.asarray(targets)
    details["annotated_rate"] = (targets == 1).sum(axis=0) / np.maximum((targets != -1).sum(axis=0), 1)
    priors = mean
    if method == "em":
        priors, found = bounded_em(probs, targets, details["annotated_rate"], holdout)
        details.update(found)
    else:
        details["lower_bound"], details["upper_bound"] = prior_bounds(targets)
    decided, details["evidence"] = evidence_priors(targets, groups)
    details["estimator"] = ["evidence" if not np.isnan(d) else e for d, e in zip(decided, details["estimator"])]
    priors = np.where(np.isnan(decided), priors, decided)
    _warn_fallbacks(details, priors, class_names)
    return priors, details
