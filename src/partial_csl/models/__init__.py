"""Models: the factory (TResNet with ABN, any timm model, the multi-head variants) and pretrained loading."""

from .factory import (
    TRESNET_MODELS,
    build_model,
    convert_sync_norm,
    create_model,
    norm_backend_of,
    optimize_for_inference,
    resolve_norm_backend,
)
from .multitask import ARCHS, logits_to_probabilities
from .pretrained import LoadReport, PretrainedLoadError, load_pretrained

__all__ = ["ARCHS", "TRESNET_MODELS", "LoadReport", "PretrainedLoadError", "build_model", "convert_sync_norm",
           "create_model", "load_pretrained", "logits_to_probabilities", "norm_backend_of", "optimize_for_inference",
           "resolve_norm_backend"]
