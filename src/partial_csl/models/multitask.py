"""Multi-task variants for attribute groups: one head per attribute instead of one sigmoid head over all classes.

* ``mtl``: hard parameter sharing, a shared backbone and one linear classifier per attribute (the "multitask CNN":
  one network for n tasks);
* ``latent``: heads whose weights factor as W_g = L S_g (Abdulnabi et al., IEEE TMM 2015): a shared basis L of K
  latent tasks and per-attribute combinations S_g; :meth:`LatentTaskHeads.regulariser` is the grouping penalty
  sum_g sum_k ||S_g[k, :]||_2, which makes the classes of one attribute use the same latent tasks;
* ``afa``: one backbone branch per attribute, joined by :class:`partial_csl.layers.afa.AFALayer` after chosen stages.

Every variant returns logits (B, C) in schema order; ``output_activation = "group_softmax"`` tells prediction code to
turn them into probabilities with a softmax within each attribute (see :func:`logits_to_probabilities`).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from ..layers.afa import AFALayer
from .factory import create_model


def logits_to_probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid per class, or softmax within each group for models with ``output_activation = "group_softmax"``."""
    logits = logits.float()
    if getattr(model, "output_activation", "sigmoid") != "group_softmax":
        return torch.sigmoid(logits)
    return torch.cat([logits[:, start:stop].softmax(dim=1) for start, stop in model.group_bounds], dim=1)


class _GroupOutput(nn.Module):
    output_activation = "group_softmax"

    def __init__(self, group_sizes: list[int]):
        super().__init__()
        bounds, start = [], 0
        for size in group_sizes:
            bounds.append((start, start + size))
            start += size
        self.group_bounds = bounds


class MultiHeadModel(_GroupOutput):
    """A shared backbone (pooled features) and one linear head per attribute group."""

    def __init__(self, backbone: nn.Module, num_features: int, group_sizes: list[int]):
        super().__init__(group_sizes)
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(num_features, n) for n in group_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The shared backbone's pooled features (what a frozen-backbone run caches)."""
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features) for head in self.heads], dim=1)


class LatentTaskHeads(nn.Module):
    """W_g = L S_g: features -> K latent task scores (shared L) -> per-group class scores (S_g) + bias."""

    def __init__(self, num_features: int, group_sizes: list[int], latent_tasks: int):
        super().__init__()
        self.basis = nn.Linear(num_features, latent_tasks, bias=False)
        self.combinations = nn.ParameterList(nn.Parameter(torch.randn(latent_tasks, n) * latent_tasks ** -0.5)
                                             for n in group_sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in group_sizes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        latent = self.basis(features)
        return torch.cat([latent @ s + b for s, b in zip(self.combinations, self.biases)], dim=1)

    def regulariser(self) -> torch.Tensor:
        """Grouping penalty: the l2,1 norm sum_g sum_k ||S_g[k, :]||_2 (row sparsity within each group)."""
        return sum(s.norm(dim=1).sum() for s in self.combinations)


class LatentTaskModel(_GroupOutput):
    def __init__(self, backbone: nn.Module, num_features: int, group_sizes: list[int], latent_tasks: int):
        super().__init__(group_sizes)
        self.backbone = backbone
        self.heads = LatentTaskHeads(num_features, group_sizes, latent_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.heads(features)

    def regulariser(self) -> torch.Tensor:
        return self.heads.regulariser()


def _resnet_stages(model: nn.Module) -> tuple[nn.Module, list[nn.Module], int]:
    """(stem, [stage1..stage4], features) of a timm ResNet-family model."""
    if not all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        raise ValueError(f"AFA branches need a ResNet-family timm model (layer1..layer4), got {type(model).__name__}")
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    return stem, [model.layer1, model.layer2, model.layer3, model.layer4], model.num_features


class AFAModel(_GroupOutput):
    """One ResNet-family branch per group; an AFA layer after each stage in ``stages`` (1..4)."""

    def __init__(self, branch_model: str, group_sizes: list[int], stages: tuple[int, ...] = (4,),
                 grad_balance: bool = False):
        super().__init__(group_sizes)
        stems, branch_stages = [], []
        for _ in group_sizes:
            stem, blocks, num_features = _resnet_stages(timm.create_model(branch_model, num_classes=0))
            stems.append(stem)
            branch_stages.append(nn.ModuleList(blocks))
        self.stems, self.stages = nn.ModuleList(stems), nn.ModuleList(branch_stages)
        with torch.no_grad():
            probe = stems[0](torch.zeros(1, 3, 64, 64))
            channels = []
            for block in branch_stages[0]:
                probe = block(probe)
                channels.append(probe.shape[1])
        self.afa_stages = tuple(sorted(stages))
        self.afa = nn.ModuleDict({str(s): AFALayer(len(group_sizes), channels[s - 1], grad_balance)
                                  for s in self.afa_stages})
        self.heads = nn.ModuleList(nn.Linear(num_features, n) for n in group_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [stem(x) for stem in self.stems]
        for index in range(4):
            feats = [branch[index](f) for branch, f in zip(self.stages, feats)]
            if str(index + 1) in self.afa:
                feats = self.afa[str(index + 1)](feats)
        return torch.cat([head(f.mean(dim=(2, 3))) for head, f in zip(self.heads, feats)], dim=1)


def _check_groups(arch: str, group_sizes: list[int] | None, minimum: int = 1) -> list[int]:
    if not group_sizes or len(group_sizes) < minimum:
        raise ValueError(f"--arch {arch} needs attribute groups (an attribute schema with at least {minimum})")
    return list(group_sizes)


def build_multihead(model_name: str, num_classes: int, group_sizes: list[int], pretrained: str | None = None,
                    norm: str = "auto", device: torch.device | str = "cpu") -> MultiHeadModel:
    """``--arch mtl``: a shared ``model_name`` backbone and one linear head per attribute."""
    sizes = _check_groups("mtl", group_sizes)
    backbone = create_model(model_name, 0, pretrained, norm, device)
    return MultiHeadModel(backbone, backbone.num_features, sizes).to(device)


def build_latent(model_name: str, num_classes: int, group_sizes: list[int], latent_tasks: int = 32,
                 pretrained: str | None = None, norm: str = "auto",
                 device: torch.device | str = "cpu") -> LatentTaskModel:
    """``--arch latent``: a shared backbone and heads W_g = L S_g over ``latent_tasks`` latent tasks."""
    sizes = _check_groups("latent", group_sizes)
    backbone = create_model(model_name, 0, pretrained, norm, device)
    return LatentTaskModel(backbone, backbone.num_features, sizes, latent_tasks).to(device)


def build_afa(model_name: str, num_classes: int, *, group_sizes: list[int], branch_model: str = "resnet18",
              afa_stages: tuple[int, ...] = (4,), afa_grad_balance: bool = False, pretrained: str | None = None,
              norm: str = "auto", device: torch.device | str = "cpu") -> AFAModel:
    """``--arch afa``: one ``branch_model`` branch per attribute (``model_name`` is not used), joined by AFA layers."""
    sizes = _check_groups("afa", group_sizes, minimum=2)
    return AFAModel(branch_model, sizes, tuple(afa_stages), afa_grad_balance).to(device)
