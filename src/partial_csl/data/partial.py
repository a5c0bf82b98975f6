"""Partial-label simulators of the CSL benchmarks, seeded (the reference set no seed, so nothing reproduced).

* FPC (fixed per class), ``param = N``: for every class keep N random positives and N random negatives (all of them
  when fewer exist); every other entry becomes unknown (-1). The number of annotated positives then no longer
  reflects how frequent a class is.
* RPS (random per sample), ``param = p``: every entry independently becomes unknown with probability p.

Apply them to the training split only; validation keeps the full labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SIMULATIONS = ("fpc", "rps")


def simulate_partial(targets: np.ndarray, mode: str, param: float, seed: int) -> np.ndarray:
    """Return a copy of the full 0/1 ``targets`` (N, C) with entries hidden as -1."""
    targets = np.asarray(targets, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if mode == "fpc":
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
    if mode == "rps":
        if not 0.0 <= param <= 1.0:
            raise ValueError(f"RPS needs a probability in [0, 1], got {param}")
        out = targets.copy()
        out[rng.random(targets.shape) < param] = -1.0
        return out
    raise ValueError(f"unknown partial-label simulation {mode!r}; expected one of {SIMULATIONS}")


def simulation_summary(full: np.ndarray, partial: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per class: annotated positives and negatives after the simulation, and the true frequency."""
    return pd.DataFrame({
        "class": class_names,
        "annotated_positives": (partial == 1).sum(axis=0),
        "annotated_negatives": (partial == 0).sum(axis=0),
        "unknown": (partial == -1).sum(axis=0),
        "true_positives": (full == 1).sum(axis=0),
        "true_frequency": (full == 1).mean(axis=0),
    })
