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

from ...data.images import ImageLoadError
from ...models import logits_to_probabilities
from ..distributed import DistInfo, gather_rows, merged_across_ranks, shard_indices
from ..setup.run_data import make_loader
from .predictor import collate_images


def _probabilities(model: nn.Module, images: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None,
                   to_probabilities: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(images.to(device, non_blocking=True))
    return to_probabilities(logits.float()).cpu()


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
    outputs = [_probabilities(model, images, device, amp_dtype, to_probabilities)
               for images, _ in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None)]
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


class _Readable(Dataset):
    """(image, row, None) for a readable item, (None, row, reason) for one whose image cannot be read."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: int):
        try:
            return self.dataset[row][0], row, None
        except ImageLoadError as err:
            return None, row, str(err)


@torch.inference_mode()
def _predict_readable(model: nn.Module, dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                      amp_dtype: torch.dtype | None, desc: str) -> tuple[np.ndarray, dict[int, str]]:
    """Probabilities (N, C), NaN in the rows whose image could not be read, and {row: reason} of those."""
    loader = make_loader(_Readable(dataset), batch_size, workers, train=False, collate_fn=collate_images)
    to_probabilities = partial(logits_to_probabilities, model)
    was_training = model.training
    model.eval()
    rows, outputs, failed = [], [], {}
    for images, kept, unread in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None):
        failed.update(unread)
        if images is not None:
            rows += kept
            outputs.append(_probabilities(model, images, device, amp_dtype, to_probabilities))
    model.train(was_training)
    if failed and not outputs:
        raise ImageLoadError(f"no image of the {len(dataset)} could be read; the first: {next(iter(failed.values()))}")
    if not outputs:  # an empty shard (fewer images than ranks), as predict_probabilities returns it
        return np.zeros((0, 0), dtype=np.float32), failed
    probs = torch.cat(outputs).numpy()
    out = np.full((len(dataset), probs.shape[1]), np.nan, dtype=probs.dtype)
    out[rows] = probs
    return out, failed


def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                    amp_dtype: torch.dtype | None, *, info: DistInfo | None = None, desc: str = "evaluating",
                    skipped: dict[int, str] | None = None) -> np.ndarray:
    """Probabilities (N, C) of the whole ``dataset``; under DDP each rank predicts its shard and all gather.

    With a ``skipped`` dict an image that cannot be read does not stop the prediction: its row is NaN and ``skipped``
    gets {row: reason} (every rank's); without it the read error is raised."""
    info = info or DistInfo()
    indices = shard_indices(len(dataset), info)
    subset = Subset(dataset, indices.tolist()) if info.enabled else dataset
    if skipped is None:
        probs = predict_probabilities(model, make_loader(subset, batch_size, workers, train=False), device,
                                      amp_dtype, desc=desc)
    else:
        probs, failed = _predict_readable(model, subset, batch_size, workers, device, amp_dtype, desc)
        skipped.update(merged_across_ranks({int(indices[row]): reason for row, reason in failed.items()}, info))
    return gather_rows(probs, indices, len(dataset), info)
