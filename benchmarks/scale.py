"""Open Images-sized labels without pixels: how every stage of the label path grows with the data (issue 31).

    .venv/bin/python benchmarks/scale.py                 # 10^5, 10^6, 10^7 images x 600 and 9,600 classes
    .venv/bin/python benchmarks/scale.py --quick         # 10^4 images x 600 classes (CI)

Each size is a synthetic label file laid out as Open Images' human-verified labels
(``ImageID,Source,LabelName,Confidence``) at Open Images' density: 7 or 8 verified rows an image (7.6 on average),
about 2.6 positives and 5 negatives, over long-tailed classes. A fresh child process reads it as
``--dataset openimages`` does, without the images, and times each stage:

* ``parse``: :func:`parse_long_labels` (column reading, every validation, the sparse labels);
* ``split``: a seeded 90 / 10 split of the images into training and validation labels;
* ``epoch``: label batches of 256 through the real sampler (:class:`RepeatAwareSampler` with LVIS repeat factors)
  and the DataLoader's collate, each item densified from the sparse labels: the epoch's draw in full, then 100
  batches after the loader's start-up, scaled to the epoch's batches;
* ``priors``: the class frequencies of the training labels (the labels' part of the priors; the model-based
  estimate collects an (N, C) probability array today, see README);
* ``metrics``: the partial-aware AP of every class over the validation split's verified entries (random scores).

and the child's peak resident memory (its imports, about 400 MiB, included; the start is recorded too). The table
puts each stage's growth per 10x images beside the growth of the labels.
Writes ``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from pyarrow import csv as pa_csv
from torch.utils.data import DataLoader, Dataset

from partial_csl.cli import make_parser
from partial_csl.data.long_labels import parse_long_labels
from partial_csl.data.open_images import LABEL_COLUMNS
from partial_csl.data.sampling import RepeatAwareSampler, class_frequencies, repeat_factors
from partial_csl.data.sparse_targets import POSITIVE_CODE, SparseTargets
from partial_csl.metrics import ap_of_entries

POSITIVES_PER_IMAGE, ROWS_PER_IMAGE = 2.6, (7, 8)  # 7.6 verified rows an image on average
SIZES, CLASSES = [10**5, 10**6, 10**7], [600, 9_600]
QUICK = {"sizes": [10**4], "classes": [600]}
BATCH, TIMED_BATCHES = 256, 100
STAGES = ("parse", "split", "epoch", "priors", "metrics")


def class_ids(num_classes: int) -> list[str]:
    return [f"/m/{c:05d}" for c in range(num_classes)]


def write_labels(path: Path, images: int, num_classes: int, seed: int = 0, quoted_first_row: bool = False) -> int:
    """A label file in Open Images' layout; returns its number of rows. An image's classes are c0 + j * stride
    (mod C), so they are distinct as in Open Images. ``quoted_first_row`` sends the file to the exact reader (a quote
    character anywhere does)."""
    rng = np.random.default_rng(seed)
    per_image = np.where(np.arange(images) % 5 < 3, ROWS_PER_IMAGE[1], ROWS_PER_IMAGE[0])
    weights = 1.0 / np.arange(1, num_classes + 1) ** 0.8  # long-tailed first classes
    first = rng.choice(num_classes, size=images, p=weights / weights.sum())
    image_of_row = np.repeat(np.arange(images), per_image)
    slot = np.arange(len(image_of_row)) - np.repeat(np.cumsum(per_image) - per_image, per_image)
    classes = (first[image_of_row] + slot * (num_classes // max(ROWS_PER_IMAGE))) % num_classes
    positive = rng.random(len(image_of_row)) < POSITIVES_PER_IMAGE / per_image.mean()
    table = pa.table({
        "ImageID": pa.array([f"{i:016x}" for i in rng.permutation(images)]).take(pa.array(image_of_row)),
        "Source": pa.array(["verification"]).take(pa.array(np.zeros(len(image_of_row), np.int64))),
        "LabelName": pa.array(class_ids(num_classes)).take(pa.array(classes)),
        "Confidence": pa.array(["0", "1"]).take(pa.array(positive.astype(np.int64)))})
    with open(path, "wb") as f:  # the header unquoted, as in Open Images' files
        f.write((",".join(table.column_names) + "\n").encode())
        pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(quoting_style="none", include_header=False))
    if quoted_first_row:
        header, first_row, rest = path.read_bytes().split(b"\n", 2)
        name, rest_of_row = first_row.split(b",", 1)
        path.write_bytes(b"\n".join([header, b'"' + name + b'",' + rest_of_row, rest]))
    return len(image_of_row)


class LabelsOnly(Dataset):
    """A dataset of label rows alone (what an image dataset's item carries beside its pixels)."""

    def __init__(self, targets: SparseTargets):
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        return self.targets[item[0]]


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    across fork and exec, so a child started by a large parent would report the parent's size."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB


def current_rss_mib() -> float:
    """Resident memory now (the process after its imports: torch, pandas, pyarrow)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def timed(stages: dict, name: str, work: Callable):
    started, cpu_started = time.perf_counter(), time.process_time()
    result = work()
    stages[name] = time.perf_counter() - started
    cpu_seconds[name] = time.process_time() - cpu_started  # every thread's CPU time: robust to a busy machine
    peaks[name] = peak_rss_mib()  # the peak so far: where it first reaches its final value is the stage to blame
    return result


peaks: dict[str, float] = {}
cpu_seconds: dict[str, float] = {}


def one_epoch_seconds(train: SparseTargets) -> float:
    """Label batches through the real sampler and collate: the epoch's draw in full, then TIMED_BATCHES batches
    after the first (the loader's start-up), scaled to the epoch's number of batches."""
    sampler = RepeatAwareSampler(repeat_factors(train, threshold=0.001), seed=0)
    started = time.perf_counter()
    draws = list(sampler)
    draw_seconds = time.perf_counter() - started
    loader = DataLoader(LabelsOnly(train), batch_size=BATCH, sampler=draws, num_workers=0)
    batches = iter(loader)
    next(batches)
    started, timed_batches = time.perf_counter(), 0
    for batch in batches:
        assert batch.shape[1] == train.shape[1]
        timed_batches += 1
        if timed_batches == TIMED_BATCHES:
            break
    return draw_seconds + (time.perf_counter() - started) / max(timed_batches, 1) * len(loader)


def measure(path: Path, num_classes: int) -> dict:
    """One size, in this (fresh) process: every stage's seconds and the peak memory above the start."""
    before, stages = current_rss_mib(), {}
    labels = timed(stages, "parse", lambda: parse_long_labels(path, columns=LABEL_COLUMNS, image_suffix=".jpg",
                                                             vocabulary=class_ids(num_classes)))
    store = labels.labels
    order = np.random.default_rng(0).permutation(len(store))
    train, val = timed(stages, "split", lambda: (store.subset(order[len(order) // 10:]),
                                                 store.subset(order[:len(order) // 10])))
    stages["epoch"] = one_epoch_seconds(train)
    peaks["epoch"] = peak_rss_mib()
    timed(stages, "priors", lambda: class_frequencies(train))
    scores = np.random.default_rng(1).random(val.codes.nnz, dtype=np.float32)
    ap = timed(stages, "metrics", lambda: ap_of_entries(val.codes.indices, scores,
                                                        val.codes.data == POSITIVE_CODE, val.shape[1]))
    images, classes = store.shape
    return {"images": images, "classes": classes, "rows": store.codes.nnz, "seconds": stages, "peak_after": peaks,
            "rows_per_s": store.codes.nnz / stages["parse"], "cpu_seconds": cpu_seconds,
            "rows_per_cpu_s": store.codes.nnz / cpu_seconds["parse"], "peak_rss_mib": peak_rss_mib(),
            "start_rss_mib": before,
            "labels_mib": store.nbytes() / 2**20, "dense_int64_gib": images * classes * 8 / 2**30,
            "classes_with_ap": int(np.isfinite(ap).sum())}


def measure_in_child(path: Path, num_classes: int) -> dict:
    """:func:`measure` in a fresh interpreter, so that its peak memory is this size's alone."""
    done = subprocess.run([sys.executable, __file__, "--measure", str(path), str(num_classes)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def exact_reader_rate(out: Path, images: int) -> dict:
    """Rows a second of the exact reader, which a file with a quote character goes to."""
    path = out / "labels_exact.csv"
    rows = write_labels(path, images, 600, quoted_first_row=True)
    started = time.perf_counter()
    labels = parse_long_labels(path, columns=LABEL_COLUMNS, image_suffix=".jpg", vocabulary=class_ids(600))
    seconds = time.perf_counter() - started
    path.unlink()
    assert labels.labels.codes.nnz == rows
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def growth(results: list[dict]) -> dict[tuple[int, int], dict[str, float]]:
    """Per (images, classes) after the first size of its classes: each stage's time ratio to the size 10x smaller,
    and the labels' ratio, the linear goal."""
    out = {}
    for small, large in itertools.pairwise(results):
        if small["classes"] == large["classes"]:
            out[large["images"], large["classes"]] = {"labels": large["rows"] / small["rows"], **{
                stage: large["seconds"][stage] / max(small["seconds"][stage], 1e-9) for stage in STAGES}}
    return out


def table_md(results: list[dict], exact: dict) -> str:
    head = "| images | classes | label rows | " + " | ".join(f"{s} (s)" for s in STAGES) + \
           " | parse rows/s | parse rows/CPU-s | peak RSS (MiB) | sparse labels (MiB) | dense int64 (GiB) |"
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in results:
        per_cpu = f"{r['rows_per_cpu_s']:,.0f}" if "rows_per_cpu_s" in r else ""
        lines.append(f"| {r['images']:,} | {r['classes']:,} | {r['rows']:,} | " + " | ".join(
            f"{r['seconds'][s]:.2f}" for s in STAGES) + f" | {r['rows_per_s']:,.0f} | {per_cpu} | "
            f"{r['peak_rss_mib']:,.0f} | {r['labels_mib']:,.1f} | {r['dense_int64_gib']:,.1f} |")
    ratios = growth(results)
    if ratios:
        lines += ["", "Growth per 10x images (time ratios; the labels' ratio is the linear goal):", "",
                  "| images | classes | labels | " + " | ".join(STAGES) + " |", "|" + "---:|" * (3 + len(STAGES))]
        lines += [f"| {i:,} | {c:,} | {g['labels']:.1f}x | " + " | ".join(f"{g[s]:.1f}x" for s in STAGES) + " |"
                  for (i, c), g in ratios.items()]
    lines += ["", f"The exact reader (a file with a quote character) on {exact['rows']:,} rows: "
                  f"{exact['seconds']:.2f} s, {exact['rows_per_s']:,.0f} rows/s."]
    return "\n".join(lines) + "\n"


def run_cell(out: Path, images: int, num_classes: int) -> dict:
    """One size, resumable: its result is kept in OUT/cells/."""
    done = out / "cells" / f"{images}x{num_classes}.json"
    if done.is_file():
        return json.loads(done.read_text())
    path = out / f"labels_{images}x{num_classes}.csv"
    write_labels(path, images, num_classes)
    try:
        result = measure_in_child(path, num_classes)
    finally:
        path.unlink()
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    p = make_parser(__doc__)
    p.add_argument("--out", default="outputs/benchmarks/scale")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="numbers of images")
    p.add_argument("--classes", type=int, nargs="+", default=CLASSES)
    p.add_argument("--quick", action="store_true", help=f"{QUICK['sizes'][0]:,} images x {QUICK['classes'][0]} "
                                                        "classes")
    p.add_argument("--measure", nargs=2, metavar=("CSV", "CLASSES"), help="(internal) measure one label file")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]))))
        return []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes, classes = (QUICK["sizes"], QUICK["classes"]) if args.quick else (args.sizes, args.classes)
    results = []
    for num_classes in classes:
        for images in sizes:
            results.append(run_cell(out, images, num_classes))
            r = results[-1]
            print(f"{images:>12,} images x {num_classes:,} classes: " + ", ".join(
                f"{s} {r['seconds'][s]:.2f} s" for s in STAGES) + f"; peak {r['peak_rss_mib']:,.0f} MiB", flush=True)
    exact = exact_reader_rate(out, min(sizes[0], 10**4))
    (out / "results.json").write_text(json.dumps({"sizes": results, "exact_reader": exact}, indent=2))
    (out / "table.md").write_text(table_md(results, exact))
    print(table_md(results, exact))
    return results


if __name__ == "__main__":
    main()
