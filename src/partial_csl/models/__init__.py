"""Models: the factory (TResNet with ABN, any timm model), the multi-head variants and pretrained loading."""

from .factory import (
    TRESNET_MODELS,
    convert_sync_norm,
    create_model,
    norm_backend_of,
    optimize_for_inference,
    resolve_norm_backend,
)
from .multitask import build_afa, build_latent, build_multihead, logits_to_probabilities
from .pretrained import LoadReport, PretrainedLoadError, load_pretrained

__all__ = ["TRESNET_MODELS", "LoadReport", "PretrainedLoadError", "build_afa", "build_latent", "build_multihead",
           "convert_sync_norm", "create_model", "load_pretrained", "logits_to_probabilities", "norm_backend_of",
           "optimize_for_inference", "resolve_norm_backend"]
