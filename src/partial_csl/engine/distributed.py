"""Data-parallel training with torchrun: process group, samplers, and reductions across ranks.

``torchrun --nproc_per_node N train.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; :func:`init_distributed` joins the
group (NCCL on GPUs, gloo on CPU). Without those variables everything runs in one process and every helper here is
a no-op. Each process trains on its shard of every global batch, so N processes with ``--batch-size b`` see the
same batches as one process with ``--batch-size N*b`` (see :class:`ShardedShuffleSampler`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; returns this process's place in it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, local_rank)


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per process (cuda:LOCAL_RANK); CPU stays CPU."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.enabled else device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across_ranks(value: float, count: int, info: DistInfo) -> float:
    """Average of per-rank means, weighted by their sample counts."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value * count, float(count)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor[0] / tensor[1])


def sum_across_ranks(values: list[float], info: DistInfo) -> list[float]:
    """Each value summed over the ranks (on every rank)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def merged_across_ranks(mapping: dict, info: DistInfo) -> dict:
    """The union of every rank's ``mapping`` (on every rank)."""
    if not info.enabled:
        return mapping
    parts: list = [None] * info.world_size
    dist.all_gather_object(parts, mapping)
    return {key: value for part in parts for key, value in part.items()}


def gather_rows(rows: np.ndarray, indices: np.ndarray, total: int, info: DistInfo) -> np.ndarray:
    """Reassemble per-rank predictions of ``indices`` into the (total, ...) array on every rank."""
    if not info.enabled:
        return rows
    parts: list = [None] * info.world_size
    dist.all_gather_object(parts, (indices, rows))
    out = np.zeros((total, *rows.shape[1:]), dtype=rows.dtype)
    for idx, part in parts:
        out[idx] = part
    return out


def shard_indices(n: int, info: DistInfo) -> np.ndarray:
    """This rank's share of 0..n-1 for evaluation (strided, nothing dropped, nothing repeated)."""
    return np.arange(info.rank, n, info.world_size)


class ShardedShuffleSampler(Sampler):
    """A seeded permutation of the dataset, truncated to a multiple of ``world_size``, rank r taking perm[r::W].

    Rank r's j-th batch of size b then holds perm[jWb + r + W*t] for t < b, so the union over ranks of batch j is
    exactly perm[jWb:(j+1)Wb], the j-th batch of a single process with batch W*b and the same seed.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size if self.world_size > 1 else self.n

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        usable = math.floor(self.n / self.world_size) * self.world_size
        return iter(perm[:usable][self.rank::self.world_size])
