"""What the web page shows for one image, computed without Streamlit (so it can be unit-tested).

Prediction goes through :class:`partial_csl.engine.inference.predictor.Predictor`, the code path of ``infer.py``: the
preprocessing, the classes and the tuned thresholds come from the checkpoint. Where ``infer.py`` would write ``#N/A``
(the predicted class's probability is below its attribute's abstention threshold) the page flags the answer as
unsure; multi-label checkpoints with tuned per-class thresholds show the labels that reach their own threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..data.images import ImageLoadError, ImageTooLargeError, describe_error, load_rgb
from ..engine.inference.predictor import Predictor
from ..engine.inference.stored_thresholds import abstain_values


@dataclass
class ImageResult:
    name: str
    image: Image.Image | None
    error: str | None = None
    attributes: pd.DataFrame | None = None  # attribute, predicted class, probability
    class_probabilities: dict[str, pd.Series] | None = None  # per attribute (or "labels"): class -> probability
    labels: pd.DataFrame | None = None  # non-attribute checkpoints: label, probability (all, sorted)


def open_upload(name: str, data: bytes | Path) -> tuple[Image.Image | None, str | None]:
    """Decode an upload (its bytes) or a file of the image folder as RGB, exactly as ``infer.py`` and training read
    images (:func:`~partial_csl.data.images.load_rgb`); a non-image, corrupt or too large file gives a message for
    the page instead of an exception."""
    try:
        return load_rgb(data, name=name), None
    except ImageTooLargeError as err:
        return None, f"{err}. Upload a smaller image."
    except ImageLoadError as err:
        return None, (f"{name}: not a readable image ({describe_error(err.__cause__)}). "
                      "Upload a JPEG, PNG or similar file.")


def describe(predictor: Predictor, named_images: list[tuple[str, Image.Image]]) -> list[ImageResult]:
    """Predictions for every image, in the page's terms (one batch through the model)."""
    if not named_images:
        return []
    probs = predictor.predict([img for _, img in named_images])
    return [_result(predictor, name, img, row) for (name, img), row in zip(named_images, probs)]


def _result(predictor: Predictor, name: str, img: Image.Image, row: np.ndarray) -> ImageResult:
    names = predictor.class_names
    if predictor.schema is None:
        order = np.argsort(-row, kind="stable")
        labels = pd.DataFrame({"label": [names[i] for i in order], "probability": row[order]})
        tuned = (predictor.info.thresholds or {}).get("classes")
        if tuned:
            labels["threshold"] = np.asarray(tuned["values"])[order]
        return ImageResult(name, img, labels=labels,
                           class_probabilities={"labels": pd.Series(row, index=names)})
    records, per_group = [], {}
    cuts = abstain_values(predictor.info.thresholds)
    for group, sl in zip(predictor.schema.groups, predictor.schema.group_slices().values()):
        block = row[sl]
        best = int(block.argmax())
        record = {"attribute": group.name, "predicted class": group.class_names[best],
                  "probability": float(block[best])}
        if cuts is not None:  # the same rule as infer.py's #N/A
            record.update({"threshold": float(cuts.get(group.name, 0.0)),
                           "unsure": bool(block[best] < cuts.get(group.name, 0.0))})
        records.append(record)
        per_group[group.name] = pd.Series(block, index=list(group.class_names))
    return ImageResult(name, img, attributes=pd.DataFrame(records), class_probabilities=per_group)


def checkpoint_summary(predictor: Predictor, path: str) -> dict:
    """What the page says about the loaded checkpoint."""
    info = predictor.info
    metrics = info.metrics
    return {"checkpoint": path, "model": info.model_name, "architecture": info.arch,
            "classes": len(predictor.class_names), "image size": predictor.image_size,
            "preprocessing": (f"mean {list(predictor.data_config.mean)}, std {list(predictor.data_config.std)}, "
                              f"{predictor.data_config.interpolation}"),
            "weights": info.weights,
            "validation mAP": None if metrics.get("mAP") is None else round(float(metrics["mAP"]), 2),
            "attributes": ", ".join(predictor.schema.group_names) if predictor.schema else "none (multi-label)",
            "thresholds": thresholds_text(info.thresholds)}


def thresholds_text(entry: dict | None) -> str:
    """What the sidebar says about the checkpoint's tuned thresholds."""
    if not entry:
        return "none tuned (every attribute answered; labels at the slider's threshold)"
    parts = []
    if entry.get("abstain"):
        parts.append(f"unsure below a per-attribute confidence (tuned for {entry['abstain']['mode']} "
                     f"{entry['abstain']['target']})")
    if entry.get("classes"):
        parts.append(f"per-class label thresholds ({entry['classes']['mode']})")
    return "; ".join(parts)
