"""Adaptive Feature Aggregation (AFANet, Shen et al. 2020) generalised to N tasks and any input size.

Given one feature map per task branch, x_1..x_N of shape (B, C, H, W), the layer returns N maps of the same shape:

* CAM (channel aggregation): global-average-pool every branch, concatenate (N*C), reduce with an FC to
  d = max(N*C/16, 32) and ReLU; then, for each target task t, an FC to N*C gives per-channel logits over the N source
  tasks, softmaxed across sources: cam_t = sum_j w_tj * x_j (per channel).
* SAM (spatial aggregation): the channel-mean map of every branch, stacked (N maps), goes through a 7x7 convolution
  to N*N maps, softmaxed across sources per pixel: sam_t = sum_j s_tj(h, w) * cam_j. The original used H*W linear
  transforms, which fixed the input size; a convolution works at any size.

AFA = CAM -> ReLU -> SAM -> ReLU, as in the original. The original handled exactly two tasks with one weight pair
applied symmetrically; here every target task has its own weights over all sources.

``grad_balance`` is the original's gradient isolation (its ``_data`` variants): the fusion reads detached features
and the output adds back ``x_t - x_t.detach()``, so task t's loss reaches branch t only through its own identity
path and never another task's branch. Use it when one task's gradients dominate the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelAggregation(nn.Module):
    def __init__(self, num_tasks: int, channels: int):
        super().__init__()
        self.num_tasks, self.channels = num_tasks, channels
        hidden = max(num_tasks * channels // 16, 32)
        self.reduce = nn.Sequential(nn.Linear(num_tasks * channels, hidden), nn.ReLU(inplace=True))
        self.select = nn.ModuleList(nn.Linear(hidden, num_tasks * channels) for _ in range(num_tasks))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(xs, dim=1)  # (B, N, C, H, W)
        pooled = stacked.mean(dim=(3, 4)).flatten(1)  # (B, N*C)
        z = self.reduce(pooled)
        out = []
        for select in self.select:
            weights = select(z).view(-1, self.num_tasks, self.channels).softmax(dim=1)  # over source tasks
            out.append((weights[..., None, None] * stacked).sum(dim=1))
        return out


class SpatialAggregation(nn.Module):
    def __init__(self, num_tasks: int, kernel_size: int = 7):
        super().__init__()
        self.num_tasks = num_tasks
        self.conv = nn.Conv2d(num_tasks, num_tasks * num_tasks, kernel_size, padding=kernel_size // 2)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(xs, dim=1)  # (B, N, C, H, W)
        maps = stacked.mean(dim=2)  # (B, N, H, W)
        b, n, h, w = maps.shape
        weights = self.conv(maps).view(b, n, n, h, w).softmax(dim=2)  # (B, target, source, H, W)
        return [(weights[:, t, :, None] * stacked).sum(dim=1) for t in range(n)]


class AFALayer(nn.Module):
    """N feature maps in, N maps of the same shapes out."""

    def __init__(self, num_tasks: int, channels: int, grad_balance: bool = False):
        super().__init__()
        if num_tasks < 2:
            raise ValueError(f"AFA needs at least 2 tasks, got {num_tasks}")
        self.cam = ChannelAggregation(num_tasks, channels)
        self.sam = SpatialAggregation(num_tasks)
        self.grad_balance = grad_balance

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        inputs = [x.detach() for x in xs] if self.grad_balance else xs
        fused = [F.relu(x) for x in self.cam(inputs)]
        fused = [F.relu(x) for x in self.sam(fused)]
        if self.grad_balance:
            fused = [f + (x - x.detach()) for f, x in zip(fused, xs)]
        return fused
