import json

import pytest
import torch

from partial_csl.engine.config import resolve_amp
from partial_csl.losses import PartialSelectiveLoss
from partial_csl.models import create_model


def test_amp_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_amp(False, "auto", cpu) is None
    assert resolve_amp(True, "auto", cpu) is torch.bfloat16
    assert resolve_amp(True, "float16", cpu) is torch.bfloat16  # no fp16 autocast on CPU
    assert resolve_amp(True, "auto", cuda) is torch.float16
    assert resolve_amp(True, "bfloat16", cuda) is torch.bfloat16
    assert resolve_amp(None, "auto", cuda) is torch.float16
    with pytest.raises(ValueError, match="unknown amp dtype"):
        resolve_amp(True, "int8", cpu)


@pytest.mark.parametrize("name", ["test_resnet", "tresnet_m"])
def test_bf16_autocast_on_cpu_is_finite_and_close_to_fp32(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=21, norm="torch").eval()
    x = torch.rand(4, 3, 64, 64)
    targets = torch.randint(-1, 2, (4, 21)).float()
    loss_fn = PartialSelectiveLoss("selective", gamma_neg=4, gamma_unann=4, clip=0.05, likelihood_topk=2)
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x)
    assert bf16.dtype == torch.bfloat16
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(torch.sigmoid(bf16.float()), torch.sigmoid(fp32), atol=0.05, rtol=0)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    loss = loss_fn(logits.float(), targets)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_precision_is_recorded_in_config(tmp_path):
    from conftest import make_attribute_dataset

    import images_train_test_valid_split as split_script
    import train as train_script

    csv_path = make_attribute_dataset(tmp_path / "d", n=40)
    images = tmp_path / "d" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(tmp_path / "s")]) == 0
    for flag, expected in (("--amp", "bfloat16"), ("--no-amp", "off")):
        run = tmp_path / flag.strip("-")
        assert train_script.main(["--train-csv", str(tmp_path / "s" / "train.csv"), "--val-csv",
                                  str(tmp_path / "s" / "valid.csv"), "--images", str(images), "--model-name",
                                  "resnet18", "--image-size", "32", "--batch-size", "8", "--workers", "0",
                                  "--epochs", "1", "--arch", "csl", "--partial_loss_mode", "negative", flag,
                                  "--output-dir", str(run)]) == 0
        config = json.loads((run / "config.json").read_text())
        assert config["mixed_precision"] == expected
        assert config["config"]["amp"] is (flag == "--amp")
