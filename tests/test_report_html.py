"""report.html: every part of the error analysis, self-contained (images embedded), its PNGs and predictions.csv;
rendered in headless Chromium when the machine has it (skipped cleanly otherwise, as the web page's test)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_runs import split_data, train_tiny

import validate as validate_script
from partial_csl.diagnostics import (
    confident_mistakes,
    confusion_matrix,
    confusion_prf,
    error_analysis,
    reliability,
)
from partial_csl.engine.tools.evaluation_report import pr_panels
from partial_csl.metrics import evaluate_predictions
from partial_csl.reports.html import EvaluationView, evaluation_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("summary", "run", "attributes", "ap", "calibration", "coverage", "mistakes", "files")


class PageParts(HTMLParser):
    """The page's images (src), tables, section ids and headings."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.sections, self.headings, self._in_heading = [], 0, [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables += 1
        elif tag == "section":
            self.sections.append(attrs["id"])
        self._in_heading = tag in ("h2", "h3")

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)
            self._in_heading = False


def parse(text: str) -> PageParts:
    parts = PageParts()
    parts.feed(text)
    return parts


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    split, images = split_data(root, n=48, seed=4)
    checkpoint = train_tiny(split, images, root / "run", "--abstain-coverage", "0.6", epochs=2)
    out = root / "report"
    assert validate_script.main(["--checkpoint", str(checkpoint), "--csv", str(split / "test.csv"), "--images",
                                 str(images), "--output-dir", str(out), "--workers", "0", "--no-amp"]) == 0
    return out, split


def test_the_page_has_every_part_and_embeds_its_images(report):
    out, _ = report
    page = parse((out / "report.html").read_text())
    assert list(page.sections) == list(SECTIONS)
    assert {"neck", "sleeve_length", "pattern"} <= set(page.headings)
    assert page.tables == 8  # summary, settings, attributes, 3 per-class tables, ECE, abstention thresholds
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:  # every one decodes as a PNG: the page opens offline
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(["training_curves.png", "ap_per_class.png", "precision_recall.png", "reliability.png",
                              "accuracy_coverage.png", "confusion_neck.png", "confusion_sleeve_length.png",
                              "confusion_pattern.png"])
    text = (out / "report.html").read_text()
    for words in ("row-normalised", "known positives", "expected calibration error", "tuned for coverage 0.6",
                  "Most confident mistakes", "best epoch", "predicted"):
        assert words in text, words


def test_predictions_csv_has_truth_prediction_confidence_and_correctness(report):
    out, split = report
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    test = pd.read_csv(split / "test.csv", keep_default_na=False)
    assert pred["filename"].tolist() == test["filename"].tolist()
    for name in ("neck", "sleeve_length", "pattern"):
        assert {f"{name}_{c}" for c in ("true", "pred", "confidence", "correct", "answer")} <= set(pred.columns)
        known = test[name] != "#N/A"
        assert (pred.loc[~known, f"{name}_true"] == "#N/A").all() and (pred.loc[~known, f"{name}_correct"] == "").all()
        truth = test.loc[known, name].astype(int).map(lambda c, n=name: f"{n}_{c}")
        assert pred.loc[known, f"{name}_true"].tolist() == truth.tolist()
        right = (pred.loc[known, f"{name}_true"] == pred.loc[known, f"{name}_pred"]).astype(int)
        assert pred.loc[known, f"{name}_correct"].astype(int).tolist() == right.tolist()
        assert pred[f"{name}_confidence"].astype(float).between(0, 1).all()


def test_report_json_gains_the_error_analysis(report):
    data = json.loads((report[0] / "report.json").read_text())
    assert set(data["confusion"]) == {"neck", "sleeve_length", "pattern"} and len(data["confusion"]["neck"]) == 7
    assert set(data["per_class_precision_recall_f1"]["neck_0"]) == {"precision", "recall", "f1", "support"}
    assert 0 <= data["calibration_error"]["overall"] <= 100
    assert set(data["abstention"]) == {"neck", "sleeve_length", "pattern"}


def test_error_analysis_from_hand_made_predictions():
    groups = {"colour": slice(0, 3)}
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4], [0.1, 0.1, 0.8]])
    confusion = confusion_matrix(targets, scores, groups["colour"])
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]  # the unknown row takes no part
    prf = confusion_prf(confusion)
    assert prf["precision"].tolist() == [0.5, 0.5, 0.0] and prf["recall"].tolist() == [0.5, 1.0, 0.0]
    mistakes = confident_mistakes(targets, scores, groups["colour"])
    assert [(m["row"], m["truth"], m["prediction"]) for m in mistakes] == [(1, 0, 1), (3, 2, 0)]
    cal = reliability(np.array([0.95, 0.85, 0.15]), np.array([1, 0, 0]), bins=10)
    assert cal["count"][9] == 1 and cal["count"][8] == 1 and cal["count"][1] == 1
    assert cal["ece"] == pytest.approx((0.05 + 0.85 + 0.15) / 3)
    analysis = error_analysis(targets, scores, ["red", "green", "blue"], groups)
    assert analysis["per_class"]["green"]["support"] == 1 and analysis["confusion"]["colour"] == confusion.tolist()


def test_many_classes_get_best_and_worst_views():
    rng = np.random.default_rng(0)
    names = [f"class_{i}" for i in range(60)]
    targets = (rng.random((80, 60)) < 0.2).astype(int)
    targets[rng.random((80, 60)) < 0.3] = -1
    scores = np.clip(0.6 * targets + 0.5 * rng.random((80, 60)), 0, 1)
    report = evaluate_predictions(targets, scores, names)
    view = EvaluationView(report, error_analysis(targets, scores, names, None), names, {},
                          pr_panels(targets, scores, names, None, report["ap_per_class"]))
    text, figures = evaluation_page(view)
    assert len(view.pr) == 12 and "12 best and 12 worst classes" in text
    assert "confusion" not in " ".join(figures) and "precision_recall.png" in figures
    assert parse(text).sections == ["summary", "classes", "ap", "calibration"]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium; make test does)")
def test_the_page_renders_in_headless_chromium(report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _ = report
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_context(offline=True, viewport={"width": 1280, "height": 1600}).new_page()
        page.goto((out / "report.html").as_uri(), wait_until="load")
        sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert sizes and all(done and width > 0 for done, width in sizes)
        assert page.locator("table").count() == 8
        assert page.locator("#attributes h3").count() == 3
        page.get_by_text("Most confident mistakes").wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_run_table_states_pseudo_labels_and_reads_only_what_the_architecture_uses():
    from types import SimpleNamespace

    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.tools.evaluation_report import run_settings

    def info(**config):
        cfg = {**TrainConfig(arch="mtl", logit_adjust="balanced_softmax", lr=5e-4).to_dict(), **config}
        return SimpleNamespace(config=cfg, arch=cfg["arch"], partial_loss_mode=None, priors=None, loss="partial_asl",
                               model_name="resnet18", epoch=3, weights="ema", image_size=64)

    off = run_settings(info())
    assert off["pseudo-labels"] == "off" and off["learning rate"] == "5.00e-04" and "loss mode" not in off
    on = run_settings(info(pseudo_labels=True, pseudo_warmup=2))
    assert on["pseudo-labels"] == ("validated teacher from epoch 3, thresholds per class at precision 0.9 "
                                   "(negatives 0.99)")
    legacy = info(pseudo_labels=True)
    del legacy.config["pseudo_teacher"]  # saved before the setting existed: the EMA teacher, the only one then
    assert run_settings(legacy)["pseudo-labels"].startswith("ema teacher")
