"""Partial-label simulators: the protocols of the partial- and missing-label papers, seeded (the reference set no
seed, so nothing reproduced). Each takes the full 0/1 targets (N, C) and returns targets in {1, 0, -1}.

* ``fpc`` (CSL's fixed per class), ``param = N``: for every class keep N random positives and N random negatives
  (all of them when fewer exist); every other entry becomes unknown (-1). The number of annotated positives then no
  longer reflects how frequent a class is.
* ``rps`` (CSL's random per sample), ``param = p``: every entry independently becomes unknown with probability p.
* ``known`` (the known-label proportion of SST/SARB/DualCoOp), ``param = q``: every entry, positive or negative,
  is kept with probability q (RPS with p = 1 - q, under the name and parameter those papers use).
* ``missing_positives`` (the Hill/SPLC protocol), ``param = share of positives kept``: an image with n positives
  keeps ceil(s n) of them, drawn at random, with one scale s for the whole set chosen so that the share kept is as
  close to ``param`` as it can be; the others become *negatives* (0). Every image that had a positive keeps at least
  one, as in the authors' lists (their COCO "40 % left" file keeps 39.9 % of the positives, at least one on every
  image, ceil(2 n / 9) on 99.98 % of the images); nothing is marked unknown, so a missing label is a false negative
  the loss cannot see; the partial-label modes then coincide with plain BCE, and only losses robust to false
  negatives (Hill, SPLC) can tell. When ``param`` is below the share one positive per image already keeps, that
  share is what the simulation achieves (see :func:`simulation_record`).
* ``single_positive`` (the SPML protocol of Cole et al.), no parameter: one random positive per image is kept and
  every other entry is unknown (no negatives at all); an image without positives keeps nothing.

Apply them to the training split only; validation keeps the full labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_fpc(targets: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    """Fixed per class: keep ``param`` = N random positives and N random negatives of every class."""
    n = int(param)
    if n < 0 or n != param:
        raise ValueError(f"FPC needs a whole, non-negative count per class, got {param}")
    out = np.full_like(targets, -1.0)
    for c in range(targets.shape[1]):
        for value in (1.0, 0.0):
            rows = np.flatnonzero(targets[:, c] == value)
            keep = rng.choice(rows, size=min(n, len(rows)), replace=False)
            out[keep, c] = value
    return out


def simulate_rps(targets: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    """Random per sample: hide every entry independently with probability ``param`` = p."""
    if not 0.0 <= param <= 1.0:
        raise ValueError(f"RPS needs a probability in [0, 1], got {param}")
    out = targets.copy()
    out[rng.random(targets.shape) < param] = -1.0
    return out


def simulate_known(targets: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    """Known-label proportion q: keep every entry independently with probability ``param`` = q."""
    if not 0.0 <= param <= 1.0:
        raise ValueError(f"the known-label proportion needs a probability in [0, 1], got {param}")
    return simulate_rps(targets, 1.0 - param, rng)


def kept_positive_counts(counts: np.ndarray, share: float) -> np.ndarray:
    """Positives each image keeps: clip(ceil(s n), 1, n) for n > 0 (0 for n = 0), with the scale s in [0, 1]
    (bisection) whose total is closest to ``share`` times the positives of the set."""
    counts = np.asarray(counts, dtype=np.int64)
    target = share * counts.sum()

    def kept(scale: float) -> np.ndarray:
        return np.where(counts > 0, np.clip(np.ceil(scale * counts - 1e-9), 1, counts), 0).astype(np.int64)

    low, high = 0.0, 1.0
    for _ in range(60):  # the total is a non-decreasing step function of s
        middle = (low + high) / 2
        low, high = (middle, high) if kept(middle).sum() < target else (low, middle)
    return min((kept(low), kept(high)), key=lambda k: abs(k.sum() - target))


def simulate_missing_positives(targets: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    """Missing positives: each image keeps :func:`kept_positive_counts` of its positives (at least one), drawn
    uniformly; a dropped positive becomes a negative (0)."""
    if not 0.0 <= param <= 1.0:
        raise ValueError(f"missing_positives needs the share of positives kept, in [0, 1], got {param}")
    out = targets.copy()
    keep = kept_positive_counts((targets == 1).sum(axis=1), param)
    for row in np.flatnonzero((targets == 1).sum(axis=1) > keep):
        positives = np.flatnonzero(targets[row] == 1)
        out[row, rng.choice(positives, size=len(positives) - keep[row], replace=False)] = 0.0
    return out


def simulate_single_positive(targets: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    """Single positive: one positive per image, drawn uniformly, is kept; everything else is unknown (``param``
    unused)."""
    out = np.full_like(targets, -1.0)
    for row in range(targets.shape[0]):
        positives = np.flatnonzero(targets[row] == 1)
        if len(positives):
            out[row, rng.choice(positives)] = 1.0
    return out


# the --simulate_partial_type registry: name -> simulator(full targets (N, C), param, rng) -> partial targets
SIMULATORS = {"fpc": simulate_fpc, "rps": simulate_rps, "known": simulate_known,
              "missing_positives": simulate_missing_positives, "single_positive": simulate_single_positive}
SIMULATIONS = tuple(SIMULATORS)


def simulate_partial(targets: np.ndarray, mode: str, param: float, seed: int) -> np.ndarray:
    """Return a copy of the full 0/1 ``targets`` (N, C) with entries hidden as -1, by the simulator ``mode``."""
    if mode not in SIMULATORS:
        raise ValueError(f"unknown partial-label simulation {mode!r}; expected one of {SIMULATIONS}")
    return SIMULATORS[mode](np.asarray(targets, dtype=np.float32), param, np.random.default_rng(seed))


def simulation_record(full: np.ndarray, partial: np.ndarray, mode: str, param: float, seed: int) -> dict:
    """What a simulation asked for and what it achieved, over the whole set: the share of the true positives kept
    as annotated positives (``missing_positives`` asks for ``param`` of it), of the entries annotated, and the images
    that had a positive and kept none."""
    full, partial = np.asarray(full), np.asarray(partial)
    had = (full == 1).any(axis=1)
    return {"protocol": mode, "param": param, "seed": seed, "images": len(full),
            "true_positives": int((full == 1).sum()), "annotated_positives": int((partial == 1).sum()),
            "positives_kept_share": float((partial == 1).sum() / max((full == 1).sum(), 1)),
            "annotated_share": float((partial != -1).mean()) if partial.size else 0.0,
            "true_positives_per_image": float((full == 1).sum(axis=1).mean()) if len(full) else 0.0,
            "images_with_a_positive": int(had.sum()),
            "images_that_lost_every_positive": int((had & ~(partial == 1).any(axis=1)).sum())}


def simulation_summary(full: np.ndarray, partial: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per class, what the simulation kept: annotated positives and negatives (and how many of those negatives are
    hidden positives, as ``missing_positives`` makes them), unknown entries, and the true counts."""
    return pd.DataFrame({
        "class": class_names,
        "annotated_positives": (partial == 1).sum(axis=0),
        "annotated_negatives": (partial == 0).sum(axis=0),
        "false_negatives": ((partial == 0) & (full == 1)).sum(axis=0),
        "unknown": (partial == -1).sum(axis=0),
        "true_positives": (full == 1).sum(axis=0),
        "true_frequency": (full == 1).mean(axis=0),
        "positives_kept_share": (partial == 1).sum(axis=0) / np.maximum((full == 1).sum(axis=0), 1),
    })
