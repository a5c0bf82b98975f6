"""End to end through the real scripts: split -> train (both stages) -> validate -> infer, plus resume and errors."""

import json

import pandas as pd
import pytest
import torch
from conftest import csl_flags_only_for_csl, make_attribute_dataset

import images_train_test_valid_split as split_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint
from partial_csl.engine.training.trainer import NonFiniteLossError, train_one_epoch


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    csv_path = make_attribute_dataset(root / "data", n=64, seed=5)
    assert split_script.main(["--csv", str(csv_path), "--images", str(root / "data" / "images"),
                              "--out-dir", str(root / "split"), "--ratios", "0.625", "0.1875", "0.1875"]) == 0
    return root


def train_args(root, out, *extra, model="test_resnet"):
    return csl_flags_only_for_csl([
            "--train-csv", str(root / "split" / "train.csv"), "--val-csv", str(root / "split" / "valid.csv"),
            "--images", str(root / "data" / "images"), "--arch", "csl", "--model-name", model, "--image-size", "32",
            "--batch-size", "8", "--workers", "0", "--epochs", "2", "--prior-epochs", "1", "--lr", "1e-3",
            "--ema-decay", "0.9", "--output-dir", str(out), *extra])


def metrics_without_time(path):
    return pd.read_csv(path).drop(columns=["seconds"])


def test_tresnet_selective_run_then_validate_and_infer(split_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_script.main(train_args(split_data, run, "--partial_loss_mode", "selective", "--likelihood-topk",
                                        "2", "--epochs", "1", model="tresnet_m")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["partial_loss_mode"] == "selective" and "torch" in config["versions"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["stage"].tolist() == ["prior", "main"]
    assert {"train_loss", "val_mAP", "val_mAP_ema", "acc_neck", "acc_pattern"} <= set(metrics.columns)
    assert list((run / "tensorboard").iterdir())
    priors = pd.read_csv(run / "priors" / "prior_ignore.csv")
    assert priors["class"].tolist()[:2] == ["neck_0", "neck_1"] and len(priors) == 21

    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["class_names"][7] == "sleeve_length_0" and ckpt["schema"]["groups"][2]["name"] == "pattern"
    assert ckpt["image_size"] == 32 and ckpt["norm"] == "torch" and ckpt["weights"] in ("regular", "ema")
    assert ckpt["priors"] == pytest.approx(priors["prior"].tolist(), abs=1e-6)
    assert "train_state" not in ckpt and "ema" not in ckpt  # best.pt: the weights and what using them needs
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"optimizer", "scheduler", "scaler", "epoch", "rng"} <= set(last["train_state"])
    assert not (run / "prior_stage" / "checkpoints" / "best.pt").exists()  # the prior stage keeps its priors only

    report_dir = tmp_path / "report"
    assert validate_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--csv",
                                 str(split_data / "split" / "test.csv"), "--images",
                                 str(split_data / "data" / "images"), "--output-dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    for key in ("mAP", "mAP_unknown_as_negative", "mAP_per_attribute", "ap_per_class", "excluded_classes",
                "accuracy_per_attribute", "majority_accuracy_per_attribute", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert key in report
    assert set(report["accuracy_per_attribute"]) == {"neck", "sleeve_length", "pattern"}
    assert "majority-class baseline" in (report_dir / "report.md").read_text()

    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--csv",
                              str(split_data / "split" / "test.csv"), "--images",
                              str(split_data / "data" / "images"), "--output", str(out)]) == 0
    pred = pd.read_csv(out)
    test_rows = pd.read_csv(split_data / "split" / "test.csv")
    assert pred["filename"].tolist() == test_rows["filename"].tolist()
    assert list(pred.columns[:4]) == ["filename", "neck", "sleeve_length", "pattern"]
    assert len(pred.columns) == 4 + 21 and pred.columns[4] == "prob_neck_0"
    assert pred["neck"].between(0, 6).all() and pred["pattern"].between(0, 9).all()
    probs = pred.filter(like="prob_").to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()


def test_same_command_twice_gives_the_same_metrics(split_data, tmp_path):
    for name in ("a", "b"):
        assert train_script.main(train_args(split_data, tmp_path / name, "--partial_loss_mode", "negative",
                                            "--workers", "2")) == 0
    pd.testing.assert_frame_equal(metrics_without_time(tmp_path / "a" / "metrics.csv"),
                                  metrics_without_time(tmp_path / "b" / "metrics.csv"))


def test_run_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_one(split_data, tmp_path, capsys):
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    args = ("--partial_loss_mode", "selective", "--epochs", "3")
    assert train_script.main(train_args(split_data, full, *args)) == 0
    steps = len(pd.read_csv(split_data / "split" / "train.csv")) // 8
    stop = 2 * steps + steps // 2 + 1  # one prior epoch, one main epoch, then the middle of the second main epoch
    assert train_script.main(train_args(split_data, crashed, *args, "--stop-after-steps", str(stop))) == 3
    assert "continue with --resume" in capsys.readouterr().err
    assert len(pd.read_csv(crashed / "metrics.csv")) == 2
    assert train_script.main(train_args(split_data, crashed, *args, "--resume")) == 0
    pd.testing.assert_frame_equal(metrics_without_time(full / "metrics.csv"),
                                  metrics_without_time(crashed / "metrics.csv"))
    a = load_checkpoint(full / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(crashed / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((crashed / "checkpoints").glob("*.tmp"))


def test_script_errors_are_clear(split_data, tmp_path, capsys):
    images = str(split_data / "data" / "images")
    test_csv = str(split_data / "split" / "test.csv")
    assert validate_script.main(["--checkpoint", str(tmp_path / "none.pt"), "--csv", test_csv, "--images", images,
                                 "--output-dir", str(tmp_path / "r")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

    run = tmp_path / "run"
    assert train_script.main(train_args(split_data, run, "--partial_loss_mode", "ignore", "--epochs", "1")) == 0
    best = str(run / "checkpoints" / "best.pt")
    other_schema = tmp_path / "schema.json"
    other_schema.write_text('{"groups": [{"name": "colour", "classes": 3}]}')
    assert validate_script.main(["--checkpoint", best, "--csv", test_csv, "--images", images, "--output-dir",
                                 str(tmp_path / "r"), "--schema", str(other_schema)]) == 2
    assert "was trained for attributes" in capsys.readouterr().err
    colour_csv = tmp_path / "colour.csv"
    colour_csv.write_text("filename,colour\nimg_000.png,1\n")
    assert validate_script.main(["--checkpoint", best, "--csv", str(colour_csv), "--images", images,
                                 "--output-dir", str(tmp_path / "r")]) == 2
    assert "missing column(s) ['neck', 'sleeve_length', 'pattern']" in capsys.readouterr().err

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    for name in ("img_000.png", "img_001.png"):
        (folder / name).write_bytes((split_data / "data" / "images" / name).read_bytes())
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", best, "--images", str(folder), "--output", str(out)]) == 0
    assert "skipped unreadable image broken.jpg" in capsys.readouterr().err
    assert pd.read_csv(out)["filename"].tolist() == ["img_000.png", "img_001.png"]

    not_a_checkpoint = tmp_path / "weights.pt"
    torch.save({"model": {}}, not_a_checkpoint)
    assert infer_script.main(["--checkpoint", str(not_a_checkpoint), "--images", str(folder), "--output",
                              str(out)]) == 2
    assert "not a checkpoint of this project" in capsys.readouterr().err


def test_non_finite_loss_names_epoch_and_step():
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    class NanLoss(torch.nn.Module):
        reduction = "mean"

        def forward(self, logits, targets):
            return logits.sum() * float("nan")

    batches = [(torch.rand(2, 4), torch.zeros(2, 3))]
    with pytest.raises(NonFiniteLossError, match=r"stage 'main', epoch 3, step 1"):
        train_one_epoch(model, batches, NanLoss(), optimizer, scheduler, torch.device("cpu"), epoch=2, stage="main",
                        ema=None, scaler=torch.amp.GradScaler("cpu", enabled=False), amp_dtype=None, grad_clip=0.0)


@pytest.mark.parametrize("loss", ["bce", "focal", "asl", "zlpr"])
def test_every_loss_of_the_registry_trains_through_train_py(split_data, tmp_path, loss):
    run = tmp_path / loss
    assert train_script.main(train_args(split_data, run, "--loss", loss, "--epochs", "1")) == 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["stage"].tolist() == ["main"]  # no prior stage: only partial_asl's selective mode needs priors
    assert metrics["train_loss"].notna().all() and (metrics["train_loss"] > 0).all()
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["loss"] == loss and ckpt["priors"] is None
    assert json.loads((run / "config.json").read_text())["config"]["loss"] == loss


def test_loss_flag_is_refused_for_the_per_attribute_heads(split_data, tmp_path, capsys):
    args = [*train_args(split_data, tmp_path / "r", "--arch", "mtl"), "--loss", "bce"]  # not dropped by train_args
    assert train_script.main(args) == 2
    assert "--arch mtl does not read --loss (settings of --arch csl): drop them" in capsys.readouterr().err


def test_checkpoints_of_format_1_with_every_architectures_args_still_load(split_data, tmp_path):
    run = tmp_path / "run"
    assert train_script.main(train_args(split_data, run, "--partial_loss_mode", "ignore", "--epochs", "1")) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    old = {**ckpt, "arch_args": {"group_sizes": [7, 4, 10], "latent_tasks": 32, "branch_model": "resnet18",
                                 "afa_stages": (4,), "afa_grad_balance": False}}
    old.pop("loss")
    model = model_from_checkpoint(old)
    images = torch.rand(2, 3, 32, 32)
    reference = model_from_checkpoint(ckpt)
    torch.testing.assert_close(model(images), reference(images))


def test_the_run_announces_its_training_time_from_the_first_steps(caplog):
    import logging

    from partial_csl.engine.training.records import RunClock

    clock = RunClock(total_steps=600, warmup=1, measure=2)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            clock.step()
    assert "estimated training time" in caplog.text and "x 600 steps in all stages" in caplog.text
