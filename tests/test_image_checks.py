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
    assert decodes == ["1.jpg"] and manifest_path.read_text().startswith("path,size,mtime_ns,problem\n")
