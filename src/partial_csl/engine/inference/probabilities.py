"""The generic inference loop: a model's probabilities over a dataset, on one process or sharded under DDP.

Validation, the prior estimate of the selective loss and the evaluation in training all use it; the probabilities are
the model's own (a sigmoid per class, or a softmax within each attribute for the multi-head architectures).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ...models import logits_to_probabilities
from ..distributed import DistInfo, gather_rows, shard_indices
from ..setup.run_data import make_loader


@torch.inference_mode()
def predict_probabilities(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                          amp_dtype: torch.dtype | None = None, desc: str = "predicting",
                          to_probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Probabilities (N, C) of ``model`` in eval mode over ``loader`` (which yields (images, targets)).

    ``to_probabilities`` turns float32 logits into probabilities (default: the model's own output activation).
    """
    device = torch.device(device)
    to_probabilities = to_probabilities or partial(logits_to_probabilities, model)
    was_training = model.training
    model.eval()
    outputs = []
    for images, _ in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images.to(device, non_blocking=True))
        outputs.append(to_probabilities(logits.float()).cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                    amp_dtype: torch.dtype | None, info: DistInfo | None = None,
                    desc: str = "evaluating") -> np.ndarray:
    """Probabilities (N, C) of the whole ``dataset``; under DDP each rank predicts its shard and all gather."""
    info = info or DistInfo()
    indices = shard_indices(len(dataset), info)
    subset = Subset(dataset, indices.tolist()) if info.enabled else dataset
    loader = make_loader(subset, batch_size, workers, train=False)
    probs = predict_probabilities(model, loader, device, amp_dtype, desc=desc)
    return gather_rows(probs, indices, len(dataset), info)
