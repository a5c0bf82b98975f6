"""The numeric settings of a run, checked before anything is created: a run refused for ``--epochs 0`` leaves no
``config.json`` behind, so the corrected command is not refused as "already holds a run"."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import PSEUDO_LABEL_SETTINGS, TrainConfig
from ..setup.formats import DATASETS
from .pseudo import TEACHERS, THRESHOLD_SCOPES

# (settings, test, what a value must be); None (the setting's "not given") always passes
_RULES: list[tuple[tuple[str, ...], Callable[[float], bool], str]] = [
    (("epochs", "image_size", "batch_size", "decoder_layers", "decoder_embed", "decoder_queries", "latent_tasks",
      "prior_epochs", "stop_after_steps", "pseudo_warmup"), lambda v: v >= 1, "at least 1"),
    (("workers", "seed", "likelihood_topk", "drw_start_epoch", "splc_start_epoch", "weight_decay", "grad_clip",
      "gamma_pos", "gamma_neg", "gamma_unann", "alpha_pos", "alpha_neg", "alpha_unann", "focal_gamma", "la_tau",
      "epr_weight", "hill_lambda", "aam_margin", "sampler_power", "ll_delta_rel", "wan_weight"),
     lambda v: v >= 0, "at least 0"),
    (("lr", "repeat_threshold", "sampler_max_weight", "sampler_max_repeats", "cosine_scale", "dwa_temperature",
      "role_lr_multiplier", "db_neg_scale", "expected_positives"), lambda v: v > 0, "above 0"),
    (("ema_decay", "prior_holdout", "cb_beta"), lambda v: 0 <= v < 1, "in [0, 1)"),
    (("threshold", "prior_threshold", "label_smoothing", "clip", "target_precision", "splc_threshold",
      "graph_threshold", "pseudo_precision", "pseudo_negative_precision"), lambda v: 0 <= v <= 1, "in [0, 1]"),
]


def settings_problems(cfg: TrainConfig) -> list[str]:
    """``--flag value (must be ...)`` for every numeric setting out of its range (or not finite)."""
    problems = []
    for names, test, wanted in _RULES:
        for name in names:
            value = getattr(cfg, name)
            if value is None or isinstance(value, bool):
                continue
            if not math.isfinite(value) or not test(value):
                problems.append(f"--{name.replace('_', '-')} {value} (must be {wanted})")
    return problems


def pseudo_label_problems(cfg: TrainConfig) -> list[str]:
    """An unknown ``--pseudo-teacher`` or ``--pseudo-thresholds``; attribute thresholds on data without attributes; a
    pseudo-label setting changed without ``--pseudo-labels`` (it would do nothing: a typed setting is never
    dropped)."""
    problems = []
    if cfg.pseudo_teacher not in TEACHERS:
        problems.append(f"--pseudo-teacher {cfg.pseudo_teacher} (must be one of {', '.join(TEACHERS)})")
    if cfg.pseudo_thresholds not in THRESHOLD_SCOPES:
        problems.append(f"--pseudo-thresholds {cfg.pseudo_thresholds} (must be one of {', '.join(THRESHOLD_SCOPES)})")
    elif cfg.pseudo_thresholds == "attribute" and not getattr(DATASETS.get(cfg.dataset), "attribute_groups", True):
        problems.append(f"--pseudo-thresholds attribute (needs attribute data: --dataset {cfg.dataset} has classes "
                        "only)")
    if not cfg.pseudo_labels:
        problems += [f"--{name.replace('_', '-')} {getattr(cfg, name)} (needs --pseudo-labels)"
                     for name in PSEUDO_LABEL_SETTINGS
                     if getattr(cfg, name) != getattr(TrainConfig, name)]
    return problems


def check_settings(cfg: TrainConfig) -> None:
    """Refuse, naming every one, settings no run can use; called before the run folder is created."""
    problems = settings_problems(cfg) + pseudo_label_problems(cfg)
    if problems:
        raise ValueError(f"invalid setting(s): {'; '.join(problems)}; nothing was written")
