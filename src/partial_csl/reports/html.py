"""The evaluation report a person reads: one self-contained HTML page (figures and thumbnails embedded as data URIs,
inline style, no scripts, so it opens offline and can be mailed as one file) and the PNGs it shows.

It only formats: what it shows was computed by :mod:`partial_csl.metrics` and :mod:`partial_csl.diagnostics` and is
handed over in an :class:`EvaluationView`; the figures are drawn by :mod:`.plots`.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import plots

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.6em; }
.gallery figure { width: 150px; margin: 0; font-size: 0.78em; }
.gallery img { image-rendering: pixelated; width: 96px; }
.muted { color: #777; }
"""
MANY_CLASSES = 30  # above this, per-class figures show the best and the worst classes only
TOP_N = 12


@dataclass
class EvaluationView:
    """Everything the page shows (see :func:`partial_csl.engine.tools.evaluation_report.build_view`)."""

    report: dict  # evaluate_predictions' report, with "meta"
    analysis: dict  # diagnostics.error_analysis
    class_names: list[str]
    group_classes: dict[str, list[str]]  # attribute -> its class names (empty for multi-label data)
    pr: dict[str, list[tuple]]  # panel -> [(label, precision, recall, AP)]
    coverage: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    thresholds: dict | None = None  # the checkpoint's tuned thresholds
    threshold_marks: dict[str, tuple[float, float]] = field(default_factory=dict)  # attribute -> (coverage, acc)
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    gallery: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)  # attribute -> [(PNG, caption)]
    files: dict[str, str] = field(default_factory=dict)  # what else was written, for the page's last section


def _fmt(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; numbers are right-aligned and floats get two decimals."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = [f'<td class="n">{_fmt(v)}</td>' if isinstance(v, int | float) and not isinstance(v, bool)
                 else f"<td>{html.escape(_fmt(v))}</td>" for v in row]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_name(name: str) -> str:
    """A file-name-safe form of a figure's name (attribute names come from the user's schema)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, alt: str, caption: str = "") -> str:
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{html.escape(alt)}">{text}</figure>'


def section(title: str, anchor: str, *blocks: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(blocks)}</section>'


class _Page:
    """Collects the page's sections and the figures to write beside it (file name -> PNG)."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.figures: dict[str, bytes] = {}

    def figure(self, name: str, png: bytes, alt: str, caption: str = "") -> str:
        filename = f"{figure_name(name)}.png"
        self.figures[filename] = png
        return figure(png, alt, f"{caption} (figures/{filename})" if caption else f"figures/{filename}")


def _summary(view: EvaluationView) -> str:
    report, meta = view.report, view.report.get("meta", {})
    facts = "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in meta.items())
    rows = [["mAP (partial-aware: unknown labels left out)", report["mAP"]],
            ["mAP (unknown counted as negative, the CSL convention)", report["mAP_unknown_as_negative"]],
            *[[f"{k} @ {report['threshold']}", report[k]] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")],
            ["expected calibration error (%)", view.analysis["ece"]]]
    return f"<ul>{facts}<li>evaluated images: {report['num_images']}</li></ul>" + table(["metric", "value"], rows)


def _run(page: _Page, view: EvaluationView) -> str:
    if not view.settings and not view.history:
        return ""
    blocks = [table(["setting", "value"], [[k, _fmt(v)] for k, v in view.settings.items()])]
    if view.history:
        blocks.append(page.figure("training_curves", plots.plot_training_curves(view.history), "training curves",
                                  "train loss, validation mAP (regular and EMA weights), per-attribute accuracy and "
                                  "learning rate per epoch (prior stage dotted)"))
    else:
        blocks.append('<p class="muted">no metric history found (no metrics.csv beside the run, none in the '
                      "checkpoint)</p>")
    return section("The run", "run", *blocks)


def _class_rows(view: EvaluationView, names: Sequence[str]) -> list[list]:
    report, per_class = view.report, view.analysis["per_class"]
    return [[n, per_class[n]["support"], per_class[n]["precision"], per_class[n]["recall"], per_class[n]["f1"],
             report["known_positives_per_class"][n], report["ap_per_class"][n]] for n in names]


CLASS_HEADERS = ["class", "support", "precision (%)", "recall (%)", "F1 (%)", "known positives", "AP (%)"]


def _attributes(page: _Page, view: EvaluationView) -> str:
    report, ece = view.report, view.analysis["ece_per_attribute"]
    majority = report.get("majority_accuracy_per_attribute", {})
    rows = [[n, report["known_per_attribute"][n], acc, majority.get(n), report["macro_accuracy_per_attribute"][n],
             report["mAP_per_attribute"][n], ece.get(n)] for n, acc in report["accuracy_per_attribute"].items()]
    blocks = [table(["attribute", "known images", "accuracy", "majority baseline", "macro accuracy", "mAP",
                     "ECE (%)"], rows)]
    for name, classes in view.group_classes.items():
        confusion = np.asarray(view.analysis["confusion"][name])
        blocks += [f'<h3 id="attribute-{html.escape(name)}">{html.escape(name)}</h3>',
                   page.figure(f"confusion_{name}", plots.plot_confusion(confusion, classes, name),
                               f"confusion matrix of {name}", "true class (rows) against predicted class "
                               "(columns): counts, and row-normalised shares (each true class sums to 1)"),
                   table(CLASS_HEADERS, _class_rows(view, classes))]
    return section("Attributes: confusion and per-class precision, recall, F1", "attributes", *blocks)


def _classes(view: EvaluationView) -> str:
    headers, rows = CLASS_HEADERS, _class_rows(view, view.class_names)
    if view.thresholds and view.thresholds.get("classes"):
        headers = [*headers, "tuned threshold"]
        rows = [[*r, v] for r, v in zip(rows, view.thresholds["classes"]["values"])]
    note = ("<p>precision, recall and F1 at the tuned per-class thresholds</p>" if len(headers) > len(CLASS_HEADERS)
            else f"<p>precision, recall and F1 at {view.report['threshold']}</p>")
    return section("Classes", "classes", note, table(headers, rows))


def _ap(page: _Page, view: EvaluationView) -> str:
    report = view.report
    names = list(view.class_names)
    title = "AP per class"
    if len(names) > MANY_CLASSES:
        ranked = sorted((n for n in names if report["ap_per_class"][n] is not None),
                        key=lambda n: -report["ap_per_class"][n])
        names, title = ranked[:TOP_N] + ranked[-TOP_N:], f"AP of the {TOP_N} best and {TOP_N} worst classes"
    bars = plots.plot_ap_bars(names, [report["ap_per_class"][n] for n in names],
                              [report["known_positives_per_class"][n] for n in names], title)
    blocks = [page.figure("ap_per_class", bars, "AP per class", f"{title}, with the number of known positives"),
              page.figure("precision_recall", plots.plot_pr_curves(view.pr), "precision-recall curves",
                          "precision-recall curves over the images where the class is known")]
    if report["excluded_classes"]:
        blocks.append(f"<p>excluded from mAP (no known positive): {html.escape(', '.join(report['excluded_classes']))}"
                      "</p>")
    return section("Average precision and precision-recall curves", "ap", *blocks)


def _calibration(page: _Page, view: EvaluationView) -> str:
    cal = view.analysis["calibration"]
    rows = [["overall", 100 * cal["overall"]["ece"]], *[[n, 100 * r["ece"]] for n, r in cal["per_attribute"].items()]]
    what = ("confidence = probability of the predicted class of an attribute" if view.group_classes
            else "confidence = the probability of each known label")
    return section("Calibration", "calibration", f"<p>{what}; ECE over 10 equal-width bins</p>",
                   page.figure("reliability", plots.plot_reliability(cal), "reliability diagrams"),
                   table(["", "expected calibration error (%)"], rows))


def _coverage(page: _Page, view: EvaluationView) -> str:
    if not view.coverage:
        return ""
    blocks = ["<p>answering only when the predicted class's probability reaches a threshold (else #N/A): the "
              "accuracy of the answers against the share answered</p>",
              page.figure("accuracy_coverage", plots.plot_coverage(view.coverage, view.threshold_marks or None),
                          "accuracy against coverage")]
    abstain = (view.thresholds or {}).get("abstain")
    if abstain:
        rows = [[n, v, 100 * view.threshold_marks[n][0], 100 * view.threshold_marks[n][1]]
                for n, v in abstain["values"].items() if n in view.threshold_marks]
        blocks += [f"<p>the checkpoint's thresholds, tuned for {abstain['mode']} {abstain['target']}, on these "
                   "images:</p>", table(["attribute", "threshold", "coverage (%)", "accuracy (%)"], rows)]
    else:
        blocks.append('<p class="muted">the checkpoint has no abstention thresholds (train.py or validate.py '
                      "--tune-thresholds with --abstain-accuracy or --abstain-coverage)</p>")
    return section("Abstaining: accuracy against coverage", "coverage", *blocks)


def _gallery(view: EvaluationView) -> str:
    blocks = []
    for name, items in view.gallery.items():
        cells = "".join(f'<figure><img src="{data_uri(png)}" alt="{html.escape(caption)}"><figcaption>'
                        f"{html.escape(caption)}</figcaption></figure>" for png, caption in items)
        blocks.append(f"<h3>{html.escape(name)}</h3>" + (f'<div class="gallery">{cells}</div>' if items
                                                          else '<p class="muted">no mistakes</p>'))
    return section("Most confident mistakes", "mistakes", *blocks) if blocks else ""


def evaluation_page(view: EvaluationView, title: str = "Evaluation report") -> tuple[str, dict[str, bytes]]:
    """The HTML page and the figures it embeds (file name -> PNG bytes), for the caller to write."""
    page = _Page()
    parts = [section(title, "summary", _summary(view)), _run(page, view),
             _attributes(page, view) if view.group_classes else _classes(view), _ap(page, view),
             _calibration(page, view), _coverage(page, view), _gallery(view)]
    if view.files:
        parts.append(section("Files", "files", "<ul>" + "".join(
            f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>" for k, v in view.files.items()) + "</ul>"))
    body = "\n".join(p for p in parts if p)
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
    return text, page.figures
