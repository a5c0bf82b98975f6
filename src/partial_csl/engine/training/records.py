"""What a run writes about itself as it goes: ``config.json``, ``metrics.csv``, TensorBoard scalars, the log line."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from pathlib import Path

from ...safe_io import atomic_open, atomic_write_text
from ..config import TrainConfig

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` to simulate a crash (resume with ``--resume``)."""


class RunClock:
    """Announces, once the first steps are timed, how long the run's training steps will take in all; knows where
    training stands (stage, epoch, step), for the line an interrupted run ends with; stops the run as if killed
    after ``stop_after`` steps in all stages (``--stop-after-steps``: the crash tests)."""

    def __init__(self, total_steps: int, warmup: int = 2, measure: int = 8, stop_after: int | None = None):
        self.total_steps, self.warmup, self.measure, self.stop_after = total_steps, warmup, measure, stop_after
        self.steps, self.started = 0, 0.0
        self.stage, self.epoch, self.epoch_steps = "", 0, 0

    def start_epoch(self, stage: str, epoch: int) -> None:
        """``epoch`` counts from 1, as the log lines do."""
        self.stage, self.epoch, self.epoch_steps = stage, epoch, 0

    def where(self) -> str:
        if not self.stage:
            return "stopped before training started"
        stage = "" if self.stage == "main" else f" of the {self.stage} stage"
        return f"stopped at epoch {self.epoch} step {self.epoch_steps}{stage}"

    def step(self) -> None:
        self.steps += 1
        self.epoch_steps += 1
        if self.steps == self.warmup:  # the first steps pay for allocation and thread start-up
            self.started = time.perf_counter()
        elif self.steps == self.warmup + self.measure:
            per_step = (time.perf_counter() - self.started) / self.measure
            log.info("estimated training time: %.1f min (%.2f s per step x %d steps in all stages; validation adds "
                     "a little per epoch)", per_step * self.total_steps / 60, per_step, self.total_steps)
        if self.stop_after is not None and self.steps >= self.stop_after:
            raise TrainingInterrupted(f"stopped after the requested number of steps (in stage {self.stage!r}, "
                                      f"epoch {self.epoch}); continue with --resume")


def write_run_config(run_dir: Path, cfg: TrainConfig, facts: dict) -> Path:
    """``config.json``: every resolved setting plus the facts of this run (device, versions, data sizes)."""
    return write_json(run_dir / "config.json", {"config": cfg.to_dict(), **facts})


def write_json(path: Path, data: dict) -> Path:
    """A JSON record, written as a new file (a kill never leaves half of one)."""
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_metrics_csv(history: list[dict], path: Path) -> None:
    """One row per epoch and stage; the columns are the union over rows (stages may log different ones)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def append_epoch(run_dir: Path, history: list[dict], row: dict, writer, epochs: int, improved: bool) -> None:
    """Record the epoch ``row`` (already in ``history``): metrics.csv, TensorBoard and one log line."""
    write_metrics_csv(history, run_dir / "metrics.csv")
    stage, epoch = row["stage"], row["epoch"]
    for key in ("train_loss", "val_mAP", "val_mAP_ema", "lr"):
        if row.get(key, "") != "":
            writer.add_scalar(f"{stage}/{key}", row[key], epoch)
    for key, value in row.items():
        if key.startswith("acc_"):
            writer.add_scalar(f"{stage}/accuracy/{key[4:]}", value, epoch)
    acc_text = " ".join(f"{k[4:]} {v:.1f}" if math.isfinite(v) else f"{k[4:]} n/a" for k, v in row.items()
                        if k.startswith("acc_"))
    ema = row.get("val_mAP_ema", "")
    ema_text = f"{ema:.2f}" if isinstance(ema, (int, float)) else "n/a"
    log.info("[%s] epoch %d/%d loss %.4f lr %.2e val mAP %.2f ema %s %s (%.0fs)%s", stage, epoch, epochs,
             row["train_loss"], row["lr"], row["val_mAP"], ema_text, acc_text, row["seconds"],
             " *best*" if improved else "")
