"""Activated Batch Normalisation with InPlace-ABN semantics and two interchangeable backends.

InPlace-ABN (Rota Bulò et al., CVPR 2018) is BatchNorm whose scale is ``|weight| + eps`` (kept positive so that the
activation can be inverted in the backward pass), followed by a leaky ReLU or identity. Its parameters and buffers are
``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.

* ``ABN`` is the pure-PyTorch layer: the same maths, the same parameters and buffers, any device and dtype.
* ``inplace_abn.InPlaceABN`` (optional package) runs the fused CUDA kernels and saves activation memory.

Both have identical ``state_dict`` keys, so a checkpoint saved with one backend loads into the other and gives the same
outputs. Running statistics are updated in both with the *unbiased* batch variance and ``momentum``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    from inplace_abn import InPlaceABN
except ImportError:  # the extension is optional; ABN is the exact fallback
    InPlaceABN = None

ACTIVATIONS = ("leaky_relu", "identity")


def inplace_abn_available() -> bool:
    return InPlaceABN is not None


class ABN(nn.Module):
    """BatchNorm with scale ``|weight| + eps``, then ``activation`` (``leaky_relu`` with ``activation_param``)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, activation: str = "leaky_relu",
                 activation_param: float = 0.01):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.activation, self.activation_param = activation, activation_param
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked += 1
        scale = self.weight.abs() + self.eps
        x = F.batch_norm(x, self.running_mean, self.running_var, scale, self.bias, self.training, self.momentum,
                         self.eps)
        if self.activation == "leaky_relu":
            # in place (batch_norm's backward does not need its output); autograd needs a positive slope for that
            x = F.leaky_relu(x, self.activation_param, inplace=self.activation_param > 0)
        return x

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, activation={self.activation}, "
                f"activation_param={self.activation_param}")


def make_abn(num_features: int, backend: str, activation: str, activation_param: float, eps: float = 1e-5,
             momentum: float = 0.1) -> nn.Module:
    """One ABN layer of the chosen backend (``torch`` or ``inplace_abn``)."""
    if backend == "torch":
        return ABN(num_features, eps, momentum, activation, activation_param)
    if backend == "inplace_abn":
        if InPlaceABN is None:
            raise RuntimeError("norm backend 'inplace_abn' requested but the inplace_abn package does not import; "
                               "run 'make inplace-abn' or use --norm torch")
        return InPlaceABN(num_features, eps=eps, momentum=momentum, activation=activation,
                          activation_param=activation_param)
    raise ValueError(f"unknown norm backend {backend!r}; expected 'torch' or 'inplace_abn'")
