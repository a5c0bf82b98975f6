"""Class-imbalance weights, offsets and samplers against hand-computed values; ``#N/A`` (-1) never counts."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from partial_csl.data.sampling import RepeatAwareSampler, cap_weights, repeat_factors, rounded_draw
from partial_csl.data.schema import AttributeSchema
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup.architectures import resolve_auto
from partial_csl.engine.setup.rebalancing import (
    apply_logit_adjustment,
    class_weights,
    per_attribute_loss,
    posthoc_adjustment,
    wrap_single_head,
)
from partial_csl.engine.setup.run_data import LabelSpace
from partial_csl.losses import bce_loss, build_loss
from partial_csl.losses.imbalance import (
    BalancedGroupCrossEntropy,
    ReweightedLoss,
    annotated_counts,
    db_rebalance_weights,
    effective_number_weights,
    positive_counts,
    sigmoid_log_prior_odds,
    softmax_log_prior,
)

# classes a0 a1 | b0 b1 b2: the last row's attribute a is #N/A, the third row's b is #N/A
TARGETS = np.array([[1, 0, 0, 0, 1],
                    [1, 0, 0, 1, 0],
                    [0, 1, -1, -1, -1],
                    [-1, -1, 0, 0, 1]])


def labels_of(targets: np.ndarray) -> LabelSpace:
    schema = AttributeSchema.from_dict({"groups": [{"name": "a", "classes": 2}, {"name": "b", "classes": 3}]})
    return LabelSpace(schema.class_names, schema, positive_counts(targets).astype(int).tolist(),
                      train_annotated_counts=annotated_counts(targets).astype(int).tolist())


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_counts_leave_out_unknown_labels():
    assert positive_counts(TARGETS).tolist() == [2, 1, 0, 1, 2]
    assert annotated_counts(TARGETS).tolist() == [3, 3, 3, 3, 3]


def test_effective_number_weights_by_hand():
    # beta 0.5: n = 3 -> 0.5 / 0.875 = 4/7; n = 1 -> 1; n = 0 counts as 1 -> 1; mean 6/7
    assert effective_number_weights(np.array([3, 1, 0]), 0.5) == pytest.approx([2 / 3, 7 / 6, 7 / 6])
    # per group: [n=3, n=1] -> [4/7, 1] / (11/14) = [8/11, 14/11]; a single-class group -> 1
    grouped = effective_number_weights(np.array([3, 1, 5]), 0.5, [slice(0, 2), slice(2, 3)])
    assert grouped == pytest.approx([8 / 11, 14 / 11, 1.0])
    with pytest.raises(ValueError, match="beta"):
        effective_number_weights(np.array([1]), 1.0)


def test_sigmoid_prior_odds_from_annotated_labels_only():
    # a0: 2 of 3 annotated; a1: 1 of 3; b0: 0 of 3, clipped to 1/4; never annotated: 0
    odds = sigmoid_log_prior_odds(np.array([2, 1, 0, 0]), np.array([3, 3, 3, 0]))
    assert odds == pytest.approx([math.log(2), -math.log(2), math.log(1 / 3), 0.0])


def test_softmax_log_prior_within_each_attribute():
    prior = softmax_log_prior(np.array([3, 1, 0, 2]), [slice(0, 2), slice(2, 4)])
    assert prior == pytest.approx([math.log(0.75), math.log(0.25), math.log(1 / 3), math.log(2 / 3)])


def test_engine_settings_from_a_label_matrix_with_unknowns():
    labels = labels_of(TARGETS)
    cfg = TrainConfig(arch="mtl", class_weights="effective_number", cb_beta=0.5, logit_adjust="posthoc", la_tau=2.0)
    # a: n = [2, 1] -> [2/3, 1] / (5/6) = [4/5, 6/5]; b: n = [0->1, 1, 2] -> [1, 1, 2/3] / (8/9)
    weights = class_weights(cfg, labels, list(labels.schema.group_slices().values()))
    assert weights == pytest.approx([0.8, 1.2, 9 / 8, 9 / 8, 0.75])
    # softmax post hoc: -tau log share; a: [2/3, 1/3]; b: counts [1, 1, 2] -> [1/4, 1/4, 1/2]
    expected = [-2 * math.log(s) for s in (2 / 3, 1 / 3, 1 / 4, 1 / 4, 1 / 2)]
    assert posthoc_adjustment(cfg, labels, "softmax") == pytest.approx(expected)
    # sigmoid: -log(pi / (1 - pi)), pi = 2/3, 1/3, 0 -> 1/4, 1/3, 2/3
    csl = TrainConfig(arch="csl", class_weights="none", logit_adjust="posthoc")
    assert posthoc_adjustment(csl, labels, "sigmoid") == pytest.approx(
        [-math.log(2), math.log(2), math.log(3), math.log(2), -math.log(2)])
    in_training = TrainConfig(arch="csl", class_weights="none", logit_adjust="train")
    assert posthoc_adjustment(in_training, labels, "sigmoid") is None


def test_reweighted_loss_weights_positives_and_defers():
    logits, targets = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    loss = ReweightedLoss(bce_loss(), "mean", torch.tensor([2.0, 0.5]), start_epoch=1)
    terms = [2.0 * F.softplus(torch.tensor(-0.5)), F.softplus(torch.tensor(-1.0)), 0.5 * F.softplus(torch.tensor(0.0))]
    plain = (F.softplus(torch.tensor(-0.5)) + terms[1] + F.softplus(torch.tensor(0.0))) / 2
    loss.set_epoch(0)
    assert loss(logits, targets).item() == pytest.approx(plain.item())
    loss.set_epoch(1)
    assert loss(logits, targets).item() == pytest.approx(sum(terms).item() / 2)


def test_training_time_logit_adjustment_shifts_the_logits_in_the_loss():
    labels = labels_of(TARGETS)
    cfg = TrainConfig(arch="csl", loss="bce", class_weights="none", logit_adjust="train", la_tau=0.5)
    criterion = wrap_single_head(bce_loss(), cfg, labels)
    logits, targets = torch.zeros(1, 5), torch.tensor([[1.0, 0.0, -1.0, -1.0, -1.0]])
    # a0 gets + 0.5 log 2 (positive), a1 gets - 0.5 log 2 (negative)
    expected = F.softplus(torch.tensor(-0.5 * math.log(2))) + F.softplus(torch.tensor(-0.5 * math.log(2)))
    assert criterion(logits, targets).item() == pytest.approx(expected.item())
    plain = TrainConfig(arch="csl", loss="bce", class_weights="none", logit_adjust="none")
    assert wrap_single_head(bce_loss(), plain, labels).__class__.__name__ == "PartialSelectiveLoss"


def test_balanced_softmax_and_class_weights_in_the_per_attribute_ce():
    labels = labels_of(TARGETS)
    balanced = TrainConfig(arch="mtl", class_weights="none", logit_adjust="balanced_softmax")
    criterion = per_attribute_loss(balanced, labels)
    logits = torch.zeros(2, 5)
    targets = torch.tensor([[0.0, 1.0, -1.0, -1.0, -1.0], [1.0, 0.0, 0.0, 0.0, 1.0]])
    # a: softmax of [log 2, log 1] -> class 1 has p 1/3 (both rows known); b: [log 1, log 1, log 2] -> class 2 p 1/2
    per_group = criterion.ce.per_group(logits, targets)
    assert per_group.tolist() == pytest.approx([(math.log(3) + math.log(1.5)) / 2, math.log(2)])
    weighted = BalancedGroupCrossEntropy([slice(0, 2)], torch.tensor([3.0, 1.0]))
    two = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # weighted mean: (3 log 2 + 1 log 2) / (3 + 1)
    assert weighted.per_group(torch.zeros(2, 2), two).item() == pytest.approx(math.log(2))
    assert weighted.per_group(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), two).item() == pytest.approx(
        (3 * F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(1.0))).item() / 4)


def test_distribution_balanced_weights_by_hand():
    targets = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    weights = db_rebalance_weights(targets, torch.tensor([1.0, 4.0, 2.0]))
    # 1/n = [1, 1/4, 1/2]; row 0 sums its positives 1 + 1/4 = 5/4: r = [4/5, 1/5, 2/5]; row 1 only 1/4: r = [4, 1, 2]
    rows = [[0.8, 0.2, 0.4], [4.0, 1.0, 2.0], [1.0, 1.0, 1.0]]  # row 2 has no known positive: r = 1
    assert weights.tolist() == [pytest.approx([sigmoid(10 * (r - 0.2)) + 0.1 for r in row]) for row in rows]


def test_distribution_balanced_loss_by_hand():
    # the authors' configuration: focal (gamma 2, balance 2), lambda 2, bias 0.05 / lambda * log-odds
    loss = build_loss("db", class_positives=np.array([1.0, 3.0]), class_annotated=np.array([4.0, 4.0]),
                      reduction="sum")
    # pi = 1/4 -> log-odds -log 3; pi = 3/4 -> +log 3; the reference divides the 0.05 by lambda = 2
    assert loss.bias.tolist() == pytest.approx([-0.025 * math.log(3), 0.025 * math.log(3)])
    z = torch.tensor([[0.3, -0.2]])
    targets = torch.tensor([[1.0, 0.0]])
    za, zb = 0.3 - 0.025 * math.log(3), -0.2 + 0.025 * math.log(3)
    w = db_rebalance_weights(targets, torch.tensor([1.0, 3.0]))[0].tolist()  # r = [1, 1/3]
    positive = (1 - sigmoid(za)) ** 2 * math.log1p(math.exp(-za))
    negative = sigmoid(2 * zb) ** 2 * math.log1p(math.exp(2 * zb)) / 2  # p_t = sigmoid(-2 z) on the scaled logit
    expected = 2 * (w[0] * positive + w[1] * negative)
    assert loss(z, targets).item() == pytest.approx(expected, rel=1e-6)
    assert loss(z, torch.tensor([[-1.0, -1.0]])).item() == 0.0  # unknowns are ignored


def test_distribution_balanced_loss_without_its_focal_term_is_the_bare_form():
    loss = build_loss("db", class_positives=np.array([1.0, 3.0]), class_annotated=np.array([4.0, 4.0]),
                      db_neg_scale=2.0, db_focal_gamma=0.0, reduction="sum")
    z, targets = torch.tensor([[0.3, -0.2]]), torch.tensor([[1.0, 0.0]])
    za, zb = 0.3 - 0.025 * math.log(3), -0.2 + 0.025 * math.log(3)
    w = db_rebalance_weights(targets, torch.tensor([1.0, 3.0]))[0].tolist()
    expected = w[0] * math.log1p(math.exp(-za)) + w[1] * math.log1p(math.exp(2 * zb)) / 2  # no balance factor
    assert loss(z, targets).item() == pytest.approx(expected, rel=1e-6)


def test_posthoc_adjustment_is_added_to_the_model_output():
    model = apply_logit_adjustment(torch.nn.Linear(2, 3, bias=False), [1.0, -2.0, 0.5])
    torch.nn.init.zeros_(model.weight)
    assert model(torch.ones(1, 2)).tolist() == [[1.0, -2.0, 0.5]]


def test_posthoc_offset_is_added_in_float32_under_bf16_autocast():
    # 15.875 < 15.9375 in bf16; + 0.1 rounded back to bf16 (spacing 0.125 above 16) would tie them at 16.0
    model = apply_logit_adjustment(torch.nn.Identity(), [0.1])
    logits = torch.tensor([[15.875], [15.9375]], dtype=torch.bfloat16)
    assert (logits + torch.tensor(0.1, dtype=torch.bfloat16)).flatten().tolist() == [16.0, 16.0]
    adjusted = model(logits)
    assert adjusted.dtype == torch.float32
    assert adjusted[1, 0] > adjusted[0, 0] and adjusted[:, 0].tolist() == pytest.approx([15.975, 16.0375], abs=1e-6)


def test_gentler_repeat_factors_and_cap():
    targets = np.array([[1, 0], [0, 1], [0, 1], [0, 1], [-1, 1]])  # f = [1/4, 4/5] (the #N/A row not counted for 0)
    assert repeat_factors(targets, 1.0).tolist() == pytest.approx([2.0, math.sqrt(1.25)] + [math.sqrt(1.25)] * 3)
    assert repeat_factors(targets, 1.0, power=1.0)[0] == pytest.approx(4.0)
    assert repeat_factors(targets, 1.0, power=0.0).tolist() == [1.0] * 5
    assert cap_weights(np.array([1.0, 5.0, 2.0]), 3).tolist() == [1.0, 3.0, 2.0]
    assert cap_weights(np.array([1.0, 5.0]), None).tolist() == [1.0, 5.0]


def test_rounded_draw_gives_each_image_floor_or_ceil_of_its_expected_count():
    weights = torch.tensor([2.5, 1.0, 0.25, 0.25], dtype=torch.float64)  # expected counts 5, 2, 0.5, 0.5 of 8
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        counts = torch.bincount(rounded_draw(weights, 8, generator), minlength=4).tolist()
        assert counts[:2] == [5, 2] and sorted(counts[2:]) == [0, 1]
    sampler = RepeatAwareSampler(np.array([3.0, 1.0]), 4, replacement=False)
    assert sorted(index for index, _ in sampler) == [0, 0, 0, 1]


def test_auto_arch_class_weights_and_logit_adjustment_resolve_by_data_and_rebalancing():
    def chosen(**settings) -> tuple[str, str, str]:
        resolved = resolve_auto(TrainConfig(**settings))
        return resolved.arch, resolved.class_weights, resolved.logit_adjust

    assert chosen() == ("csl", "none", "none")  # attribute data: the reference's (end_to_end.py, two networks)
    assert chosen(dataset="coco") == ("csl", "none", "none")
    assert chosen(arch="csl") == ("csl", "none", "none")
    assert chosen(arch="mtl") == ("mtl", "effective_number", "none")  # heads: class-balanced weights by default
    assert chosen(arch="afa") == ("afa", "effective_number", "none")
    # a re-balancing the user chose replaces the default one, and none is applied twice
    assert chosen(arch="mtl", logit_adjust="balanced_softmax") == ("mtl", "none", "balanced_softmax")
    assert chosen(logit_adjust="balanced_softmax") == ("mtl", "none", "balanced_softmax")  # a loss of softmax heads
    assert chosen(arch="mtl", logit_adjust="none") == ("mtl", "none", "none")  # plain softmax heads
    assert chosen(arch="mtl", sampler="balanced") == ("mtl", "none", "none")
    assert chosen(arch="mtl", class_weights="none") == ("mtl", "none", "balanced_softmax")
    assert chosen(sampler="balanced") == chosen(class_weights="none") == ("csl", "none", "none")
    assert chosen(class_weights="effective_number", arch="csl") == ("csl", "effective_number", "none")
    explicit = resolve_auto(TrainConfig(arch="csl", class_weights="none", logit_adjust="posthoc"))
    assert (explicit.arch, explicit.logit_adjust) == ("csl", "posthoc")
    resolved = resolve_auto(TrainConfig())
    assert resolve_auto(resolved) == resolved
    with pytest.raises(ValueError, match="--arch and --class-weights and --logit-adjust auto must be resolved first"):
        posthoc_adjustment(TrainConfig(), labels_of(TARGETS), "softmax")


def test_auto_on_attribute_data_is_the_measured_csl_recipe_where_settings_are_left_at_their_defaults():
    recipe = resolve_auto(TrainConfig(epochs=8))
    assert (recipe.arch, recipe.partial_loss_mode, recipe.likelihood_topk, recipe.gamma_unann, recipe.prior_epochs,
            recipe.gamma_pos, recipe.gamma_neg, recipe.prior_threshold) == ("csl", "selective", 3, 4.0, 3, 0, 1, 0.5)
    assert resolve_auto(TrainConfig(epochs=30)).prior_epochs == 11  # the prior stage: 3/8 of the epochs
    assert resolve_auto(TrainConfig(epochs=1)).prior_epochs == 1
    typed = resolve_auto(TrainConfig(epochs=8, likelihood_topk=6, gamma_unann=2.5))
    assert (typed.likelihood_topk, typed.gamma_unann, typed.prior_epochs) == (6, 2.5, 3)
    # an explicit --arch csl, and csl on COCO-format data, are the reference's settings
    for explicit in (TrainConfig(arch="csl", epochs=8), TrainConfig(dataset="coco", epochs=8)):
        plain = resolve_auto(explicit)
        assert (plain.likelihood_topk, plain.gamma_unann, plain.prior_epochs) == (5, 2.0, None)
    assert resolve_auto(recipe) == recipe


def test_csl_settings_are_never_dropped_they_select_csl_or_stop_the_run(caplog):
    with caplog.at_level("WARNING", logger="partial_csl.engine.setup.architectures"):
        typed = resolve_auto(TrainConfig(partial_loss_mode="ignore", prior_epochs=3))
        resolve_auto(TrainConfig(arch="csl", partial_loss_mode="ignore"))  # read: nothing to say
        resolve_auto(TrainConfig(dataset="coco", gamma_unann=4))  # auto is csl there
        heads = resolve_auto(TrainConfig(task_weighting="dwa"))
    assert (typed.arch, typed.logit_adjust) == ("csl", "none")  # auto is csl on attribute data too
    assert (typed.partial_loss_mode, typed.prior_epochs) == ("ignore", 3)  # typed values beat the format's own
    assert heads.arch == "mtl" and heads.likelihood_topk == TrainConfig.likelihood_topk  # no CSL settings for heads
    assert [r.getMessage() for r in caplog.records] == [
        "--arch auto trains mtl, not csl, because --task_weighting are set: only --arch mtl, latent, afa reads them"]
    with pytest.raises(ValueError, match=r"--arch afa does not read --gamma_unann .* drop them, or train --arch csl"):
        resolve_auto(TrainConfig(arch="afa", gamma_unann=4))




def test_posthoc_adjustment_of_a_checkpoint_from_before_a_setting_existed():
    from partial_csl.engine.checkpoint import CheckpointError, with_posthoc_adjustment

    labels = labels_of(TARGETS)
    trained = TrainConfig(arch="mtl", class_weights="none", logit_adjust="none").to_dict()
    del trained["pseudo_teacher"]  # trained before the setting existed: it counts as its default
    cfg = TrainConfig(arch="mtl", class_weights="none", logit_adjust="posthoc")
    adjusted = with_posthoc_adjustment({"config": trained, "arch": "mtl"}, cfg, labels)
    assert adjusted["logit_adjustment"] == pytest.approx(posthoc_adjustment(cfg, labels, "softmax"))
    assert adjusted["config"]["logit_adjust"] == "posthoc"
    # a setting neither run reads (the teacher, without pseudo-labels) cannot differ; one they read can
    with_posthoc_adjustment({"config": trained, "arch": "mtl"}, replace(cfg, pseudo_teacher="ema"), labels)
    with pytest.raises(CheckpointError, match=r"other settings \(pseudo_labels\)"):
        with_posthoc_adjustment({"config": trained, "arch": "mtl"}, replace(cfg, pseudo_labels=True), labels)
