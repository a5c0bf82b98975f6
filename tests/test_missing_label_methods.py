"""The missing-label methods of the comparison (Cole et al., Hill/SPLC, large loss, adaptive top-k) and the
protocols that simulate missing labels, each against a hand computation of its formula."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import train as train_script
from partial_csl.data.demo_coco import build_coco_benchmark
from partial_csl.data.partial import kept_positive_counts, simulate_partial, simulation_record, simulation_summary
from partial_csl.engine.setup.run_data import expected_positives
from partial_csl.losses import LOSSES, PartialSelectiveLoss, build_loss

LOG2 = math.log(2)


def softplus(x: float) -> float:
    """-log(1 - sigmoid(x)) = -log sigmoid(-x)."""
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_an_takes_unknowns_as_negatives():
    loss = build_loss("an")(t([[0.0, 2.0]]), t([[1, -1]]))
    assert loss.item() == pytest.approx(LOG2 + softplus(2.0), rel=1e-6)


def test_wan_weights_unknown_negatives_by_one_over_classes_minus_one():
    logits, targets = t([[0.0, 0.0, 0.0]]), t([[1, 0, -1]])
    assert build_loss("wan")(logits, targets).item() == pytest.approx(2.5 * LOG2, rel=1e-6)  # gamma = 1 / (3 - 1)
    assert build_loss("wan", wan_weight=0.25)(logits, targets).item() == pytest.approx(2.25 * LOG2, rel=1e-6)


def test_an_ls_smooths_positives_and_assumed_negatives_as_cole_et_al():
    # Cole et al.'s loss_an_ls: (1 - eps) (-log p) + eps (-log(1 - p)) for a positive, mirrored for a negative
    loss = build_loss("an_ls", label_smoothing=0.1)(t([[2.0, 2.0]]), t([[1, -1]]))
    positive = 0.9 * softplus(-2.0) + 0.1 * softplus(2.0)
    assumed_negative = 0.1 * softplus(-2.0) + 0.9 * softplus(2.0)
    assert loss.item() == pytest.approx(positive + assumed_negative, rel=1e-6)
    # --loss label_smoothing keeps the two-class softmax form: half the shift
    two_class = build_loss("label_smoothing", label_smoothing=0.1)(t([[2.0, 2.0]]), t([[1, -1]]))
    half = 0.95 * softplus(-2.0) + 0.05 * softplus(2.0) + 0.05 * softplus(-2.0) + 0.95 * softplus(2.0)
    assert two_class.item() == pytest.approx(half, rel=1e-6)


def test_epr_is_bce_on_annotated_labels_plus_the_expected_positive_penalty():
    logits, targets = torch.zeros(2, 4), t([[1, -1, -1, -1], [0, -1, 1, -1]])
    # 3 annotated entries at p = 0.5; each image predicts 2 positives where 1 is expected: (2 - 1)^2 / 4
    mean = build_loss("epr", expected_positives=1.0)(logits, targets)
    assert mean.item() == pytest.approx(3 * LOG2 / 2 + 0.25, rel=1e-6)
    total = build_loss("epr", expected_positives=1.0, reduction="sum")(logits, targets)
    assert total.item() == pytest.approx(3 * LOG2 + 2 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="expected_positives"):
        build_loss("epr", expected_positives=None)


def bce(p: float, target: float) -> float:
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_role_starts_its_label_store_as_cole_et_al():
    targets = np.array([[1, -1, 0], [-1, -1, -1]] * 500)
    store = build_loss("role", train_targets=targets, expected_positives=1.0, seed=3).label_logits.detach()
    probs = torch.sigmoid(store)
    assert probs[0, 0].item() == pytest.approx(0.995) and probs[0, 2].item() == pytest.approx(0.005)
    unknown = probs[torch.as_tensor(targets) == -1]
    assert 0.4 <= unknown.min().item() and unknown.max().item() <= 0.6  # uniform draws, not a constant
    assert unknown.std().item() > 0.05 and abs(unknown.mean().item() - 0.5) < 0.01
    again = build_loss("role", train_targets=targets, expected_positives=1.0, seed=3).label_logits.detach()
    assert torch.equal(store, again)  # seeded


def test_role_trains_the_model_and_its_label_store_towards_each_other_as_cole_et_al():
    loss = build_loss("role", train_targets=np.array([[1, -1], [1, -1], [0, -1]]), expected_positives=1.0)
    with torch.no_grad():
        loss.label_logits[2, 1] = 0.0  # the unknown estimate of row 2 at 0.5, for a round hand computation
    g = torch.sigmoid(loss.label_logits[2, 0]).item()  # the annotated negative's estimate, 0.005
    logits = t([[0.0, 2.0]])
    p1 = sigmoid(2.0)
    value = loss(logits, t([[0, -1]]), torch.tensor([2]))
    # per side, half the BCE against the annotated label plus half the BCE against the other side (Cole's
    # loss_role): model: BCE(0.5 -> 0) + BCE(0.5 -> g) + BCE(p1 -> 0.5); store: BCE(g -> 0) + BCE(g -> 0.5)
    # + BCE(0.5 -> p1); penalties (sum of p - k)^2 / C: model (0.5 + p1 - 1)^2 / 2, store (g + 0.5 - 1)^2 / 2
    model = bce(0.5, 0) + bce(0.5, g) + bce(p1, 0.5)
    store = bce(g, 0) + bce(g, 0.5) + bce(0.5, p1)
    penalty = ((0.5 + p1 - 1) ** 2 + (g + 0.5 - 1) ** 2) / 2
    assert value.item() == pytest.approx((model + store + penalty) / 2, rel=1e-5)
    value.backward()
    grad = loss.label_logits.grad
    assert grad[2].abs().sum() > 0 and grad[:2].abs().sum().item() == 0  # only the batch's row moves
    # an annotated positive weighs about as much as in plain BCE: half through its label, half through its
    # estimate (0.995); without the cross term it weighed half
    positive = build_loss("role", train_targets=np.array([[1]]), expected_positives=1.0, epr_weight=0.0)
    logit = torch.zeros(1, 1, requires_grad=True)
    positive(logit, t([[1]]), torch.tensor([0])).backward()
    # d/dx [BCE(x -> 1) + BCE(x -> 0.995)] / 2 at x = 0; plain BCE's is 0.5 - 1, the old ROLE's (0.5 - 1) / 2
    assert logit.grad.item() == pytest.approx(((0.5 - 1) + (0.5 - 0.995)) / 2, rel=1e-4)
    with pytest.raises(ValueError, match="sample indices"):
        loss(t([[0.0, 0.0]]), t([[1, -1]]))


def test_epr_and_role_take_k_from_the_simulation_not_the_annotated_rates(tmp_path, fake_fashion_mnist, caplog):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.formats import load_training_data
    from partial_csl.engine.training.run import expected_positives_record

    root = build_coco_benchmark(tmp_path / "bench", n_train=120, n_val=16, source=fake_fashion_mnist)
    for protocol, param in (("fpc", 10), ("single_positive", 0)):
        cfg = TrainConfig(dataset="coco", data=str(root), simulate_partial_type=protocol, arch="csl",
                          simulate_partial_param=param, loss="epr", logit_adjust="none")
        labels, train, _ = load_training_data(cfg, tmp_path / protocol)
        truth = labels.true_frequency.sum()
        assert labels.expected_positives == pytest.approx(truth) and 1.5 < truth < 3
        assert "true class frequencies" in labels.expected_positives_source
        naive = expected_positives(train.targets)  # what the default was
        assert naive > 2.5 * truth if protocol == "fpc" else naive == pytest.approx(1.0)
        record = expected_positives_record(cfg, labels)
        assert record["value"] == pytest.approx(truth)
    given = TrainConfig(dataset="coco", data=str(root), arch="csl", loss="role", expected_positives=30.0,
                        logit_adjust="none")
    labels, _, _ = load_training_data(given, tmp_path / "given")
    with caplog.at_level("WARNING", logger="partial_csl.engine.training.run"):
        assert expected_positives_record(given, labels) == {"value": 30.0, "source": "given (--expected-positives)"}
    assert "outside [1, 10]" in caplog.text  # 20 classes


def test_single_positive_labels_without_a_given_k_are_warned_about(caplog):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.formats import expected_positives_estimate
    from partial_csl.engine.setup.run_data import LabelSpace, single_positive_labels
    from partial_csl.engine.training.run import expected_positives_record

    spml = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, -1]])
    assert single_positive_labels(spml)
    assert not single_positive_labels(np.where(spml == -1, 0, spml))  # annotated negatives: a class can be counted
    assert not single_positive_labels(np.array([[1, 1, -1], [-1, 1, -1]]))  # two positives in an image
    cfg = TrainConfig(dataset="coco", arch="csl", loss="role", logit_adjust="none")
    labels = LabelSpace(["a", "b", "c"], None, train_targets=spml)
    labels.expected_positives, labels.expected_positives_source = expected_positives_estimate(cfg, labels)
    with caplog.at_level("WARNING", logger="partial_csl.engine.training.run"):
        assert expected_positives_record(cfg, labels)["value"] == pytest.approx(1.0)  # 2 + 1 + 1 positives / 4
    assert "single positives" in caplog.text and "--expected-positives" in caplog.text
    caplog.clear()
    caplog.clear()
    labels.train_targets = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]])  # k = 3 × 1/3, a float sum
    labels.expected_positives, labels.expected_positives_source = expected_positives_estimate(cfg, labels)
    with caplog.at_level("WARNING", logger="partial_csl.engine.training.run"):
        expected_positives_record(cfg, labels)
    assert "single positives" in caplog.text
    for k in (1.0, 1.5):
        caplog.clear()
        given = TrainConfig(dataset="coco", arch="csl", loss="role", logit_adjust="none", expected_positives=k)
        labels.expected_positives, labels.expected_positives_source = expected_positives_estimate(given, labels)
        with caplog.at_level("WARNING", logger="partial_csl.engine.training.run"):
            assert expected_positives_record(given, labels)["value"] == k
        assert "single positives" not in caplog.text  # a k the user gave is theirs


def test_attribute_data_expects_one_positive_per_attribute():
    from partial_csl.data.schema import load_schema
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.formats import expected_positives_estimate
    from partial_csl.engine.setup.run_data import LabelSpace

    schema = load_schema(None)
    labels = LabelSpace(schema.class_names, schema, train_targets=np.full((4, 21), -1))
    assert expected_positives_estimate(TrainConfig(), labels) == (3.0, "one value per attribute")


def test_hill_focal_margin_positive_and_hill_negative():
    loss = build_loss("hill")  # lambda 1.5, margin 1, gamma 2
    p_margin = sigmoid(-1.0)
    positive = -((1 - p_margin) ** 2) * math.log(p_margin)
    value = loss(t([[0.0, 0.0]]), t([[1, -1]]))
    assert value.item() == pytest.approx(positive + (1.5 - 0.5) * 0.25, rel=1e-6)
    assert loss(t([[0.0, 0.0]]), t([[1, 0]])).item() == pytest.approx(value.item())  # no mask: 0 and -1 alike
    # the hill: d/dp (lambda - p) p^2 = p (2 lambda - 3p) vanishes at p = 1, so a confident negative is left alone
    logits = torch.tensor([[0.0, 4.6]], requires_grad=True)
    loss(logits, t([[-1, -1]])).backward()
    assert abs(logits.grad[0, 1].item()) < 0.1 * abs(logits.grad[0, 0].item())


def test_splc_corrects_confident_negatives_after_the_warm_up():
    loss = build_loss("splc")  # tau 0.6 (the authors' code's default), from epoch 1
    assert loss.threshold == 0.6
    logits, targets = t([[3.0, 0.0, 3.0]]), t([[-1, -1, 1]])
    p3, p0 = sigmoid(3.0), 0.5
    positive_with_margin = -((1 - sigmoid(2.0)) ** 2) * math.log(sigmoid(2.0))
    warm_up = p3**2 * softplus(3.0) + p0**2 * softplus(0.0) + positive_with_margin
    assert loss(logits, targets).item() == pytest.approx(warm_up, rel=1e-6)
    loss.set_epoch(1)
    corrected = -((1 - p3) ** 2) * math.log(p3) + p0**2 * softplus(0.0) + positive_with_margin
    assert loss(logits, targets).item() == pytest.approx(corrected, rel=1e-6)
    assert loss.corrected(logits, targets).tolist() == [[True, False, False]]


LL_LOGITS = [[3.0, 0.0, -1.0, 1.0], [0.0, 2.0, 0.0, 0.0]]
LL_TARGETS = [[-1, 1, -1, 0], [-1, -1, -1, 1]]


def _an_entries(logits, targets) -> list[list[float]]:
    return [[softplus(-x) if y == 1 else softplus(x) for x, y in zip(row, trow)] for row, trow in zip(logits, targets)]


@pytest.mark.parametrize("name", ["ll_r", "ll_ct"])
def test_large_loss_modifies_the_largest_unknown_losses_on_its_schedule(name):
    loss = build_loss(name, ll_delta_rel=12.5)  # 12.5 % of the 8 entries per epoch: k = epoch
    entries = _an_entries(LL_LOGITS, LL_TARGETS)
    assert loss(t(LL_LOGITS), t(LL_TARGETS)).item() == pytest.approx(sum(map(sum, entries)) / 2, rel=1e-6)
    for epoch, changed in ((1, [(0, 0)]), (2, [(0, 0), (1, 1)])):  # the unknowns of highest logit: 3, then 2
        loss.set_epoch(epoch)
        expected = [row[:] for row in entries]
        for r, c in changed:
            expected[r][c] = 0.0 if name == "ll_r" else softplus(-LL_LOGITS[r][c])
        assert loss(t(LL_LOGITS), t(LL_TARGETS)).item() == pytest.approx(sum(map(sum, expected)) / 2, rel=1e-6)


def test_ll_cp_remembers_its_corrections_per_image():
    loss = build_loss("ll_cp", ll_delta_rel=12.5, num_samples=6, num_classes=4)
    indices = torch.tensor([5, 1])
    loss.set_epoch(1)
    loss(t(LL_LOGITS), t(LL_TARGETS), indices)
    assert loss.corrected_positives.nonzero().tolist() == [[5, 0]]
    loss(t(LL_LOGITS), t(LL_TARGETS), indices)  # (5, 0) is a positive now; the next largest is corrected
    assert loss.corrected_positives.nonzero().tolist() == [[1, 1], [5, 0]]
    assert "corrected_positives" in loss.state_dict()  # saved with the training state, so --resume keeps it


def test_adaptive_topk_ignores_each_samples_expected_positives_among_its_unknowns():
    prior = torch.tensor([0.6, 0.3, 0.2, 0.9])
    loss = PartialSelectiveLoss("selective", likelihood_topk_scope="adaptive", prior_threshold=0.8, prior=prior)
    logits, targets = t([[0.1, 0.5, 0.3, 2.0], [0.0, 1.0, 0.0, 0.0]]), t([[-1, -1, -1, -1], [1, -1, 0, -1]])
    # row 0: class 3 ignored by its prior; budget round(0.6 + 0.3 + 0.2) = 1: the likeliest of 0-2 (class 1)
    # row 1: class 3 ignored by its prior; budget round(0.3) = 0
    assert loss.entry_weights(logits, targets).tolist() == [[1, 0, 1, 0], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="priors"):
        PartialSelectiveLoss("selective", likelihood_topk_scope="adaptive").entry_weights(logits, targets)


FULL = (np.random.default_rng(3).random((400, 6)) < np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.4])).astype(np.float32)


def test_known_proportion_keeps_each_entry_with_probability_q():
    kept = simulate_partial(FULL, "known", 0.3, seed=1)
    assert (kept != -1).mean() == pytest.approx(0.3, abs=0.02)
    assert np.array_equal(kept, simulate_partial(FULL, "rps", 0.7, seed=1))  # RPS with p = 1 - q
    assert ((kept == FULL) | (kept == -1)).all()


def test_missing_positives_turns_dropped_positives_into_negatives_and_keeps_one_on_every_image():
    kept = simulate_partial(FULL, "missing_positives", 0.4, seed=2)
    assert not (kept == -1).any() and (kept[FULL == 0] == 0).all()
    had = FULL.sum(axis=1) > 0
    # one positive on each image is already 54 % of them here, the least this protocol can keep
    floor = had.sum() / FULL.sum()
    assert floor > 0.5 and (kept[FULL == 1] == 1).mean() == pytest.approx(floor)
    thinned = simulate_partial(np.repeat(FULL, 4, axis=1), "missing_positives", 0.4, seed=2)  # 6 per image
    assert (thinned == 1).sum() / (np.repeat(FULL, 4, axis=1) == 1).sum() == pytest.approx(0.4, abs=0.01)
    assert ((kept == 1).sum(axis=1)[had] >= 1).all()  # independent drops left about a fifth of them with none
    assert np.array_equal(kept, simulate_partial(FULL, "missing_positives", 0.4, seed=2))  # seeded
    summary = simulation_summary(FULL, kept, [f"c{i}" for i in range(6)])
    assert (summary["false_negatives"] == ((kept == 0) & (FULL == 1)).sum(axis=0)).all()
    assert (summary["annotated_positives"] + summary["false_negatives"] == summary["true_positives"]).all()
    record = simulation_record(FULL, kept, "missing_positives", 0.4, 2)
    assert record["positives_kept_share"] == pytest.approx((kept == 1).sum() / (FULL == 1).sum())
    assert record["images_that_lost_every_positive"] == 0 and record["images_with_a_positive"] == had.sum()


def test_missing_positives_keeps_ceil_of_one_scale_times_the_count_as_the_authors_lists():
    # the authors' COCO "40 % left" list keeps 1, 1, 1, 1, 2, 2, 2, 2, 2, 3 of 1..10 positives: ceil(2 n / 9)
    shares = np.array([16813, 25053, 16837, 9830, 5910, 3364, 1988, 1076, 598, 315])  # its images per count
    counts = np.repeat(np.arange(1, 11), shares // 10)
    kept = kept_positive_counts(counts, 0.4)
    by_count = {n: set(kept[counts == n].tolist()) for n in range(1, 11)}
    assert all(len(v) == 1 for v in by_count.values())  # one rule: a function of the count
    assert [by_count[n].pop() for n in range(1, 11)] == [1, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    # below the share one positive per image keeps, that share is the best it can do
    assert (kept_positive_counts(np.array([1, 2, 4]), 0.1) == [1, 1, 1]).all()
    assert (kept_positive_counts(np.array([0, 3, 5]), 1.0) == [0, 3, 5]).all()


def test_single_positive_keeps_one_true_positive_per_image_and_nothing_else():
    kept = simulate_partial(FULL, "single_positive", 0, seed=4)
    has_positive = FULL.sum(axis=1) > 0
    assert ((kept == 1).sum(axis=1) == has_positive).all()
    assert (FULL[kept == 1] == 1).all() and not (kept == 0).any()
    assert np.array_equal(kept, simulate_partial(FULL, "single_positive", 0, seed=4))  # seeded


def test_expected_positives_from_partial_labels():
    # class 0: 2 of 4 annotated are positive (0.5); class 1: positives only, 1 of 4 images (lower bound 0.25)
    targets = np.array([[1, 1], [1, -1], [0, -1], [0, -1]])
    assert expected_positives(targets) == pytest.approx(0.75)


NEW_LOSSES = ["an", "wan", "an_ls", "epr", "role", "hill", "splc", "ll_r", "ll_ct", "ll_cp"]


def test_every_new_method_is_registered():
    assert set(NEW_LOSSES) <= set(LOSSES)


def _coco_args(root, loss: str, protocol: str, param: str = "0.5") -> list[str]:
    return ["--dataset", "coco", "--data", str(root), "--simulate_partial_type", protocol,
            "--simulate_partial_param", param, "--model-name", "test_resnet", "--image-size", "32",
            "--batch-size", "8", "--workers", "0", "--no-amp", "--loss", loss, "--ll-delta-rel", "5",
            "--splc-threshold", "0.3", "--ema-decay", "0"]


PROTOCOL_PARAMS = [("fpc", "4"), ("rps", "0.5"), ("known", "0.3"), ("missing_positives", "0.5"),
                   ("single_positive", "0")]


@pytest.mark.parametrize("index,loss", list(enumerate(NEW_LOSSES)))
def test_every_method_trains_through_train_py_under_a_protocol(tmp_path, fake_fashion_mnist, index, loss):
    root = build_coco_benchmark(tmp_path / "bench", n_train=32, n_val=16, source=fake_fashion_mnist)
    protocol, param = PROTOCOL_PARAMS[index % len(PROTOCOL_PARAMS)]  # every protocol twice over the ten losses
    run = tmp_path / "run"
    assert train_script.main([*_coco_args(root, loss, protocol, param), "--epochs", "2",
                              "--output-dir", str(run)]) == 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 2 and np.isfinite(metrics["train_loss"]).all()
    assert json.loads((run / "config.json").read_text())["config"]["loss"] == loss


@pytest.mark.parametrize("loss,protocol", [("role", "single_positive"), ("ll_cp", "known"), ("splc",
                                            "missing_positives"), ("epr", "single_positive")])
def test_methods_train_through_train_py_and_resume(tmp_path, fake_fashion_mnist, loss, protocol):
    root = build_coco_benchmark(tmp_path / "bench", n_train=40, n_val=16, source=fake_fashion_mnist)
    common = _coco_args(root, loss, protocol)
    run, killed = tmp_path / "run", tmp_path / "killed"
    assert train_script.main([*common, "--epochs", "2", "--output-dir", str(run)]) == 0
    assert train_script.main([*common, "--epochs", "2", "--output-dir", str(killed), "--stop-after-steps", "7"]) == 3
    assert train_script.main([*common, "--epochs", "2", "--output-dir", str(killed), "--resume"]) == 0
    first, resumed = pd.read_csv(run / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    assert np.allclose(first["val_mAP"], resumed["val_mAP"], atol=1e-6)
    summary = pd.read_csv(run / "simulation" / "simulation_summary.csv")
    assert {"annotated_positives", "false_negatives", "unknown"} <= set(summary.columns)
    expected = json.loads((run / "config.json").read_text()).get("expected_positives")
    if loss in ("epr", "role"):  # k is recorded, from the simulation's true frequencies
        assert expected["value"] == pytest.approx(summary["true_frequency"].sum(), rel=1e-5)
    else:
        assert expected is None


def test_ll_cp_keeps_every_correction_of_an_image_drawn_twice_in_a_batch():
    loss = build_loss("ll_cp", ll_delta_rel=25, num_samples=4, num_classes=3)  # k = ceil(0.25 * 9) = 3
    loss.set_epoch(1)
    logits = t([[5.0, -5.0, -5.0], [-5.0, -5.0, -5.0], [-4.0, 4.0, -5.0]])
    loss(logits, torch.full((3, 3), -1.0), torch.tensor([0, 1, 0]))  # image 0 twice (a sampler with replacement)
    assert loss.corrected_positives[0].tolist() == [True, True, False]  # both copies' corrections kept


def test_batch_penalty_losses_refuse_per_entry_class_weights():
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.rebalancing import wrap_single_head
    from partial_csl.engine.setup.run_data import LabelSpace
    labels = LabelSpace(["a", "b"], train_class_counts=[3, 1], num_train_images=4, expected_positives=1.0,
                        train_annotated_counts=[4, 4])
    cfg = TrainConfig(arch="csl", loss="epr", class_weights="effective_number", logit_adjust="none")
    with pytest.raises(ValueError, match="penalty on the whole batch"):
        wrap_single_head(build_loss("epr", expected_positives=1.0), cfg, labels)


def test_label_store_losses_refuse_torchrun():
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.distributed import DistInfo
    from partial_csl.engine.setup.build import build_training
    from partial_csl.engine.setup.run_data import LabelSpace
    labels = LabelSpace(["a", "b"], num_train_images=4, expected_positives=1.0)
    cfg = TrainConfig(arch="csl", class_weights="none", logit_adjust="none", loss="ll_cp", model_name="test_resnet",
                      image_size=32, partial_loss_mode="negative")
    info = DistInfo(rank=0, world_size=2)
    with pytest.raises(ValueError, match="per-image label store"):
        build_training(cfg, labels, None, torch.device("cpu"), info, 1, 1, None)
