"""A run folder belongs to one run: claimed under an exclusive lock, never silently reused, resumed only as it was.

    with claim_run_folder(cfg):  # before anything is read or written
        ...

* The lock is ``<run>/.lock``, held with ``flock`` for the whole run, so a second process that targets the folder
  fails at once, naming the holder (pid, host, start time). The operating system drops it when its process dies,
  even under ``kill -9``, so there are no stale locks to clean up.
* A folder that holds a run (its ``config.json``) is refused unless ``--resume`` (continue it) or ``--overwrite``
  (delete that run's files, and only those, first).
* Every file a run writes in its folder is recorded in ``<run>/run_files.json`` before it is written
  (:mod:`partial_csl.manifest`); ``--overwrite`` deletes those files and the folders they leave empty, logs the
  list, and names every other file, which stays. A run from before the manifest existed has only the files a run
  writes by name (:data:`LEGACY_RUN_FILES`) counted as its own.
* ``--resume`` compares the saved settings with the new ones and refuses, naming every key that differs, before
  anything is touched. The keys of :data:`MAY_CHANGE_ON_RESUME` (how the run executes, not what it computes) may
  differ; the folder's own location is one of them, so a run folder moved or copied elsewhere resumes there. So may
  the settings the run does not read (:mod:`..setup.read_settings`): a changed default of ``--pseudo-teacher``
  leaves a run without pseudo-labels resumable. A setting added to the code since the run started counts as saved
  at its default, so an upgrade mid-run resumes.
* Temporary files left by a killed write (``.NAME.HEX.tmp``) are removed.
* No input may be inside what the run writes: the folder must not be an input file, the image folder, or hold an
  input among the run's own files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ...manifest import Manifest, other_files, remove_files
from ...safe_io import refuse_inputs_as_outputs, watching_writes
from ..config import BEFORE_THE_SETTING, TAKEN_BEFORE_THE_SETTING, TrainConfig, with_new_defaults
from ..setup.read_settings import unread_by

log = logging.getLogger(__name__)

MAY_CHANGE_ON_RESUME = frozenset({"resume", "overwrite", "stop_after_steps", "workers", "device", "cache_images",
                                  "cache_embeddings", "embeddings_dir", "class_thresholds", "target_precision",
                                  "abstain_accuracy", "abstain_coverage", "output_dir"})
PATH_KEYS = ("train_csv", "val_csv", "images", "val_images", "schema", "data", "train_annotations",
             "val_annotations", "train_images", "model_path", "prior_path", "output_dir")
# files and folders a run writes at the top of its folder (no input may be one of them)
RUN_FILES = ("config.json", "metrics.csv", "summary.json", "sampler_distribution.csv", "sampler_distribution.md",
             "sampler_distribution.png", "rejected_rows_train.csv", "rejected_rows_val.csv", "label_warnings.json",
             "image_checks.csv", "skipped_images.csv")
RUN_FOLDERS = ("checkpoints", "prior_stage", "priors", "tensorboard", "simulation")
LOCK_NAME, MANIFEST_NAME = ".lock", "run_files.json"
# the files a run wrote before run_files.json existed, by name: what --overwrite removes from such a folder
LEGACY_RUN_FILES = (*RUN_FILES, "checkpoints/best.pt", "checkpoints/last.pt", "prior_stage/checkpoints/best.pt",
                    "prior_stage/checkpoints/last.pt", "prior_stage/history.json", "priors/prior_ignore.csv",
                    "priors/prior_ignore.csv.json", "priors/prior_quality.json", "simulation/simulated_targets.csv",
                    "simulation/simulation_summary.csv", "tensorboard/events.out.tfevents.*", "embeddings/*.pt")


class RunFolderError(ValueError):
    """The run folder cannot be used for this run (taken, holds another run, unwritable, or holds an input)."""


def _input_paths(cfg: TrainConfig) -> list[Path]:
    keys = ("train_csv", "val_csv", "schema", "train_annotations", "val_annotations", "model_path", "prior_path")
    return [Path(v) for k in keys if (v := getattr(cfg, k))]


def _image_folders(cfg: TrainConfig) -> list[Path]:
    return [Path(v) for v in (cfg.images, cfg.val_images, cfg.train_images, cfg.data) if v]


def check_no_input_is_written(cfg: TrainConfig, run_dir: Path) -> None:
    """The run folder, and every file and folder a run writes in it, must not be (or contain) an input."""
    outputs = [run_dir, run_dir / MANIFEST_NAME, *(run_dir / f for f in RUN_FILES), *(run_dir / d for d in RUN_FOLDERS)]
    refuse_inputs_as_outputs(outputs, [*_input_paths(cfg), *_image_folders(cfg)])
    resolved = run_dir.resolve()
    for path in _input_paths(cfg):
        if any(path.resolve().is_relative_to(resolved / d) for d in RUN_FOLDERS):
            raise RunFolderError(f"the input {path} lies in {run_dir}'s own files, which this run writes; "
                                 "copy it elsewhere or choose another --output-dir")


def _comparable(cfg: dict, unread: set[str]) -> dict:
    """Settings as values to compare: those the run reads, paths resolved (``data/x.csv`` and ``./data/x.csv`` are
    the same input)."""
    out = {k: v for k, v in cfg.items() if k not in MAY_CHANGE_ON_RESUME and k not in unread}
    for key in PATH_KEYS:
        if out.get(key):
            out[key] = str(Path(out[key]).resolve())
    return out


def _unsaved_note(key: str, saved: dict) -> str:
    if key in saved:
        return ""
    before = key in BEFORE_THE_SETTING or key in TAKEN_BEFORE_THE_SETTING
    return " (not saved: what runs before the setting used)" if before else " (not saved: the default)"


def check_resume_matches(cfg: TrainConfig, saved: dict, path: Path) -> None:
    """Refuse to resume with settings other than the saved ones, naming each key that differs. A setting the code
    gained since the run started (absent from ``saved``) counts as saved at its default: the run computed with it.
    A setting that either run does not read is not compared: what decides that (``--pseudo-labels`` for
    ``--pseudo-teacher``, the architecture, the loss) is, and is named when it differs."""
    new, old = cfg.to_dict(), with_new_defaults(saved)
    unread = unread_by(new) | unread_by(old)
    new, old = _comparable(new, unread), _comparable(old, unread)
    differing = [f"{k}: saved {old.get(k)!r}{_unsaved_note(k, saved)}, now {new.get(k)!r}"
                 for k in sorted(set(new) | set(old)) if old.get(k) != new.get(k)]
    if differing:
        raise RunFolderError(f"cannot resume {path.parent} with other settings than it was started with ({path}):\n  "
                             + "\n  ".join(differing) + "\n(use the original flags, or a new --output-dir)")


def previous_run_files(run_dir: Path) -> list[str]:
    """The files the run in ``run_dir`` wrote: its manifest, or for a run from before manifests the files a run
    writes by name (:data:`LEGACY_RUN_FILES`)."""
    recorded = Manifest(run_dir, MANIFEST_NAME).read()
    if recorded is not None:
        return recorded
    log.warning("%s has no %s (a run from before it existed): only the files a run writes by name count as that "
                "run's", run_dir, MANIFEST_NAME)
    return sorted({p.relative_to(run_dir).as_posix() for pattern in LEGACY_RUN_FILES for p in run_dir.glob(pattern)
                   if p.is_file()})


def remove_previous_run(run_dir: Path) -> list[str]:
    """``--overwrite``: delete the previous run's files (and the folders they leave empty), say which, and name the
    files that stay; returns the removed ones."""
    removed = remove_files(run_dir, [*previous_run_files(run_dir), MANIFEST_NAME])
    log.warning("--overwrite: removed %d file(s) of the previous run in %s: %s", len(removed), run_dir,
                ", ".join(removed) or "none")
    kept = other_files(run_dir, {LOCK_NAME})
    if kept:
        log.warning("--overwrite: left %d file(s) in %s that the previous run did not write: %s", len(kept), run_dir,
                    ", ".join(kept))
    return removed


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Delete the ``.NAME.HEX.tmp`` files a killed write left behind (only the lock holder may)."""
    leftovers = [p for p in run_dir.rglob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def _make_folder(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise RunFolderError(f"--output-dir {run_dir} is a file, not a folder") from err
    except OSError as err:
        raise RunFolderError(f"cannot create the run folder {run_dir}: {err.strerror}") from err
    if not run_dir.is_dir():
        raise RunFolderError(f"--output-dir {run_dir} is not a folder")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunFolderError(f"the run folder {run_dir} is not writable")


@contextlib.contextmanager
def _exclusive_lock(run_dir: Path) -> Iterator[None]:
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise RunFolderError(f"cannot write in the run folder {run_dir}: {err.strerror}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderError(f"{run_dir} is in use by another run ({holder}); wait for it to finish or "
                                 "choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


@contextlib.contextmanager
def claim_run_folder(cfg: TrainConfig) -> Iterator[Path]:
    """Hold ``cfg.output_dir`` for this run (see the module docstring); yields the folder."""
    run_dir = Path(cfg.output_dir)
    check_no_input_is_written(cfg, run_dir)
    _make_folder(run_dir)
    with _exclusive_lock(run_dir):
        config_path = run_dir / "config.json"
        manifest = Manifest(run_dir, MANIFEST_NAME)
        if config_path.is_file():
            if cfg.resume:
                check_resume_matches(cfg, _saved_config(config_path), config_path)
                if manifest.read() is None:  # a run from before manifests: adopt its files by name
                    manifest.add(run_dir / f for f in previous_run_files(run_dir))
            elif cfg.overwrite:
                remove_previous_run(run_dir)
            else:
                raise RunFolderError(f"{run_dir} already holds a run ({config_path}); pass --resume to continue it, "
                                     "--overwrite to replace it, or choose another --output-dir")
        remove_temporary_files(run_dir)
        with watching_writes(manifest.add):
            yield run_dir


def _saved_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunFolderError(f"{path} is unreadable ({type(err).__name__}: {err}); it does not describe a run this "
                             "code can resume — use --overwrite or another --output-dir") from err
