"""Format an evaluation report (computed by :func:`partial_csl.metrics.evaluate_predictions`) as JSON and Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..safe_io import atomic_write_text


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def report_markdown(report: dict, title: str = "Evaluation report") -> str:
    lines = [f"# {title}", ""]
    meta = report.get("meta", {})
    for key in ("checkpoint", "model_name", "csv", "images", "weights"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`")
    lines += [f"- evaluated images: {report['num_images']}", "",
              "| metric | value |", "|---|---:|",
              f"| mAP (partial-aware: unknown labels left out) | {_fmt(report['mAP'])} |",
              f"| mAP_unknown_as_negative (the reference's mAP) | {_fmt(report['mAP_unknown_as_negative'])} |"]
    for key in ("CP", "CR", "CF1", "OP", "OR", "OF1"):
        lines.append(f"| {key} @ {report['threshold']} | {_fmt(report[key])} |")
    for group, value in report.get("mAP_per_class_group", {}).items():
        lines.append(f"| mAP, {group} classes | {_fmt(value)} |")
    lines.append("")
    if "accuracy_per_attribute" in report:
        majority = report.get("majority_accuracy_per_attribute", {})
        lines += ["## Attributes", "",
                  "| attribute | known images | accuracy | majority-class baseline | gain (points) | macro accuracy "
                  "| mAP |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, acc in report["accuracy_per_attribute"].items():
            base = majority.get(name)
            gain = None if base is None or math.isnan(base) or math.isnan(acc) else acc - base
            lines.append(f"| {name} | {report['known_per_attribute'][name]} | {_fmt(acc)} | {_fmt(base)} | "
                         f"{_fmt(gain)} | {_fmt(report['macro_accuracy_per_attribute'][name])} | "
                         f"{_fmt(report['mAP_per_attribute'][name])} |")
        lines.append("")
    lines += ["## AP per class", "", "| class | known positives | AP |", "|---|---:|---:|"]
    for name, ap in report["ap_per_class"].items():
        lines.append(f"| {name} | {report['known_positives_per_class'][name]} | {_fmt(ap)} |")
    if report["excluded_classes"]:
        lines += ["", "Excluded from mAP: " + ", ".join(f"{name} ({why})"
                                                       for name, why in report["excluded_classes"].items())]
    if report.get("conventions"):
        lines += ["", "## Conventions", "", *(f"- {key}: {text}" for key, text in report["conventions"].items())]
    return "\n".join(lines) + "\n"



def json_safe(value: object) -> object:
    """``value`` with every NaN or infinite float as None: strict JSON (bare ``NaN`` is not JSON) says null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict, out_dir: str | Path, title: str = "Evaluation report") -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(json_path, json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    atomic_write_text(md_path, report_markdown(report, title))
    return {"json": json_path, "markdown": md_path}


def summary_line(report: dict) -> str:
    text = f"mAP {_fmt(report['mAP'])} (unknown-as-negative {_fmt(report['mAP_unknown_as_negative'])})"
    if "accuracy_per_attribute" in report:
        majority = report.get("majority_accuracy_per_attribute", {})
        parts = [f"{n} {_fmt(a)}" + (f" vs majority {_fmt(majority[n])}" if n in majority else "")
                 for n, a in report["accuracy_per_attribute"].items()]
        text += "; accuracy: " + ", ".join(parts)
    return text
