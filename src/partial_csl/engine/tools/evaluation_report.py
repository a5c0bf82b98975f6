"""What ``report.html`` needs beyond the metrics: the run's history and settings, the curves, the thumbnails of the
most confident mistakes; and writing the page, its PNGs (``figures/``) and ``predictions.csv``.

The training curves come from ``metrics.csv`` of the checkpoint's run (``<run>/checkpoints/best.pt`` ->
``<run>/metrics.csv``) when it is there, else from the history kept in the checkpoint itself.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.dataset import MultiLabelImageDataset
from ...data.images import ImageLoadError
from ...data.schema import AttributeSchema
from ...diagnostics import confident_label_mistakes, confident_mistakes, error_analysis, precision_recall_curve
from ...reports.html import MANY_CLASSES, EvaluationView, evaluation_page, figure_name
from ...reports.plots import thumbnail_png
from ...reports.predictions import attribute_predictions_table, label_predictions_table
from ...safe_io import atomic_open, atomic_write_bytes, atomic_write_text
from ...thresholds import UNKNOWN, accuracy_coverage, class_threshold_vector, top_label
from ..checkpoint import CheckpointInfo
from ..config import with_new_defaults
from ..inference.stored_thresholds import abstain_values
from ..setup.architectures import get_architecture
from ..setup.run_data import LabelledImages

log = logging.getLogger(__name__)
GALLERY_SIZE = 8
PR_CLASSES = 6  # many-class data: PR curves of this many best and worst classes


def run_metrics_csv(checkpoint: str | Path) -> Path | None:
    """``<run>/metrics.csv`` of a checkpoint at ``<run>/checkpoints/<name>.pt``, when it exists."""
    path = Path(checkpoint)
    candidate = path.parent.parent / "metrics.csv"
    return candidate if path.parent.name == "checkpoints" and candidate.is_file() else None


def run_history(checkpoint: str | Path, info: CheckpointInfo) -> list[dict]:
    """The run's metric rows: its metrics.csv when readable, else the checkpoint's ``history``."""
    path = run_metrics_csv(checkpoint)
    if path is not None:
        try:
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            log.warning("cannot read %s (%s); using the checkpoint's history", path, err)
    return list(info.history)


def run_settings(info: CheckpointInfo) -> dict:
    """The run's key settings, as the report lists them: the loss and its partial-label mode only where the
    architecture reads them (``--arch csl``), the learning rate in scientific notation."""
    cfg, arch, mode = info.config, info.arch, info.partial_loss_mode
    if cfg.get("prior_path"):
        priors = f"from {cfg['prior_path']}"
    elif info.priors is not None:
        priors = f"estimated by the ignore-mode prior stage ({cfg.get('prior_epochs') or cfg.get('epochs')} epochs, "\
                 f"{cfg.get('prior_estimate', 'em')})"
    else:
        priors = "not used"
    lr = cfg.get("lr")
    loss = ({"loss": info.loss, "loss mode": mode, "priors": priors} if get_architecture(arch).uses_priors
            else {"loss": f"softmax cross-entropy per attribute ({cfg.get('task_weighting')} task weighting)",
                  "logit adjustment": cfg.get("logit_adjust")})
    return {"model": info.model_name, "architecture": arch, **loss, "epochs": cfg.get("epochs"),
            "best epoch": info.epoch, "weights": info.weights,
            "image size": info.image_size, "batch size": cfg.get("batch_size"),
            "learning rate": f"{lr:.2e}" if isinstance(lr, (int, float)) else lr, "augment": cfg.get("augment"),
            "sampler": cfg.get("sampler"), "pseudo-labels": _pseudo_labels(with_new_defaults(cfg)),
            "seed": cfg.get("seed")}


def _pseudo_labels(cfg: dict) -> str:
    """``--pseudo-labels`` as the report states it: off, or its teacher, warm-up and thresholds."""
    if not cfg.get("pseudo_labels"):
        return "off"
    return (f"{cfg['pseudo_teacher']} teacher from epoch {cfg['pseudo_warmup'] + 1}, thresholds per "
            f"{cfg['pseudo_thresholds']} at precision {cfg['pseudo_precision']} (negatives "
            f"{cfg['pseudo_negative_precision']})")


def pr_panels(targets: np.ndarray, scores: np.ndarray, class_names: list[str], groups: dict[str, slice] | None,
              ap: dict) -> dict[str, list[tuple]]:
    """Small multiples: per attribute one panel with its classes; multi-label data one panel per class (the best
    and worst :data:`PR_CLASSES` by AP when there are many)."""
    def curve(c: int) -> tuple:
        known = targets[:, c] != UNKNOWN
        return (class_names[c], *precision_recall_curve(scores[known, c], targets[known, c]), ap[class_names[c]])

    if groups:
        return {name: [curve(c) for c in range(len(class_names))[group]] for name, group in groups.items()}
    ranked = sorted((c for c in range(len(class_names)) if ap[class_names[c]] is not None),
                    key=lambda c: -ap[class_names[c]])
    if len(class_names) > MANY_CLASSES:
        ranked = ranked[:PR_CLASSES] + ranked[-PR_CLASSES:]
    return {class_names[c]: [curve(c)] for c in ranked}


def coverage_curves(targets: np.ndarray, scores: np.ndarray, groups: dict[str, slice],
                    values: dict[str, float] | None) -> tuple[dict, dict]:
    """Per attribute the (coverage, accuracy) curve of abstaining, and where the stored thresholds lie on it."""
    curves, marks = {}, {}
    for name, group in groups.items():
        confidence, correct, known = top_label(targets, scores, group)
        confidence, correct = confidence[known], correct[known]
        if not len(confidence):
            continue
        _, coverage, accuracy = accuracy_coverage(confidence, correct)
        curves[name] = (coverage, accuracy)
        if values and name in values:
            answered = confidence >= values[name]
            marks[name] = (float(answered.mean()), float(correct[answered].mean()) if answered.any() else 0.0)
    return curves, marks


def _thumbnails(data: LabelledImages, rows: list[int]) -> dict[int, bytes]:
    dataset = MultiLabelImageDataset(data.image_dir, data.filenames, data.targets)
    out = {}
    for row in dict.fromkeys(rows):
        try:
            out[row] = thumbnail_png(dataset.load(row))
        except ImageLoadError as err:
            log.warning("no thumbnail for %s: %s", data.filenames[row], err)
    return out


def mistake_gallery(data: LabelledImages, targets: np.ndarray, scores: np.ndarray, class_names: list[str],
                    schema: AttributeSchema | None, thresholds: np.ndarray) -> dict[str, list[tuple[bytes, str]]]:
    """Thumbnails with captions of the most confident mistakes, per attribute (multi-label data: 'labels')."""
    if schema is not None:
        found = {g.name: [(m["row"], f"{data.filenames[m['row']]}: true {g.class_names[m['truth']]}, predicted "
                                     f"{g.class_names[m['prediction']]} ({m['confidence']:.2f})")
                          for m in confident_mistakes(targets, scores, sl, GALLERY_SIZE)]
                 for g, sl in zip(schema.groups, schema.group_slices().values())}
    else:
        found = {"labels": [(m["row"], f"{data.filenames[m['row']]}: {class_names[m['class']]} "
                                       f"{'missed' if m['label'] == 1 else 'wrongly predicted'} ({m['score']:.2f})")
                            for m in confident_label_mistakes(targets, scores, thresholds, GALLERY_SIZE)]}
    pictures = _thumbnails(data, [row for items in found.values() for row, _ in items])
    return {name: [(pictures[row], caption) for row, caption in items if row in pictures]
            for name, items in found.items()}


def report_outputs(output_dir: Path, schema: AttributeSchema | None) -> list[Path]:
    """Every file the HTML report writes (so that a script can refuse outputs that are inputs before any work)."""
    names = ["training_curves", "ap_per_class", "precision_recall", "reliability", "accuracy_coverage",
             *(f"confusion_{figure_name(n)}" for n in (schema.group_names if schema else []))]
    figures = output_dir / "figures"
    return [output_dir / "report.html", output_dir / "predictions.csv", figures,
            *(figures / f"{n}.png" for n in names)]


def build_view(report: dict, targets: np.ndarray, scores: np.ndarray, data: LabelledImages, info: CheckpointInfo,
               checkpoint: str | Path, threshold: float) -> EvaluationView:
    """Everything report.html shows, computed from the predictions on ``data``."""
    class_names, schema, entry = info.class_names, info.schema, info.thresholds
    groups = schema.group_slices() if schema else None
    label_cut = class_threshold_vector(entry, len(class_names), threshold)
    analysis = error_analysis(targets, scores, class_names, groups, entry, threshold)
    curves, marks = coverage_curves(targets, scores, groups, abstain_values(entry)) if groups else ({}, {})
    return EvaluationView(report, analysis, class_names,
                          {g.name: list(g.class_names) for g in schema.groups} if schema else {},
                          pr_panels(targets, scores, class_names, groups, report["ap_per_class"]), curves, entry,
                          marks, run_history(checkpoint, info), run_settings(info),
                          mistake_gallery(data, targets, scores, class_names, schema, label_cut))


def predictions_frame(data: LabelledImages, targets: np.ndarray, scores: np.ndarray, info: CheckpointInfo,
                      threshold: float, abstained: dict | None) -> pd.DataFrame:
    class_names, schema = info.class_names, info.schema
    if schema is not None:
        return attribute_predictions_table(data.filenames, targets, scores,
                                           {g.name: list(g.class_names) for g in schema.groups},
                                           schema.group_slices(), abstained)
    cut = class_threshold_vector(info.thresholds, len(class_names), threshold)
    return label_predictions_table(data.filenames, targets, scores, class_names, cut)


def write_html_report(view: EvaluationView, frame: pd.DataFrame, output_dir: str | Path,
                      title: str = "Evaluation report") -> dict[str, Path]:
    """report.html, the PNGs it embeds (under figures/) and predictions.csv, each written as a new file."""
    output_dir = Path(output_dir)
    predictions = output_dir / "predictions.csv"
    with atomic_open(predictions, "w", newline="") as f:
        frame.to_csv(f, index=False, lineterminator="\n")
    view.files = {"predictions per image": predictions.name, "figures": "figures/", "metrics": "report.json",
                  "summary": "report.md"}
    text, figures = evaluation_page(view, title)
    for name, png in figures.items():
        atomic_write_bytes(output_dir / "figures" / name, png)
    html_path = atomic_write_text(output_dir / "report.html", text)
    return {"html": html_path, "predictions": predictions, "figures": output_dir / "figures"}
