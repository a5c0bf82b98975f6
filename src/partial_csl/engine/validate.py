"""Evaluate a checkpoint on labelled data (an attribute CSV or a COCO-format set); writes report.json/report.md."""

from __future__ import annotations

from pathlib import Path

from ..data.schema import AttributeSchema
from ..data.transforms import DataConfig
from ..metrics import evaluate_predictions
from ..reports.evaluation import write_report
from ..safe_io import refuse_inputs_as_outputs
from .checkpoint import checkpoint_schema, load_checkpoint, model_from_checkpoint
from .config import resolve_amp, resolve_device
from .data import LabelledImages, LabelSpace, coco_paths, make_loader, read_attribute_split, read_coco_split
from .inference import predict_probabilities


def check_schema_matches(ckpt_schema: AttributeSchema | None, schema: AttributeSchema | None, where: str) -> None:
    if schema is not None and ckpt_schema is not None and schema != ckpt_schema:
        raise ValueError(f"{where} was trained for attributes {ckpt_schema.to_dict()['groups']}, "
                         f"not {schema.to_dict()['groups']}")


def load_eval_data(ckpt: dict, checkpoint: str | Path, output_dir: Path, dataset: str = "attributes",
                   csv_path: str | None = None, images: str | None = None, annotations: str | None = None,
                   data_root: str | None = None, schema: AttributeSchema | None = None,
                   on_bad_rows: str = "error") -> LabelledImages:
    ckpt_schema = checkpoint_schema(ckpt)
    if dataset == "attributes":
        if ckpt_schema is None:
            raise ValueError(f"{checkpoint} was not trained on attributes; evaluate it with --dataset coco")
        if not csv_path or not images:
            raise ValueError("attribute data needs --csv and --images")
        check_schema_matches(ckpt_schema, schema, str(checkpoint))
        return read_attribute_split(csv_path, images, ckpt_schema, on_bad_rows, output_dir / "rejected_rows.csv")
    if dataset == "coco":
        annotations, images = coco_paths("val", data_root, annotations, images)
        return read_coco_split(annotations, images, class_names=ckpt["class_names"])[0]
    raise ValueError(f"unknown dataset type {dataset!r}")


def validate_checkpoint(checkpoint: str | Path, output_dir: str | Path, dataset: str = "attributes",
                        csv_path: str | None = None, images: str | None = None, annotations: str | None = None,
                        data_root: str | None = None, schema: AttributeSchema | None = None, batch_size: int = 64,
                        workers: int = 2, threshold: float = 0.5, device: str = "auto", on_bad_rows: str = "error",
                        amp: bool | None = None) -> dict:
    output_dir = Path(output_dir)
    outputs = [output_dir, *(output_dir / n for n in ("report.json", "report.md", "rejected_rows.csv"))]
    refuse_inputs_as_outputs(outputs, [p for p in (checkpoint, csv_path, annotations, images, data_root) if p])
    ckpt = load_checkpoint(checkpoint)
    data = load_eval_data(ckpt, checkpoint, output_dir, dataset, csv_path, images, annotations, data_root, schema,
                          on_bad_rows)
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    loader = make_loader(data.dataset(DataConfig.from_checkpoint(ckpt), train=False), batch_size, workers, train=False)
    scores = predict_probabilities(model, loader, dev, resolve_amp(amp, "auto", dev), desc="validating")
    labels = LabelSpace(list(ckpt["class_names"]), checkpoint_schema(ckpt), list(ckpt.get("train_class_counts") or []))
    report = evaluate_predictions(data.targets, scores, labels.class_names, labels.groups, labels.majority, threshold)
    report["meta"] = {"checkpoint": str(checkpoint), "model_name": ckpt["model_name"],
                      "csv": str(csv_path or annotations or data_root), "images": str(data.image_dir),
                      "weights": ckpt.get("weights", "regular")}
    paths = write_report(report, output_dir, title="Evaluation report")
    report["files"] = {k: str(v) for k, v in paths.items()}
    return report
