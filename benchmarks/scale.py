"""Open Images-sized labels without pixels: how the label path scales with the number of label rows (issue 31).

    .venv/bin/python benchmarks/scale.py                 # 10^5, 10^6 and 10^7 label rows (~3 min, ~4 GB)
    .venv/bin/python benchmarks/scale.py --quick         # one small size (CI)

For each size a synthetic label file is written as Open Images lays out its human-verified labels
(``ImageID,Source,LabelName,Confidence``): 8 rows an image over 9,600 classes with long-tailed class frequencies,
40 % of them verified positives. A child process then reads it as ``--dataset openimages`` does, without the
images, and measures:

* ``parse``: :func:`parse_long_labels` (column reading, every validation, the sparse codes), seconds and rows/s;
* ``peak RSS``: the child's peak resident memory above what it held before parsing;
* ``codes``: the memory of the sparse codes, against the dense (N, C) int64 targets the old reader built (these are
  refused above 8 GiB, with the memory named);
* ``class counts``: the positives per class (the priors' and the imbalance methods' input) from the codes;
* ``AP``: the partial-aware AP of every class over the verified entries (:func:`ap_of_entries`), random scores.

The exact reader (Python's csv module), which any file with a quote character still goes to, is timed on the
smallest size for comparison. Writes ``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as pa_csv

from partial_csl.cli import make_parser
from partial_csl.data.long_labels import parse_long_labels
from partial_csl.data.open_images import LABEL_COLUMNS
from partial_csl.metrics import ap_of_entries

NUM_CLASSES, ROWS_PER_IMAGE, POSITIVE_SHARE = 9_600, 8, 0.4
CLASS_STRIDE = 1_201  # an image's classes are c0 + j * stride (mod C), j < 8: distinct, as Open Images' rows are
SIZES, QUICK_SIZES = [10**5, 10**6, 10**7], [2 * 10**4]


def class_ids() -> list[str]:
    return [f"/m/{c:05d}" for c in range(NUM_CLASSES)]


def write_labels(path: Path, rows: int, seed: int = 0, quoted_first_row: bool = False) -> None:
    """``rows`` label rows (a multiple of 8) in Open Images' layout; ``quoted_first_row`` sends the file to the exact
    reader (a quote character anywhere does)."""
    rng = np.random.default_rng(seed)
    images = rows // ROWS_PER_IMAGE
    weights = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 0.8  # long-tailed first classes
    first = rng.choice(NUM_CLASSES, size=images, p=weights / weights.sum())
    classes = (first[:, None] + CLASS_STRIDE * np.arange(ROWS_PER_IMAGE)) % NUM_CLASSES
    image_ids = pa.array([f"{i:016x}" for i in rng.permutation(images)])
    table = pa.table({
        "ImageID": image_ids.take(pa.array(np.repeat(np.arange(images), ROWS_PER_IMAGE))),
        "Source": pa.array(["verification"] * 1).take(pa.array(np.zeros(images * ROWS_PER_IMAGE, np.int64))),
        "LabelName": pa.array(class_ids()).take(pa.array(classes.ravel())),
        "Confidence": pa.array(["0", "1"]).take(pa.array((rng.random(images * ROWS_PER_IMAGE) < POSITIVE_SHARE)
                                                         .astype(np.int64)))})
    with open(path, "wb") as f:  # the header unquoted, as in Open Images' files
        f.write((",".join(table.column_names) + "\n").encode())
        pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(quoting_style="none", include_header=False))
    if quoted_first_row:
        header, first_row, rest = path.read_bytes().split(b"\n", 2)
        name, rest_of_row = first_row.split(b",", 1)
        path.write_bytes(b"\n".join([header, b'"' + name + b'",' + rest_of_row, rest]))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(path: Path) -> dict:
    """One size, in this (fresh) process: parse, memory, class counts, AP."""
    vocabulary, before = class_ids(), peak_rss_mib()
    started = time.perf_counter()
    labels = parse_long_labels(path, columns=LABEL_COLUMNS, image_suffix=".jpg", vocabulary=vocabulary)
    parse_s = time.perf_counter() - started
    codes = labels.codes
    rows, (images, classes) = codes.nnz, codes.shape
    try:
        _ = labels.targets
        dense = "built"
    except MemoryError as err:
        dense = f"refused: {str(err).split(';')[0]}"
    started = time.perf_counter()
    positives = np.bincount(codes.indices[codes.data == 2], minlength=classes)
    counts_s = time.perf_counter() - started
    scores = np.random.default_rng(0).random(rows, dtype=np.float32)
    started = time.perf_counter()
    ap = ap_of_entries(codes.indices, scores, (codes.data == 2).astype(np.int8), classes)
    ap_s = time.perf_counter() - started
    return {"rows": rows, "images": images, "classes": classes, "parse_s": parse_s, "rows_per_s": rows / parse_s,
            "peak_rss_mib": peak_rss_mib() - before,
            "codes_mib": (codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes) / 2**20,
            "dense_int64_gib": images * classes * 8 / 2**30, "dense_targets": dense,
            "class_counts_s": counts_s, "classes_with_positives": int((positives > 0).sum()),
            "ap_s": ap_s, "classes_with_ap": int(np.isfinite(ap).sum())}


def measure_in_child(path: Path) -> dict:
    """:func:`measure` in a fresh interpreter, so that its peak memory is this size's alone."""
    done = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def table_md(results: list[dict], exact: dict) -> str:
    lines = ["| label rows | images | parse (s) | rows/s | peak RSS (MiB) | sparse codes (MiB) | dense int64 targets "
             "(GiB) | class counts (s) | AP, all classes (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']:,} | {r['images']:,} | {r['parse_s']:.2f} | {r['rows_per_s']:,.0f} | "
              f"{r['peak_rss_mib']:,.0f} | {r['codes_mib']:,.1f} | {r['dense_int64_gib']:,.1f} "
              f"({r['dense_targets'].split(':')[0]}) | {r['class_counts_s']:.3f} | {r['ap_s']:.2f} |"
              for r in results]
    lines += ["", f"The exact reader (a file with a quote character) on {exact['rows']:,} rows: {exact['parse_s']:.2f}"
                  f" s, {exact['rows_per_s']:,.0f} rows/s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = make_parser(__doc__)
    p.add_argument("--out", default="outputs/benchmarks/scale")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="label rows (multiples of 8)")
    p.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES[0]:,} rows")
    p.add_argument("--measure", help="(internal) measure one label file and print its JSON")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in QUICK_SIZES if args.quick else args.sizes:
        path = out / f"labels_{rows}.csv"
        write_labels(path, rows)
        results.append(measure_in_child(path))
        path.unlink()
        print(f"{rows:>12,} rows: parse {results[-1]['parse_s']:.2f} s ({results[-1]['rows_per_s']:,.0f} rows/s), "
              f"peak {results[-1]['peak_rss_mib']:,.0f} MiB", flush=True)
    exact_path = out / "labels_exact.csv"
    write_labels(exact_path, min(results[0]["rows"], 10**5), quoted_first_row=True)
    exact = measure_in_child(exact_path)
    exact_path.unlink()
    (out / "results.json").write_text(json.dumps({"sizes": results, "exact_reader": exact}, indent=2))
    (out / "table.md").write_text(table_md(results, exact))
    print(table_md(results, exact))
    return results


if __name__ == "__main__":
    main()
