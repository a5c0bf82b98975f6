"""Start-up image checks: decoded in parallel with the sequential verdicts, remembered in the run folder's manifest
so that a restart decodes only what changed, and a damaged manifest is rebuilt rather than trusted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from partial_csl.data import image_checks
from partial_csl.data.filenames import check_filenames
from partial_csl.data.image_checks import image_manifest, image_problems
from partial_csl.data.images import image_problem


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        Image.fromarray(np.full((16, 16, 3), 10 * i, dtype=np.uint8)).save(images / f"{i}.jpg")
    data = (images / "3.jpg").read_bytes()
    (images / "3.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (images / "7.jpg").write_bytes(b"not an image")
    return images


@pytest.fixture
def decodes(monkeypatch):
    """Counts the decodes the checks make."""
    calls = []

    def counted(path, name=None):
        calls.append(path.name)
        return image_problem(path, name)
    monkeypatch.setattr(image_checks, "image_problem", counted)
    return calls


def test_parallel_verdicts_are_the_sequential_ones(folder, monkeypatch):
    paths = sorted(folder.iterdir(), key=lambda p: int(p.stem))
    names = [p.name for p in paths]
    parallel = image_problems(paths, names)
    monkeypatch.setattr(image_checks, "CHECK_THREADS", 1)
    assert parallel == image_problems(paths, names) == [image_problem(p, n) for p, n in zip(paths, names)]
    assert [i for i, v in enumerate(parallel) if v] == [3, 7] and "unreadable or corrupt image" in parallel[7]


def test_a_restart_decodes_only_the_images_that_changed(folder, tmp_path, decodes):
    entries = [(n + 2, f"{n}.jpg") for n in range(12)]
    with image_manifest(tmp_path / "run" / "image_checks.csv") as manifest:
        first, _ = check_filenames(entries, folder)
    assert len(decodes) == 12 and manifest.checked == 12 and sorted(first) == [3, 7]
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(folder / "5.jpg")  # changed: size and mtime
    (folder / "3.jpg").unlink()
    decodes.clear()
    with image_manifest(tmp_path / "run" / "image_checks.csv") as manifest:
        again, _ = check_filenames(entries, folder)
    assert decodes == ["5.jpg"] and manifest.reused == 10
    assert again[3].reason.startswith("image file not found") and again[7] == first[7]


def test_a_damaged_manifest_is_rebuilt_not_trusted(folder, tmp_path, decodes):
    manifest_path = tmp_path / "image_checks.csv"
    manifest_path.write_text("path,size\nnonsense\n")
    with image_manifest(manifest_path):
        image_problems([folder / "1.jpg"], ["1.jpg"])
    assert decodes == ["1.jpg"] and manifest_path.read_text().startswith(",".join(image_checks.MANIFEST_COLUMNS))
    lines = manifest_path.read_text().splitlines()
    manifest_path.write_text("path,size,mtime_ns,ctime_ns,inode,pixel_limit\n" + lines[1].rsplit(",", 1)[0] + "\n")
    decodes.clear()
    with image_manifest(manifest_path) as manifest:  # a row without its verdict is not read as "good"
        image_problems([folder / "1.jpg"], ["1.jpg"])
    assert decodes == ["1.jpg"] and manifest.reused == 0


def test_a_verdict_holds_only_under_the_pixel_limit_it_was_made_with(folder, tmp_path, decodes, monkeypatch):
    manifest_path = tmp_path / "image_checks.csv"
    monkeypatch.setenv("PARTIAL_CSL_MAX_IMAGE_PIXELS", "100")  # the 16 x 16 images are too large
    with image_manifest(manifest_path):
        assert "limit" in image_problems([folder / "1.jpg"], ["1.jpg"])[0]
    monkeypatch.setenv("PARTIAL_CSL_MAX_IMAGE_PIXELS", "1000000")
    with image_manifest(manifest_path) as manifest:
        assert image_problems([folder / "1.jpg"], ["1.jpg"]) == [None]
    assert manifest.reused == 0 and decodes == ["1.jpg", "1.jpg"]


def test_a_file_replaced_while_it_is_checked_is_not_recorded(folder, tmp_path, monkeypatch):
    def replace_after_decoding(path, name=None):
        verdict = image_problem(path, name)
        path.write_bytes(b"garbage, not an image")  # replaced before the verdict is recorded
        return verdict
    monkeypatch.setattr(image_checks, "image_problem", replace_after_decoding)
    with image_manifest(tmp_path / "image_checks.csv") as manifest:
        assert image_problems([folder / "2.jpg"], ["2.jpg"]) == [None]
    assert manifest.checked == 0
    monkeypatch.setattr(image_checks, "image_problem", image_problem)
    with image_manifest(tmp_path / "image_checks.csv"):
        assert "unreadable or corrupt" in image_problems([folder / "2.jpg"], ["2.jpg"])[0]
