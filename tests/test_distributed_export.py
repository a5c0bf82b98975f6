"""torchrun (2 CPU processes, gloo) against one process, and ONNX / torch.export export parity."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from conftest import ROOT, make_attribute_dataset
from PIL import Image

import export as export_script
import images_train_test_valid_split as split_script
import infer as infer_script
import train as train_script
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint
from partial_csl.engine.distributed import ShardedShuffleSampler
from partial_csl.engine.tools.export import export_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    csv_path = make_attribute_dataset(root / "d", n=56, seed=2)
    assert split_script.main(["--csv", str(csv_path), "--images", str(root / "d" / "images"), "--out-dir",
                              str(root / "s"), "--ratios", "0.6", "0.2", "0.2"]) == 0
    return root


def args_for(root, out, batch):
    # GroupNorm model, no augmentation, float32: per-sample computations, so only the batch split differs
    return ["--train-csv", str(root / "s" / "train.csv"), "--val-csv", str(root / "s" / "valid.csv"), "--images",
            str(root / "d" / "images"), "--arch", "csl", "--model-name", "test_efficientnet_gn", "--image-size", "32",
            "--batch-size", str(batch), "--workers", "0", "--epochs", "2", "--partial_loss_mode", "negative",
            "--augment", "none", "--no-amp", "--ema-decay", "0.9", "--device", "cpu", "--output-dir", str(out)]


def test_sharded_sampler_batches_union_to_the_single_process_batches():
    single = list(ShardedShuffleSampler(20, seed=4))
    ranks = [list(ShardedShuffleSampler(20, seed=4, rank=r, world_size=2)) for r in (0, 1)]
    b = 3
    for j in range(len(ranks[0]) // b):
        union = set(ranks[0][j * b:(j + 1) * b]) | set(ranks[1][j * b:(j + 1) * b])
        assert union == set(single[j * 2 * b:(j + 1) * 2 * b])


def test_two_process_ddp_matches_one_process_with_double_batch(data, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert train_script.main(args_for(data, single, 8)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "train.py"), *args_for(data, ddp, 4)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = pd.read_csv(single / "metrics.csv"), pd.read_csv(ddp / "metrics.csv")
    # stated tolerance: float reduction order only (all-reduce of gradients, per-rank batches)
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(b["val_mAP"], a["val_mAP"], atol=1e-2)
    assert json.loads((ddp / "config.json").read_text())["world_size"] == 2
    assert not (ddp / "checkpoints" / "last.pt.tmp").exists()

    ckpt = load_checkpoint(ddp / "checkpoints" / "last.pt")  # the training state; best.pt holds the weights only
    assert ckpt["world_size"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    single_w = load_checkpoint(single / "checkpoints" / "last.pt")["model"]
    ddp_w = load_checkpoint(ddp / "checkpoints" / "last.pt")["model"]
    for key in single_w:
        if single_w[key].is_floating_point():
            torch.testing.assert_close(ddp_w[key], single_w[key], rtol=1e-3, atol=1e-4)
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", str(ddp / "checkpoints" / "best.pt"), "--csv",
                              str(data / "s" / "test.csv"), "--images", str(data / "d" / "images"), "--output",
                              str(out)]) == 0
    assert len(pd.read_csv(out)) == len(pd.read_csv(data / "s" / "test.csv"))


def _torchrun(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """train.py under torchrun with 2 CPU processes. A hang fails the test: the launcher gets SIGTERM, on which it
    stops its workers (they run in their own sessions, out of reach of a process-group kill)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "train.py"), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # no pipe a worker could hold
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=60)
            pytest.fail(f"torchrun did not finish in {timeout} s (a rank waiting for the others?)")
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_two_process_ddp_matches_one_process_with_weight_decay(data, tmp_path, reduction):
    """DDP averages the gradients of the ranks; the L2 term must still be the reference's for the global batch."""
    # a decay large enough to steer Adam's steps, so that a coefficient off by the number of ranks shows
    extra = ["--loss_reduction", reduction, "--weight-decay", "0.05", "--lr", "1e-2", "--epochs", "1"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert train_script.main([*args_for(data, single, 8), *extra]) == 0
    result = _torchrun([*args_for(data, ddp, 4), *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    single_w = load_checkpoint(single / "checkpoints" / "last.pt")["model"]
    ddp_w = load_checkpoint(ddp / "checkpoints" / "last.pt")["model"]
    for key in single_w:
        if single_w[key].is_floating_point():
            torch.testing.assert_close(ddp_w[key], single_w[key], rtol=1e-3, atol=1e-4, msg=key)


def test_two_process_ddp_with_the_balanced_sampler_and_an_odd_number_of_images_finishes(data, tmp_path):
    """31 images on 2 ranks, batch 8: unpadded, rank 1 would draw 15 images (one batch) and rank 0 16 (two), and
    rank 0 would wait forever in the second batch's all-reduce."""
    lines = (data / "s" / "train.csv").read_text().splitlines()
    lines += (data / "s" / "valid.csv").read_text().splitlines()[1:]
    train_csv = tmp_path / "train31.csv"
    train_csv.write_text("\n".join(lines[:32]) + "\n")
    args = args_for(data, tmp_path / "run", 8)
    args[1] = str(train_csv)
    result = _torchrun([*args, "--sampler", "balanced", "--epochs", "1"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(metrics) == 1 and np.isfinite(metrics["train_loss"]).all()


@pytest.fixture(scope="module")
def checkpoints(data, tmp_path_factory):
    out = {}
    for name in ("tresnet_m", "test_resnet"):
        run = tmp_path_factory.mktemp(f"ckpt_{name}")
        assert train_script.main([*args_for(data, run, 8)[:-2], "--output-dir", str(run), "--arch", "csl",
                                  "--model-name", name, "--epochs", "1"]) == 0
        out[name] = run / "checkpoints" / "best.pt"
    return out


@pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning")  # no deprecated export path
@pytest.mark.parametrize("name", ["tresnet_m", "test_resnet"])
def test_exported_models_match_pytorch(checkpoints, tmp_path, name):
    ckpt = load_checkpoint(checkpoints[name])
    model = model_from_checkpoint(ckpt, "cpu")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    onnx_path, pt2_path = tmp_path / "m.onnx", tmp_path / "m.pt2"
    assert export_script.main(["--checkpoint", str(checkpoints[name]), "--format", "onnx", "--output",
                               str(onnx_path)]) == 0
    assert export_script.main(["--checkpoint", str(checkpoints[name]), "--format", "torch-export", "--output",
                               str(pt2_path)]) == 0
    session = ort.InferenceSession(str(onnx_path))
    for batch in (1, 3):  # dynamic batch size
        got = session.run(["probabilities"], {"images": x[:batch].numpy()})[0]
        np.testing.assert_allclose(got, expected[:batch], atol=1e-5)
    extra = {"metadata.json": ""}
    program = torch.export.load(pt2_path, extra_files=extra).module()
    with torch.no_grad():
        for batch in (1, 3):
            np.testing.assert_allclose(program(x[:batch]).numpy(), expected[:batch], atol=1e-5)
    assert json.loads(extra["metadata.json"]) == json.loads(pt2_path.with_suffix(".pt2.json").read_text())
    meta = json.loads(onnx_path.with_suffix(".onnx.json").read_text())
    assert meta["class_names"] == ckpt["class_names"] and meta["image_size"] == 32


def test_torchscript_is_refused_with_the_replacement_named(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"TorchScript was removed: torch\.jit is deprecated; use torch-export"):
        export_checkpoint(checkpoints["test_resnet"], "torchscript", tmp_path / "m.ts")
    assert not (tmp_path / "m.ts").exists()


def test_infer_with_onnx_gives_the_checkpoint_predictions(checkpoints, data, tmp_path):
    onnx_path = tmp_path / "m.onnx"  # TResNet-M's export is checked against PyTorch above
    assert export_script.main(["--checkpoint", str(checkpoints["test_resnet"]), "--format", "onnx", "--output",
                               str(onnx_path)]) == 0
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.open(data / "d" / "images" / f"img_00{i}.png").save(folder / f"img_{i}.png")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert infer_script.main(["--checkpoint", str(checkpoints["test_resnet"]), "--images", str(folder), "--output",
                              str(a), "--no-amp"]) == 0
    assert infer_script.main(["--onnx", str(onnx_path), "--images", str(folder), "--output", str(b)]) == 0
    pa, pb = pd.read_csv(a), pd.read_csv(b)
    assert pa[["filename", "neck", "sleeve_length", "pattern"]].equals(pb[["filename", "neck", "sleeve_length",
                                                                          "pattern"]])
    np.testing.assert_allclose(pa.filter(like="prob_").to_numpy(), pb.filter(like="prob_").to_numpy(), atol=1e-5)
