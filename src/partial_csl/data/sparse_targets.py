"""Partial multi-label targets stored as their verified entries only, densified a row (or a batch) at a time.

A dense (N, C) target array is N x C whatever the labels: Open Images' 9 M images x 9,600 classes are 690 GB as
int64, though only ~60 M entries are verified. :class:`SparseTargets` keeps those entries in a CSR matrix of int8
*codes* (2 a positive, 1 a verified negative; an absent entry is unknown), so its memory grows with the number of
labels, and gives back exactly the dense {-1, 0, 1} values where a consumer needs them: one row for a dataset item,
the per-class counts for priors and samplers, or the whole array when it fits (:meth:`SparseTargets.to_dense`
refuses, naming the memory, when it does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import sparse

POSITIVE_CODE, NEGATIVE_CODE = 2, 1
#: The most memory a dense (N, C) int64 target array may take before :meth:`SparseTargets.to_dense` refuses.
DENSE_TARGET_LIMIT_BYTES = 8 * 2**30


class TargetsTooLargeError(ValueError):
    """Dense targets were asked for that would not fit; a ValueError so that every script reports it in one line."""


class SparseTargets:
    """(N, C) targets in {-1 unknown, 0, 1} from CSR ``codes`` (2 positive, 1 verified negative, absent unknown)."""

    def __init__(self, codes: sparse.csr_matrix):
        self.codes = sparse.csr_matrix(codes, dtype=np.int8)
        self.codes.sum_duplicates()

    @classmethod
    def from_dense(cls, targets: np.ndarray) -> SparseTargets:
        targets = np.asarray(targets)
        return cls(sparse.csr_matrix((targets + 1).astype(np.int8)))  # -1 unknown -> 0, not stored

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    def __len__(self) -> int:
        return self.codes.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        """Row ``index`` as a dense float32 tensor (what a dataset item carries), from the CSR arrays directly
        (scipy's row indexing costs ten times more)."""
        index = range(len(self))[index]  # a negative index counts from the end; out of range: IndexError
        start, end = self.codes.indptr[index], self.codes.indptr[index + 1]
        row = np.full(self.shape[1], -1.0, dtype=np.float32)
        row[self.codes.indices[start:end]] = self.codes.data[start:end] - 1
        return torch.from_numpy(row)

    def rows(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``index`` as a dense float32 (len(index), C) array in {-1, 0, 1}."""
        return self.codes[np.asarray(index, dtype=np.int64)].toarray().astype(np.float32) - 1

    def subset(self, index: Sequence[int] | np.ndarray) -> SparseTargets:
        return SparseTargets(self.codes[np.asarray(index, dtype=np.int64)])

    def positive_counts(self) -> np.ndarray:
        """(C,) verified positives per class."""
        return np.bincount(self.codes.indices[self.codes.data == POSITIVE_CODE], minlength=self.shape[1])

    def known_counts(self) -> np.ndarray:
        """(C,) verified entries (positive or negative) per class."""
        return np.bincount(self.codes.indices, minlength=self.shape[1])

    def row_max(self, per_class: np.ndarray, positives_only: bool = True, empty: float = 1.0) -> np.ndarray:
        """(N,) per image, the largest ``per_class`` value over its positives (or all its verified classes);
        ``empty`` for an image without one."""
        keep = self.codes.data == POSITIVE_CODE if positives_only else np.ones(self.codes.nnz, dtype=bool)
        values = np.where(keep, per_class[self.codes.indices], -np.inf)
        out = np.full(len(self), -np.inf)
        counts = np.diff(self.codes.indptr)
        nonempty = counts > 0
        if nonempty.any():
            out[nonempty] = np.maximum.reduceat(values, self.codes.indptr[:-1][nonempty])
        return np.where(np.isfinite(out), out, empty)

    def nbytes(self) -> int:
        return self.codes.data.nbytes + self.codes.indices.nbytes + self.codes.indptr.nbytes

    def to_dense(self) -> np.ndarray:
        """The dense (N, C) int64 targets; TargetsTooLargeError naming what they need when above the limit."""
        rows, cols = self.shape
        need = rows * cols * np.dtype(np.int64).itemsize
        if need > DENSE_TARGET_LIMIT_BYTES:
            raise TargetsTooLargeError(
                f"dense targets of {rows:,} images x {cols:,} classes need {need / 2**30:,.1f} GiB as int64 (limit "
                f"{DENSE_TARGET_LIMIT_BYTES / 2**30:.0f} GiB); train on a subset of the images or classes "
                "(--classes), or with a consumer that reads the sparse labels")
        return self.codes.toarray().astype(np.int64) - 1
