"""A model seen as a backbone and a head: features, the head alone, and the surgery of decoupled training.

cRT (``--reset-head``) re-initialises the head of a trained network; ``--freeze-backbone`` trains the head alone,
on features computed once (:class:`HeadOnly` is the head as a module of those features).
"""

from __future__ import annotations

import torch
from torch import nn


def check_separable(model: nn.Module) -> None:
    if not hasattr(model, "embed") and not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"--freeze-backbone needs a model with a separable backbone; {type(model).__name__} has "
                         "none (the afa branches are joined inside the network)")


def embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone part of ``model``: our models' ``embed``, or a timm classifier's ``forward_features``."""
    return model.embed(images) if hasattr(model, "embed") else model.forward_features(images)


def classify(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The head part of ``model``, from the features :func:`embed` gives."""
    return model.classify(features) if hasattr(model, "classify") else model.forward_head(features)


def head_parameter_names(model: nn.Module) -> set[str]:
    """The parameters a frozen-backbone run trains: everything outside the backbone."""
    if hasattr(model, "backbone"):
        return {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return {f"{prefix}.{n}" for n, _ in classifier.named_parameters()}


def reset_head(model: nn.Module, fresh: nn.Module) -> None:
    """Give ``model`` the head of ``fresh``, a newly built model of the same architecture (``--reset-head``):
    classifier re-training (cRT, Kang et al., ICLR 2020) learns a new classifier on a trained backbone, not a
    fine-tuned copy of the old one, and each head keeps its own initialisation (queries, class embeddings, scales)."""
    model.load_state_dict({k: v for k, v in fresh.state_dict().items() if _is_head_entry(model, k)}, strict=False)


def _is_head_entry(model: nn.Module, key: str) -> bool:
    """Whether state-dict entry ``key`` (a parameter or a buffer) belongs to the head of ``model``."""
    if hasattr(model, "backbone"):
        return not key.startswith("backbone.")
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return key.startswith(f"{prefix}.")


def freeze_backbone(model: nn.Module) -> None:
    """Only the head keeps ``requires_grad`` (the optimiser then holds the head's parameters alone)."""
    check_separable(model)
    trainable = head_parameter_names(model)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


class HeadOnly(nn.Module):
    """``model``'s head as a module of the features, for the training step and evaluation; it shares the parameters
    (and the output activation) of ``model``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model  # named like DDP's wrapped module, so the EMA update reaches the whole model
        self.output_activation = getattr(model, "output_activation", "sigmoid")
        self.group_bounds = getattr(model, "group_bounds", None)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return classify(self.module, features)
