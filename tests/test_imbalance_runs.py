"""Every imbalance option trains through train.py on tiny data; the post-hoc offset reaches validation and inference;
cRT (a new head on the first run's backbone, class-balanced sampling) is one command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_runs import split_data, train_tiny

from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.engine.tools.export import export_checkpoint
from partial_csl.models import logits_to_probabilities


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    return split_data(tmp_path_factory.mktemp("imbalance"))


@pytest.mark.parametrize("extra", [
    ("--loss", "bce", "--class-weights", "effective_number", "--cb-beta", "0.9", "--drw-start-epoch", "1"),
    ("--loss", "focal", "--logit-adjust", "train", "--la-tau", "0.5"),
    ("--loss", "db", "--db-neg-scale", "2"),
    ("--arch", "mtl", "--logit-adjust", "balanced_softmax", "--class-weights", "effective_number"),
    ("--arch", "mtl", "--logit-adjust", "train", "--drw-start-epoch", "1", "--class-weights", "effective_number"),
    ("--sampler", "balanced", "--sampler-power", "0.25", "--sampler-max-repeats", "2", "--no-sampler-replacement"),
    ("--sampler", "raking", "--sampler-power", "1", "--no-sampler-replacement"),
], ids=["cb-drw", "la-train", "db", "mtl-bsm-cb", "mtl-la-drw", "balanced-gentle", "raking-gentle"])
def test_imbalance_option_trains(tiny_split, tmp_path, extra):
    best = load_checkpoint(train_tiny(*tiny_split, tmp_path / "run", *extra))
    assert best["logit_adjustment"] is None


@pytest.mark.parametrize("arch", ["csl", "mtl"])
def test_posthoc_adjustment_is_stored_and_used_by_every_reader(tiny_split, tmp_path, arch):
    ckpt = load_checkpoint(train_tiny(*tiny_split, tmp_path / "run", "--arch", arch, "--logit-adjust", "posthoc",
                                      "--la-tau", "1.5"))
    offset = torch.tensor(ckpt["logit_adjustment"])
    assert offset.shape == (len(ckpt["class_names"]),) and offset.abs().sum() > 0
    plain = dict(ckpt, logit_adjustment=None)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        raw = model_from_checkpoint(plain)(images)
        adjusted_model = model_from_checkpoint(ckpt)
        assert torch.allclose(adjusted_model(images), raw + offset, atol=1e-5)
        predictor = Predictor(ckpt, amp=False)  # what infer.py and the web page predict with
        expected = logits_to_probabilities(adjusted_model, raw + offset).numpy()
        assert np.allclose(predictor.run_batch(images), expected, atol=1e-5)
    if arch == "csl":  # the exported graph carries the offset too
        checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
        export_checkpoint(checkpoint, "torch-export", tmp_path / "model.pt2")
        with torch.no_grad():
            assert torch.allclose(torch.export.load(tmp_path / "model.pt2").module()(images), torch.tensor(expected),
                                  atol=1e-5)


def test_crt_retrains_a_reset_head_on_the_first_runs_backbone(tiny_split, tmp_path):
    first = train_tiny(*tiny_split, tmp_path / "first")
    second = train_tiny(*tiny_split, tmp_path / "crt", "--freeze-backbone", "--model-path", str(first),
                        "--sampler", "balanced", "--reset-head", "--epochs", "1")
    old, new = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    head = {k for k in new if k.startswith("fc.") or ".fc." in k or k.startswith("head.")}
    assert head, "the classifier's tensors"
    assert all(torch.equal(old[k], new[k]) for k in new if k not in head and old[k].is_floating_point())
    assert any(not torch.equal(old[k], new[k]) for k in head)


def test_per_attribute_heads_train_under_class_balanced_weights_by_default(tiny_split, tmp_path):
    run = tmp_path / "run"
    best = load_checkpoint(train_tiny(*tiny_split, run, "--arch", "mtl", "--class-weights", "auto"))
    assert best["arch"] == "mtl" and best["arch_args"]["group_sizes"] == [7, 4, 10]
    config = best["config"]
    assert (config["arch"], config["class_weights"], config["logit_adjust"]) == ("mtl", "effective_number", "none")
    assert best["logit_adjustment"] is None  # class weights act in training only: nothing to add at prediction
    assert not (run / "prior_stage").exists()  # no temporary ignore-mode model without the selective loss


def test_attribute_data_trains_the_csl_recipe_by_default(tiny_split, tmp_path):
    run = tmp_path / "run"
    best = load_checkpoint(train_tiny(*tiny_split, run, "--arch", "auto", "--epochs", "2"))
    config = best["config"]
    assert best["arch"] == "csl" and best["num_classes"] == 21
    assert (config["arch"], config["partial_loss_mode"], config["likelihood_topk"], config["gamma_unann"],
            config["prior_epochs"], config["class_weights"]) == ("csl", "selective", 3, 4.0, 1, "none")
    assert (run / "prior_stage").is_dir()  # the temporary ignore-mode model estimated the priors


def test_crt_on_a_per_attribute_heads_run_loads_its_backbone(tiny_split, tmp_path):
    first = train_tiny(*tiny_split, tmp_path / "first", "--arch", "mtl")  # backbone.* and heads.*
    second = train_tiny(*tiny_split, tmp_path / "crt", "--arch", "mtl", "--freeze-backbone", "--model-path",
                        str(first), "--sampler", "balanced", "--reset-head", "--epochs", "1")
    old, new = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    backbone = [k for k in new if k.startswith("backbone.") and new[k].is_floating_point()]
    assert backbone and all(torch.equal(old[k], new[k]) for k in backbone)
    assert any(not torch.equal(old[k], new[k]) for k in new if k.startswith("heads."))
