"""Thresholds: tuned from hand-made probabilities to the expected values, stored in the checkpoint at the end of
training or by validate.py --tune-thresholds, and used by infer.py (#N/A), the export metadata and the web page."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tiny_runs import split_data, train_args, train_tiny

import export as export_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.app.predictions import checkpoint_summary, describe
from partial_csl.data.schema import AttributeGroup, AttributeSchema
from partial_csl.engine.checkpoint import CheckpointError, checkpoint_info, load_checkpoint, save_checkpoint
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.engine.inference.stored_thresholds import check_settings_fit, settings_for_checkpoint
from partial_csl.engine.tools.infer import prediction_rows
from partial_csl.thresholds import (
    ThresholdSettings,
    abstentions,
    top_label,
    tune_abstention,
    tune_class_threshold,
    tune_class_thresholds,
    tune_thresholds,
)

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_class_threshold_maximises_f1():
    # cuts 0.9 .. 0.2 give F1 0.5, 0.8, 0.667, 0.857, 0.75, 0.667: 0.6 (3 of 4 predicted right, every positive)
    best = tune_class_threshold(SCORES, LABELS, "f1")
    assert best["threshold"] == 0.6 and best["precision"] == 0.75 and best["recall"] == 1.0
    assert best["f1"] == pytest.approx(6 / 7)
    tied = tune_class_threshold(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1]), "f1")  # a tie is one threshold
    assert tied["threshold"] == 0.2 and tied["f1"] == pytest.approx(0.8)


def test_class_threshold_for_a_precision_target():
    # precision per cut: 1, 1, 0.667, 0.75, 0.6, 0.5; the lowest cut reaching the target keeps the most recall
    at_90 = tune_class_threshold(SCORES, LABELS, "precision", 0.9)
    assert at_90["threshold"] == 0.8 and at_90["recall"] == pytest.approx(2 / 3) and at_90["reached"]
    assert tune_class_threshold(SCORES, LABELS, "precision", 0.7)["threshold"] == 0.6
    missed = tune_class_threshold(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1]), "precision", 0.9)
    assert missed["threshold"] == 0.1 and missed["reached"] is False and missed["precision"] == pytest.approx(1 / 3)


def test_class_thresholds_use_known_entries_only():
    targets = np.array([[1, -1], [-1, 0], [0, 0], [1, -1]])
    scores = np.array([[0.7, 0.9], [0.99, 0.1], [0.6, 0.2], [0.65, 0.8]])
    first, second = tune_class_thresholds(targets, scores, "f1", default=0.4)
    assert first["threshold"] == 0.65 and first["positives"] == 2 and first["negatives"] == 1  # 0.99 is unknown
    assert second["threshold"] == 0.4 and second["reached"] is None  # no known positive: the default


def test_abstention_for_a_target_accuracy_or_coverage():
    confidence = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 0, 1, 0, 1], dtype=bool)
    # answering the k most confident: accuracy 1, 1, 0.667, 0.75, 0.6, 0.667
    at_75 = tune_abstention(confidence, correct, "accuracy", 0.75)
    assert at_75["threshold"] == 0.7 and at_75["coverage"] == pytest.approx(4 / 6) and at_75["accuracy"] == 0.75
    assert tune_abstention(confidence, correct, "accuracy", 0.9)["threshold"] == 0.9
    assert tune_abstention(confidence, correct, "accuracy", 0.6)["coverage"] == 1.0
    unreachable = tune_abstention(confidence[2:5], correct[2:5], "accuracy", 0.99)  # the best there: from 0.7, half
    assert unreachable["threshold"] == 0.7 and unreachable["reached"] is False
    half = tune_abstention(confidence, correct, "coverage", 0.5)
    assert half["threshold"] == 0.8 and half["coverage"] == 0.5 and half["accuracy"] == pytest.approx(2 / 3)


SCHEMA = AttributeSchema([AttributeGroup("colour", ["red", "blue"]), AttributeGroup("size", ["s", "m", "l"])])


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """Four images, two attributes: colour known on all, size unknown on the last."""
    targets = np.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0], [1, 0, 0, 0, 1], [0, 1, -1, -1, -1]])
    scores = np.array([[0.9, 0.1, 0.2, 0.7, 0.1], [0.6, 0.55, 0.8, 0.1, 0.1], [0.8, 0.3, 0.3, 0.4, 0.35],
                       [0.2, 0.7, 0.5, 0.5, 0.9]])
    return targets, scores


def test_tuned_abstention_and_the_rows_it_withholds():
    targets, scores = hand_made()
    groups = SCHEMA.group_slices()
    confidence, correct, known = top_label(targets, scores, groups["colour"])
    assert confidence.tolist() == [0.9, 0.6, 0.8, 0.7] and correct.tolist() == [True, False, True, True]
    assert known.all() and not top_label(targets, scores, groups["size"])[2][3]
    entry = tune_thresholds(targets, scores, SCHEMA.class_names, groups, ThresholdSettings(abstain_accuracy=1.0))
    # colour: right at 0.9, 0.8, 0.7, wrong at 0.6 -> answer from 0.7; size (3 known): right at 0.8 and 0.7,
    # wrong at 0.4 -> answer from 0.7 too
    assert entry["abstain"]["values"] == {"colour": 0.7, "size": 0.7}
    assert entry["abstain"]["details"]["size"]["known"] == 3 and entry["classes"] is None
    withheld = abstentions(scores, groups, entry["abstain"]["values"])
    assert withheld["colour"].tolist() == [False, True, False, False]
    assert withheld["size"].tolist() == [False, False, True, False]  # the unknown-size image answers (0.9)
    coverage = tune_thresholds(targets, scores, SCHEMA.class_names, groups, ThresholdSettings(abstain_coverage=0.5))
    assert coverage["abstain"]["values"] == {"colour": 0.8, "size": 0.7}  # 2 of 4 and 2 of 3 answered
    with pytest.raises(ValueError, match="needs attribute data"):
        tune_thresholds(targets, scores, SCHEMA.class_names, None, ThresholdSettings(abstain_coverage=0.5))
    with pytest.raises(ValueError, match="not both"):
        ThresholdSettings(abstain_accuracy=0.9, abstain_coverage=0.5)
    with pytest.raises(ValueError, match="need attribute data"):
        check_settings_fit(ThresholdSettings(abstain_accuracy=0.9), has_attributes=False)


def test_validate_tunes_and_infer_abstains_with_the_tuned_thresholds(tmp_path, capsys):
    split, images = split_data(tmp_path)
    best = train_tiny(split, images, tmp_path / "run", epochs=1)
    assert load_checkpoint(best).get("thresholds") is None  # default: nothing tuned, outputs as before
    tuned = tmp_path / "tuned"
    assert validate_script.main(["--checkpoint", str(best), "--csv", str(split / "valid.csv"), "--images",
                                 str(images), "--output-dir", str(tuned), "--workers", "0", "--no-amp",
                                 "--tune-thresholds", "--abstain-coverage", "0.5", "--no-html"]) == 0
    assert "checkpoint with them" in capsys.readouterr().out
    ckpt = load_checkpoint(tuned / "best.pt")
    assert json.loads((tuned / "thresholds.json").read_text()) == json.loads(json.dumps(ckpt["thresholds"]))
    predictor = Predictor.from_checkpoint(best, "cpu", amp=False)
    valid = pd.read_csv(split / "valid.csv", keep_default_na=False)
    _, probs, _ = predictor.predict_files([images / n for n in valid["filename"]])
    for name, sl in predictor.schema.group_slices().items():
        known = np.array([v != "#N/A" for v in valid[name].astype(str)])
        confidence = probs[known, sl].max(axis=1)
        assert ckpt["thresholds"]["abstain"]["values"][name] == pytest.approx(np.sort(confidence)[::-1][
            int(np.ceil(0.5 * known.sum())) - 1], abs=1e-6)  # the confidence of the median known image
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", str(tuned / "best.pt"), "--csv", str(split / "valid.csv"), "--images",
                              str(images), "--output", str(out), "--no-amp", "--names"]) == 0
    pred = pd.read_csv(out, keep_default_na=False)
    for name, sl in predictor.schema.group_slices().items():
        expected = probs[:, sl].max(axis=1) < ckpt["thresholds"]["abstain"]["values"][name]
        assert (pred[name] == "#N/A").tolist() == expected.tolist() and expected.any()
        assert pred.loc[~expected, name].str.startswith(f"{name}_").all()
    plain = tmp_path / "plain.csv"
    assert infer_script.main(["--checkpoint", str(tuned / "best.pt"), "--csv", str(split / "valid.csv"), "--images",
                              str(images), "--output", str(plain), "--no-amp", "--ignore-thresholds"]) == 0
    assert not (pd.read_csv(plain, keep_default_na=False)[["neck", "pattern"]] == "#N/A").any().any()
    check_exports_and_page(tuned / "best.pt", images, tmp_path)


def check_exports_and_page(checkpoint, images, tmp_path):
    """The export metadata carries the thresholds; the page flags exactly the answers infer.py withholds."""
    ckpt = load_checkpoint(checkpoint)
    out = tmp_path / "model.pt2"
    assert export_script.main(["--checkpoint", str(checkpoint), "--format", "torch-export", "--output", str(out)]) == 0
    meta = json.loads((tmp_path / "model.pt2.json").read_text())
    assert meta["thresholds"]["abstain"]["values"] == ckpt["thresholds"]["abstain"]["values"]
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", amp=False)
    img = Image.open(images / "img_001.png").convert("RGB")
    [result] = describe(predictor, [("img_001.png", img)])
    probs = predictor.predict([img])[0]
    cuts = ckpt["thresholds"]["abstain"]["values"]
    for row in result.attributes.itertuples():
        assert row.unsure == bool(probs[predictor.schema.group_slices()[row.attribute]].max() < cuts[row.attribute])
    assert "unsure below" in checkpoint_summary(predictor, str(checkpoint))["thresholds"]


def test_training_ends_by_tuning_on_the_validation_split(tmp_path):
    split, images = split_data(tmp_path, seed=3)
    best = train_tiny(split, images, tmp_path / "run", "--abstain-accuracy", "0.8", epochs=1)
    entry = load_checkpoint(best)["thresholds"]
    assert entry["abstain"]["mode"] == "accuracy" and set(entry["abstain"]["values"]) == {"neck", "sleeve_length",
                                                                                          "pattern"}
    assert "valid.csv" in entry["tuned_on"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["thresholds"]["abstain"]["values"] == entry["abstain"]["values"]
    with pytest.raises(ValueError, match="nothing to tune"):
        settings_for_checkpoint(checkpoint_info({**load_checkpoint(best), "thresholds": None, "config": {}}), {})
    coverage = settings_for_checkpoint(checkpoint_info(load_checkpoint(best)), {"abstain_coverage": 0.7})
    assert coverage.abstain == ("coverage", 0.7)


def test_a_checkpoint_with_unusable_thresholds_is_refused(tmp_path):
    split, images = split_data(tmp_path, n=32)
    best = train_tiny(split, images, tmp_path / "run", epochs=1)
    ckpt = load_checkpoint(best)
    for bad, reason in (({"version": 7}, "version 1"), ({"version": 1, "classes": {"values": [0.5]}}, "21 numbers"),
                        ({"version": 1, "abstain": {"values": {"colour": 0.5}}}, "does not have")):
        path = save_checkpoint({**ckpt, "thresholds": bad}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=reason):
            load_checkpoint(path)
    assert torch.load(best, weights_only=True).get("thresholds") is None


def test_multi_label_outputs_use_the_tuned_per_class_thresholds():
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    scores = np.array([[0.35, 0.5, 0.95], [0.2, 0.7, 0.8], [0.3, 0.65, 0.5], [0.1, 0.55, 0.9]])
    entry = tune_thresholds(targets, scores, ["a", "b", "c"], None, ThresholdSettings("f1"))
    assert entry["classes"]["values"] == [0.3, 0.65, 0.9] and entry["abstain"] is None
    predictor = SimpleNamespace(info=SimpleNamespace(thresholds=entry), schema=None, class_names=["a", "b", "c"])
    rows = prediction_rows(predictor, ["x", "y", "z", "w"], scores, probabilities=False)
    assert rows == {"filename": ["x", "y", "z", "w"], "labels": ["a;c", "b", "a;b", "c"]}
    assert prediction_rows(predictor, list("xyzw"), scores, threshold=0.5)["labels"] == ["b;c", "b;c", "b;c", "b;c"]
    assert prediction_rows(predictor, list("xyzw"), scores, use_thresholds=False)["labels"][0] == "b;c"
    assert list(prediction_rows(predictor, list("xyzw"), scores))[2:] == ["prob_a", "prob_b", "prob_c"]


def test_settings_that_cannot_apply_are_refused_before_the_run_folder_is_touched(tmp_path, capsys):
    split, images = split_data(tmp_path, n=32)
    coco = ["--dataset", "coco", "--data", str(tmp_path / "no_coco"), "--abstain-accuracy", "0.9",
            "--output-dir", str(tmp_path / "coco_run")]
    assert train_script.main(coco) == 2
    assert "need attribute data" in capsys.readouterr().err and not (tmp_path / "coco_run").exists()
    both = train_args(split, images, tmp_path / "both", "--abstain-accuracy", "0.9", "--abstain-coverage", "0.5")
    assert train_script.main(both) == 2
    assert "not both" in capsys.readouterr().err and not (tmp_path / "both").exists()
    assert train_script.main(train_args(split, images, tmp_path / "far", "--abstain-coverage", "1.5")) == 2
    assert "(0, 1]" in capsys.readouterr().err
