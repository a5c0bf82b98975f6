"""The resolved settings of a training run, plus the helpers every run needs (device, seeds, versions)."""

from __future__ import annotations

import platform
import random
from dataclasses import asdict, dataclass, field, fields, make_dataclass

import numpy as np
import torch

from ..losses import LOSSES
from ..models.heads import HEADS
from ..options import merge_options

# the settings the losses and heads declare, each once with the components that read it ("--loss hill"): one
# TrainConfig field each (inherited), and one train.py flag each
DECLARED_OPTIONS = merge_options([*((f"--loss {name}", entry.options) for name, entry in LOSSES.items()),
                                  *((f"--head {name}", entry.options) for name, entry in HEADS.items())])
DeclaredSettings = make_dataclass("DeclaredSettings", [(name, option.annotation, field(default=option.default))
                                                       for name, (option, _) in DECLARED_OPTIONS.items()])
# what --pseudo-labels turns on (a run without it reads none of them)
PSEUDO_LABEL_SETTINGS = ("pseudo_teacher", "pseudo_warmup", "pseudo_precision", "pseudo_negative_precision",
                         "pseudo_thresholds")


@dataclass
class TrainConfig(DeclaredSettings):
    """Every setting of a training run: the losses' and heads' settings (inherited, declared by them) and these."""

    # data
    dataset: str = "attributes"
    train_csv: str | None = None
    val_csv: str | None = None
    images: str | None = None
    val_images: str | None = None
    classes: str | None = None  # multilabel_csv: the class list (one name per line)
    data: str | None = None
    train_annotations: str | None = None
    val_annotations: str | None = None
    train_images: str | None = None
    keep_empty: bool = False  # COCO images without annotations: dropped, as the official loader does
    simulate_partial_type: str | None = None
    simulate_partial_param: float = 1000
    schema: str | None = None
    image_size: int = 224
    mean: list[float] | None = None  # None: the model's own (its timm pretrained config, or the weights' config.json)
    std: list[float] | None = None
    interpolation: str | None = None
    batch_size: int = 32
    workers: int = 2
    cache_images: bool = False
    freeze_backbone: bool = False  # train the head only, on backbone features computed once
    cache_embeddings: bool = False  # keep those features on disk (<run>/embeddings or --embeddings-dir)
    embeddings_dir: str | None = None
    augment: str = "csl"
    on_bad_rows: str = "error"
    sampler: str = "uniform"
    repeat_threshold: float = 0.3
    sampler_max_weight: float = 10.0
    sampler_power: float = 0.5  # balanced: r = max(1, (t / f)^p); raking: target freq^(1 - p); 0 uniform
    sampler_max_repeats: float | None = None  # cap on an image's weight relative to the lightest image
    sampler_replacement: bool = True  # False: each image floor(expected) times, the rest drawn without replacement
    reset_head: bool = False  # re-initialise the classifier of --model-path (cRT: a new head on a trained backbone)
    # model
    arch: str = "auto"  # auto: each data format's default, csl for all today (resolve_auto)
    head: str = "linear"
    model_name: str = "tresnet_m"
    model_path: str | None = None
    norm: str = "auto"
    latent_tasks: int = 32
    latent_reg: float = 1e-3
    branch_model: str = "resnet18"
    afa_stages: str = "4"
    afa_grad_balance: bool = False
    task_weighting: str = "equal"
    dwa_temperature: float = 2.0
    # optimisation (the CSL recipe)
    lr: float = 2e-4
    weight_decay: float = 1e-4
    epochs: int = 30
    ema_decay: float = 0.9997
    ema_warmup: bool = False
    amp: bool | None = None
    amp_dtype: str = "auto"
    grad_clip: float = 0.0
    sync_bn: bool = False
    # loss (each loss's own settings are inherited from DeclaredSettings) and CSL's prior stage
    loss: str = "partial_asl"
    prior_path: str | None = None
    prior_epochs: int | None = None
    prior_estimate: str = "mean"  # the winner of benchmarks/partial_methods.py's prior-quality table
    prior_loss: str = "bce"  # the prior stage's own loss (ignore mode): none of the main stage's focusing
    prior_holdout: float = 0.2  # em: share of each class's annotated labels the prior model calibrates on, unseen
    expected_positives: float | None = None  # epr/role: positives per image (None: estimated from the labels)
    # teacher pseudo-labels for the unknown entries (partial_csl.pseudo_labels)
    pseudo_labels: bool = False
    pseudo_warmup: int = 2  # epochs before the first pseudo-label
    pseudo_teacher: str = "validated"  # the better-validating weights, frozen per epoch; ema: the EMA as it trains
    pseudo_precision: float = 0.9  # per-class positive thresholds reach this precision on the validation labels
    pseudo_negative_precision: float = 0.99  # ... and negative thresholds this share of true negatives
    pseudo_thresholds: str = "class"  # class: a positive threshold per class; attribute: one shared per attribute
    # class imbalance (partial_csl.losses.imbalance), from the known training labels only
    class_weights: str = "auto"  # effective_number (Cui et al. 2019) on positive terms / per-class CE, or none;
    # auto: effective_number for softmax heads left to the default re-balancing, none for csl (resolve_auto)
    cb_beta: float = 0.999
    drw_start_epoch: int = 0  # class weights from this epoch (0-based) on: deferred re-weighting (Cao et al. 2019)
    logit_adjust: str = "auto"  # none, train, posthoc (Menon et al. 2021), balanced_softmax (per-attribute heads)
    la_tau: float = 1.0
    # thresholds tuned on the validation split at the end of training (off by default)
    class_thresholds: str = "none"  # multi-label data: none, f1 or precision (see partial_csl.thresholds)
    target_precision: float = 0.9
    abstain_accuracy: float | None = None  # attributes: answer #N/A below the confidence reaching this accuracy
    abstain_coverage: float | None = None  # ... or answering this share of the images
    # run
    output_dir: str = ""
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    threshold: float = 0.5
    stop_after_steps: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {unknown}")
        return cls(**data)


# what a run saved before a setting existed computed with, where the setting's default says otherwise now: such a
# run is read as having used the old behaviour, so --resume cannot continue it under the new default unnoticed
BEFORE_THE_SETTING = {
    "pseudo_teacher": "ema",  # the only teacher before --pseudo-teacher; its default until 2026-12-06
    "prior_holdout": 0.0,  # the prior stage calibrated on the labels it trained on
    "decoder_learnable_queries": True,  # ML-Decoder's queries were learnt
}
# ... where that was another setting's value: the prior stage trained under the main --loss (in ignore mode)
TAKEN_BEFORE_THE_SETTING = {"prior_loss": "loss"}


def saved_defaults(saved: dict | None = None) -> dict:
    """The value that stands for each setting a saved run does not name: its default, or what runs before the
    setting used (:data:`BEFORE_THE_SETTING`, and :data:`TAKEN_BEFORE_THE_SETTING` from ``saved``)."""
    taken = {k: saved[source] for k, source in TAKEN_BEFORE_THE_SETTING.items() if source in (saved or {})}
    return {**TrainConfig().to_dict(), **BEFORE_THE_SETTING, **taken}


def with_new_defaults(saved: dict) -> dict:
    """Settings saved by a run (``config.json``, a checkpoint's ``config``) with every setting the code gained since
    filled in (:func:`saved_defaults`): what that run computed with, as the code now spells it."""
    return {**{k: v for k, v in saved_defaults(saved).items() if k not in saved}, **saved}


def require_resolved(cfg: TrainConfig) -> None:
    """Refuse settings still "auto": run_training resolves them (resolve_auto) before anything is built."""
    left = [f"--{name.replace('_', '-')}" for name in ("arch", "class_weights", "logit_adjust")
            if getattr(cfg, name) == "auto"]
    if left:
        raise ValueError(f"{' and '.join(left)} auto must be resolved first (config.resolve_auto, as run_training "
                         "does)")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def cpu_supports_bf16() -> bool:
    """Native bfloat16 matrix units (AVX-512 BF16 or AMX) make CPU autocast worth it."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_amp(amp: bool | None, amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32.

    ``amp=None`` (auto) turns mixed precision on for CUDA, and on CPU where it has native bfloat16 support.
    ``amp_dtype='auto'`` is float16 (with a gradient scaler) on CUDA and bfloat16 on CPU; float16 on CPU becomes
    bfloat16. Losses and metrics always run in float32.
    """
    if amp_dtype not in ("auto", "float16", "bfloat16"):
        raise ValueError(f"unknown amp dtype {amp_dtype!r}; expected auto, float16 or bfloat16")
    if amp is None:
        amp = device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())
    if not amp:
        return None
    if device.type != "cuda":
        return torch.bfloat16
    return torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *parts: int) -> int:
    """A deterministic seed for one stage/epoch of a run, so an epoch replays identically after a resume."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def library_versions() -> dict[str, str]:
    import PIL
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "cuda": torch.version.cuda or "none"}
