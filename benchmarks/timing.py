"""Shared timing helper of the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


@torch.inference_mode()
def images_per_second(fn: Callable, batch: torch.Tensor, steps: int = 5, warmup: int = 2) -> float:
    """Throughput of ``fn(batch)`` after ``warmup`` calls (CPU timing; synchronises CUDA if used)."""
    for _ in range(warmup):
        fn(batch)
    if batch.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn(batch)
    if batch.is_cuda:
        torch.cuda.synchronize()
    return steps * len(batch) / (time.perf_counter() - start)
