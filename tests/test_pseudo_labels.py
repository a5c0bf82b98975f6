"""Teacher pseudo-labels: hand-computed targets from a fixed teacher output, the thresholds and the cap, and never a
pseudo-label on a known entry."""

from __future__ import annotations

import numpy as np
import torch

from partial_csl.pseudo_labels import calibrate_thresholds, positive_caps, pseudo_targets, share_within_attributes

INF = float("inf")


def test_thresholds_are_the_lowest_score_reaching_the_precision_per_class():
    # class 0, from the top: 0.9 +, 0.8 +, 0.7 -, 0.6 +, 0.5 +, 0.2 -, 0.1 -
    # precision at each cut: 1, 1, 2/3, 3/4, 4/5, 4/6, 4/7 -> at >= 0.75 with >= 2 predictions: the cut at 0.5 (0.8)
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.2], [0.1], [0.95]])
    targets = np.array([[1], [1], [0], [1], [1], [0], [0], [-1]])  # the unknown 0.95 is left out
    got = calibrate_thresholds(scores, targets, precision=0.75, negative_precision=1.0, min_support=2)
    assert got.positive.tolist() == [0.5]
    # from the bottom: 0.1 -, 0.2 -, 0.5 + -> all negatives up to 0.2 (two of them): the negative threshold is 0.2
    assert got.negative.tolist() == [0.2]


def test_a_class_the_teacher_cannot_separate_gets_no_threshold_and_ties_are_not_split():
    scores = np.array([[0.5, 0.7], [0.5, 0.7], [0.5, 0.3], [0.5, 0.3]])
    targets = np.array([[1, 1], [0, 1], [1, 0], [0, 1]])
    got = calibrate_thresholds(scores, targets, precision=0.9, negative_precision=0.9, min_support=1)
    assert got.positive[0] == INF and got.negative[0] == -INF  # four equal scores, half right: no cut reaches 0.9
    assert got.positive[1] == 0.7  # the tie at 0.7 is taken whole: 2 of 2 right
    assert got.negative[1] == -INF  # the tie at 0.3 holds a positive: 1 of 2


def test_caps_are_the_expected_positives_among_the_unknown_classes():
    targets = torch.tensor([[-1, -1, -1], [1, -1, 0], [0, 0, 0]])
    frequencies = torch.tensor([0.5, 0.4, 0.7])
    assert positive_caps(targets, frequencies).tolist() == [2, 0, 0]  # 1.6 -> 2, 0.4 -> 0, no unknown -> 0


def test_pseudo_targets_by_hand():
    probs = torch.tensor([[0.95, 0.90, 0.02, 0.50],
                          [0.99, 0.10, 0.01, 0.97],
                          [0.96, 0.97, 0.98, 0.01]])
    targets = torch.tensor([[-1, -1, -1, -1],
                            [0, -1, -1, 1],  # known entries stay as they are, whatever the teacher says
                            [-1, -1, -1, -1]])
    positive = torch.tensor([0.9, 0.85, 0.95, INF])
    negative = torch.tensor([0.05, 0.2, 0.05, -INF])
    caps = torch.tensor([2, 2, 1])
    got = pseudo_targets(probs, targets, positive, negative, caps)
    assert got.tolist() == [[1, 1, 0, -1],  # 0.95 and 0.90 clear their thresholds; 0.02 is a sure negative
                            [0, 0, 0, 1],
                            [-1, 1, -1, -1]]  # cap 1: the largest margin over its threshold (0.97 - 0.85) wins


def test_an_unknown_attribute_becomes_the_one_hot_of_a_confident_teacher():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.6, 0.4],
                          [0.4, 0.3, 0.3, 0.9, 0.1],
                          [0.1, 0.1, 0.8, 0.5, 0.5]])
    targets = torch.tensor([[-1, -1, -1, 1, 0],
                            [-1, -1, -1, -1, -1],
                            [0, 0, 1, -1, -1]])
    positive = torch.tensor([0.6, 0.6, 0.6, 0.8, 0.8])
    negative = torch.full((5,), 0.5)  # grouped classes follow the one-hot rule only: no separate negatives
    got = pseudo_targets(probs, targets, positive, negative, torch.tensor([5, 5, 5]), groups=[[0, 1, 2], [3, 4]])
    assert got.tolist() == [[1, 0, 0, 1, 0],  # attribute 1 filled; attribute 2 was known
                            [-1, -1, -1, 1, 0],  # 0.4 is below 0.6: attribute 1 stays unknown
                            [0, 0, 1, -1, -1]]  # 0.5 is below 0.8


def test_an_attribute_shares_one_threshold_so_its_rare_class_can_be_pseudo_labelled():
    # attribute [0, 1, 2] (class 2 rare: one validation image), class 3 on its own; 6 validation images
    scores = np.array([[0.9, 0.05, 0.05, 0.9], [0.8, 0.1, 0.1, 0.8], [0.1, 0.7, 0.2, 0.7], [0.2, 0.2, 0.6, 0.6],
                       [0.5, 0.4, 0.1, 0.5], [0.3, 0.3, 0.4, 0.1]])
    targets = np.array([[1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [-1, -1, -1, 0]])
    per_class = calibrate_thresholds(scores, targets, precision=0.75, negative_precision=1.0, min_support=2)
    assert per_class.positive[2] == INF  # one positive among its validation images: below min_support
    shared = share_within_attributes(per_class, scores, targets, [[0, 1, 2]], precision=0.75, min_support=2)
    # top-class scores of the 5 labelled images, from the top: 0.9 right, 0.8 right, 0.7 right, 0.6 right, 0.5 wrong
    # (0.5 picks class 0, the truth is 1): 4/4 at 0.6, 4/5 = 0.8 at 0.5 -> the lowest cut reaching 0.75 is 0.5
    # class 1's own threshold (0.7 and 0.4 right, then 0.2 wrong: 0.4) is lower than the attribute's: it keeps it
    assert per_class.positive.tolist()[:3] == [0.8, 0.4, INF] and shared.positive.tolist()[:3] == [0.5, 0.4, 0.5]
    assert shared.positive[3] == per_class.positive[3] and shared.negative.tolist() == per_class.negative.tolist()
    probs = torch.tensor([[0.2, 0.25, 0.55, 0.5]])  # an image with attribute unknown: the teacher picks rare class 2
    targets_batch = torch.tensor([[-1, -1, -1, 1]])
    caps = torch.tensor([1])
    for thresholds, expected in ((per_class, [-1, -1, -1, 1]), (shared, [0, 0, 1, 1])):
        got = pseudo_targets(probs, targets_batch, torch.as_tensor(thresholds.positive, dtype=torch.float32),
                             torch.as_tensor(thresholds.negative, dtype=torch.float32), caps, groups=[[0, 1, 2]])
        assert got.tolist() == [expected]


def test_no_known_entry_is_ever_changed():
    rng = torch.Generator().manual_seed(0)
    probs = torch.rand(64, 12, generator=rng)
    targets = torch.randint(-1, 2, (64, 12), generator=rng)
    got = pseudo_targets(probs, targets, torch.full((12,), 0.3), torch.full((12,), 0.2),
                         torch.full((64,), 12), groups=[[0, 1, 2], [3, 4]])
    known = targets != -1
    assert torch.equal(got[known], targets[known])
    assert (got[~known] != -1).any()


def test_a_validated_teacher_is_a_frozen_copy_of_the_better_weights_with_their_thresholds():
    from torch import nn

    from partial_csl.engine.training.pseudo import PseudoLabeller

    torch.manual_seed(0)
    regular, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    by_regular = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
    by_ema = np.array([[0.6, 0.2], [0.3, 0.9], [0.8, 0.7], [0.2, 0.1]])
    labeller = PseudoLabeller(None, torch.tensor([0.5, 0.5]), None, warmup=1, epochs=3,
                              precision=1.0, negative_precision=1.0, kind="validated")
    labeller.after_validation([regular, ema], [by_regular, by_ema], True, targets, epoch=0)
    expected = calibrate_thresholds(by_ema, targets, 1.0, 1.0)
    assert labeller.thresholds.positive.tolist() == expected.positive.tolist()
    teacher = labeller.teacher
    assert torch.equal(teacher.weight, ema.weight) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        ema.weight.add_(1.0)  # the EMA trains on: the teacher is a copy, it stays as validated
    assert not torch.equal(teacher.weight, ema.weight)
    labeller.after_validation([regular, ema], [by_regular, by_ema], False, targets, epoch=1)
    assert labeller.teacher is teacher and torch.equal(teacher.weight, regular.weight)
    expected = calibrate_thresholds(by_regular, targets, 1.0, 1.0)
    assert labeller.thresholds.positive.tolist() == expected.positive.tolist()


def test_an_ema_teacher_is_calibrated_on_the_ema_scores_and_stays_the_live_weights():
    from torch import nn

    from partial_csl.engine.training.pseudo import PseudoLabeller

    regular, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    by_regular = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
    by_ema = np.array([[0.6, 0.2], [0.3, 0.9], [0.8, 0.7], [0.2, 0.1]])
    labeller = PseudoLabeller(ema, torch.tensor([0.5, 0.5]), None, warmup=1, epochs=3, precision=1.0,
                              negative_precision=1.0)
    labeller.after_validation([regular, ema], [by_regular, by_ema], False, targets, epoch=0)
    assert labeller.teacher is ema
    assert labeller.thresholds.positive.tolist() == calibrate_thresholds(by_ema, targets, 1.0, 1.0).positive.tolist()


def test_no_teacher_is_copied_or_calibrated_during_the_warm_up_or_after_the_last_epoch():
    from torch import nn

    from partial_csl.engine.training.pseudo import PseudoLabeller

    weights, scores = [nn.Linear(2, 2), nn.Linear(2, 2)], [np.full((2, 2), 0.5)] * 2
    labeller = PseudoLabeller(None, torch.tensor([0.5, 0.5]), None, warmup=2, epochs=4, precision=1.0,
                              negative_precision=1.0, kind="validated")
    for epoch, needed in enumerate([False, True, True, False]):  # labels epochs 3 and 4 (0-based 2, 3)
        assert labeller.needed_after(epoch) is needed
    labeller.after_validation(weights, scores, False, np.array([[1, 0], [0, 1]]), epoch=0)
    assert labeller.teacher is None and labeller.thresholds is None
    labeller.after_validation(weights, scores, False, np.array([[1, 0], [0, 1]]), epoch=1)
    assert labeller.teacher is not None and labeller.thresholds is not None


def test_classes_without_enough_validation_positives_are_named_and_never_get_a_threshold():
    from partial_csl.pseudo_labels import classes_without_reachable_threshold

    # 5 positives (class 0), 4 (class 1), 2 (class 2), class 3 labelled on 4 images only
    targets = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, -1], [0, 0, 0, -1]])
    assert classes_without_reachable_threshold(targets, 0.9).tolist() == [1, 2, 3]  # 0.9 x 5 -> 5 positives
    assert classes_without_reachable_threshold(targets, 0.8).tolist() == [2, 3]  # 4 positives suffice
    assert classes_without_reachable_threshold(targets, 0.0).tolist() == [3]  # only the labelled count matters
    perfect = np.where(targets == 1, 0.9, 0.1)  # even a perfect teacher gives classes 1-3 no threshold at 0.9
    got = calibrate_thresholds(perfect, targets, precision=0.9, negative_precision=1.0)
    assert np.isfinite(got.positive).tolist() == [True, False, False, False]
