"""Heads beyond a linear classifier (ML-Decoder, label graph, cosine), label smoothing and the angular margin."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import csl_flags_only_for_csl, make_train_val

import export as export_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint
from partial_csl.engine.setup.architectures import build_model
from partial_csl.losses import AdditiveAngularMarginLoss, LabelSmoothingLoss, build_loss
from partial_csl.models.heads import LabelGraphHead, MLDecoderHead, cooccurrence_graph


def test_ml_decoder_uses_group_queries_cross_attention_only_and_a_group_fc():
    head = MLDecoderHead(in_features=16, num_classes=21, num_queries=5, embed_dim=32, layers=2, heads=4)
    assert head.num_queries == 5 and head.per_query == 5  # ceil(21 / 5) logits per query
    assert head.group_weight.shape == (5, 32, 5)
    assert not any("self_attn" in name for name, _ in head.named_modules())  # no self-attention among queries
    features = torch.randn(3, 16, 4, 4)
    assert head(features).shape == (3, 21)
    # the queries see the image only through cross-attention: other positions, other logits
    assert not torch.allclose(head.eval()(features), head(torch.randn(3, 16, 4, 4)))
    assert MLDecoderHead(16, 21).num_queries == 21 and MLDecoderHead(16, 300).num_queries == 100


def test_ml_decoder_queries_are_fixed_as_in_the_official_head_unless_asked_to_learn():
    fixed = MLDecoderHead(16, 21, embed_dim=32, heads=4)
    assert "queries" not in dict(fixed.named_parameters()) and "queries" in fixed.state_dict()
    fixed(torch.randn(2, 16, 3, 3)).sum().backward()
    assert fixed.queries.grad is None and fixed.group_weight.grad is not None
    learnt = MLDecoderHead(16, 21, embed_dim=32, heads=4, learnable_queries=True)
    learnt(torch.randn(2, 16, 3, 3)).sum().backward()
    assert learnt.queries.requires_grad and learnt.queries.grad.abs().sum() > 0
    learnt.load_state_dict(fixed.state_dict())  # the same key either way: checkpoints load into both forms
    assert torch.equal(learnt.queries.detach(), fixed.queries)


def test_cooccurrence_graph_counts_known_labels_only():
    targets = np.array([[1, 1, -1], [1, 0, 1], [1, -1, 1], [0, 1, 1]])
    graph = cooccurrence_graph(targets, threshold=0.5)
    # P(1 | 0): class 0 positive and class 1 known in images 0, 1 -> 1 of 2 positive = 0.5 -> linked
    # P(2 | 0): class 0 positive and class 2 known in images 1, 2 -> 2 of 2 = 1.0 -> linked
    # P(0 | 1): class 1 positive in images 0, 3 -> class 0 positive in 1 of 2 -> 0.5 -> linked
    # P(2 | 1): class 1 positive in images 0, 3, class 2 known only in image 3, positive there -> 1.0 (image 0 does
    # not count: its class 2 is unknown)
    # P(0 | 2): class 2 positive in images 1, 2, 3 -> class 0 positive in 2 of 3; P(1 | 2): 1 of the 2 known
    np.testing.assert_array_equal(graph, [[1, 1, 1], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(cooccurrence_graph(targets, threshold=0.9), [[1, 0, 1], [0, 1, 1], [0, 0, 1]])


def test_label_graph_attention_follows_the_graph():
    torch.manual_seed(0)
    head = LabelGraphHead(in_features=8, num_classes=3, graph_dim=16, heads=2).eval()
    features = torch.randn(2, 8, 2, 2)
    isolated = head(features)
    head.set_label_graph(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    linked = head(features)
    assert torch.allclose(isolated[:, 2], linked[:, 2], atol=1e-6)  # class 2 has no neighbours in either graph
    assert not torch.allclose(isolated[:, :2], linked[:, :2])
    assert "adjacency" in head.state_dict()  # the graph travels with the checkpoint


def test_label_smoothing_matches_a_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, -1.0]])
    eps = 0.2
    def bce(x, t):
        return -(t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-x))))
    expected_negative = bce(2.0, 1 - eps / 2) + bce(-1.0, eps / 2) + bce(0.5, eps / 2)
    loss = LabelSmoothingLoss("negative", label_smoothing=eps, reduction="sum")
    assert loss(logits, targets).item() == pytest.approx(expected_negative, rel=1e-6)
    ignore = LabelSmoothingLoss("ignore", label_smoothing=eps, reduction="sum")
    assert ignore(logits, targets).item() == pytest.approx(bce(2.0, 1 - eps / 2) + bce(-1.0, eps / 2), rel=1e-6)
    plain = LabelSmoothingLoss("ignore", label_smoothing=0.0, reduction="sum")
    known = targets != -1
    assert plain(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits[known], targets[known], reduction="sum").item(), rel=1e-6)


def test_additive_angular_margin_matches_a_hand_computation():
    scale, margin = 10.0, 0.3
    cosines = torch.tensor([[0.8, 0.1, -0.5, -0.99]])
    targets = torch.tensor([[1.0, 0.0, -1.0, 1.0]])
    loss = AdditiveAngularMarginLoss("negative", margin=margin, scale=scale, reduction="none")
    theta = math.acos(0.8)
    logits = loss.margin_logits(scale * cosines, targets)[0]
    assert logits[0].item() == pytest.approx(scale * math.cos(theta + margin), rel=1e-5)
    assert logits[1].item() == pytest.approx(scale * 0.1, rel=1e-5)  # negatives keep s cos(theta)
    assert logits[2].item() == pytest.approx(scale * -0.5, rel=1e-5)  # unknown as negative
    # theta + m past pi: the linear continuation cos(theta) - m sin(pi - m)
    assert logits[3].item() == pytest.approx(scale * (-0.99 - margin * math.sin(math.pi - margin)), rel=1e-5)
    ignored = AdditiveAngularMarginLoss("ignore", margin=margin, scale=scale, reduction="none")(scale * cosines,
                                                                                             targets)
    assert ignored[0, 2].item() == 0.0 and ignored[0, 0].item() > 0
    assert isinstance(build_loss("aam", margin=0.1, scale=5.0, gamma_neg=4), AdditiveAngularMarginLoss)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_train_val(tmp_path_factory.mktemp("heads"), seed=8)


@pytest.mark.parametrize("head,extra", [("ml_decoder", ["--decoder-queries", "7", "--decoder-embed", "32"]),
                                        ("label_graph", ["--loss", "label_smoothing"]),
                                        ("cosine", ["--loss", "aam", "--partial_loss_mode", "ignore"])])
def test_each_head_trains_and_round_trips_through_validate_infer_and_export(data, tmp_path, head, extra):
    run = tmp_path / "run"
    assert train_script.main(["--train-csv", str(data / "train.csv"), "--val-csv", str(data / "valid.csv"),
                              "--images", str(data / "images"), "--arch", "csl",
                              "--model-name", "test_resnet", "--image-size", "32",
                              "--batch-size", "8", "--workers", "0", "--epochs", "1", "--prior-epochs", "1",
                              "--no-amp", "--head", head, *extra, "--output-dir", str(run)]) == 0
    best = run / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    assert ckpt["arch_args"]["head"] == head
    model = model_from_checkpoint(ckpt)
    if head == "label_graph":
        assert model.head.adjacency.sum() > 21  # the training labels' graph, not the identity it starts from
    assert validate_script.main(["--checkpoint", str(best), "--csv", str(data / "valid.csv"), "--images",
                                 str(data / "images"), "--output-dir", str(tmp_path / "report")]) == 0
    assert infer_script.main(["--checkpoint", str(best), "--images", str(data / "images"), "--output",
                              str(tmp_path / "pred.csv")]) == 0
    assert export_script.main(["--checkpoint", str(best), "--format", "onnx", "--output",
                               str(tmp_path / "m.onnx")]) == 0
    import onnxruntime as ort

    images = torch.rand(2, 3, 32, 32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(["probabilities"], {"images": images.numpy()})[0]
    with torch.no_grad():
        expected = torch.sigmoid(model(images)).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-5)


def test_heads_are_refused_where_they_do_not_apply(data, tmp_path, capsys):
    common = ["--train-csv", str(data / "train.csv"), "--val-csv", str(data / "valid.csv"), "--images",
              str(data / "images"), "--arch", "csl",
              "--model-name", "test_resnet", "--image-size", "32", "--workers", "0",
              "--epochs", "1"]
    assert train_script.main([*common, "--loss", "aam", "--output-dir", str(tmp_path / "a")]) == 2
    assert "--loss aam (additive angular margin) needs cosine logits" in capsys.readouterr().err
    assert train_script.main([*common, "--arch", "mtl", "--head", "ml_decoder", "--output-dir",
                              str(tmp_path / "b")]) == 2
    assert "--arch mtl does not read --head (settings of --arch csl): drop them" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown head 'mlp'"):
        build_model("csl", "test_resnet", 21, head="mlp")


def _frozen_args(data, run, *extra):
    return csl_flags_only_for_csl([
            "--train-csv", str(data / "train.csv"), "--val-csv", str(data / "valid.csv"), "--images",
            str(data / "images"), "--arch", "csl",
            "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8",
            "--workers", "0", "--epochs", "2", "--prior-epochs", "1", "--no-amp", "--lr", "1e-2",
            "--freeze-backbone", "--output-dir", str(run), *extra])


def test_a_frozen_backbone_trains_the_head_only_from_cached_features(data, tmp_path, caplog):
    import logging

    import timm

    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=21).state_dict(), weights)
    shared = tmp_path / "embeddings"
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert train_script.main(_frozen_args(data, run, "--model-path", str(weights), "--head", "ml_decoder",
                                              "--decoder-embed", "32", "--cache-embeddings", "--embeddings-dir",
                                              str(shared))) == 0
    assert len(list(shared.glob("*.pt"))) == 2  # train and validation features; the prior stage reused them
    assert "backbone features from" in caplog.text
    saved, best = torch.load(weights, weights_only=True), load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    for key, value in saved.items():
        if not key.startswith("fc."):
            assert torch.equal(best[f"backbone.{key}"], value), key  # the backbone did not move
    assert validate_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--csv",
                                 str(data / "valid.csv"), "--images", str(data / "images"), "--output-dir",
                                 str(tmp_path / "report")]) == 0
    caplog.clear()
    with caplog.at_level(logging.INFO):  # a sweep: another head setting, the same features
        assert train_script.main(_frozen_args(data, tmp_path / "run2", "--model-path", str(weights), "--head",
                                              "ml_decoder", "--decoder-embed", "16", "--cache-embeddings",
                                              "--embeddings-dir", str(shared))) == 0
    assert caplog.text.count("backbone features from") >= 2 and len(list(shared.glob("*.pt"))) == 2


def test_cached_features_are_keyed_by_weights_and_images(data, tmp_path):
    from partial_csl.data.schema import default_schema
    from partial_csl.engine.setup.run_data import read_attribute_split
    from partial_csl.engine.training.embeddings import cache_key

    images = read_attribute_split(data / "valid.csv", data / "images", default_schema())
    torch.manual_seed(0)
    model = build_model("csl", "test_resnet", 21)
    key = cache_key(model, {"model_name": "test_resnet"}, images)
    assert cache_key(model, {"model_name": "test_resnet"}, images) == key
    assert cache_key(model, {"model_name": "test_resnet", "image_size": 64}, images) != key
    with torch.no_grad():
        model.get_classifier().weight.add_(1.0)
    assert cache_key(model, {"model_name": "test_resnet"}, images) == key  # the head does not change the features
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert cache_key(model, {"model_name": "test_resnet"}, images) != key  # other backbone weights
    torch.manual_seed(0)
    model = build_model("csl", "test_resnet", 21)
    first = data / "images" / images.filenames[0]
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the image was replaced
    try:
        assert cache_key(model, {"model_name": "test_resnet"}, images) != key
    finally:
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_freeze_backbone_is_refused_for_afa(data, tmp_path, capsys):
    assert train_script.main(_frozen_args(data, tmp_path / "r", "--arch", "afa", "--branch-model",
                                          "test_resnet")) == 2
    assert "needs a model with a separable backbone" in capsys.readouterr().err


def test_label_graph_head_starts_at_the_logit_scale_of_a_linear_head():
    torch.manual_seed(0)
    features = torch.rand(64, 512, 2, 2)  # post-ReLU-like pooled features
    linear = torch.nn.Linear(512, 21)(features.mean(dim=(2, 3)))
    graph = LabelGraphHead(in_features=512, num_classes=21)(features)
    ratio = graph.std().item() / linear.std().item()
    assert 0.3 < ratio < 3, ratio  # it was about 20x, and the head did not learn


@pytest.mark.parametrize("head", ["ml_decoder", "label_graph", "cosine"])
def test_reset_head_gives_every_head_parameter_a_fresh_initialisation(head):
    from partial_csl.engine.setup.architectures import build_model
    from partial_csl.models.backbone_head import reset_head
    options = {"head": head, "head_options": {"num_queries": 4, "embed_dim": 16, "layers": 1, "scale": 10.0}}
    model = build_model("csl", "test_resnet", 5, **options)
    torch.manual_seed(1)
    fresh = build_model("csl", "test_resnet", 5, **options)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(0.123)
    backbone = [k for k, _ in model.named_parameters() if k.startswith("backbone.")]
    reset_head(model, fresh)
    state, new = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(state[k], new[k]) for k in state if not k.startswith("backbone."))
    assert backbone and all((state[k] == 0.123).all() for k in backbone)  # the backbone is left as it is
