from .factory import (
                      TRESNET_MODELS,
                      convert_sync_norm,
                      create_model,
                      norm_backend_of,
                      optimize_for_inference,
                      resolve_norm_backend,
)
from .pretrained import LoadReport, PretrainedLoadError, load_pretrained

__all__ = [
                      "TRESNET_MODELS",
                      "LoadReport",
                      "PretrainedLoadError",
                      "convert_sync_norm",
                      "create_model",
                      "load_pretrained",
                      "norm_backend_of",
                      "optimize_for_inference",
                      "resolve_norm_backend",
]
