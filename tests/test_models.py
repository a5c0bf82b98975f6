import pytest
import timm
import torch
from timm.layers import BatchNormAct2d

from partial_csl.layers.abn import ABN, inplace_abn_available
from partial_csl.models import TRESNET_MODELS, PretrainedLoadError, create_model, norm_backend_of, resolve_norm_backend


@pytest.mark.parametrize("name", TRESNET_MODELS)
def test_every_tresnet_trains_a_step_on_cpu(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, norm="torch")
    assert not any(isinstance(m, BatchNormAct2d) for m in model.modules())
    assert norm_backend_of(model) == "torch"
    model.train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_auto_backend_is_torch_on_cpu():
    assert resolve_norm_backend("auto", "cpu") == "torch"
    assert resolve_norm_backend("torch", "cuda") == "torch"
    with pytest.raises(ValueError, match="unknown norm backend"):
        resolve_norm_backend("fast")


def test_any_timm_model_keeps_its_own_norm():
    model = create_model("test_resnet", num_classes=4)
    assert norm_backend_of(model) == "native"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no_such_model_xyz", num_classes=4)


def test_our_tresnet_equals_timm_tresnet_with_converted_scales():
    torch.manual_seed(0)
    ours = create_model("tresnet_m", num_classes=3, norm="torch").eval()
    with torch.no_grad():
        for m in ours.modules():
            if isinstance(m, ABN):
                m.weight.normal_()
                m.running_var.uniform_(0.5, 1.5)
    reference = timm.create_model("tresnet_m", num_classes=3).eval()
    state = {k: (v.abs() + 1e-5 if k.endswith("bn.weight") else v) for k, v in ours.state_dict().items()}
    reference.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


def test_pretrained_round_trip_of_a_saved_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("tresnet_m", num_classes=21, norm="torch").eval()
    path = tmp_path / "ours.pth"
    torch.save({"format_version": 1, "model": model.state_dict()}, path)  # as train.py writes it
    loaded = create_model("tresnet_m", num_classes=21, pretrained=str(path), norm="torch").eval()
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x))


def test_timm_format_weights_are_converted_to_abn_semantics(tmp_path):
    torch.manual_seed(1)
    timm_model = timm.create_model("tresnet_m", num_classes=1000).eval()
    with torch.no_grad():
        for m in timm_model.modules():
            if isinstance(m, BatchNormAct2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.normal_()
    path = tmp_path / "timm_tresnet_m.pth"
    torch.save(timm_model.state_dict(), path)
    ours = create_model("tresnet_m", num_classes=1000, pretrained=str(path), norm="torch").eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), timm_model(x), rtol=1e-4, atol=1e-4)
    dropped = create_model("tresnet_m", num_classes=21, pretrained=str(path), norm="torch").eval()
    torch.testing.assert_close(dropped.body.conv1.conv.weight, timm_model.body.conv1.conv.weight)


def to_miil_keys(state):
    """Our/timm names -> the original MIIL names (conv1.0 = conv, conv1.1 = InPlaceABN)."""
    out = {}
    for key, value in state.items():
        key = key.replace(".conv.", ".0.").replace(".bn.", ".1.")
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = value
    return out


def test_miil_format_checkpoint_keeps_inplace_abn_weights(tmp_path):
    torch.manual_seed(2)
    source = create_model("tresnet_m", num_classes=9605, norm="torch").eval()
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, ABN):
                m.weight.normal_()
    path = tmp_path / "mtresnet_opim.pth"
    torch.save({"model": to_miil_keys(source.state_dict()), "num_classes": 9605}, path)
    assert "body.conv1.0.weight" in torch.load(path, weights_only=True)["model"]
    loaded = create_model("tresnet_m", num_classes=21, pretrained=str(path), norm="torch").eval()
    for name in ("body.layer1.0.conv1.bn.weight", "body.layer3.0.downsample.1.bn.running_var"):
        torch.testing.assert_close(loaded.state_dict()[name], source.state_dict()[name])
    assert loaded.head.fc.weight.shape == (21, 2048)


def test_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth"):
        create_model("tresnet_m", 5, pretrained=str(tmp_path / "nothere.pth"))
    good = tmp_path / "good.pth"
    torch.save(create_model("tresnet_m", 5).state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(PretrainedLoadError, match=r"truncated\.pth: cannot be read"):
        create_model("tresnet_m", 5, pretrained=str(truncated))
    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), other)
    with pytest.raises(PretrainedLoadError, match="no key matches the model"):
        create_model("tresnet_m", 5, pretrained=str(other))
    wrong = tmp_path / "wrong_shape.pth"
    state = create_model("tresnet_m", 5).state_dict()
    state["body.conv1.conv.weight"] = torch.zeros(64, 48, 5, 5)
    torch.save(state, wrong)
    with pytest.raises(PretrainedLoadError, match=r"wrong_shape\.pth: key 'body.conv1.conv.weight' has shape"):
        create_model("tresnet_m", 5, pretrained=str(wrong))


@pytest.mark.skipif(not inplace_abn_available(), reason="inplace_abn is not installed (make inplace-abn builds it)")
def test_checkpoint_moves_between_backends_with_equal_outputs(tmp_path):
    torch.manual_seed(0)
    ours = create_model("tresnet_m", 5, norm="torch")
    ours.train()
    ours(torch.rand(4, 3, 64, 64))  # move the running statistics away from their init
    ours.eval()
    path = tmp_path / "torch_backend.pth"
    torch.save(ours.state_dict(), path)
    kernels = create_model("tresnet_m", 5, norm="inplace_abn")
    kernels.load_state_dict(torch.load(path, weights_only=True))
    kernels.eval()
    assert norm_backend_of(kernels) == "inplace_abn"
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(kernels(x), ours(x), rtol=1e-4, atol=1e-4)
    back = create_model("tresnet_m", 5, norm="torch")
    back.load_state_dict(kernels.state_dict())
    torch.testing.assert_close(back.eval()(x), ours(x), rtol=1e-5, atol=1e-5)


def test_channels_last_inference_gives_the_same_outputs():
    from partial_csl.models import optimize_for_inference

    torch.manual_seed(0)
    model = create_model("tresnet_m", 5, norm="torch").eval()
    x = torch.rand(2, 3, 64, 64)
    expected = model(x)
    fast = optimize_for_inference(model, channels_last=True)
    torch.testing.assert_close(fast(x.to(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-4)
