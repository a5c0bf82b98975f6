"""``--pseudo-labels`` through train.py: per-epoch counts in metrics.csv (with their precision where the simulation
knows the truth), nothing before the warm-up, an exact resume, and the per-attribute heads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_runs import split_data, train_args, train_tiny

import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.data.demo_coco import build_coco_benchmark

LOOSE = ["--pseudo-labels", "--pseudo-warmup", "1", "--pseudo-precision", "0.3", "--pseudo-negative-precision",
         "0.6"]  # a few-step model on 16 validation images reaches no strict threshold
ANY_CHOICE = ["--pseudo-labels", "--pseudo-warmup", "1", "--pseudo-precision", "0", "--pseudo-negative-precision",
              "1"]  # every class has a positive threshold: every unknown attribute is filled after the warm-up


def coco_args(root) -> list[str]:
    return ["--dataset", "coco", "--data", str(root), "--simulate_partial_type", "rps", "--simulate_partial_param",
            "0.5", "--model-name", "test_resnet", "--image-size", "32", "--batch-size", "8", "--workers", "0",
            "--no-amp", "--partial_loss_mode", "negative", "--ema-decay", "0.5", "--epochs", "3", *LOOSE]


@pytest.mark.parametrize("teacher", ["ema", "validated"])
def test_pseudo_labels_are_counted_per_epoch_and_resume_exactly(tmp_path, fake_fashion_mnist, teacher):
    root = build_coco_benchmark(tmp_path / "bench", n_train=48, n_val=24, source=fake_fashion_mnist)
    run, killed = tmp_path / "run", tmp_path / "killed"
    args = [*coco_args(root), "--pseudo-teacher", teacher]
    assert train_script.main([*args, "--output-dir", str(run)]) == 0
    metrics = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    columns = ["pseudo_positives", "pseudo_negatives", "pseudo_positives_precision", "pseudo_negatives_precision"]
    assert set(columns) <= set(metrics.columns)
    first = metrics.iloc[0]
    assert first["pseudo_positives"] == 0 and first["pseudo_negatives"] == 0  # the warm-up epoch
    later = metrics.iloc[1:]
    assert (later["pseudo_positives"] + later["pseudo_negatives"]).sum() > 0
    for kind in ("positives", "negatives"):
        made = later[later[f"pseudo_{kind}"] > 0][f"pseudo_{kind}_precision"].astype(float)
        assert ((made >= 0) & (made <= 1)).all()
    assert train_script.main([*args, "--output-dir", str(killed), "--stop-after-steps", "9"]) == 3
    assert train_script.main([*args, "--output-dir", str(killed), "--resume"]) == 0
    resumed = pd.read_csv(killed / "metrics.csv", keep_default_na=False)
    assert np.allclose(metrics["val_mAP"], resumed["val_mAP"], atol=1e-6)
    assert metrics[columns].astype(str).equals(resumed[columns].astype(str))
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["pseudo_labels"] is True and saved["pseudo_teacher"] == teacher


@pytest.mark.parametrize("arch", ["csl", "mtl", "latent", "afa"])
def test_pseudo_labels_train_validate_and_infer_with_every_architecture(tmp_path, arch):
    split, images = split_data(tmp_path)
    extra = ["--branch-model", "test_resnet"] if arch == "afa" else []
    best = train_tiny(split, images, tmp_path / "run", "--arch", arch, *extra, *ANY_CHOICE, epochs=3)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False)
    assert metrics["pseudo_positives"].iloc[0] == 0 and len(metrics) == 3
    filled = metrics["pseudo_positives"].iloc[1:]
    assert (filled > 0).all()  # one positive per filled attribute, its other classes negatives:
    assert (metrics["pseudo_negatives"].iloc[1:] >= filled).all()
    assert "pseudo_positives_precision" not in metrics  # attribute data: the truth of an #N/A is not known
    assert validate_script.main(["--checkpoint", str(best), "--csv", str(split / "test.csv"), "--images",
                                 str(images), "--output-dir", str(tmp_path / "report")]) == 0
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", str(best), "--images", str(images), "--output", str(out)]) == 0
    assert len(pd.read_csv(out)) > 0


@pytest.mark.parametrize("teacher", ["ema", "validated"])
def test_pseudo_labels_on_cached_backbone_features(tmp_path, teacher):
    split, images = split_data(tmp_path)
    train_tiny(split, images, tmp_path / "run", "--freeze-backbone", *ANY_CHOICE, "--pseudo-teacher", teacher,
               epochs=3)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False)
    assert len(metrics) == 3 and (metrics["pseudo_positives"].iloc[1:] > 0).all()


def test_a_pseudo_label_setting_out_of_range_is_refused_before_the_run_folder(tmp_path, capsys):
    split, images = split_data(tmp_path)
    args = train_args(split, images, tmp_path / "run", "--pseudo-labels", "--pseudo-warmup", "0",
                      "--pseudo-precision", "1.5")
    assert train_script.main(args) != 0
    err = capsys.readouterr().err
    assert "--pseudo-warmup 0 (must be at least 1)" in err and "--pseudo-precision 1.5 (must be in [0, 1])" in err
    assert not (tmp_path / "run").exists()


def test_a_pseudo_label_setting_without_pseudo_labels_is_refused_not_dropped(tmp_path, capsys):
    split, images = split_data(tmp_path)
    args = train_args(split, images, tmp_path / "run", "--pseudo-teacher", "ema", "--pseudo-warmup", "3")
    assert train_script.main(args) != 0
    err = capsys.readouterr().err
    assert "--pseudo-teacher ema (needs --pseudo-labels)" in err and "--pseudo-warmup 3 (needs" in err
    assert not (tmp_path / "run").exists()


def test_attribute_thresholds_are_shared_in_a_run_and_refused_for_data_without_attributes(tmp_path, capsys,
                                                                                          monkeypatch):
    from partial_csl.engine.training import pseudo

    calls = []

    def recorded(thresholds, scores, targets, groups, precision):
        calls.append(([len(g) for g in groups], precision))
        return share(thresholds, scores, targets, groups, precision)

    share = pseudo.share_within_attributes
    monkeypatch.setattr(pseudo, "share_within_attributes", recorded)
    split, images = split_data(tmp_path)
    train_tiny(split, images, tmp_path / "run", *ANY_CHOICE, "--pseudo-thresholds", "attribute", epochs=3)
    assert calls == [([7, 4, 10], 0.0)] * 2  # calibrated after epochs 1 and 2 (the last epoch labels nothing)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False)
    assert metrics["pseudo_positives"].iloc[0] == 0 and (metrics["pseudo_positives"].iloc[1:] > 0).all()
    args = ["--dataset", "coco", "--data", str(tmp_path), "--pseudo-labels", "--pseudo-thresholds", "attribute",
            "--output-dir", str(tmp_path / "coco_run")]
    assert train_script.main(args) != 0
    assert "--pseudo-thresholds attribute (needs attribute data: --dataset coco has classes only)" in \
        capsys.readouterr().err
    assert not (tmp_path / "coco_run").exists()


def test_classes_too_rare_in_validation_for_a_threshold_are_named_at_the_start(tmp_path, caplog):
    import logging

    from partial_csl.pseudo_labels import classes_without_reachable_threshold

    split, images = split_data(tmp_path)
    caplog.set_level(logging.WARNING)
    train_tiny(split, images, tmp_path / "run", "--pseudo-labels", epochs=1)
    warning = next(r.getMessage() for r in caplog.records if "will get no pseudo-positive" in r.getMessage())
    val = pd.read_csv(split / "valid.csv", dtype=str)
    sizes = {"neck": 7, "sleeve_length": 4, "pattern": 10}
    rare = [f"{g}_{k}" for g, n in sizes.items() for k in range(n)  # under 5 positives or 5 labelled images
            if (val[g] == str(k)).sum() < 5 or (val[g] != "#N/A").sum() < 5]
    assert f"{len(rare)} of 21 classes" in warning and ", ".join(rare[:10]) in warning
    assert "5 labelled images and 5 positives needed" in warning
    assert len(classes_without_reachable_threshold(np.full((10, 3), 1), 0.9)) == 0
