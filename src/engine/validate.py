"""Evaluate a checkpoint on a labelled CSV and write ``report.json`` and ``report.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.schema import AttributeSchema
from ..metrics import evaluate_predictions
from ..priors import predict_probabilities
from ..reports.evaluation import write_report
from .checkpoint import checkpoint_schema, load_checkpoint, model_from_checkpoint
from .config import resolve_device
from .data import make_loader, read_attribute_split


def check_schema_matches(ckpt_schema: AttributeSchema | None, schema: AttributeSchema | None, where: str) -> None:
    if schema is not None and ckpt_schema is not None and schema != ckpt_schema:
        raise ValueError(f"{where} was trained for attributes {ckpt_schema.to_dict()['groups']}, "
                         f"not {schema.to_dict()['groups']}")


def validate_checkpoint(checkpoint: str | Path, csv_path: str | Path, image_dir: str | Path,
                        output_dir: str | Path, schema: AttributeSchema | None = None, batch_size: int = 64,
                        workers: int = 2, threshold: float = 0.5, device: str = "auto",
                        on_bad_rows: str = "error") -> dict:
    ckpt = load_checkpoint(checkpoint)
    ckpt_schema = checkpoint_schema(ckpt)
    if ckpt_schema is None:
        raise ValueError(f"{checkpoint} is not an attribute checkpoint; evaluate it on its own dataset type")
    check_schema_matches(ckpt_schema, schema, str(checkpoint))
    output_dir = Path(output_dir)
    data = read_attribute_split(csv_path, image_dir, ckpt_schema, on_bad_rows, output_dir / "rejected_rows.csv")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    loader = make_loader(data.dataset(int(ckpt["image_size"]), train=False), batch_size, workers, train=False)
    scores = predict_probabilities(model, loader, dev, desc="validating")
    counts = np.asarray(ckpt.get("train_class_counts") or [])
    majority = ({n: int(counts[sl].argmax()) for n, sl in ckpt_schema.group_slices().items()}
                if len(counts) else None)
    report = evaluate_predictions(data.targets, scores, ckpt["class_names"], ckpt_schema.group_slices(), majority,
                                  threshold)
    report["meta"] = {"checkpoint": str(checkpoint), "model_name": ckpt["model_name"], "csv": str(csv_path),
                      "images": str(image_dir), "weights": ckpt.get("weights", "regular")}
    paths = write_report(report, output_dir, title="Evaluation report")
    report["files"] = {k: str(v) for k, v in paths.items()}
    return report
