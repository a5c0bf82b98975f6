"""Predict attributes (or labels) for images and write a CSV; unreadable images are reported and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..data.labels import FILENAME_COLUMN, resolve_image_path
from .predict import OnnxPredictor, Predictor, list_images


def collect_inputs(image: str | None, images: str | None, csv_path: str | None) -> tuple[list[Path], list[str]]:
    """The files to predict and the name each gets in the output (relative to the image folder)."""
    if image:
        return [Path(image)], [Path(image).name]
    if csv_path:
        if not images:
            raise ValueError("--csv needs --images (the folder its filenames are relative to)")
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        if FILENAME_COLUMN not in frame.columns:
            raise ValueError(f"{csv_path}: no {FILENAME_COLUMN!r} column")
        names = [n.strip() for n in frame[FILENAME_COLUMN]]
        return [resolve_image_path(Path(images), n) for n in names], names
    if images:
        paths = list_images(images)
        return paths, [str(p.relative_to(images)) for p in paths]
    raise ValueError("give one of --image, --images or --csv with --images")


def run_inference(checkpoint: str | Path | None, output: str | Path, image: str | None = None,
                  images: str | None = None, csv_path: str | None = None, threshold: float = 0.5,
                  batch_size: int = 32, device: str = "auto", channels_last: bool = False,
                  compile_model: bool = False, amp: bool | None = None, onnx: str | Path | None = None) -> dict:
    """Predict with a checkpoint (PyTorch) or an exported ONNX model (ONNX Runtime), same pre/post-processing."""
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of --checkpoint and --onnx")
    if onnx is not None:
        predictor = OnnxPredictor(onnx)
    else:
        predictor = Predictor.from_checkpoint(checkpoint, device, channels_last=channels_last,
                                              compile_model=compile_model, amp=amp)
    paths, names = collect_inputs(image, images, csv_path)
    name_of = {str(p): n for p, n in zip(paths, names)}
    done, probs, failures = predictor.predict_files(paths, batch_size)
    rows: dict[str, list] = {FILENAME_COLUMN: [name_of[str(p)] for p in done]}
    if predictor.schema is not None:
        for attribute, classes in predictor.attribute_predictions(probs).items():
            rows[attribute] = classes.tolist()
    else:
        rows["labels"] = [";".join(c for c, p in zip(predictor.class_names, row) if p >= threshold) for row in probs]
    for c, name in enumerate(predictor.class_names):
        rows[f"prob_{name}"] = [round(float(v), 6) for v in probs[:, c]]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(output, index=False, lineterminator="\n")
    failed = {name_of.get(p, p): reason for p, reason in failures.items()}
    if failed:
        output.with_suffix(".failures.json").write_text(json.dumps(failed, indent=2) + "\n")
    return {"output": str(output), "predicted": len(done), "failed": failed}
