"""Model factory: any timm classifier by name; TResNets get our ABN layer in place of timm's BatchNormAct2d.

The multi-head variants (:mod:`.multitask`) build their backbones with :func:`create_model`.

    model = create_model("tresnet_m", num_classes=21, pretrained="pretrained_weights/tresnet_m_miil_21k.pth")

``norm`` picks the ABN backend of TResNets: ``torch`` (pure PyTorch, exact, any device), ``inplace_abn`` (the CUDA
kernels of the optional package) or ``auto`` (``inplace_abn`` when it imports and ``device`` is CUDA, else ``torch``).
"""

from __future__ import annotations

import logging

import timm
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from ..layers.abn import ABN, InPlaceABN, inplace_abn_available, make_abn
from .pretrained import load_pretrained

log = logging.getLogger(__name__)

TRESNET_MODELS = ("tresnet_m", "tresnet_l", "tresnet_xl", "tresnet_v2_l")
NORM_BACKENDS = ("auto", "torch", "inplace_abn")


def is_tresnet(name: str) -> bool:
    return name.split(".")[0] in TRESNET_MODELS


def resolve_norm_backend(norm: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``inplace_abn`` on CUDA when the package imports, else ``torch``."""
    if norm not in NORM_BACKENDS:
        raise ValueError(f"unknown norm backend {norm!r}; expected one of {NORM_BACKENDS}")
    if norm != "auto":
        return norm
    return "inplace_abn" if inplace_abn_available() and torch.device(device).type == "cuda" else "torch"


def _abn_activation(act: nn.Module) -> tuple[str, float]:
    if isinstance(act, nn.Identity):
        return "identity", 0.0
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", float(act.negative_slope)
    if isinstance(act, nn.ReLU):
        return "leaky_relu", 0.0
    raise ValueError(f"cannot express activation {type(act).__name__} with ABN")


def replace_batchnorm_act(model: nn.Module, backend: str) -> int:
    """Swap every timm ``BatchNormAct2d`` for an ABN layer of ``backend``; returns how many were swapped.

    The new layer starts from the identity transform (weight 1, bias 0, running stats 0/1) like the old one, so this
    is meant for freshly built models; load weights afterwards.
    """
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, BatchNormAct2d)]
    for name, bn in targets:
        activation, slope = _abn_activation(bn.act)
        new = make_abn(bn.num_features, backend, activation, slope, eps=bn.eps, momentum=bn.momentum)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return len(targets)


def abn_weight_keys(model: nn.Module) -> set[str]:
    """State-dict keys of ABN scales (``|w| + eps`` semantics), of either backend."""
    kinds = tuple(k for k in (ABN, InPlaceABN) if k is not None)
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, kinds)}


def create_model(name: str, num_classes: int, pretrained: str | None = None, norm: str = "auto",
                 device: torch.device | str = "cpu", drop_rate: float = 0.0) -> nn.Module:
    """Build ``name`` from timm with a ``num_classes`` linear head, load ``pretrained``, move it to ``device``."""
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    except RuntimeError as err:
        raise ValueError(f"unknown model {name!r}: {err}") from err
    if is_tresnet(name):
        backend = resolve_norm_backend(norm, device)
        swapped = replace_batchnorm_act(model, backend)
        log.info("model %s: %d norm layers use the %r ABN backend", name, swapped, backend)
    elif norm == "inplace_abn":
        raise ValueError(f"--norm inplace_abn applies to TResNet models only, not {name!r}")
    if pretrained:
        load_pretrained(model, pretrained, abn_keys=abn_weight_keys(model), model_name=name)
    return model.to(device)


def norm_backend_of(model: nn.Module) -> str:
    """``inplace_abn``, ``torch`` (our ABN) or ``native`` (the model's own normalisation)."""
    for m in model.modules():
        if isinstance(m, ABN):
            return "torch"
        if InPlaceABN is not None and isinstance(m, InPlaceABN):
            return "inplace_abn"
    return "native"


def convert_sync_norm(model: nn.Module) -> nn.Module:
    """Synchronised normalisation for DDP: InPlaceABNSync for the kernel backend, SyncBatchNorm for timm layers.

    The pure-PyTorch ABN backend keeps per-process statistics (a warning says so); use ``--norm inplace_abn`` on
    GPUs to synchronise TResNets.
    """
    if InPlaceABN is not None and any(isinstance(m, InPlaceABN) for m in model.modules()):
        from inplace_abn import InPlaceABNSync

        for name, m in list(model.named_modules()):
            if type(m) is InPlaceABN:
                sync = InPlaceABNSync(m.num_features, eps=m.eps, momentum=m.momentum, activation=m.activation,
                                      activation_param=m.activation_param)
                sync.load_state_dict(m.state_dict())
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, sync.to(m.weight.device))
        return model
    if any(isinstance(m, ABN) for m in model.modules()):
        log.warning("--sync-bn: the pure-PyTorch ABN backend is not synchronised across processes")
        return model
    return timm.layers.convert_sync_batchnorm(model)


def optimize_for_inference(model: nn.Module, channels_last: bool = False, compile_model: bool = False) -> nn.Module:
    """Optional speed switches: NHWC memory format and ``torch.compile``."""
    model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    return model
