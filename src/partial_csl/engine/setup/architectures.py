"""The ``--arch`` registry: for each architecture, how to build its model, its criterion and its checkpoint args.

An entry ties three things that must agree: the model builder (``partial_csl.models``), the loss it trains with, and
the keyword arguments (``arch_args``) a checkpoint stores so that :func:`build_model` rebuilds the same network
without any flag. Adding an architecture is one model module plus one entry in :data:`ARCHITECTURES`.

    model = build_model("mtl", "tresnet_m", 21, group_sizes=[7, 4, 10])
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ...cli import readers_text
from ...losses import get_loss
from ...models import build_afa, build_latent, build_multihead, create_model
from ...models.heads import HeadedModel, build_head, head_options
from ..config import DECLARED_OPTIONS, TrainConfig
from .formats import get_dataset
from .rebalancing import per_attribute_loss, wrap_single_head
from .run_data import LabelSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Architecture:
    """One ``--arch``: ``build(model_name, num_classes, **arch_args, pretrained, norm, device)``, the criterion it
    trains under (``criterion(cfg, prior, labels)``), which config values it records (``arch_args``), what its
    logits are (``output_form``: one sigmoid per class, or a softmax per attribute) and the settings only some
    architectures read that it reads (``reads``: a typed setting it does not read selects another or stops the run)."""

    build: Callable[..., nn.Module]
    criterion: Callable[[TrainConfig, np.ndarray | None, LabelSpace], nn.Module]
    arch_args: Callable[[TrainConfig, LabelSpace], dict]
    output_form: str
    reads: tuple[str, ...] = ()
    uses_priors: bool = False  # True: the partial-label loss (--loss, its modes, priors, prior stage) applies
    # the timm model whose pretrained config says how inputs are normalised (the backbone, or afa's branches)
    input_model: Callable[[TrainConfig], str] = lambda cfg: cfg.model_name

    def model_kwargs(self, arch_args: dict) -> dict:
        """The subset of ``arch_args`` this builder takes (checkpoints of format 1 stored every architecture's)."""
        accepted = inspect.signature(self.build).parameters
        return {k: v for k, v in arch_args.items() if k in accepted}


def loss_context(cfg: TrainConfig, prior: np.ndarray | None, labels: LabelSpace) -> dict:
    """What the run knows that a ``--loss`` constructor may name (:data:`partial_csl.losses.CONTEXT`); its settings
    come from its declared options. The label stores of ROLE and LL-Cp are sized by the training set (ROLE's starts
    from its targets); EPR and ROLE take the expected positives per image the label space resolved
    (``--expected-positives`` first)."""
    expected = cfg.expected_positives if cfg.expected_positives is not None else labels.expected_positives
    return {"prior": None if prior is None else torch.as_tensor(prior), "num_samples": labels.num_train_images,
            "num_classes": len(labels.class_names), "expected_positives": expected,
            "train_targets": labels.train_targets, "seed": cfg.seed,
            "class_positives": np.asarray(labels.train_class_counts, dtype=float),
            "class_annotated": np.asarray(labels.train_annotated_counts, dtype=float)}


def _single_head_criterion(cfg: TrainConfig, prior: np.ndarray | None, labels: LabelSpace) -> nn.Module:
    if cfg.loss == "aam" and cfg.head != "cosine":
        raise ValueError("--loss aam (additive angular margin) needs cosine logits: use it with --head cosine")
    return wrap_single_head(get_loss(cfg.loss).create(cfg, **loss_context(cfg, prior, labels)), cfg, labels)


def _per_attribute_criterion(cfg: TrainConfig, prior: np.ndarray | None, labels: LabelSpace) -> nn.Module:
    if labels.schema is None:
        raise ValueError(f"--arch {cfg.arch} needs attribute data (one head per attribute)")
    return per_attribute_loss(cfg, labels)


def _group_sizes(labels: LabelSpace) -> list[int] | None:
    return [g.num_classes for g in labels.schema.groups] if labels.schema else None


def _build_csl(model_name: str, num_classes: int, head: str = "linear", head_options: dict | None = None,
               pretrained: str | None = None, norm: str = "auto", device: torch.device | str = "cpu") -> nn.Module:
    """One head over all classes: the backbone's own pooled linear classifier, or a head of ``HEADS``."""
    if head == "linear":
        return create_model(model_name, num_classes, pretrained=pretrained, norm=norm, device=device)
    backbone = create_model(model_name, 0, pretrained=pretrained, norm=norm, device=device)
    return HeadedModel(backbone, build_head(head, backbone.num_features, num_classes, **(head_options or {}))
                       ).to(device)


def _csl_args(cfg: TrainConfig, labels: LabelSpace) -> dict:
    if cfg.head == "linear":
        return {"head": "linear"}
    return {"head": cfg.head, "head_options": head_options(cfg.head, cfg)}


CSL_READS = ("loss", "head", *DECLARED_OPTIONS, "expected_positives", "prior_path", "prior_epochs",
             "prior_estimate", "prior_loss", "prior_holdout")
MULTITASK_READS = ("task_weighting", "dwa_temperature")

ARCHITECTURES: dict[str, Architecture] = {
    # one sigmoid head over all classes, trained under --loss (the partial-label loss by default)
    "csl": Architecture(_build_csl, _single_head_criterion, _csl_args, "sigmoid", CSL_READS, uses_priors=True),
    # a shared backbone and one softmax head per attribute
    "mtl": Architecture(build_multihead, _per_attribute_criterion,
                        lambda cfg, labels: {"group_sizes": _group_sizes(labels)}, "softmax", MULTITASK_READS),
    # heads W_g = L S_g over shared latent tasks, with the grouping regulariser
    "latent": Architecture(build_latent, _per_attribute_criterion,
                           lambda cfg, labels: {"group_sizes": _group_sizes(labels), "latent_tasks": cfg.latent_tasks},
                           "softmax", (*MULTITASK_READS, "latent_tasks", "latent_reg")),
    # one branch per attribute, joined by AFA layers
    "afa": Architecture(build_afa, _per_attribute_criterion,
                        lambda cfg, labels: {"group_sizes": _group_sizes(labels), "branch_model": cfg.branch_model,
                                             "afa_stages": tuple(int(s) for s in str(cfg.afa_stages).split(",")),
                                             "afa_grad_balance": cfg.afa_grad_balance},
                        "softmax", (*MULTITASK_READS, "branch_model", "afa_stages", "afa_grad_balance"),
                        input_model=lambda cfg: cfg.branch_model),
}
# the settings only some architectures read
ARCH_SETTINGS = tuple(dict.fromkeys(name for spec in ARCHITECTURES.values() for name in spec.reads))


def get_architecture(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_model(arch: str, model_name: str, num_classes: int, pretrained: str | None = None, norm: str = "auto",
                device: torch.device | str = "cpu", **arch_args) -> nn.Module:
    """The model of ``arch`` (``arch_args`` as a checkpoint records them; keys it does not use are dropped)."""
    spec = get_architecture(arch)
    return spec.build(model_name, num_classes, **spec.model_kwargs(arch_args), pretrained=pretrained, norm=norm,
                      device=device)


def unread_settings(arch: str) -> tuple[str, ...]:
    """The settings of other architectures that ``arch`` does not read."""
    return tuple(name for name in ARCH_SETTINGS if name not in get_architecture(arch).reads)


def unread_defaults(arch: str) -> dict:
    """Those settings at their defaults: what a configuration built for another architecture resets to train
    ``arch`` (a typed setting ``arch`` does not read stops its run)."""
    return {name: getattr(TrainConfig, name) for name in unread_settings(arch)}


def _arch_for_typed_settings(cfg: TrainConfig, arch: str) -> str:
    """``arch``, or under ``--arch auto`` the first architecture that reads every typed architecture-specific
    setting; a typed setting is never dropped: it selects an architecture that reads it or stops the run."""
    typed = [name for name in ARCH_SETTINGS if getattr(cfg, name) != getattr(TrainConfig, name)]
    unread = [name for name in typed if name not in get_architecture(arch).reads]
    if not unread:
        return arch
    flags = ", ".join(f"--{name}" for name in unread)
    owners = [name for name, spec in ARCHITECTURES.items() if set(unread) <= set(spec.reads)]
    readers = [name for name in owners if set(typed) <= set(ARCHITECTURES[name].reads)]
    if cfg.arch != "auto" or not readers:
        where = f"settings of --arch {', '.join(owners)}" if owners else "no architecture reads them all"
        raise ValueError(f"--arch {arch} does not read {flags} ({where}): drop them, or train "
                         f"--arch {owners[0] if owners else 'auto'}")
    log.warning("--arch auto trains %s, not %s, because %s are set: only --arch %s reads them", readers[0], arch,
                flags, ", ".join(owners))
    return readers[0]


def check_component_settings(cfg: TrainConfig) -> None:
    """Warn of typed loss or head settings that the run's ``--loss`` and ``--head`` do not read (``--hill-lambda``
    with the default loss changes nothing), naming who reads them."""
    if not get_architecture(cfg.arch).uses_priors:
        return  # the architecture refuses them all (resolve_auto)
    unread = []
    for name, (option, readers) in DECLARED_OPTIONS.items():
        if getattr(cfg, name) != option.default and not {f"--loss {cfg.loss}", f"--head {cfg.head}"} & set(readers):
            unread.append(f"--{name} ({readers_text(readers)})")
    if unread:
        log.warning("this run (--loss %s, --head %s) does not read %s: they change nothing here", cfg.loss, cfg.head,
                    ", ".join(unread))


def _with_auto_settings(cfg: TrainConfig, settings: dict) -> TrainConfig:
    """``cfg`` with each of ``settings`` (a value, or a function of ``cfg``) where ``cfg`` has that setting's default
    (a typed value wins)."""
    left = {name: value(cfg) if callable(value) else value for name, value in settings.items()
            if getattr(cfg, name) == getattr(TrainConfig, name)}
    if left:
        log.info("--arch auto on %s data: %s", cfg.dataset, ", ".join(f"--{k} {v}" for k, v in left.items()))
    return replace(cfg, **left)


def _auto_arch(cfg: TrainConfig, default: str) -> str:
    """The format's ``default``, or the first architecture of softmax heads for ``--logit-adjust balanced_softmax``
    (a loss of softmax heads: the typed setting selects an architecture that reads it)."""
    if cfg.logit_adjust != "balanced_softmax" or get_architecture(default).output_form == "softmax":
        return default
    heads = next(name for name, spec in ARCHITECTURES.items() if spec.output_form == "softmax")
    log.warning("--arch auto trains %s, not %s, because --logit-adjust balanced_softmax is set: a loss of softmax "
                "heads", heads, default)
    return heads


def resolve_auto(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``arch``, ``class_weights`` and ``logit_adjust`` of "auto" replaced by what they stand for.

    * arch: the dataset format's default architecture (:data:`.formats.DATASETS`), unless settings only another
      architecture reads are typed; with it come the format's ``auto_settings``, for the settings left at their
      defaults (attribute data: CSL's top-3, γu 4 and a prior stage of 3/8 of the epochs);
    * class_weights: the class-balanced weights (effective number) for an architecture of softmax heads whose
      re-balancing is left to the default (``--logit-adjust auto``, uniform sampling), none otherwise and for csl;
    * logit_adjust: the balanced softmax for an architecture of softmax heads that does not already re-balance
      (class weights, a sampler), none for csl.
    """
    fmt = get_dataset(cfg.dataset)
    arch = _arch_for_typed_settings(cfg, _auto_arch(cfg, fmt.default_arch) if cfg.arch == "auto" else cfg.arch)
    check_component_settings(replace(cfg, arch=arch))  # what was typed, before the format's own settings
    if cfg.arch == "auto" and arch == fmt.default_arch:
        cfg = _with_auto_settings(cfg, fmt.auto_settings)
    heads = not get_architecture(arch).uses_priors
    weights = cfg.class_weights
    if weights == "auto":
        by_default = heads and cfg.logit_adjust == "auto" and cfg.sampler == "uniform"
        weights = "effective_number" if by_default else "none"
    adjust = cfg.logit_adjust
    if adjust == "auto":
        rebalanced = weights != "none" or cfg.sampler != "uniform"
        adjust = "balanced_softmax" if heads and not rebalanced else "none"
    return replace(cfg, arch=arch, class_weights=weights, logit_adjust=adjust)
