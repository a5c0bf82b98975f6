"""Classification heads beyond global pooling + linear, for ``--arch csl`` (``--head``).

Each takes the backbone's spatial feature map (B, F, H, W) (timm's ``forward_features``) and returns logits (B, C):

* ``ml_decoder`` (Ridnik et al., ML-Decoder, WACV 2023): the map's positions become tokens projected to ``embed_dim``;
  K group queries (K = min(``num_queries`` or 100, C); fixed random vectors as in the official head, which freezes
  its query embedding, or learnt with ``learnable_queries``) read them through decoder layers that have
  cross-attention and a feed-forward block but *no self-attention*; a group fully-connected layer then maps each
  query to ceil(C / K) logits, so K can stay small for thousands of classes.
* ``label_graph``: class embeddings refined by graph attention over a class co-occurrence graph (each class attends
  to the classes it co-occurs with, estimated from the *known* training labels by :func:`cooccurrence_graph`); the
  refined embeddings are mapped to per-class classifier weights over the pooled features (in the spirit of ML-GCN,
  with attention instead of a fixed propagation).
* ``cosine``: normalised pooled features times normalised class weights, times a scale s: logits s cos(theta), the
  head the angular-margin loss (``--loss aam``) needs.

:class:`HeadedModel` joins a backbone and one of them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..options import COSINE_SCALE, Option, merge_options


class _CrossAttentionLayer(nn.Module):
    """ML-Decoder's decoder layer: queries attend to the image tokens, then a feed-forward block; no self-attention
    among the queries (the paper's finding: it costs compute and adds nothing for classification)."""

    def __init__(self, embed_dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_attn, self.norm_ff = (nn.LayerNorm(embed_dim) for _ in range(3))
        self.attention = nn.MultiheadAttention(embed_dim, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                nn.Linear(ff_dim, embed_dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = self.norm_q(queries)
        attended = self.attention(queries, memory, memory, need_weights=False)[0]
        queries = self.norm_attn(queries + self.dropout(attended))
        return self.norm_ff(queries + self.dropout(self.ff(queries)))


class MLDecoderHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, num_queries: int | None = None, embed_dim: int = 768,
                 layers: int = 1, heads: int = 8, ff_dim: int = 2048, dropout: float = 0.1,
                 learnable_queries: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.num_queries = min(num_queries or 100, num_classes)
        self.per_query = math.ceil(num_classes / self.num_queries)
        self.project = nn.Linear(in_features, embed_dim)
        # N(0, 1), nn.Embedding's init; the official head freezes it (requires_grad_(False)): a buffer here, saved
        # under the same name as the learnable parameter
        queries = torch.randn(self.num_queries, embed_dim)
        if learnable_queries:
            self.queries = nn.Parameter(queries)
        else:
            self.register_buffer("queries", queries)
        self.layers = nn.ModuleList(_CrossAttentionLayer(embed_dim, heads, ff_dim, dropout) for _ in range(layers))
        self.group_weight = nn.Parameter(torch.empty(self.num_queries, embed_dim, self.per_query))
        nn.init.xavier_normal_(self.group_weight)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = F.relu(self.project(features.flatten(2).transpose(1, 2)))  # (B, H*W, D)
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)  # (B, K, D)
        for layer in self.layers:
            queries = layer(queries, tokens)
        logits = torch.einsum("bkd,kdn->bkn", queries, self.group_weight).flatten(1)  # (B, K * ceil(C/K))
        return logits[:, :self.num_classes] + self.bias


def cooccurrence_graph(targets: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """(C, C) 0/1 adjacency from targets in {1, 0, -1}: j is linked to i when P(j positive | i positive) >= threshold,
    counted over the images where both are known (unknown labels say nothing), plus every class to itself."""
    targets = np.asarray(targets)
    positive = (targets == 1).astype(np.float64)
    known = (targets != -1).astype(np.float64)
    both_positive = positive.T @ positive  # (C, C): images with i and j positive
    i_positive_j_known = positive.T @ known  # images with i positive and j known
    conditional = np.divide(both_positive, i_positive_j_known, out=np.zeros_like(both_positive),
                            where=i_positive_j_known > 0)
    graph = (conditional >= threshold).astype(np.float32)
    np.fill_diagonal(graph, 1.0)
    return graph


class LabelGraphHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, graph_dim: int = 256, heads: int = 4):
        super().__init__()
        embed_dim = graph_dim
        self.register_buffer("adjacency", torch.eye(num_classes))  # set by set_label_graph; saved in checkpoints
        self.class_embed = nn.Parameter(torch.randn(num_classes, embed_dim) * embed_dim ** -0.5)
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.to_weights = nn.Linear(embed_dim, in_features)
        # the generated classifier weights start at the scale of a default linear layer's (entries of variance
        # 1 / (3 F)): the layer-normed embeddings have unit variance over D, so each weight entry has variance D std^2;
        # at nn.Linear's own init they came out sqrt(F) times larger, the logits started at +-10 and more, and the
        # head did not learn (24 mAP where a linear head reached 89)
        nn.init.normal_(self.to_weights.weight, std=(3 * in_features * embed_dim) ** -0.5)
        nn.init.zeros_(self.to_weights.bias)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def set_label_graph(self, adjacency: np.ndarray) -> None:
        self.adjacency.copy_(torch.as_tensor(adjacency, dtype=self.adjacency.dtype))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.float().mean(dim=(2, 3))  # (B, F)
        embed = self.class_embed.unsqueeze(0)  # (1, C, D)
        blocked = self.adjacency <= 0  # True: class i does not attend to class j
        refined = self.norm(embed + self.attention(embed, embed, embed, attn_mask=blocked, need_weights=False)[0])
        weights = self.to_weights(refined[0])  # (C, F): one classifier per class, shaped by its neighbours
        return pooled @ weights.t().to(pooled.dtype) + self.bias


class CosineHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_normal_(self.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.normalize(features.float().mean(dim=(2, 3)), dim=1)
        return self.scale * pooled @ F.normalize(self.weight, dim=1).t()


class HeadedModel(nn.Module):
    """A timm backbone (its spatial features) and a head; ``set_label_graph`` reaches a label-graph head."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's spatial feature map (what a frozen-backbone run caches)."""
        return self.backbone.forward_features(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def set_label_graph(self, adjacency: np.ndarray) -> None:
        if isinstance(self.head, LabelGraphHead):
            self.head.set_label_graph(adjacency)


@dataclass(frozen=True)
class HeadEntry:
    """One ``--head``: ``build(in_features, num_classes, **options)``, the settings it reads (TrainConfig fields and
    train.py flags generated from them, as for the losses) and whether it needs the class co-occurrence graph of the
    training labels (``set_label_graph``)."""

    build: Callable[..., nn.Module]
    options: tuple[Option, ...] = ()
    needs_label_graph: bool = False


DECODER_OPTIONS = (
    Option("decoder_queries", None, "number of group queries (default min(100, classes))", type=int,
           param="num_queries"),
    Option("decoder_embed", 768, "embedding size of the decoder", param="embed_dim"),
    Option("decoder_layers", 1, "number of cross-attention decoder layers", param="layers"),
    Option("decoder_learnable_queries", False, "learn the group queries (the official head keeps them fixed)",
           param="learnable_queries"),
)
GRAPH_THRESHOLD = Option("graph_threshold", 0.4, "link j to i when P(j | i) over known labels is at least this")

# the --head registry (``linear`` is the backbone's own pooled classifier)
HEADS = {"ml_decoder": HeadEntry(MLDecoderHead, DECODER_OPTIONS),
         "label_graph": HeadEntry(LabelGraphHead, (GRAPH_THRESHOLD,), needs_label_graph=True),
         "cosine": HeadEntry(CosineHead, (COSINE_SCALE,))}
HEAD_NAMES = ("linear", *HEADS)
# every head setting once, with the heads that read it
HEAD_OPTIONS = merge_options((name, entry.options) for name, entry in HEADS.items())


def head_needs_label_graph(name: str) -> bool:
    return name in HEADS and HEADS[name].needs_label_graph


def head_options(name: str, settings: Any) -> dict:
    """The constructor keywords of head ``name`` from ``settings`` (a TrainConfig): what a checkpoint records."""
    if name not in HEADS:
        return {}
    accepted = inspect.signature(HEADS[name].build).parameters
    return {o.keyword: getattr(settings, o.name) for o in HEADS[name].options if o.keyword in accepted}


def build_head(name: str, in_features: int, num_classes: int, **options) -> nn.Module:
    """Head ``name`` from constructor keywords (a checkpoint's ``head_options``; those it does not name dropped)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; expected one of {HEAD_NAMES}")
    accepted = inspect.signature(HEADS[name].build).parameters
    return HEADS[name].build(in_features, num_classes, **{k: v for k, v in options.items() if k in accepted})
