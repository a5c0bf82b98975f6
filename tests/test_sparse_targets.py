"""SparseTargets: the verified entries only, and exactly the dense targets' answers wherever a consumer reads them
(rows for dataset items, class counts, class frequencies, LVIS repeat factors); the dense array only where it fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partial_csl.data import sparse_targets
from partial_csl.data.dataset import MultiLabelImageDataset
from partial_csl.data.sampling import class_frequencies, repeat_factors
from partial_csl.data.sparse_targets import SparseTargets


@pytest.fixture
def dense():
    rng = np.random.default_rng(0)
    targets = rng.choice([-1, 0, 1], size=(50, 7), p=[0.7, 0.2, 0.1])
    targets[3] = -1  # an image without a verified label
    targets[4] = np.where(targets[4] == 1, 0, targets[4])  # one without a positive
    return targets


def test_the_sparse_store_gives_back_the_dense_targets(dense):
    store = SparseTargets.from_dense(dense)
    assert store.shape == dense.shape and len(store) == 50 and store.codes.nnz == (dense != -1).sum()
    assert store.to_dense().tolist() == dense.tolist()
    assert store.rows([5, 0, 5]).tolist() == dense[[5, 0, 5]].astype(np.float32).tolist()
    assert torch.equal(store[7], torch.as_tensor(dense[7], dtype=torch.float32))
    assert store.subset([9, 2]).to_dense().tolist() == dense[[9, 2]].tolist()
    assert store.positive_counts().tolist() == (dense == 1).sum(axis=0).tolist()
    assert store.known_counts().tolist() == (dense != -1).sum(axis=0).tolist()


def test_class_frequencies_and_repeat_factors_are_the_dense_ones(dense):
    store = SparseTargets.from_dense(dense)
    np.testing.assert_array_equal(class_frequencies(store), class_frequencies(dense))
    for threshold, power in ((0.3, 0.5), (0.9, 1.0), (0.01, 0.5)):
        np.testing.assert_allclose(repeat_factors(store, threshold, power), repeat_factors(dense, threshold, power))
    per_class = np.arange(1.0, 8.0)
    by_hand = [max([per_class[c] for c in np.flatnonzero(row == 1)], default=1.0) for row in dense]
    np.testing.assert_array_equal(store.row_max(per_class), by_hand)


def test_a_dataset_item_carries_the_same_target_from_either_store(dense, tmp_path):
    names = [f"{i}.png" for i in range(len(dense))]
    plain, lean = (MultiLabelImageDataset(tmp_path, names, t) for t in (dense, SparseTargets.from_dense(dense)))
    for i in (0, 3, 4, 49):
        assert torch.equal(plain.targets[i], lean.targets[i])


def test_dense_targets_are_refused_with_the_memory_they_need(monkeypatch):
    store = SparseTargets.from_dense(np.full((1000, 300), -1))
    monkeypatch.setattr(sparse_targets, "DENSE_TARGET_LIMIT_BYTES", 1000 * 300 * 8 - 1)
    too_large = r"dense targets of 1,000 images x 300 classes need 0.0 GiB as int64 \(limit 0 GiB\)"
    with pytest.raises(sparse_targets.TargetsTooLargeError, match=too_large):
        store.to_dense()
    assert store.nbytes() == 1001 * store.codes.indptr.itemsize  # nothing stored but the row pointers


def test_negative_and_out_of_range_indices_behave_as_a_tensors():
    store = SparseTargets.from_dense(np.array([[1, 0], [0, 1]]))
    assert store[-1].tolist() == [0.0, 1.0] and store[-2].tolist() == [1.0, 0.0]
    with pytest.raises(IndexError):
        store[2]
