"""Images that could not be read during a run: named in the run folder, left out of what the run computes.

An image passes the start-up checks and may still break later (a file replaced, a disk error). Training replaces it
in its batch (:mod:`..setup.train_loader`); the predictions for validation, the prior estimate and the thresholds
leave its row out. Either way it is named, with the reason, in the run folder's ``skipped_images.csv`` (one row per
place and epoch it failed) and counted in the log: one bad file among millions never stops a run.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from ...safe_io import atomic_open

log = logging.getLogger(__name__)

SKIPPED_IMAGES = "skipped_images.csv"


def record_skipped_images(run_dir: Path, where: str, epoch: int | None, skipped: dict[int, str],
                          filenames: list[str]) -> None:
    """Add the unreadable images (``skipped``: {row of ``filenames``: reason}) met in ``where`` to the run folder's
    skipped_images.csv (rewritten whole, atomically: a kill leaves the old file or the new) and count them in the
    log."""
    if not skipped:
        return
    path = run_dir / SKIPPED_IMAGES
    header = ["where", "epoch", "filename", "reason"]
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))[1:] if path.is_file() else []
    new = [[where, "" if epoch is None else str(epoch + 1), filenames[row], reason]
           for row, reason in sorted(skipped.items())]
    with atomic_open(path, "w", newline="") as f:  # an epoch replayed after a kill is not listed twice
        csv.writer(f).writerows([header, *rows, *(r for r in new if r not in rows)])
    log.warning("%s%s: %d image(s) could not be read and were skipped; they are named in %s", where,
                "" if epoch is None else f" epoch {epoch + 1}", len(skipped), path)


def readable_rows(n: int, skipped: dict[int, str]) -> np.ndarray:
    """The boolean mask of the ``n`` rows without an unreadable image."""
    keep = np.ones(n, dtype=bool)
    keep[list(skipped)] = False
    return keep
