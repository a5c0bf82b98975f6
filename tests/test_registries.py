"""The registries carry what the rest of the code used to test names for: a loss's settings (TrainConfig fields and
train.py flags generated from its declarations), an architecture's output form and the settings it reads."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest

import train as train_script
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup.architectures import ARCHITECTURES, get_architecture, resolve_auto, unread_settings
from partial_csl.losses import LOSSES, get_loss
from partial_csl.options import Option, merge_options


def test_every_declared_loss_setting_is_a_constructor_keyword_a_config_field_and_a_flag():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    parser = train_script.get_args_parser()
    flags = {s for action in parser._actions for s in action.option_strings}
    for name, entry in LOSSES.items():
        accepted = inspect.signature(entry.build).parameters
        for option in entry.options:
            assert option.keyword in accepted, (name, option.name)
            assert fields[option.name].default == option.default
            assert {f"--{option.name}", f"--{option.name.replace('_', '-')}"} <= flags
    help_text = parser.format_help()
    assert "--loss hill, splc: logit margin of the focal-margin loss on positives" in " ".join(help_text.split())
    # one declaration read by a loss and a head: one field, one flag naming both
    assert "--loss aam; --head cosine: the scale s of the cosine head's logits" in " ".join(help_text.split())


def test_heads_declare_their_settings_and_what_they_need():
    from partial_csl.models.heads import HEADS, head_needs_label_graph, head_options

    cfg = TrainConfig(decoder_queries=7, decoder_embed=64, cosine_scale=8.0)
    assert head_options("ml_decoder", cfg) == {"num_queries": 7, "embed_dim": 64, "layers": 1,
                                               "learnable_queries": False}
    assert head_options("cosine", cfg) == {"scale": 8.0} and head_options("linear", cfg) == {}
    assert [name for name in HEADS if head_needs_label_graph(name)] == ["label_graph"]
    assert TrainConfig().graph_threshold == 0.4


def test_a_loss_reads_its_declared_settings_from_the_config():
    cfg = TrainConfig(hill_lambda=2.5, focal_margin=0.5, focal_gamma=1.0, loss_reduction="sum")
    loss = get_loss("hill").create(cfg, prior=None, num_classes=3)
    assert (loss.hill_lambda, loss.margin, loss.gamma, loss.reduction) == (2.5, 0.5, 1.0, "sum")
    aam = get_loss("aam").create(TrainConfig(aam_margin=0.2, cosine_scale=8.0, partial_loss_mode="negative"))
    assert (aam.margin, aam.scale) == (0.2, 8.0)  # renamed: aam_margin -> margin, cosine_scale -> scale


def test_two_different_declarations_of_one_setting_are_refused():
    a, b = Option("beta", 1.0, "one"), Option("beta", 2.0, "other")
    merged = merge_options([("x", [a]), ("y", [a])])
    assert merged["beta"] == (a, ["x", "y"])
    with pytest.raises(ValueError, match="option 'beta' is declared twice, differently \\(x and y\\)"):
        merge_options([("x", [a]), ("y", [b])])


def test_architectures_carry_their_output_form():
    assert {name: spec.output_form for name, spec in ARCHITECTURES.items()} == {
        "csl": "sigmoid", "mtl": "softmax", "latent": "softmax", "afa": "softmax"}


def test_a_typed_setting_selects_the_architecture_that_reads_it_or_stops_the_run(caplog):
    with caplog.at_level(logging.WARNING, logger="partial_csl.engine.setup.architectures"):
        assert resolve_auto(TrainConfig(latent_tasks=16)).arch == "latent"
        assert resolve_auto(TrainConfig(hill_lambda=2.0, loss="hill")).arch == "csl"
    assert "--arch auto trains latent, not csl, because --latent_tasks are set: only --arch latent reads them" in (
        caplog.text)
    with pytest.raises(ValueError, match=r"--arch mtl does not read --latent_tasks \(settings of --arch latent\)"):
        resolve_auto(TrainConfig(arch="mtl", latent_tasks=16))
    with pytest.raises(ValueError, match="no architecture reads them all"):
        resolve_auto(TrainConfig(latent_tasks=16, branch_model="resnet34"))
    assert resolve_auto(TrainConfig(arch="afa", task_weighting="dwa")).arch == "afa"  # read by every multi-head arch
    assert "hill_lambda" in unread_settings("mtl") and "task_weighting" not in unread_settings("latent")
    assert get_architecture("csl").reads[:2] == ("loss", "head")


def test_reading_a_checkpoint_fills_the_keys_older_files_lack_once(tmp_path):
    from partial_csl.engine.checkpoint import OPTIONAL_KEYS, load_checkpoint, save_checkpoint

    oldest = {"format_version": 1, "model_name": "test_resnet", "num_classes": 2, "class_names": ["a", "b"],
              "image_size": 32, "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}, "model": {},
              "weights": "ema", "thresholds": None}
    ckpt = load_checkpoint(save_checkpoint(oldest, tmp_path / "old.pt"))
    assert set(OPTIONAL_KEYS) <= set(ckpt)
    assert (ckpt["arch"], ckpt["arch_args"], ckpt["history"], ckpt["weights"]) == ("csl", {}, [], "ema")
    ckpt["arch_args"]["x"] = 1  # each checkpoint gets its own copy of a default
    assert OPTIONAL_KEYS["arch_args"] == {}


def test_a_typed_loss_or_head_setting_the_run_does_not_read_is_named(caplog):
    with caplog.at_level(logging.WARNING, logger="partial_csl.engine.setup.architectures"):
        resolve_auto(TrainConfig(arch="csl", loss="bce", hill_lambda=2.0, decoder_layers=2))
        resolve_auto(TrainConfig(arch="csl", loss="hill", hill_lambda=2.0))  # read: nothing to say
    assert caplog.messages == ["this run (--loss bce, --head linear) does not read --hill_lambda (--loss hill), "
                               "--decoder_layers (--head ml_decoder): they change nothing here"]
