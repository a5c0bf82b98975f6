"""benchmarks/scale.py: the synthetic Open Images label file is what it says, the fast and the exact reader give the
same sparse labels, and the quick run writes its tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import scale  # benchmarks/ is on the test path (conftest)

from partial_csl.data.long_labels import parse_long_labels
from partial_csl.data.open_images import LABEL_COLUMNS


def test_the_synthetic_file_has_distinct_classes_per_image_and_both_readers_agree(tmp_path):
    fast_path, exact_path = tmp_path / "fast.csv", tmp_path / "exact.csv"
    scale.write_labels(fast_path, 4_000, seed=1)
    scale.write_labels(exact_path, 4_000, seed=1, quoted_first_row=True)
    frame = pd.read_csv(fast_path, dtype=str)
    assert list(frame.columns) == ["ImageID", "Source", "LabelName", "Confidence"] and len(frame) == 4_000
    assert frame.groupby("ImageID")["LabelName"].nunique().eq(scale.ROWS_PER_IMAGE).all()
    assert 0.35 < (frame["Confidence"] == "1").mean() < 0.45
    fast, exact = (parse_long_labels(p, columns=LABEL_COLUMNS, image_suffix=".jpg", vocabulary=scale.class_ids())
                   for p in (fast_path, exact_path))
    assert fast.filenames == exact.filenames and fast.class_names == exact.class_names
    assert (fast.codes != exact.codes).nnz == 0 and fast.codes.nnz == 4_000


def test_measure_counts_what_it_read(tmp_path):
    path = tmp_path / "labels.csv"
    scale.write_labels(path, 8_000)
    result = scale.measure(path)
    assert (result["rows"], result["images"]) == (8_000, 1_000) and result["classes"] <= scale.NUM_CLASSES
    assert result["dense_targets"] == "built" and result["classes_with_ap"] <= result["classes_with_positives"]
    assert np.isclose(result["dense_int64_gib"], 1_000 * result["classes"] * 8 / 2**30)


def test_quick_run_writes_the_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "measure_in_child", scale.measure)  # the child process only isolates peak memory
    results = scale.main(["--quick", "--out", str(tmp_path)])
    assert [r["rows"] for r in results] == scale.QUICK_SIZES
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["exact_reader"]["rows"] == scale.QUICK_SIZES[0]
    table = (tmp_path / "table.md").read_text()
    assert "| 20,000 | 2,500 |" in table and "The exact reader (a file with a quote character)" in table
    assert not list(tmp_path.glob("labels_*.csv"))  # the generated label files are removed
