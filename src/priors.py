"""Class priors for the selective loss: estimate them with an ignore-mode model, save, load by class name, score.

CSL's temporary model is trained in ``ignore`` mode (unknown labels carry no loss), so its sigmoid outputs estimate
how often each class is present. :func:`estimate_priors` runs it in eval mode, without augmentation, over the
training images and averages the probabilities per class. (The reference instead kept a running mean over every
training step since the first, near-random one; :class:`RunningPrior` reproduces it for comparisons.)

The prior CSV has one row per class, ``class,prior``, with the class *names* in model order; the number of images
and the method go to a JSON sidecar (``<file>.json``). Loading matches rows to the model's classes by name and refuses a
missing, unknown or duplicated class, a NaN and a value outside [0, 1]: the reference matched by row order through a
name-keyed dict, and a fork whose first seven rows were all named ``Neck 0`` ignored the wrong classes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

PRIOR_COLUMNS = ("class", "prior")


class PriorFileError(ValueError):
    pass


@torch.inference_mode()
def predict_probabilities(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                          amp_dtype: torch.dtype | None = None, desc: str = "predicting") -> np.ndarray:
    """Sigmoid outputs (N, C) of ``model`` in eval mode over ``loader`` (which yields (images, targets))."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    outputs = []
    for images, _ in tqdm(loader, desc=desc, leave=False, unit="batch"):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images.to(device, non_blocking=True))
        outputs.append(torch.sigmoid(logits.float()).cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def estimate_priors(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                    amp_dtype: torch.dtype | None = None) -> tuple[np.ndarray, int]:
    """Mean sigmoid output per class over ``loader`` (eval mode, no augmentation); returns (priors, n_images)."""
    probs = predict_probabilities(model, loader, device, amp_dtype, desc="estimating priors")
    if len(probs) == 0:
        raise ValueError("cannot estimate priors from an empty data loader")
    return probs.mean(axis=0), len(probs)


class RunningPrior:
    """The reference's estimate: running mean of training-step sigmoid outputs since the first step."""

    def __init__(self, num_classes: int):
        self.sum = torch.zeros(num_classes, dtype=torch.float64)
        self.count = 0

    def update(self, logits: torch.Tensor) -> None:
        self.sum += torch.sigmoid(logits.detach().float()).sum(dim=0).double().cpu()
        self.count += logits.shape[0]

    def value(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("RunningPrior has seen no outputs")
        return (self.sum / self.count).numpy()


def save_priors(path: str | Path, class_names: list[str], priors: np.ndarray, n_images: int,
                method: str = "mean") -> Path:
    """Write ``class,prior`` rows in model order and a JSON sidecar with the count and method."""
    priors = np.asarray(priors, dtype=np.float64)
    if len(class_names) != len(priors):
        raise ValueError(f"{len(class_names)} class names but {len(priors)} priors")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"class": class_names, "prior": priors}).to_csv(path, index=False, float_format="%.6f",
                                                                 lineterminator="\n")
    meta = {"n_images": int(n_images), "method": method, "classes": len(class_names)}
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_priors(path: str | Path, class_names: list[str]) -> np.ndarray:
    """Priors (C,) in the order of ``class_names``, matched by name; every inconsistency is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prior file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype={"class": str}, keep_default_na=False)
    except Exception as err:
        raise PriorFileError(f"{path}: not a readable CSV ({err})") from err
    if list(frame.columns[:2]) != list(PRIOR_COLUMNS):
        raise PriorFileError(f"{path}: expected the columns {list(PRIOR_COLUMNS)}, found {list(frame.columns)}")
    problems = []
    seen: dict[str, int] = {}
    values: dict[str, float] = {}
    for i, (name, raw) in enumerate(zip(frame["class"], frame["prior"])):
        line = i + 2
        if name in seen:
            problems.append(f"line {line}: class {name!r} is duplicated (first on line {seen[name]})")
            continue
        seen[name] = line
        try:
            value = float(raw)
        except (TypeError, ValueError):
            problems.append(f"line {line}: class {name!r} has a non-numeric prior {raw!r}")
            continue
        if math.isnan(value):
            problems.append(f"line {line}: class {name!r} has a NaN prior")
        elif not 0.0 <= value <= 1.0:
            problems.append(f"line {line}: class {name!r} has prior {value} outside [0, 1]")
        values[name] = value
    unknown = [n for n in seen if n not in class_names]
    missing = [n for n in class_names if n not in seen]
    if unknown:
        problems.append(f"unknown class(es) not in the model: {unknown}")
    if missing:
        problems.append(f"missing class(es) of the model: {missing}")
    if problems:
        raise PriorFileError(f"{path}: " + "; ".join(problems))
    return np.array([values[n] for n in class_names], dtype=np.float32)


def prior_quality(estimate: np.ndarray, true_frequency: np.ndarray, class_names: list[str],
                  top: int = 10) -> dict:
    """Spearman correlation with the true class frequencies and the top classes of each, side by side."""
    estimate, true_frequency = np.asarray(estimate, float), np.asarray(true_frequency, float)
    rho = float(spearmanr(estimate, true_frequency).statistic) if len(estimate) > 1 else float("nan")
    order_est, order_true = np.argsort(-estimate, kind="stable")[:top], np.argsort(-true_frequency, kind="stable")[:top]
    rows = [{"rank": r + 1, "estimated_class": class_names[e], "estimated_prior": float(estimate[e]),
             "true_class": class_names[t], "true_frequency": float(true_frequency[t])}
            for r, (e, t) in enumerate(zip(order_est, order_true))]
    return {"spearman": rho, "top": rows}
