"""The resumable grid shared by the multi-seed benchmarks: a cell is a folder whose ``result.json`` marks it done.

A cell trains with ``train.py``'s engine, tests the best checkpoint on a split's ``test.csv`` and writes its metrics;
a second call (after a kill, or to add seeds) reads the finished cells instead of training them again. Run as scripts,
the benchmarks import this module by name (a script's folder comes first on the import path).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from seed_tables import mean_std_table

from partial_csl.data.schema import default_schema
from partial_csl.engine.config import TrainConfig, saved_defaults
from partial_csl.engine.setup.architectures import resolve_auto
from partial_csl.engine.setup.read_settings import settings_read
from partial_csl.engine.tools.validate import validate_checkpoint
from partial_csl.engine.training.trainer import run_training
from partial_csl.safe_io import atomic_write_text

# settings that say where a cell wrote its files, not what it computed: a grid folder that was moved (or a cell
# copied from another grid's folder) keeps its finished cells
PLACES = ("output_dir", "embeddings_dir")


def same_settings(recorded: dict, settings: dict, defaults: dict | None = None,
                  read: Callable[[dict], dict] = dict) -> bool:
    """Whether a cell computed with ``recorded`` settings was computed with ``settings`` (:data:`PLACES` aside),
    comparing the settings ``read`` keeps of both (:func:`read_by_training`: what a training run reads; a switch
    that turns a setting on is itself read, so a setting read by one side only is decided by its switch). A setting
    the code gained since (absent from ``recorded``) counts as the same when it is at its default."""
    before = {**{k: v for k, v in (defaults or {}).items() if k in settings}, **recorded}
    if set(recorded) - set(settings) or set(settings) - set(before) - set(PLACES):
        return False  # a setting the code dropped since, or one the cell did not record and no default stands for
    read_before, read_now = read(before), read(settings)
    return all(read_before[k] == v for k, v in read_now.items() if k in read_before and k not in PLACES)


def finished_result(run_dir: Path, settings: dict | None = None, defaults: dict | None = None,
                    read: Callable[[dict], dict] = dict) -> dict | None:
    """``run_dir/result.json`` if the cell finished with ``settings`` (any, when None: see :func:`same_settings`),
    else None."""
    done = run_dir / "result.json"
    if not done.is_file():
        return None
    result = json.loads(done.read_text())
    if settings is None or same_settings(result.get("config", settings), settings, defaults, read):
        return result
    return None


def resumable(run_dir: Path, compute: Callable[[], dict], settings: dict | None = None,
              defaults: dict | None = None, read: Callable[[dict], dict] = dict) -> dict:
    """``run_dir/result.json`` if it is there (and was computed with ``settings``, when given: see
    :func:`same_settings`), else ``compute()``, written there atomically with the settings (a kill leaves no cell half
    done: it is computed again)."""
    finished = finished_result(run_dir, settings, defaults, read)
    if finished is not None:
        return finished
    started = time.perf_counter()
    result = {**compute(), "seconds": time.perf_counter() - started}
    if settings is not None:
        result["config"] = settings
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2) + "\n")
    return result


def read_by_training(config: dict) -> dict:
    """The settings a training run of ``config`` reads (``settings_read``), "auto" resolved as the run resolves it
    today (a cell recorded before :func:`train_cell` recorded resolved settings reads as today's default)."""
    known = {f.name for f in fields(TrainConfig)}
    resolved = resolve_auto(TrainConfig(**{k: v for k, v in config.items() if k in known})).to_dict()
    return settings_read({**config, **{k: v for k, v in resolved.items() if k in config}})


def fresh_or_resumed(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``cfg`` in ``run_dir``, resuming an interrupted run of the same settings; a run folder left by other settings
    (the row changed since) is replaced."""
    cfg = replace(cfg, output_dir=str(run_dir), resume=True, overwrite=False)
    started_with = run_dir / "config.json"
    if started_with.is_file():
        saved = json.loads(started_with.read_text())["config"]
        ignored = ("resume", "overwrite")
        resolved = resolve_auto(cfg).to_dict()  # a run folder records what "auto" stood for
        if not same_settings({k: v for k, v in saved.items() if k not in ignored},
                             {k: v for k, v in resolved.items() if k not in ignored}, saved_defaults(),
                             settings_read):
            return replace(cfg, resume=False, overwrite=True)
    return cfg


def cell_config(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``cfg`` as a cell in ``run_dir`` trains and records it: resumable, "auto" resolved (a later change of what
    "auto" stands for changes no finished cell's settings)."""
    return resolve_auto(replace(cfg, output_dir=str(run_dir), resume=True, overwrite=False))


def finished_cell(cfg: TrainConfig, run_dir: Path) -> dict | None:
    """The result :func:`train_cell` would read from ``run_dir`` for ``cfg`` without training, or None (not finished,
    or finished with other settings; a cell that recorded no settings is not taken for anyone's)."""
    result = finished_result(run_dir, cell_config(cfg, run_dir).to_dict(), saved_defaults(), read_by_training)
    return result if result is not None and "config" in result else None


def seeds_on_disk(folder: Path) -> list[int]:
    """The seeds of the ``seed<N>`` folders in ``folder`` (a grid's cells of one row), in order."""
    found = [p.name[4:] for p in folder.glob("seed*") if p.is_dir()]
    return sorted(int(n) for n in found if n.isdigit() and str(int(n)) == n)  # seed01 is not a second seed 1


def train_cell(cfg: TrainConfig, run_dir: Path, measure: Callable[[dict], dict], keep: bool = False) -> dict:
    """One cell: train ``cfg`` in ``run_dir`` (or read its finished result, if it was trained with the same
    settings), ``measure(summary)``; the checkpoints go unless ``keep``."""
    cfg = cell_config(cfg, run_dir)
    result = resumable(run_dir, lambda: measure(run_training(fresh_or_resumed(cfg, run_dir))), cfg.to_dict(),
                       defaults=saved_defaults(), read=read_by_training)
    if not keep:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return result


def attribute_metrics(report: dict, train_csv: Path) -> dict:
    """Per attribute accuracy, balanced accuracy, mAP and rare-class AP, and the overall mAP, from a test report.

    Rare-class AP: the mean AP of the bottom third (rounded, at least one) of an attribute's classes by training
    frequency (classes without a scorable AP left out)."""
    train = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    out = {"overall mAP": report["mAP"]}
    for group in default_schema().groups:
        known = train[group.name][~train[group.name].isin(["#N/A", ""])].astype(float).astype(int)
        counts = known.value_counts()
        order = sorted(range(group.num_classes), key=lambda k: counts.get(k, 0))
        rare = [group.class_names[k] for k in order[:max(1, round(group.num_classes / 3))]]
        out[f"{group.name} accuracy"] = report["accuracy_per_attribute"][group.name]
        out[f"{group.name} balanced accuracy"] = report["macro_accuracy_per_attribute"][group.name]
        out[f"{group.name} mAP"] = report["mAP_per_attribute"][group.name]
        aps = np.array([report["ap_per_class"].get(c) for c in rare], dtype=float)  # None (not scorable): NaN
        out[f"{group.name} rare-class AP"] = float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
    return out


def test_checkpoint(checkpoint: str | Path, run_dir: Path, split: Path, images: str, device: str) -> dict:
    """The evaluation report of ``checkpoint`` on ``split/test.csv`` (written under ``run_dir/test_report``)."""
    return validate_checkpoint(checkpoint, run_dir / "test_report", csv_path=str(split / "test.csv"), images=images,
                               workers=0, device=device, html=False)


def train_and_test(cfg: TrainConfig, run_dir: Path, split: Path, metrics: Callable[[dict], dict],
                   keep: bool = False) -> dict:
    """:func:`train_cell` whose measure is ``metrics`` of its best checkpoint's report on ``split/test.csv``."""
    def measure(summary: dict) -> dict:
        return metrics(test_checkpoint(summary["best_checkpoint"], run_dir, split, cfg.images, cfg.device))

    return train_cell(cfg, run_dir, measure, keep)


def slug(text: str) -> str:
    """A folder name for a row label."""
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:60]


def long_rows(dataset: str, row: str, seed: int, result: dict) -> list[dict]:
    """One results.csv row per metric of a cell (its recorded settings left out)."""
    return [{"dataset": dataset, "row": row, "seed": seed, "column": k, "value": v} for k, v in result.items()
            if k != "config"]


def attribute_tables(frame: pd.DataFrame, dataset: str, rows: list[str], heading: str) -> list[str]:
    """Markdown of one dataset's cells (``long_rows``): for the overall mAP and each attribute, a table of mean ± std
    over the seeds per row (seed_tables.mean_std_table: the best in bold, ties marked)."""
    data = frame[(frame["dataset"] == dataset) & (frame["column"] != "seconds")].rename(columns={"value": "mAP"})
    lines = []
    for attribute in ["overall", *default_schema().group_names]:
        columns = [c for c in dict.fromkeys(data["column"]) if c.startswith(f"{attribute} ")]
        lines += [f"## {heading}: {attribute}", "", *mean_std_table(data, rows, columns, "mAP"), ""]  # 2 decimals
    return lines
