import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import file_digest, make_attribute_dataset, tree_digest
from torch.utils.data import DataLoader

import images_train_test_valid_split as split_script
import train as train_script
from partial_csl.data.dataset import MultiLabelImageDataset
from partial_csl.data.sampling import (
    RepeatAwareDataset,
    RepeatAwareSampler,
    earlier_draws,
    expected_distribution,
    raking_weights,
    repeat_factors,
)
from partial_csl.data.schema import AttributeSchema

SCHEMA = AttributeSchema.from_dict({"groups": [{"name": "g1", "classes": 3}, {"name": "g2", "classes": 2}]})
VALUES = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [2, -1], [-1, 1]])


def test_repeat_factors_by_hand_with_unknowns_and_co_occurrence():
    # g1 known in 5 rows: f = .6 / .2 / .2; g2 known in 5 rows: f = .6 / .4
    factors = repeat_factors(SCHEMA.encode(VALUES), threshold=0.8)
    common, rare, half = math.sqrt(0.8 / 0.6), 2.0, math.sqrt(2.0)
    np.testing.assert_allclose(factors, [common, common, half, rare, rare, half])
    # a rare class co-occurring with a common one gets the rare factor; an unknown attribute adds nothing
    assert repeat_factors(SCHEMA.encode(VALUES), threshold=0.1).tolist() == [1.0] * 6


def test_expected_distribution_is_computed_from_the_weights():
    weights = np.array([1.0, 1.0, 2.0, 3.0, 1.0, 4.0])
    dist = expected_distribution(VALUES, SCHEMA, weights, "w").set_index(["attribute", "class"])["share"]
    # g1 known weights: class0 1+1+2=4, class1 3, class2 1 (of 8); g2 known: class0 1+1+3=5, class1 2+4=6 (of 11)
    assert dist[("g1", "g1_0")] == pytest.approx(4 / 8) and dist[("g1", "g1_1")] == pytest.approx(3 / 8)
    assert dist[("g2", "g2_1")] == pytest.approx(6 / 11)
    assert dist[("g1", "#N/A")] == pytest.approx(4 / 12) and dist[("g2", "#N/A")] == pytest.approx(1 / 12)
    # the same numbers as the empirical shares of a long weighted draw
    draws = torch.multinomial(torch.tensor(weights), 200_000, replacement=True,
                              generator=torch.Generator().manual_seed(0)).numpy()
    col = VALUES[draws, 0]
    assert (col[col >= 0] == 0).mean() == pytest.approx(4 / 8, abs=0.005)


def test_raking_matches_every_attribute_target_at_once():
    rng = np.random.default_rng(0)
    n = 2000
    g1 = rng.choice(3, n, p=[0.8, 0.15, 0.05])
    g2 = np.where(g1 == 0, rng.choice(2, n, p=[0.9, 0.1]), rng.choice(2, n, p=[0.3, 0.7]))  # correlated
    values = np.stack([g1, g2], axis=1)
    values[rng.random(n) < 0.2, 1] = -1
    weights = raking_weights(values, SCHEMA, power=0.0, max_weight=1000)
    dist = expected_distribution(values, SCHEMA, weights, "raked").set_index(["attribute", "class"])["share"]
    for name in ("g1_0", "g1_1", "g1_2"):
        assert dist[("g1", name)] == pytest.approx(1 / 3, abs=1e-3)
    for name in ("g2_0", "g2_1"):
        assert dist[("g2", name)] == pytest.approx(1 / 2, abs=1e-3)
    capped = raking_weights(values, SCHEMA, power=0.0, max_weight=3)
    assert capped.max() / capped.min() <= 3 + 1e-9 and capped.mean() == pytest.approx(1.0)


def test_sampler_is_seeded_counts_repeats_and_splits_across_ranks():
    weights = np.array([1.0, 1.0, 8.0])
    a = list(RepeatAwareSampler(weights, 50, seed=3))
    assert a == list(RepeatAwareSampler(weights, 50, seed=3))
    other_epoch = RepeatAwareSampler(weights, 50, seed=3)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != a
    for index in range(3):
        assert [k for i, k in a if i == index] == list(range(sum(1 for i, _ in a if i == index)))
    ranks = [list(RepeatAwareSampler(weights, 50, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(a) and len(ranks[0]) == 25


@pytest.mark.parametrize("n", [1, 7, 30, 31, 50])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_rank_draws_the_same_number_of_samples(n, world_size):
    """DDP needs every rank to take the same number of steps; an uneven slice of an odd epoch hung the run."""
    weights = np.linspace(1.0, 3.0, 9)
    single = list(RepeatAwareSampler(weights, n, seed=5))
    samplers = [RepeatAwareSampler(weights, n, seed=5, rank=r, world_size=world_size) for r in range(world_size)]
    drawn = [list(s) for s in samplers]
    per_rank = math.ceil(n / world_size)
    assert all(len(s) == per_rank for s in samplers) and all(len(d) == per_rank for d in drawn)
    # every draw of the epoch is on some rank; the padding only repeats the first draws, as DistributedSampler does
    union = [pair for d in drawn for pair in d]
    assert sorted(set(union)) == sorted(set(single)) and len(union) - n < world_size


def test_repeats_get_the_strong_transform_through_worker_processes(tmp_path):
    csv_path = make_attribute_dataset(tmp_path / "d", n=4)
    names = pd.read_csv(csv_path)["filename"].tolist()
    base = MultiLabelImageDataset(tmp_path / "d" / "images", names, np.zeros((4, 21)), transform=lambda img: 0)
    dataset = RepeatAwareDataset(base, strong_transform=lambda img: 1)
    loader = DataLoader(dataset, batch_size=4, num_workers=2,
                        sampler=RepeatAwareSampler(np.array([1.0, 0.0, 0.0, 0.0]), 8, seed=0))
    flags = torch.cat([images for images, _ in loader]).tolist()
    assert flags == [0, 1, 1, 1, 1, 1, 1, 1]


def test_balanced_training_writes_the_expected_distribution(tmp_path):
    csv_path = make_attribute_dataset(tmp_path / "d", n=48)
    images = tmp_path / "d" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(tmp_path / "s")]) == 0
    run = tmp_path / "run"
    assert train_script.main(["--train-csv", str(tmp_path / "s" / "train.csv"), "--val-csv",
                              str(tmp_path / "s" / "valid.csv"), "--images", str(images), "--model-name",
                              "test_resnet", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--epochs",
                              "1", "--arch", "csl", "--partial_loss_mode", "ignore", "--sampler", "raking",
                              "--output-dir", str(run)]) == 0
    dist = pd.read_csv(run / "sampler_distribution.csv")
    assert set(dist["split"]) == {"data", "raking sampler"}
    assert (run / "sampler_distribution.png").stat().st_size > 1000


def test_offline_rebalance_writes_only_new_files(tmp_path):
    csv_path = make_attribute_dataset(tmp_path / "d", n=60, seed=1)
    images = tmp_path / "d" / "images"
    before_csv, before_images = file_digest(csv_path), tree_digest(images)
    out = tmp_path / "out"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(out),
                              "--rebalance", "balanced", "--repeat-threshold", "0.5",
                              "--rebalance-max-copies", "2", "--rebalance-max-total", "20"]) == 0
    assert file_digest(csv_path) == before_csv and tree_digest(images) == before_images
    train = pd.read_csv(out / "train.csv", dtype=str, keep_default_na=False)
    extended = pd.read_csv(out / "train_rebalanced.csv", dtype=str, keep_default_na=False)
    copies = extended.iloc[len(train):]
    assert 0 < len(copies) <= 20
    assert copies["filename"].str.contains("_rb").all()
    assert copies.groupby(copies["filename"].str.replace(r"_rb\d+\.png", ".png", regex=True)).size().max() <= 2
    for name in extended["filename"]:
        assert (out / "rebalanced_images" / name).is_file()
    original = train.set_index("filename")
    for _, row in copies.iterrows():  # a copy carries its original's labels, #N/A included
        source = original.loc[row["filename"].split("_rb")[0] + ".png"]
        assert row[["neck", "sleeve_length", "pattern"]].tolist() == source[["neck", "sleeve_length",
                                                                             "pattern"]].tolist()
    assert set(pd.read_csv(out / "rebalance_distribution.csv")["split"]) == {"train", "train + copies"}


def test_the_image_cache_gives_the_pixels_of_the_files(tmp_path):
    from conftest import make_attribute_dataset

    from partial_csl.data.schema import default_schema
    from partial_csl.data.transforms import DataConfig
    from partial_csl.engine.setup.run_data import read_attribute_split

    csv_path = make_attribute_dataset(tmp_path, n=6, size=40)
    split = read_attribute_split(csv_path, tmp_path / "images", default_schema())
    config = DataConfig(24, interpolation="bicubic")
    plain = split.dataset(config, train=False)
    assert split.cache_images(config) == 6 * 24 * 24 * 3
    cached = split.dataset(config, train=False)
    for i in range(6):
        assert torch.equal(plain[i][0], cached[i][0])


def test_earlier_draws_counts_each_index_s_previous_draws_as_the_loop_did():
    assert earlier_draws(np.array([3, 1, 3, 3, 1, 0])).tolist() == [0, 0, 1, 2, 1, 0]
    draws = np.random.default_rng(0).integers(0, 50, size=2_000)
    seen: dict[int, int] = {}
    expected = []
    for index in draws.tolist():
        expected.append(seen.get(index, 0))
        seen[index] = seen.get(index, 0) + 1
    assert earlier_draws(draws).tolist() == expected
    assert earlier_draws(np.zeros(0, dtype=np.int64)).tolist() == []
