"""The web page: its prediction function, and the real page in headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import ROOT, make_attribute_dataset
from PIL import Image

import images_train_test_valid_split as split_script
import train as train_script
from partial_csl.app.predictions import checkpoint_summary, describe, open_upload
from partial_csl.engine.inference.predictor import Predictor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    csv_path = make_attribute_dataset(root / "d", n=40)
    images = root / "d" / "images"
    assert split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(root / "s")]) == 0
    assert train_script.main(["--train-csv", str(root / "s" / "train.csv"), "--val-csv", str(root / "s" / "valid.csv"),
                              "--images", str(images), "--model-name", "test_resnet", "--image-size", "32",
                              "--batch-size", "8", "--workers", "0", "--epochs", "1", "--arch", "csl",
                              "--partial_loss_mode", "ignore", "--output-dir", str(root / "run")]) == 0
    return root / "run" / "checkpoints" / "best.pt", images


def test_describe_matches_the_predictor_and_lists_every_attribute(trained):
    checkpoint, images = trained
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    img = Image.open(images / "img_000.png").convert("RGB")
    [result] = describe(predictor, [("img_000.png", img)])
    probs = predictor.predict([img])[0]
    assert result.attributes["attribute"].tolist() == ["neck", "sleeve_length", "pattern"]
    assert result.attributes["predicted class"][0] == f"neck_{int(probs[:7].argmax())}"
    assert result.attributes["probability"][2] == pytest.approx(float(probs[11:].max()))
    assert result.class_probabilities["pattern"].index.tolist()[0] == "pattern_0"
    summary = checkpoint_summary(predictor, str(checkpoint))
    assert summary["model"] == "test_resnet" and summary["image size"] == 32 and summary["classes"] == 21


def test_bad_uploads_get_a_message():
    image, error = open_upload("notes.txt", b"hello")
    assert image is None and "notes.txt: not a readable image" in error
    truncated = open_upload("half.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert truncated[0] is None and "half.png" in truncated[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium; make test does)")
def test_page_in_a_real_browser(trained, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    checkpoint, images = trained
    port = free_port()
    env = dict(os.environ)
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                               str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                               "--browser.gatherUsageStats", "false", "--", "--checkpoint", str(checkpoint),
                               "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start")
        photo = tmp_path / "shirt.png"
        Image.open(images / "img_003.png").save(photo)
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"not an image")
        probs = Predictor.from_checkpoint(checkpoint, "cpu").predict([Image.open(photo).convert("RGB")])[0]
        expected = [f"neck_{int(np.argmax(probs[:7]))}", f"sleeve_length_{int(np.argmax(probs[7:11]))}",
                    f"pattern_{int(np.argmax(probs[11:]))}"]
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(url, wait_until="networkidle")
            page.get_by_text("test_resnet").first.wait_for(timeout=60_000)  # checkpoint summary in the sidebar
            page.locator("input[type=file]").set_input_files([str(photo), str(bad)])
            page.get_by_text("shirt.png").first.wait_for(timeout=60_000)
            table = page.locator("table").first
            table.wait_for(timeout=60_000)
            text = table.inner_text()
            for attribute, name in zip(("neck", "sleeve_length", "pattern"), expected):
                assert attribute in text and name in text
            page.get_by_text("notes.png: not a readable image").wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            browser.close()
        assert (tmp_path / "app.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
