"""When a selective run needs class priors, and when it does not (``--prior_threshold 0``); what the prior stage
trains with and on."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_attribute_dataset

import train as train_script
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.distributed import DistInfo
from partial_csl.engine.setup.build import build_criterion
from partial_csl.engine.setup.run_data import LabelledImages, LabelSpace
from partial_csl.engine.training.run import Run, prior_stage_run, uses_prior_stage
from partial_csl.losses import PartialSelectiveLoss
from partial_csl.prior_estimates import holdout_mask


def test_a_zero_threshold_needs_no_priors():
    assert uses_prior_stage(TrainConfig(arch="csl"))
    assert not uses_prior_stage(TrainConfig(arch="csl", prior_threshold=0))
    assert not uses_prior_stage(TrainConfig(arch="csl", prior_threshold=0.0, prior_path="p.csv"))
    assert not uses_prior_stage(TrainConfig(arch="csl", partial_loss_mode="ignore"))
    # the loss with threshold 0 and no prior: only the likelihood top-k ignores unknowns
    logits, targets = torch.randn(4, 3), torch.tensor([[-1, 0, 1], [-1, -1, 0], [1, -1, -1], [0, 0, -1]])
    without = PartialSelectiveLoss("selective", prior_threshold=0, prior=None, likelihood_topk=1)
    with_prior = PartialSelectiveLoss("selective", prior_threshold=0, prior=torch.ones(3), likelihood_topk=1)
    torch.testing.assert_close(without(logits, targets), with_prior(logits, targets))


def validation_copy(csv_path: Path) -> Path:
    """The training CSV again, as another file: --val-csv may not be the --train-csv file itself."""
    copy = csv_path.with_name("valid.csv")
    shutil.copyfile(csv_path, copy)
    return copy


@pytest.mark.parametrize("prior_file", [False, True])
def test_selective_run_with_threshold_zero_skips_the_prior_stage(tmp_path, caplog, prior_file):
    csv_path = make_attribute_dataset(tmp_path / "data", n=24, seed=4)
    images = tmp_path / "data" / "images"
    run = tmp_path / "run"
    extra = ["--prior_path", str(tmp_path / "never_read.csv")] if prior_file else []
    with caplog.at_level(logging.INFO, logger="partial_csl.engine.training.run"):
        assert train_script.main(["--train-csv", str(csv_path), "--val-csv", str(validation_copy(csv_path)),
                                  "--images", str(images), "--arch", "csl",
                                  "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8",
                                  "--workers", "0", "--epochs", "1", "--no-amp", "--device", "cpu",
                                  "--partial_loss_mode", "selective", "--prior_threshold", "0", *extra,
                                  "--output-dir", str(run)]) == 0
    assert pd.read_csv(run / "metrics.csv")["stage"].tolist() == ["main"]
    assert not (run / "prior_stage").exists() and not (run / "priors" / "prior_ignore.csv").exists()
    (message,) = [r for r in caplog.records if "--prior_threshold 0" in r.getMessage()]
    assert "prior stage is skipped" in message.getMessage()
    assert (message.levelno == logging.WARNING) == prior_file and ("is not read" in message.getMessage()) == prior_file


def tiny_run(cfg: TrainConfig, targets: np.ndarray) -> Run:
    """A Run holding only what the prior stage's view reads (config, labels, training targets)."""
    labels = LabelSpace([f"c{i}" for i in range(targets.shape[1])])
    train = LabelledImages(Path("."), [f"{i}.png" for i in range(len(targets))], targets)
    return Run(cfg, labels, train, train, Path("."), torch.device("cpu"), DistInfo(), None, None, None, None)


def test_the_prior_stage_trains_plain_cross_entropy_whatever_the_main_focusing(caplog):
    cfg = TrainConfig(arch="csl", class_weights="none", logit_adjust="none", gamma_neg=3, gamma_unann=4, clip=0.05,
                      prior_holdout=0)
    run = tiny_run(cfg, np.array([[1, -1], [0, 1]]))
    with caplog.at_level(logging.INFO, logger="partial_csl.engine.training.run"):
        prior_run, holdout = prior_stage_run(run, seed=0)
    assert holdout is None and prior_run.cfg.loss == "bce" and run.cfg.loss == "partial_asl"
    assert "prior stage: bce loss in ignore mode" in caplog.text
    criterion = build_criterion(prior_run.cfg, None, run.labels)
    assert (criterion.gamma_pos, criterion.gamma_neg, criterion.gamma_unann, criterion.clip) == (0, 0, 0, 0)
    logits, targets = torch.zeros(2, 2), torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    # three annotated entries at p = 1/2, log 2 each, summed over classes and averaged over the 2 images
    assert criterion(logits, targets).item() == pytest.approx(1.5 * math.log(2))
    # what it trained with before: the negative's q = 1/2 + clip, weighted by (1 - q)^gamma_neg
    focused = build_criterion(dataclasses.replace(cfg, partial_loss_mode="ignore"), None, run.labels)
    assert focused(logits, targets).item() == pytest.approx((2 * math.log(2) - 0.45 ** 3 * math.log(0.55)) / 2)


def test_the_prior_stage_hides_its_holdout_from_training_only():
    targets = np.array([[1, 0], [1, 0], [1, -1], [0, 1], [0, 1], [0, -1], [-1, 1], [1, 0], [0, 0], [1, 1]])
    run = tiny_run(TrainConfig(arch="csl", prior_holdout=0.5, prior_estimate="em"), targets.copy())
    prior_run, holdout = prior_stage_run(run, seed=5)
    np.testing.assert_array_equal(run.train.targets, targets)  # the main stage trains on every label
    np.testing.assert_array_equal(holdout, holdout_mask(targets, 0.5, seed=5))
    np.testing.assert_array_equal(prior_run.train.targets, np.where(holdout, -1, targets))
    assert holdout.sum() == 8  # 5 -> 2 (round half to even), 4 -> 2 for class 0; 4 -> 2 and 4 -> 2 for class 1
    assert prior_run.history is run.history and prior_run.clock is run.clock
    # the mean estimate calibrates nothing, so its prior model trains on every label
    prior_run, holdout = prior_stage_run(tiny_run(TrainConfig(arch="csl", prior_holdout=0.5), targets.copy()), seed=5)
    assert holdout is None and np.array_equal(prior_run.train.targets, targets)


def test_a_selective_run_records_which_estimate_each_prior_is(tmp_path, caplog):
    csv_path = make_attribute_dataset(tmp_path / "data", n=24, seed=4)
    images = tmp_path / "data" / "images"
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="partial_csl.engine.training.run"):
        assert train_script.main(["--train-csv", str(csv_path), "--val-csv", str(validation_copy(csv_path)),
                                  "--images", str(images), "--arch", "csl",
                                  "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8",
                                  "--workers", "0", "--epochs", "1", "--prior_epochs", "1", "--no-amp",
                                  "--device", "cpu", "--gamma_neg", "3", "--gamma_unann", "4",
                                  "--prior_estimate", "em", "--output-dir", str(run)]) == 0
    assert "prior stage: bce loss in ignore mode (--prior_loss), posteriors calibrated on" in caplog.text
    table = pd.read_csv(run / "priors" / "prior_ignore.csv")
    assert set(table["estimator"]) <= {"em", "fallback_unconverged", "em_clipped", "clipped_mean",
                                       "evidence"}
    inside = table["estimator"] != "evidence"
    assert ((table["prior"] >= table["lower_bound"] - 1e-6) & (table["prior"] <= table["upper_bound"] + 1e-6))[
        inside].all()
