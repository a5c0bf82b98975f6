"""When a selective run needs class priors, and when it does not (``--prior_threshold 0``)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from conftest import make_attribute_dataset

import train as train_script
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.run import uses_prior_stage
from partial_csl.losses import PartialSelectiveLoss


def test_a_zero_threshold_needs_no_priors():
    assert uses_prior_stage(TrainConfig())
    assert not uses_prior_stage(TrainConfig(prior_threshold=0))
    assert not uses_prior_stage(TrainConfig(prior_threshold=0.0, prior_path="p.csv"))
    assert not uses_prior_stage(TrainConfig(partial_loss_mode="ignore"))
    # the loss with threshold 0 and no prior: only the likelihood top-k ignores unknowns
    logits, targets = torch.randn(4, 3), torch.tensor([[-1, 0, 1], [-1, -1, 0], [1, -1, -1], [0, 0, -1]])
    without = PartialSelectiveLoss("selective", prior_threshold=0, prior=None, likelihood_topk=1)
    with_prior = PartialSelectiveLoss("selective", prior_threshold=0, prior=torch.ones(3), likelihood_topk=1)
    torch.testing.assert_close(without(logits, targets), with_prior(logits, targets))


@pytest.mark.parametrize("prior_file", [False, True])
def test_selective_run_with_threshold_zero_skips_the_prior_stage(tmp_path, caplog, prior_file):
    csv_path = make_attribute_dataset(tmp_path / "data", n=24, seed=4)
    images = tmp_path / "data" / "images"
    run = tmp_path / "run"
    extra = ["--prior_path", str(tmp_path / "never_read.csv")] if prior_file else []
    with caplog.at_level(logging.INFO, logger="partial_csl.engine.run"):
        assert train_script.main(["--train-csv", str(csv_path), "--val-csv", str(csv_path), "--images", str(images),
                                  "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8",
                                  "--workers", "0", "--epochs", "1", "--no-amp", "--device", "cpu",
                                  "--partial_loss_mode", "selective", "--prior_threshold", "0", *extra,
                                  "--output-dir", str(run)]) == 0
    assert pd.read_csv(run / "metrics.csv")["stage"].tolist() == ["main"]
    assert not (run / "prior_stage").exists() and not (run / "priors" / "prior_ignore.csv").exists()
    (message,) = [r for r in caplog.records if "--prior_threshold 0" in r.getMessage()]
    assert "prior stage is skipped" in message.getMessage()
    assert (message.levelno == logging.WARNING) == prior_file and ("is not read" in message.getMessage()) == prior_file
