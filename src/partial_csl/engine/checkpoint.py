"""Self-describing checkpoints: the format's writer and reader side by side.

A checkpoint is a dict of tensors and plain types, written atomically and read with ``weights_only=True``::

    format_version, arch, arch_args, model_name, num_classes, norm, class_names, schema (attribute groups or None),
    image_size, data_config (mean, std, interpolation), normalization (mean, std: format 1's field), model (state
    dict of the weights it was saved for), weights ('regular' or 'ema'), priors (list or None), partial_loss_mode,
    loss, stage, train_class_counts, metrics, config, history, logit_adjustment (per-class offsets added to the
    logits at prediction, ``--logit-adjust posthoc``; None otherwise)

``best.pt`` (:func:`best_payload`) is that and nothing more, plus ``best_metric`` and ``epoch``: the artefact to keep
and share; a run that tunes thresholds adds ``thresholds`` (see :mod:`partial_csl.thresholds`) when it ends.
``last.pt`` (:func:`training_payload`) adds the EMA copy and the training state (``ema``, ``world_size``,
``train_state``: optimizer, scheduler, scaler, criterion, epoch, best_metric, best_weights, rng) that
:func:`restore_training` continues from. :func:`load_checkpoint` and :func:`model_from_checkpoint` read either and
rebuild the model without any flag (the architecture registry knows how); format 1 (training state in both files,
no data_config) still reads.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..data.schema import AttributeSchema
from ..data.transforms import MIIL_NORMALIZATION, DataConfig
from ..models import norm_backend_of
from ..models.weights import tensor_bytes, weight_mismatches
from ..safe_io import atomic_open, describe_save_failure
from ..thresholds import thresholds_problem
from .config import TrainConfig, with_new_defaults
from .setup.architectures import ARCHITECTURES, build_model, get_architecture
from .setup.read_settings import settings_read
from .setup.rebalancing import apply_logit_adjustment, posthoc_adjustment
from .setup.run_data import LabelSpace

if TYPE_CHECKING:
    from .setup.build import TrainingParts

FORMAT_VERSION = 2  # 2: data_config; best.pt holds the weights and metadata only (1: always the training state)
REQUIRED_KEYS = ("format_version", "model_name", "num_classes", "class_names", "image_size", "normalization", "model")


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write to a new temporary file in the same folder, then rename: a crash never leaves a half-written checkpoint,
    and the file gets the usual mode (the umask's), not a private temp file's. A failed write (a full disk: torch
    raises its own RuntimeError from ``inline_container``) is a CheckpointError that says so; the previous file at
    ``path`` is then untouched."""
    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "inline_container" not in str(err) and "StreamWriter" not in str(err):
            raise
        raise CheckpointError(describe_save_failure(path, tensor_bytes(payload), err)) from err
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {missing}); "
                              "pretrained backbones go to --model-path instead")
    _check_fields(ckpt, path)
    return upgraded(ckpt)


# what an older checkpoint (or a key written only sometimes) stands for: filled in once, on reading, so that no reader
# carries its own default
OPTIONAL_KEYS = {"arch": "csl", "arch_args": {}, "schema": None, "priors": None, "partial_loss_mode": None,
                 "loss": None, "stage": "main", "train_class_counts": [], "metrics": {}, "config": {}, "history": [],
                 "logit_adjustment": None, "weights": "regular", "thresholds": None}


def upgraded(ckpt: dict) -> dict:
    """``ckpt`` with every optional key present (a missing or None one gets its :data:`OPTIONAL_KEYS` value)."""
    filled = {k: copy.deepcopy(v) for k, v in OPTIONAL_KEYS.items() if ckpt.get(k) is None}
    return {**ckpt, **filled}


def _check_fields(ckpt: dict, path: Path) -> None:
    """The fields everything else trusts: a known format version, architecture and a consistent class list."""
    version = ckpt["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version!r} is not one this code reads (1..{FORMAT_VERSION})")
    if ckpt.get("arch", "csl") not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unknown architecture {ckpt.get('arch')!r}")
    names, count = ckpt["class_names"], ckpt["num_classes"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: class_names is not a list of names")
    if not isinstance(count, int) or count != len(names):
        raise CheckpointError(f"{path}: num_classes {count!r} does not match its {len(names)} class names")
    if not isinstance(ckpt["model_name"], str) or not ckpt["model_name"]:
        raise CheckpointError(f"{path}: model_name {ckpt['model_name']!r} is not a model name")
    _check_schema(ckpt, path)
    if ckpt.get("thresholds") is not None:
        groups = [g["name"] for g in ckpt["schema"]["groups"]] if ckpt.get("schema") else None
        problem = thresholds_problem(ckpt["thresholds"], names, groups)
        if problem:
            raise CheckpointError(f"{path}: its thresholds cannot be used ({problem})")


def _check_schema(ckpt: dict, path: Path) -> None:
    """An attribute checkpoint's schema must list its class names, in order: it decides the CSV's columns."""
    if not ckpt.get("schema"):
        return
    try:
        schema = AttributeSchema.from_dict(ckpt["schema"])
    except ValueError as err:
        raise CheckpointError(f"{path}: its schema is not a schema ({err})") from err
    differ = [f"class {i}: {a!r} in the schema, {b!r} in class_names"
              for i, (a, b) in enumerate(zip(schema.class_names, ckpt["class_names"])) if a != b]
    if len(schema.class_names) != len(ckpt["class_names"]):
        differ.insert(0, f"{len(schema.class_names)} classes in the schema, {len(ckpt['class_names'])} in class_names")
    if differ:
        raise CheckpointError(f"{path}: its schema disagrees with its class_names (was the file edited?): "
                              + "; ".join(differ[:5]))


def check_same_model(ckpt: dict, path: Path, metadata: dict) -> None:
    """Refuse to continue from ``ckpt`` when it describes another model than the run builds (``metadata``)."""
    for key in ("arch", "model_name", "class_names", "image_size"):
        if ckpt.get(key) != metadata[key]:
            raise CheckpointError(f"{path}: its {key} {ckpt.get(key)!r} differs from this run's {metadata[key]!r}; "
                                  "it cannot be resumed by this run")


def with_posthoc_adjustment(ckpt: dict, cfg: TrainConfig, labels: LabelSpace, ignore: tuple[str, ...] = ()) -> dict:
    """A copy of ``ckpt`` with the offset ``cfg``'s ``--logit-adjust posthoc`` stores: what train.py would have
    written had the run asked for it (post-hoc adjustment leaves the training unchanged). Refused when ``ckpt`` was
    trained with settings other than ``cfg``'s (besides ``logit_adjust``, ``ignore`` and the settings neither
    reads)."""
    trained = with_new_defaults(ckpt["config"])  # a setting added since it was trained: at its default
    expected = settings_read(replace(cfg, logit_adjust=trained.get("logit_adjust")).to_dict())
    trained_read = settings_read(trained)  # a setting neither run reads cannot differ
    differs = sorted(k for k, v in expected.items() if trained_read.get(k, v) != v and k not in ignore)
    if differs:
        raise CheckpointError(f"the checkpoint was trained with other settings ({', '.join(differs)})")
    offset = posthoc_adjustment(cfg, labels, get_architecture(ckpt.get("arch", "csl")).output_form)
    return {**ckpt, "logit_adjustment": offset,
            "config": {**trained, "logit_adjust": cfg.logit_adjust, "la_tau": cfg.la_tau}}


def checkpoint_schema(ckpt: dict) -> AttributeSchema | None:
    return AttributeSchema.from_dict(ckpt["schema"]) if ckpt.get("schema") else None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint (or an export's metadata sidecar, the same keys) says about its model and run, typed: the
    readers use this view, not the dict (:func:`checkpoint_info`)."""

    arch: str
    model_name: str
    class_names: list[str]
    schema: AttributeSchema | None
    data_config: DataConfig
    priors: list[float] | None
    partial_loss_mode: str | None
    loss: str | None
    train_class_counts: list[int]
    metrics: dict
    config: dict
    history: list[dict]
    weights: str
    thresholds: dict | None
    epoch: int | None

    @property
    def image_size(self) -> int:
        return self.data_config.image_size


def checkpoint_info(ckpt: dict) -> CheckpointInfo:
    """The typed view of ``ckpt`` (optional keys filled as :func:`upgraded` does; format 1's preprocessing is its size
    and the MIIL normalisation)."""
    c = upgraded(ckpt)
    if c.get("data_config"):
        data_config = DataConfig.from_dict(c["data_config"])
    else:
        norm = c.get("normalization") or MIIL_NORMALIZATION
        data_config = DataConfig(int(c["image_size"]), tuple(norm["mean"]), tuple(norm["std"]), "bilinear")
    return CheckpointInfo(c["arch"], c["model_name"], list(c["class_names"]), checkpoint_schema(c), data_config,
                          c["priors"], c["partial_loss_mode"], c["loss"], list(c["train_class_counts"]), c["metrics"],
                          c["config"], list(c["history"]), c["weights"], c["thresholds"], c.get("epoch"))


def with_thresholds(ckpt: dict, thresholds: dict | None) -> dict:
    """A copy of ``ckpt`` that stores ``thresholds`` (see :mod:`partial_csl.thresholds`)."""
    return {**ckpt, "thresholds": thresholds}


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu", norm: str = "auto",
                          source: str | Path = "the checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (either ABN backend fits the same weights);
    CheckpointError naming ``source`` when the model cannot be built or its weights do not fit it."""
    described = f"model_name {ckpt['model_name']!r}, arch {ckpt.get('arch', 'csl')!r}, {ckpt['num_classes']} classes"
    try:
        model = build_model(ckpt.get("arch", "csl"), ckpt["model_name"], ckpt["num_classes"], norm=norm,
                            device=device, **(ckpt.get("arch_args") or {}))
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{source}: the model it describes ({described}) cannot be built: {err}") from err
    problems = weight_mismatches(model.state_dict(), ckpt["model"])
    if problems:
        raise CheckpointError(f"{source}: its weights do not fit the model it describes ({described}; was the file "
                              "edited?): " + "; ".join(problems))
    model.load_state_dict(ckpt["model"])
    return apply_logit_adjustment(model, ckpt.get("logit_adjustment")).eval()


@dataclass
class StageProgress:
    """Where a stage stands: the last finished epoch (-1 before the first) and its best validation mAP so far."""

    epoch: int = -1
    best_metric: float = -float("inf")
    best_weights: str = "regular"


def _rng_state() -> dict:
    return {"python": list(random.getstate()[1]), "numpy": np.random.get_state()[1].tolist(),
            "torch": torch.get_rng_state()}


def model_metadata(cfg: TrainConfig, labels: LabelSpace, model: nn.Module, data_config: DataConfig,
                   prior: np.ndarray | None, stage: str) -> dict:
    """What a checkpoint needs to rebuild and use ``model`` without any flag."""
    return {"format_version": FORMAT_VERSION, "arch": cfg.arch,
            "arch_args": get_architecture(cfg.arch).arch_args(cfg, labels), "model_name": cfg.model_name,
            "num_classes": len(labels.class_names), "norm": norm_backend_of(model), "class_names": labels.class_names,
            "schema": labels.schema.to_dict() if labels.schema else None, "image_size": cfg.image_size,
            "data_config": data_config.to_dict(),
            "normalization": {"mean": list(data_config.mean), "std": list(data_config.std)},
            "priors": None if prior is None else [float(p) for p in prior],
            "partial_loss_mode": cfg.partial_loss_mode, "loss": cfg.loss, "stage": stage,
            "train_class_counts": labels.train_class_counts, "config": cfg.to_dict(),
            "logit_adjustment": posthoc_adjustment(cfg, labels, get_architecture(cfg.arch).output_form)
            if stage == "main" else None}


def best_payload(metadata: dict, parts: TrainingParts, weights: str, metrics: dict, progress: StageProgress,
                 history: list[dict]) -> dict:
    """``best.pt``, the file to keep and share: ``metadata`` and the ``weights`` ('regular' or 'ema') that scored
    ``metrics`` — no optimiser state and no second copy of the network, so it is the size of the weights."""
    state = parts.ema.module.state_dict() if weights == "ema" else parts.model.state_dict()
    return {**metadata, "model": state, "weights": weights, "metrics": metrics, "best_metric": progress.best_metric,
            "epoch": progress.epoch + 1, "history": list(history)}


def training_payload(metadata: dict, parts: TrainingParts, metrics: dict, progress: StageProgress,
                     history: list[dict], world_size: int) -> dict:
    """``last.pt``: ``metadata``, the regular weights (scored by ``metrics``), the EMA copy and the training state
    that :func:`restore_training` needs to continue exactly where this one stopped."""
    return {**metadata, "model": parts.model.state_dict(), "weights": "regular", "metrics": metrics,
            "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            "history": list(history), "world_size": world_size,
            "train_state": {"optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict(),
                            "scaler": parts.scaler.state_dict(), "criterion": parts.criterion.state_dict(),
                            "epoch": progress.epoch, "best_metric": progress.best_metric,
                            "best_weights": progress.best_weights, "rng": _rng_state()}}


def restore_training(path: str | Path, parts: TrainingParts, metadata: dict) -> tuple[StageProgress, list[dict]]:
    """Load the weights, EMA, optimiser, schedule, scaler and criterion state of ``path`` (a ``last.pt``) into
    ``parts`` (refused when it describes another model than ``metadata``); returns the stage's progress and the
    metric history up to it. Every epoch reseeds itself, so the RNG state in the file is a record, not restored."""
    state = load_checkpoint(path)
    check_same_model(state, Path(path), metadata)
    try:
        parts.model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit this run's model ({str(err).splitlines()[0]})") from err
    if parts.ema is not None and state.get("ema") is not None:
        parts.ema.module.load_state_dict(state["ema"])
    ts = state["train_state"]
    parts.optimizer.load_state_dict(ts["optimizer"])
    parts.scheduler.load_state_dict(ts["scheduler"])
    parts.scaler.load_state_dict(ts["scaler"])
    parts.criterion.load_state_dict(ts["criterion"])
    return StageProgress(ts["epoch"], ts["best_metric"], ts["best_weights"]), list(state["history"])
