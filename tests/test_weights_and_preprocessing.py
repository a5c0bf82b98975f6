"""Preprocessing that travels with the model, pretrained weights in every format people download, shareable files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import csl_flags_only_for_csl, make_train_val
from PIL import Image
from safetensors.torch import save_file

import export as export_script
import train as train_script
from partial_csl.data.transforms import DataConfig, resolve_data_config
from partial_csl.engine.checkpoint import checkpoint_info, load_checkpoint
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.models import PretrainedLoadError, create_model

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_train_val(tmp_path_factory.mktemp("weights"), seed=6)


def train(data: Path, out: Path, model: str, *extra: str) -> Path:
    assert train_script.main(csl_flags_only_for_csl([
        "--train-csv", str(data / "train.csv"), "--val-csv", str(data / "valid.csv"), "--images", str(data / "images"),
        "--arch", "csl", "--model-name", model, "--image-size", "32", "--batch-size", "8", "--workers", "0",
        "--epochs", "1", "--no-amp", "--partial_loss_mode", "ignore", "--output-dir", str(out), *extra])) == 0
    return out / "checkpoints" / "best.pt"


def test_tresnets_keep_the_miil_convention_and_other_models_their_own():
    assert resolve_data_config("tresnet_m", 224) == DataConfig(224, (0, 0, 0), (1, 1, 1), "bilinear", 0.875)
    resnet = resolve_data_config("resnet18", 64)
    assert list(resnet.mean) == IMAGENET_MEAN and list(resnet.std) == IMAGENET_STD
    assert resnet.interpolation == "bicubic"
    hub = resolve_data_config("resnet18", 64, {"mean": [0.5, 0.5, 0.5], "interpolation": "bilinear"})
    assert hub.mean == (0.5, 0.5, 0.5) and hub.std == tuple(IMAGENET_STD) and hub.interpolation == "bilinear"
    flags = resolve_data_config("resnet18", 64, {"mean": [0.5] * 3}, mean=[0.1, 0.2, 0.3], interpolation="nearest")
    assert flags.mean == (0.1, 0.2, 0.3) and flags.interpolation == "nearest"
    format_1 = {"image_size": 32, "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}, "model_name": "m",
                "class_names": ["a"]}
    assert checkpoint_info(format_1).data_config == DataConfig(32)  # size and the MIIL normalisation only
    with pytest.raises(ValueError, match="unknown interpolation 'lanczos9'"):
        DataConfig(32, interpolation="lanczos9")


def test_a_resnet18_checkpoint_carries_imagenet_normalisation_and_inference_applies_it(data, tmp_path):
    best = train(data, tmp_path / "run", "resnet18")
    ckpt = load_checkpoint(best)
    assert ckpt["data_config"]["mean"] == IMAGENET_MEAN and ckpt["data_config"]["std"] == IMAGENET_STD
    assert ckpt["data_config"]["interpolation"] == "bicubic"
    predictor = Predictor.from_checkpoint(best, device="cpu")
    grey = Image.fromarray(np.full((40, 40, 3), 128, dtype=np.uint8))
    pixels = predictor.transform(grey)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixels[:, 0, 0], expected)
    export_script.main(["--checkpoint", str(best), "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["data_config"]["mean"] == IMAGENET_MEAN and meta["postprocessing"] == {"activation": "sigmoid"}


def test_flags_override_the_normalisation_and_the_checkpoint_records_it(data, tmp_path):
    best = train(data, tmp_path / "run", "resnet18", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25",
                 "0.25", "--interpolation", "bilinear")
    config = load_checkpoint(best)["data_config"]
    assert config["mean"] == [0.5] * 3 and config["std"] == [0.25] * 3 and config["interpolation"] == "bilinear"


def test_multi_head_export_metadata_says_softmax_per_attribute(data, tmp_path):
    best = train(data, tmp_path / "run", "test_resnet", "--arch", "mtl")
    assert export_script.main(["--checkpoint", str(best), "--format", "torch-export", "--output",
                               str(tmp_path / "m.pt2")]) == 0
    post = json.loads((tmp_path / "m.pt2.json").read_text())["postprocessing"]
    assert post == {"activation": "softmax_per_attribute",
                    "attribute_slices": {"neck": [0, 7], "sleeve_length": [7, 11], "pattern": [11, 21]}}


def _random_resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in timm.create_model("resnet18", num_classes=1000).state_dict().items()}


def _hub_folder(root: Path, state: dict, architecture: str = "resnet18") -> Path:
    root.mkdir(parents=True)
    save_file(state, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"architecture": architecture, "num_classes": 1000,
                                                  "pretrained_cfg": {"mean": [0.4, 0.4, 0.4],
                                                                     "std": [0.2, 0.2, 0.2]}}))
    return root


@pytest.mark.parametrize("layout", ["safetensors", "pth", "bin", "hub_folder", "wrapped"])
def test_every_weights_format_loads_the_backbone_and_reinitialises_the_head(tmp_path, layout):
    state = _random_resnet18()
    if layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    elif layout == "hub_folder":
        path = _hub_folder(tmp_path / "hub", state)
    else:
        path = tmp_path / f"w.{'pth' if layout != 'bin' else 'bin'}"
        torch.save({"state_dict": state} if layout == "wrapped" else state, path)
    model = create_model("resnet18", num_classes=21, pretrained=str(path))
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (21, 512)  # the 1000-class head is not loaded: fresh for 21 classes


def test_a_hub_folder_sets_the_preprocessing_of_a_run(data, tmp_path):
    folder = _hub_folder(tmp_path / "hub", _random_resnet18())
    best = train(data, tmp_path / "run", "resnet18", "--model-path", str(folder))
    config = load_checkpoint(best)["data_config"]
    assert config["mean"] == [0.4] * 3 and config["std"] == [0.2] * 3 and config["interpolation"] == "bicubic"


def test_mismatched_weights_are_refused_naming_the_file_and_the_first_bad_key(tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet50").state_dict().items()}, str(other))
    with pytest.raises(PretrainedLoadError, match=r"resnet50.safetensors: key 'layer1.0.conv1.weight' has shape"):
        create_model("resnet18", num_classes=21, pretrained=str(other))
    folder = _hub_folder(tmp_path / "hub50", _random_resnet18(), architecture="resnet50")
    with pytest.raises(PretrainedLoadError, match=r"holds weights of 'resnet50' \(config.json\), not of 'resnet18'"):
        create_model("resnet18", num_classes=21, pretrained=str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedLoadError, match=r"a folder without model\.safetensors or pytorch_model\.bin"):
        create_model("resnet18", num_classes=21, pretrained=str(tmp_path / "empty"))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(PretrainedLoadError, match=r"broken\.safetensors: cannot be read as a weights file"):
        create_model("resnet18", num_classes=21, pretrained=str(broken))


def test_best_is_the_size_of_the_weights_and_files_follow_the_umask(data, tmp_path):
    old = os.umask(0o027)
    try:
        best = train(data, tmp_path / "run", "resnet18")
    finally:
        os.umask(old)
    weights = sum(v.numel() * v.element_size() for v in load_checkpoint(best)["model"].values())
    assert best.stat().st_size <= 1.1 * weights
    assert (best.parent / "last.pt").stat().st_size > 2.5 * weights  # EMA + Adam moments for --resume
    for path in (best, best.parent / "last.pt", tmp_path / "run" / "metrics.csv", tmp_path / "run" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_a_timm_state_dict_with_a_sequential_stem_is_not_mistaken_for_miil(tmp_path):
    torch.manual_seed(1)
    state = timm.create_model("test_resnet", num_classes=21).state_dict()  # conv1.0.weight: a deep stem
    torch.save(state, tmp_path / "w.pth")
    loaded = create_model("test_resnet", num_classes=21, pretrained=str(tmp_path / "w.pth")).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
