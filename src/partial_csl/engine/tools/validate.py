"""Evaluate a checkpoint on labelled data (an attribute CSV or a COCO-format set): report.json and report.md (the
numbers), report.html with its figures and predictions.csv (the error analysis a person reads); optionally tune the
checkpoint's thresholds on that data first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ...data.schema import AttributeSchema
from ...metrics import evaluate_predictions, mean_ap_per_class_group
from ...reports.evaluation import write_report
from ...safe_io import atomic_write_text, check_output_folder, refuse_inputs_as_outputs
from ..checkpoint import (
    CheckpointInfo,
    checkpoint_info,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    with_thresholds,
)
from ..config import resolve_amp, resolve_device
from ..inference.probabilities import predict_probabilities
from ..inference.stored_thresholds import (
    abstain_values,
    abstained,
    settings_for_checkpoint,
    thresholds_summary,
    tune_checkpoint,
)
from ..setup.formats import EvalRequest, get_dataset
from ..setup.run_data import LabelledImages, LabelSpace, make_loader
from .evaluation_report import (
    build_view,
    coverage_curves,
    predictions_frame,
    report_outputs,
    run_metrics_csv,
    write_html_report,
)

log = logging.getLogger(__name__)


def trained_keep_empty(config: dict) -> bool:
    """Whether the checkpoint's run (its ``config``) kept COCO images without annotations (runs before ``keep_empty``
    existed did, unless they passed ``drop_empty``): evaluation treats them the same way."""
    return bool(config.get("keep_empty", not config.get("drop_empty", True)))


def load_eval_data(info: CheckpointInfo, checkpoint: str | Path, output_dir: Path, *, dataset: str = "attributes",
                   csv_path: str | None = None, images: str | None = None, annotations: str | None = None,
                   data_root: str | None = None, schema: AttributeSchema | None = None,
                   on_bad_rows: str = "error") -> LabelledImages:
    """The labelled images to evaluate the checkpoint on, read by the ``--dataset`` format's evaluation reader."""
    request = EvalRequest(str(checkpoint), info.class_names, info.schema, output_dir, csv_path=csv_path,
                          images=images, annotations=annotations, data_root=data_root, expected_schema=schema,
                          on_bad_rows=on_bad_rows, keep_empty=trained_keep_empty(info.config))
    return get_dataset(dataset).read_evaluation(request)


def _outputs(output_dir: Path, info: CheckpointInfo | None, html: bool, tune: bool) -> list[Path]:
    """Every path validation may write (refused when it is an input)."""
    out = [output_dir, *(output_dir / n for n in ("report.json", "report.md", "rejected_rows.csv"))]
    if html:
        out += report_outputs(output_dir, info.schema if info else None)
    if tune:
        out += [output_dir / "thresholds.json", output_dir / "best.pt"]
    return out


def _tune(ckpt: dict, targets: np.ndarray, scores: np.ndarray, overrides: dict, source: str, output_dir: Path,
          threshold: float) -> dict:
    """``--tune-thresholds``: tune on this data, write thresholds.json and a copy of the checkpoint that holds them
    (``best.pt`` here: the given checkpoint is an input and is never written); returns that checkpoint."""
    info = checkpoint_info(ckpt)
    entry = tune_checkpoint(info, targets, scores, settings_for_checkpoint(info, overrides), source, threshold)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "thresholds.json", json.dumps(entry, indent=2) + "\n")
    tuned = with_thresholds(ckpt, entry)
    save_checkpoint(tuned, output_dir / "best.pt")
    return tuned


def _abstention_report(info: CheckpointInfo, targets: np.ndarray, scores: np.ndarray) -> dict | None:
    """Per attribute, the coverage and accuracy of the checkpoint's abstention thresholds on this data."""
    schema, values = info.schema, abstain_values(info.thresholds)
    if schema is None or values is None:
        return None
    _, marks = coverage_curves(targets, scores, schema.group_slices(), values)
    return {n: {"threshold": values[n], "coverage": 100 * c, "accuracy": 100 * a} for n, (c, a) in marks.items()}


def validate_checkpoint(checkpoint: str | Path, output_dir: str | Path, *, dataset: str = "attributes",
                        csv_path: str | None = None, images: str | None = None, annotations: str | None = None,
                        data_root: str | None = None, schema: AttributeSchema | None = None, batch_size: int = 64,
                        workers: int = 2, threshold: float = 0.5, device: str = "auto", on_bad_rows: str = "error",
                        amp: bool | None = None, html: bool = True, tune_thresholds: dict | None = None) -> dict:
    """Evaluate ``checkpoint`` on labelled data: report.json, report.md and (``html``) report.html with its figures
    and predictions.csv. ``tune_thresholds`` (a dict of TrainConfig-named settings, None values = as stored) first
    tunes thresholds on this data and writes them to thresholds.json and ``output_dir/best.pt``."""
    output_dir = Path(output_dir)
    check_output_folder(output_dir, "--output-dir")
    tune = tune_thresholds is not None
    inputs = [p for p in (checkpoint, csv_path, annotations, images, data_root, run_metrics_csv(checkpoint)) if p]
    refuse_inputs_as_outputs(_outputs(output_dir, None, html, tune), inputs)
    ckpt = load_checkpoint(checkpoint)
    info = checkpoint_info(ckpt)
    refuse_inputs_as_outputs(_outputs(output_dir, info, html, tune), inputs)
    data = load_eval_data(info, checkpoint, output_dir, dataset=dataset, csv_path=csv_path, images=images,
                          annotations=annotations, data_root=data_root, schema=schema, on_bad_rows=on_bad_rows)
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev, source=checkpoint)
    loader = make_loader(data.dataset(info.data_config, train=False), batch_size, workers, train=False)
    scores = predict_probabilities(model, loader, dev, resolve_amp(amp, "auto", dev), desc="validating")
    source = str(csv_path or annotations or data_root)
    if tune:
        info = checkpoint_info(_tune(ckpt, data.targets, scores, tune_thresholds, source, output_dir, threshold))
    labels = LabelSpace(info.class_names, info.schema, info.train_class_counts)
    report = evaluate_predictions(data.targets, scores, labels.class_names, labels.groups, labels.majority, threshold)
    if data.class_groups:
        report["mAP_per_class_group"] = mean_ap_per_class_group(report["ap_per_class"], labels.class_names,
                                                                data.class_groups)
    for name, reason in report.get("undefined_attributes", {}).items():
        log.warning("%s: %s", name, reason)
    report["meta"] = {"checkpoint": str(checkpoint), "model_name": info.model_name, "csv": source,
                      "images": str(data.image_dir), "weights": info.weights}
    view = build_view(report, data.targets, scores, data, info, checkpoint, threshold) if html else None
    if view is not None:
        report.update({"calibration_error": {"overall": view.analysis["ece"],
                                             "per_attribute": view.analysis["ece_per_attribute"]},
                       "per_class_precision_recall_f1": view.analysis["per_class"],
                       "confusion": view.analysis["confusion"]})
    report["thresholds"] = thresholds_summary(info.thresholds)
    report["abstention"] = _abstention_report(info, data.targets, scores)
    paths = write_report(report, output_dir, title="Evaluation report")
    if view is not None:
        frame = predictions_frame(data, data.targets, scores, info, threshold,
                                  abstained(info.thresholds, scores, labels.groups))
        paths.update(write_html_report(view, frame, output_dir))
    if tune:
        paths.update({"thresholds": output_dir / "thresholds.json", "checkpoint": output_dir / "best.pt"})
    report["files"] = {k: str(v) for k, v in paths.items()}
    return report
