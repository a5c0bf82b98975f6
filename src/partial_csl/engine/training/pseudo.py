"""``--pseudo-labels`` in a run: the EMA model teaches the unknown labels (the rule: :mod:`partial_csl.pseudo_labels`).

After each epoch the teacher's validation scores (computed anyway to pick the best weights) calibrate the per-class
thresholds; from epoch ``--pseudo-warmup`` + 1 on, every training batch's unknown entries that the teacher, shown
the un-augmented view of the batch, is sure of become targets of the augmented view the student trains on. Only the
main stage uses it (the prior stage's model must not see its own guesses). On ``--resume`` the thresholds are
calibrated again from the restored EMA weights, so the resumed epochs are those of an uninterrupted run. Each epoch's
row of ``metrics.csv`` says how many unknowns were labelled and, where the simulation knows the truth, how many
rightly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...models import logits_to_probabilities
from ...pseudo_labels import Thresholds, calibrate_thresholds, positive_caps, pseudo_targets
from ..distributed import DistInfo, sum_across_ranks
from ..inference.probabilities import predict_dataset
from ..setup.build import TrainingParts
from .embeddings import StageInputs
from .run import Run

log = logging.getLogger(__name__)


@dataclass
class PseudoLabeller:
    """The teacher, its thresholds and this epoch's counts; call it on a batch (see :meth:`relabel`)."""

    teacher: nn.Module
    frequencies: torch.Tensor  # (C,) annotated positive share of each class: the per-image caps
    groups: list[list[int]] | None
    warmup: int  # epochs before the first pseudo-label
    precision: float
    negative_precision: float
    truth: np.ndarray | None = None  # (N, C) the full training labels, known only for simulated data
    thresholds: Thresholds | None = None
    counts: dict = field(default_factory=dict)

    def calibrate(self, scores: np.ndarray, targets: np.ndarray, epoch: int) -> None:
        """Thresholds from the teacher's validation ``scores`` (NaN rows: unreadable images, left out)."""
        readable = ~np.isnan(scores).any(axis=1)
        self.thresholds = calibrate_thresholds(scores[readable], targets[readable], self.precision,
                                               self.negative_precision)
        if epoch + 1 >= self.warmup:
            log.info("pseudo-label thresholds after epoch %d: %s", epoch + 1, self.thresholds.summary())

    def active(self, epoch: int) -> bool:
        return epoch >= self.warmup and self.thresholds is not None

    @torch.no_grad()
    def relabel(self, teacher_inputs: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """``targets`` with the teacher's pseudo-labels on the unknown entries it is sure of."""
        device, was_training = targets.device, self.teacher.training
        self.teacher.eval()  # the EMA model already is; the model itself (no EMA) must not update its BN statistics
        probs = logits_to_probabilities(self.teacher, self.teacher(teacher_inputs.to(device)).float())
        self.teacher.train(was_training)
        positive = torch.as_tensor(self.thresholds.positive, dtype=probs.dtype, device=device)
        negative = torch.as_tensor(self.thresholds.negative, dtype=probs.dtype, device=device)
        caps = positive_caps(targets, self.frequencies.to(device))
        new = pseudo_targets(probs, targets, positive, negative, caps, self.groups)
        self._count(targets, new, rows)
        return new

    def _count(self, before: torch.Tensor, after: torch.Tensor, rows: torch.Tensor | None) -> None:
        labelled = (before == -1) & (after != -1)
        positives = labelled & (after == 1)
        self.counts["pseudo_positives"] = self.counts.get("pseudo_positives", 0) + int(positives.sum())
        self.counts["pseudo_negatives"] = self.counts.get("pseudo_negatives", 0) + int((labelled & ~positives).sum())
        if self.truth is not None and rows is not None:
            truth = torch.as_tensor(self.truth[rows.cpu().numpy()], device=after.device)
            right = labelled & (after == truth)
            self.counts["right_positives"] = self.counts.get("right_positives", 0) + int((right & positives).sum())
            self.counts["right_negatives"] = self.counts.get("right_negatives", 0) + int((right & ~positives).sum())

    def epoch_row(self, info: DistInfo) -> dict:
        """This epoch's counts over every rank, for ``metrics.csv`` (and a fresh count for the next epoch)."""
        names = ["pseudo_positives", "pseudo_negatives", "right_positives", "right_negatives"]
        counts = dict(zip(names, sum_across_ranks([self.counts.get(n, 0) for n in names], info)))
        self.counts = {}
        row = {name: int(counts[name]) for name in names[:2]}
        if self.truth is not None:
            for kind in ("positives", "negatives"):
                made = counts[f"pseudo_{kind}"]
                row[f"pseudo_{kind}_precision"] = round(counts[f"right_{kind}"] / made, 4) if made else ""
        return row


def pseudo_labeller(run: Run, inputs: StageInputs, parts: TrainingParts, stage: str,
                    resumed_after: int) -> PseudoLabeller | None:
    """The main stage's labeller under ``--pseudo-labels`` (the teacher: the EMA model, else the model itself); a
    stage resumed after epoch ``resumed_after`` (-1: a new stage) calibrates it again from the restored teacher."""
    cfg = run.cfg
    if not cfg.pseudo_labels or stage != "main":
        return None
    targets = run.train.targets
    known = np.maximum((targets != -1).sum(axis=0), 1)
    frequencies = torch.as_tensor((targets == 1).sum(axis=0) / known, dtype=torch.float32)
    groups = [list(range(s.start, s.stop)) for s in run.labels.groups.values()] if run.labels.groups else None
    model = parts.ema.module if parts.ema is not None else parts.model
    teacher = inputs.view(model)
    teacher.train(model.training)  # a fresh wrapper (--freeze-backbone) starts in train mode: relabel restores this
    labeller = PseudoLabeller(teacher, frequencies, groups, cfg.pseudo_warmup, cfg.pseudo_precision,
                              cfg.pseudo_negative_precision, truth=run.train.truth)
    if resumed_after >= 0:
        scores = predict_dataset(teacher, inputs.val, cfg.batch_size, cfg.workers, run.device, run.amp_dtype,
                                 info=run.dist, desc="pseudo-label thresholds", skipped={})
        labeller.calibrate(scores, run.val.targets, resumed_after)
    return labeller
