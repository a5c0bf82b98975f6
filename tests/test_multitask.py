import json
import math

import pandas as pd
import pytest
import torch
from conftest import make_attribute_dataset

import images_train_test_valid_split as split_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.setup.architectures import build_model
from partial_csl.layers.afa import AFALayer
from partial_csl.losses import MultiTaskLoss, dwa_weights
from partial_csl.models import logits_to_probabilities
from partial_csl.models.multitask import LatentTaskHeads

SIZES = [7, 4, 10]


@pytest.mark.parametrize("arch", ["mtl", "latent", "afa"])
def test_multi_head_outputs_and_group_softmax(arch):
    model = build_model(arch, "test_resnet", 21, group_sizes=SIZES, branch_model="test_resnet", afa_stages=(3, 4))
    logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 21)
    probs = logits_to_probabilities(model, logits)
    for start, stop in ((0, 7), (7, 11), (11, 21)):
        torch.testing.assert_close(probs[:, start:stop].sum(dim=1), torch.ones(2))


def test_unknown_attribute_gives_no_loss_and_no_gradient_to_its_head():
    model = build_model("mtl", "test_resnet", 21, group_sizes=SIZES)
    targets = torch.zeros(2, 21)
    targets[:, 0] = 1
    targets[:, 7:11] = -1  # sleeve_length unknown for both images
    targets[:, 11] = 1
    loss = MultiTaskLoss([slice(0, 7), slice(7, 11), slice(11, 21)])(model(torch.rand(2, 3, 32, 32)), targets)
    loss.backward()
    assert model.heads[1].weight.grad is None or torch.all(model.heads[1].weight.grad == 0)
    assert torch.any(model.heads[0].weight.grad != 0) and torch.any(model.heads[2].weight.grad != 0)


def test_dwa_weights_by_hand():
    previous, before = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])  # ratios 0.5 and 1.0
    e1, e2 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    torch.testing.assert_close(dwa_weights(previous, before, 2.0), torch.tensor([2 * e1 / (e1 + e2),
                                                                                  2 * e2 / (e1 + e2)]))
    loss = MultiTaskLoss([slice(0, 2), slice(2, 4)], "dwa", temperature=2.0)
    for epoch_losses in ([2.0, 2.0], [1.0, 2.0]):
        loss.epoch_sum.copy_(torch.tensor(epoch_losses))
        loss.epoch_steps.fill_(1)
        loss.end_epoch()
    assert loss.task_weights() == pytest.approx([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    restored = MultiTaskLoss([slice(0, 2), slice(2, 4)], "dwa")
    restored.load_state_dict(loss.state_dict())
    assert restored.history == loss.history


def test_uncertainty_weights_are_learnable_and_positive():
    loss_fn = MultiTaskLoss([slice(0, 2), slice(2, 4)], "uncertainty")
    logits = torch.randn(4, 4, requires_grad=True)
    targets = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, -1, -1], [0, 1, 0, 1]], dtype=torch.float32)
    loss_fn(logits, targets).backward()
    assert loss_fn.log_vars.grad is not None and torch.any(loss_fn.log_vars.grad != 0)
    with torch.no_grad():
        loss_fn.log_vars.copy_(torch.tensor([-3.0, 4.0]))
    assert all(w > 0 for w in loss_fn.task_weights())
    assert loss_fn.task_weights()[0] == pytest.approx(math.exp(3.0) / 2)


def test_latent_factorisation_shapes_and_regulariser_value():
    heads = LatentTaskHeads(num_features=5, group_sizes=[2, 3], latent_tasks=4)
    assert heads.basis.weight.shape == (4, 5)
    assert [tuple(s.shape) for s in heads.combinations] == [(4, 2), (4, 3)]
    with torch.no_grad():
        heads.combinations[0].copy_(torch.tensor([[3.0, 4.0], [0, 0], [0, 0], [1.0, 0]]))
        heads.combinations[1].copy_(torch.zeros(4, 3))
        heads.combinations[1][2] = torch.tensor([2.0, 0, 0])
    assert heads.regulariser().item() == pytest.approx(5.0 + 1.0 + 2.0)  # sum of row norms
    assert heads(torch.rand(6, 5)).shape == (6, 5)


@pytest.mark.parametrize("tasks", [2, 3])
@pytest.mark.parametrize("size", [7, 12])
def test_afa_layer_keeps_shapes_for_any_task_count_and_size(tasks, size):
    xs = [torch.randn(2, 16, size, size, requires_grad=True) for _ in range(tasks)]
    out = AFALayer(tasks, 16)(xs)
    assert [o.shape for o in out] == [x.shape for x in xs]
    out[0].sum().backward()
    assert all(x.grad is not None and torch.any(x.grad != 0) for x in xs)  # task 0 mixes every branch


def test_afa_grad_balance_isolates_branches():
    xs = [torch.randn(2, 8, 5, 5, requires_grad=True) for _ in range(3)]
    out = AFALayer(3, 8, grad_balance=True)(xs)
    out[0].sum().backward()
    assert torch.all(xs[0].grad == 1) and xs[1].grad is None and xs[2].grad is None


@pytest.mark.parametrize("arch", ["mtl", "latent", "afa"])
def test_each_variant_trains_validates_and_infers_through_the_scripts(tmp_path, arch):
    csv_path = make_attribute_dataset(tmp_path / "d", n=40)
    images = tmp_path / "d" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(tmp_path / "s")]) == 0
    run = tmp_path / "run"
    assert train_script.main(["--train-csv", str(tmp_path / "s" / "train.csv"), "--val-csv",
                              str(tmp_path / "s" / "valid.csv"), "--images", str(images), "--arch", arch,
                              "--model-name", "test_resnet", "--image-size", "32",
                              "--batch-size", "8", "--workers", "0", "--epochs", "2", "--task-weighting", "dwa",
                              *(["--branch-model", "test_resnet"] if arch == "afa" else []),  # afa's setting only
                              "--output-dir", str(run)]) == 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"weight_neck", "weight_sleeve_length", "weight_pattern"} <= set(metrics.columns)
    assert not (run / "priors").exists()  # no prior stage for multi-head models
    best = str(run / "checkpoints" / "best.pt")
    assert validate_script.main(["--checkpoint", best, "--csv", str(tmp_path / "s" / "test.csv"), "--images",
                                 str(images), "--output-dir", str(tmp_path / "r")]) == 0
    assert "accuracy_per_attribute" in json.loads((tmp_path / "r" / "report.json").read_text())
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", best, "--images", str(images), "--output", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred.filter(like="prob_neck").sum(axis=1).round(4).eq(1).all()
