"""Per-attribute softmax cross-entropy with task weighting, for the multi-head variants.

* ``equal``: the sum of the task losses;
* ``dwa``: Dynamic Weight Average (Liu et al., CVPR 2019): w_t = G * softmax_t(r_t / T) with r_t the ratio of task
  t's mean loss over the last two epochs (w = 1 for the first two epochs);
* ``uncertainty``: homoscedastic uncertainty (Kendall et al., CVPR 2018) in the LibMTL form
  sum_t L_t / (2 exp(s_t)) + s_t / 2 with learnable s_t, so every weight 1 / (2 exp(s_t)) stays positive.

Unknown attributes (targets -1 across the group) contribute no loss and no gradient to their head.
"""

from __future__ import annotations

import torch
from torch import nn

from .plain import GroupSoftmaxCrossEntropy

TASK_WEIGHTINGS = ("equal", "dwa", "uncertainty")


def dwa_weights(previous: torch.Tensor, before: torch.Tensor, temperature: float) -> torch.Tensor:
    """G * softmax((L(e-1) / L(e-2)) / T) over the G tasks."""
    ratio = previous / before.clamp_min(1e-12)
    return len(ratio) * torch.softmax(ratio / temperature, dim=0)


class MultiTaskLoss(nn.Module):
    reduction = "mean"

    def __init__(self, group_slices: list[slice], weighting: str = "equal", temperature: float = 2.0,
                 ce: GroupSoftmaxCrossEntropy | None = None):
        super().__init__()
        if weighting not in TASK_WEIGHTINGS:
            raise ValueError(f"unknown task weighting {weighting!r}; expected one of {TASK_WEIGHTINGS}")
        # ``ce``: a per-attribute cross-entropy with class weights or logit offsets (partial_csl.losses.imbalance)
        self.ce = ce if ce is not None else GroupSoftmaxCrossEntropy(group_slices)
        self.weighting, self.temperature = weighting, temperature
        n = len(group_slices)
        self.log_vars = nn.Parameter(torch.zeros(n)) if weighting == "uncertainty" else None
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("epoch_sum", torch.zeros(n))
        self.register_buffer("epoch_steps", torch.zeros(()))
        self.history: list[list[float]] = []

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_task = self.ce.per_group(logits, targets)
        if self.training:
            self.epoch_sum += per_task.detach()
            self.epoch_steps += 1
        if self.log_vars is not None:
            return (per_task / (2 * self.log_vars.exp()) + self.log_vars / 2).sum()
        return (self.weights * per_task).sum()

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the cross-entropy (deferred re-weighting switches its class weights on at an epoch)."""
        if hasattr(self.ce, "set_epoch"):
            self.ce.set_epoch(epoch)

    def end_epoch(self) -> None:
        """Record this epoch's mean task losses; DWA updates its weights from the last two."""
        if self.epoch_steps > 0:
            self.history.append((self.epoch_sum / self.epoch_steps).tolist())
        self.epoch_sum.zero_()
        self.epoch_steps.zero_()
        if self.weighting == "dwa" and len(self.history) >= 2:
            previous, before = (torch.tensor(h) for h in self.history[-2:][::-1])
            self.weights.copy_(dwa_weights(previous, before, self.temperature))

    def task_weights(self) -> list[float]:
        if self.log_vars is not None:
            return (1.0 / (2 * self.log_vars.detach().exp())).tolist()
        return self.weights.tolist()

    def get_extra_state(self) -> dict:
        return {"history": self.history}

    def set_extra_state(self, state: dict) -> None:
        self.history = [list(map(float, h)) for h in state.get("history", [])]
