import math

import pytest
import torch
import torch.nn.functional as F

from partial_csl.losses import (
    GroupSoftmaxCrossEntropy,
    PartialSelectiveLoss,
    ZLPRLoss,
    bce_loss,
    build_loss,
    focal_loss,
)

LOGITS = [[0.0, 2.0, -1.0, 0.5], [1.0, -2.0, 0.5, 3.0]]
TARGETS = [[1, 0, -1, -1], [-1, -1, 1, 0]]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def by_hand(logits, targets, gp, gn, gu, ap=1.0, an=1.0, au=1.0, clip=0.0, weights=None):
    """The P-ASL formula element by element in plain Python."""
    total = 0.0
    for i, row in enumerate(logits):
        for j, x in enumerate(row):
            t, p = targets[i][j], sigmoid(x)
            w = 1.0 if weights is None else weights[i][j]
            pm = max(p - clip, 0.0)
            if t == 1:
                total += -ap * (1 - p) ** gp * math.log(p) * w
            elif t == 0:
                total += -an * pm ** gn * math.log(1 - pm) * w
            else:
                total += -au * pm ** gu * math.log(1 - pm) * w
    return total


def tensors():
    return torch.tensor(LOGITS, requires_grad=True), torch.tensor(TARGETS, dtype=torch.float32)


def test_known_value_of_one_positive():
    loss = PartialSelectiveLoss("negative", gamma_pos=0, gamma_neg=0, gamma_unann=0)
    assert loss(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("gammas,clip", [((0, 0, 0), 0.0), ((1, 2, 4), 0.0), ((0, 3, 4), 0.05), ((2, 1, 1), 0.2)])
def test_negative_mode_matches_formula(gammas, clip):
    gp, gn, gu = gammas
    logits, targets = tensors()
    loss = PartialSelectiveLoss("negative", gamma_pos=gp, gamma_neg=gn, gamma_unann=gu, alpha_pos=1.5,
                                alpha_neg=0.5, alpha_unann=2.0, clip=clip)
    expected = by_hand(LOGITS, TARGETS, gp, gn, gu, 1.5, 0.5, 2.0, clip)
    assert loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)


def test_ignore_mode_is_bce_over_annotated_entries_and_ignored_grads_are_zero():
    logits, targets = tensors()
    loss = PartialSelectiveLoss("ignore", gamma_pos=0, gamma_neg=0, gamma_unann=0, clip=0)(logits, targets)
    known = targets != -1
    bce = F.binary_cross_entropy_with_logits(logits.detach()[known], targets[known], reduction="sum")
    assert loss.item() == pytest.approx(bce.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0)
    assert torch.all(logits.grad[known] != 0)


def test_ignore_normalize_classes_scales_each_row():
    logits, targets = tensors()
    loss = PartialSelectiveLoss("ignore_normalize_classes", gamma_pos=0, gamma_neg=0, gamma_unann=0)
    # both rows have 2 annotated labels: scale 1/3 + 1
    weights = [[4 / 3, 4 / 3, 0, 0], [0, 0, 4 / 3, 4 / 3]]
    expected = by_hand(LOGITS, TARGETS, 0, 0, 0, weights=weights)
    assert loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_selective_topk_batch_budget_versus_per_sample():
    logits = torch.tensor([[3.0, 2.0, 0.0, -5.0], [-1.0, 1.0, 0.0, 0.0]])
    targets = torch.tensor([[-1, -1, 0, 1], [-1, 1, 0, 0]], dtype=torch.float32)
    batch = PartialSelectiveLoss("selective", likelihood_topk=1, likelihood_topk_scope="batch")
    sample = PartialSelectiveLoss("selective", likelihood_topk=1, likelihood_topk_scope="sample")
    # batch: a budget of k * B = 2 entries, both spent on row 0's unknowns (logits 3 and 2)
    assert batch.entry_weights(logits, targets).tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    # sample: the most likely unknown of each row
    assert sample.entry_weights(logits, targets).tolist() == [[0, 1, 1, 1], [0, 1, 1, 1]]


def test_selective_prior_threshold_ignores_unknowns_of_frequent_classes_only():
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[-1, -1, 0], [0, -1, -1]], dtype=torch.float32)
    loss = PartialSelectiveLoss("selective", likelihood_topk=0, prior=torch.tensor([0.9, 0.1, 0.6]),
                                prior_threshold=0.5)
    assert loss.entry_weights(logits, targets).tolist() == [[0, 1, 1], [1, 1, 0]]
    loss.prior_threshold = 0  # 0 disables the prior step, as in the reference
    assert loss.entry_weights(logits, targets).tolist() == [[1, 1, 1], [1, 1, 1]]


def test_prior_ignored_entries_still_use_the_batch_budget():
    logits = torch.tensor([[5.0, 1.0, 0.0]])
    targets = torch.tensor([[-1, -1, -1]], dtype=torch.float32)
    loss = PartialSelectiveLoss("selective", likelihood_topk=1, prior=torch.tensor([0.9, 0.1, 0.1]))
    assert loss.entry_weights(logits, targets).tolist() == [[0, 1, 1]]


def test_selective_loss_value_and_zero_grads_where_ignored():
    logits, targets = tensors()
    loss_fn = PartialSelectiveLoss("selective", gamma_pos=0, gamma_neg=1, gamma_unann=4, likelihood_topk=1,
                                   likelihood_topk_scope="sample")
    # row 0 unknowns (logits -1, 0.5): 0.5 ignored; row 1 unknowns (1, -2): 1 ignored
    weights = [[1, 1, 1, 0], [0, 1, 1, 1]]
    loss = loss_fn(logits, targets)
    assert loss.item() == pytest.approx(by_hand(LOGITS, TARGETS, 0, 1, 4, weights=weights), rel=1e-5)
    loss.backward()
    assert logits.grad[0, 3] == 0 and logits.grad[1, 0] == 0
    assert logits.grad[0, 2] != 0 and logits.grad[1, 1] != 0


def test_reductions_and_focal_gradient_option():
    logits, targets = tensors()
    total = PartialSelectiveLoss("negative", reduction="sum")(logits, targets)
    mean = PartialSelectiveLoss("negative", reduction="mean")(logits, targets)
    per = PartialSelectiveLoss("negative", reduction="none")(logits, targets)
    assert mean.item() == pytest.approx(total.item() / 2, rel=1e-6)
    assert per.shape == (2, 4) and per.sum().item() == pytest.approx(total.item(), rel=1e-6)
    a, _ = tensors()
    b, _ = tensors()
    PartialSelectiveLoss("negative", gamma_pos=2, focal_grad=False)(a, targets).backward()
    PartialSelectiveLoss("negative", gamma_pos=2, focal_grad=True)(b, targets).backward()
    assert not torch.allclose(a.grad, b.grad)


def test_low_precision_logits_give_finite_float32_loss():
    logits = (torch.randn(8, 21) * 30).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(-1, 2, (8, 21)).float()
    for mode in ("negative", "ignore", "selective"):
        loss = PartialSelectiveLoss(mode, gamma_pos=1, gamma_neg=4, clip=0.05)(logits, targets)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(logits.grad.float()).all()


def test_plain_losses_ignore_unknowns():
    logits, targets = tensors()
    known = targets != -1
    expected = F.binary_cross_entropy_with_logits(logits.detach()[known], targets[known], reduction="sum") / 2
    assert bce_loss()(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    assert focal_loss(2.0, reduction="sum")(logits, targets).item() == pytest.approx(
        by_hand(LOGITS, TARGETS, 2, 2, 2, au=0.0), rel=1e-5)
    zlpr = ZLPRLoss(reduction="sum")(torch.tensor([[1.0, -1.0, 0.0]]), torch.tensor([[1.0, 0.0, -1.0]]))
    assert zlpr.item() == pytest.approx(2 * math.log(1 + math.exp(-1)), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="unknown partial_loss_mode"):
        PartialSelectiveLoss("sometimes")


def test_group_softmax_cross_entropy_masks_unknown_groups():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.5], [0.0, 1.0, 0.0, 3.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[1, 0, -1, -1, -1], [0, 1, 0, 0, 1]], dtype=torch.float32)
    loss_fn = GroupSoftmaxCrossEntropy([slice(0, 2), slice(2, 5)])
    per_group = loss_fn.per_group(logits, targets)
    g0 = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(1) / (1 + math.exp(1)))) / 2
    g1 = -math.log(math.exp(0) / (math.exp(0) + math.exp(3) + math.exp(0)))
    assert per_group.tolist() == pytest.approx([g0, g1], rel=1e-5)
    loss_fn(logits, targets).backward()
    assert torch.all(logits.grad[0, 2:] == 0)
