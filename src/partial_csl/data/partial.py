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


# the --simulate_partial_type registry: name -> simulator(full targets (N, C), param, rng) -> partial targets
SIMULATORS = {"fpc": simulate_fpc, "rps": simulate_rps}
SIMULATIONS = tuple(SIMULATORS)


def simulate_partial(targets: np.ndarray, mode: str, param: float, seed: int) -> np.ndarray:
    """Return a copy of the full 0/1 ``targets`` (N, C) with entries hidden as -1, by the simulator ``mode``."""
    if mode not in SIMULATORS:
        raise ValueError(f"unknown partial-label simulation {mode!r}; expected one of {SIMULATIONS}")
    return SIMULATORS[mode](np.asarray(targets, dtype=np.float32), param, np.random.default_rng(seed))


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
