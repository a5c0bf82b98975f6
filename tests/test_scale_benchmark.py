"""benchmarks/scale.py: the synthetic Open Images label file has Open Images' density and layout, the fast and the
exact reader give the same sparse labels, every stage runs on the sparse labels, and the quick run writes its
tables and resumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import scale  # benchmarks/ is on the test path (conftest)

from partial_csl.data.long_labels import parse_long_labels
from partial_csl.data.open_images import LABEL_COLUMNS


def test_the_synthetic_file_has_open_images_density_and_both_readers_agree(tmp_path):
    fast_path, exact_path = tmp_path / "fast.csv", tmp_path / "exact.csv"
    rows = scale.write_labels(fast_path, 1_000, 600, seed=1)
    assert scale.write_labels(exact_path, 1_000, 600, seed=1, quoted_first_row=True) == rows == 7_600
    frame = pd.read_csv(fast_path, dtype=str)
    assert list(frame.columns) == ["ImageID", "Source", "LabelName", "Confidence"] and len(frame) == rows
    per_image = frame.groupby("ImageID")["LabelName"]
    assert per_image.nunique().eq(per_image.size()).all() and sorted(per_image.size().unique()) == [7, 8]
    assert abs((frame["Confidence"] == "1").sum() / 1_000 - scale.POSITIVES_PER_IMAGE) < 0.2
    fast, exact = (parse_long_labels(p, columns=LABEL_COLUMNS, image_suffix=".jpg", vocabulary=scale.class_ids(600))
                   for p in (fast_path, exact_path))
    assert fast.filenames == exact.filenames and fast.class_names == exact.class_names
    assert (fast.labels.codes != exact.labels.codes).nnz == 0 and fast.labels.codes.nnz == rows


def test_measure_runs_every_stage_on_the_sparse_labels(tmp_path):
    path = tmp_path / "labels.csv"
    rows = scale.write_labels(path, 2_000, 600)
    result = scale.measure(path, 600)
    assert (result["rows"], result["images"]) == (rows, 2_000) and result["classes"] <= 600
    assert set(result["seconds"]) == set(scale.STAGES) and all(s >= 0 for s in result["seconds"].values())
    assert 0 < result["classes_with_ap"] <= result["classes"]
    assert np.isclose(result["dense_int64_gib"], 2_000 * result["classes"] * 8 / 2**30)


def test_growth_is_the_time_ratio_per_size_of_the_same_classes():
    def result(images, classes, rows, parse):
        return {"images": images, "classes": classes, "rows": rows,
                "seconds": {stage: parse for stage in scale.STAGES}}
    ratios = scale.growth([result(10, 600, 76, 1.0), result(100, 600, 760, 12.0), result(10, 9600, 76, 1.0)])
    assert list(ratios) == [(100, 600)] and ratios[100, 600]["labels"] == 10 and ratios[100, 600]["parse"] == 12


def test_quick_run_writes_the_tables_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "measure_in_child", scale.measure)  # the child process only isolates peak memory
    results = scale.main(["--quick", "--out", str(tmp_path)])
    assert [(r["images"], r["classes"]) for r in results] == [(10_000, 600)]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["exact_reader"]["rows"] == 76_000
    table = (tmp_path / "table.md").read_text()
    assert "| 10,000 | 600 | 76,000 |" in table and "The exact reader (a file with a quote character)" in table
    assert not list(tmp_path.glob("labels_*.csv"))  # the generated label files are removed
    monkeypatch.setattr(scale, "measure_in_child", lambda *a: (_ for _ in ()).throw(AssertionError("re-measured")))
    assert scale.main(["--quick", "--out", str(tmp_path)]) == results
