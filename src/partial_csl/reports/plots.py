"""The evaluation report's figures, drawn with matplotlib from what :mod:`partial_csl.diagnostics` computed.

Every function returns PNG bytes (the HTML report embeds them and the caller writes them beside it). The figures
are meant to be read at a glance: class names on the axes, sizes that grow with the number of classes so that
labels never overlap, and many-class data shown as its best and worst classes rather than as an unreadable wall.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image

DPI = 90
STAGE_STYLES = {"prior": ":", "main": "-"}


def figure_png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (and closed, so that many reports in one process do not accumulate figures)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _grid(count: int, columns: int, width: float, height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Counts (left) and row-normalised shares (right, each true class sums to 1) of one attribute."""
    confusion = np.asarray(confusion, dtype=np.float64)
    size = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    side = max(3.5, 0.45 * size + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), layout="constrained")
    font = 8 if size <= 12 else 6
    for ax, values, name, fmt in ((axes[0], confusion, "counts", "{:.0f}"), (axes[1], shares, "row-normalised",
                                                                            "{:.2f}")):
        ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        ax.set_xticks(range(size), class_names, rotation=60, ha="right", fontsize=font)
        ax.set_yticks(range(size), class_names, fontsize=font)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title}: {name}")
        limit = values.max() / 2
        for (i, j), value in np.ndenumerate(values):
            if value:
                ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=font - 1,
                        color="white" if value > limit else "black")
    return figure_png(fig)


def plot_pr_curves(panels: dict[str, list[tuple[str, np.ndarray, np.ndarray, float | None]]]) -> bytes:
    """Precision-recall curves as small multiples: one panel per key (an attribute, or a class), one line per
    (label, precision, recall, AP in percent) in it."""
    fig, axes = _grid(len(panels), 3, 4.2, 3.6)
    for ax, (title, curves) in zip(axes, panels.items()):
        for label, precision, recall, ap in curves:
            if len(precision):
                text = label if ap is None else f"{label} (AP {ap:.0f})"
                ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", label=text, linewidth=1.2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        single = curves[0][3] if len(curves) == 1 else None
        ax.set_title(title if single is None else f"{title} (AP {single:.0f})", fontsize=10)
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=6, loc="lower left", ncol=1 if len(curves) <= 6 else 2)
    return figure_png(fig)


def plot_ap_bars(names: Sequence[str], aps: Sequence[float | None], positives: Sequence[int], title: str) -> bytes:
    """Horizontal bars of AP per class, each labelled with its number of known positives."""
    values = [np.nan if a is None else a for a in aps]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(names) + 1)), layout="constrained")
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(values), color="#4c72b0")
    ax.set_yticks(y, [f"{n} ({p})" for n, p in zip(names, positives)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)  —  label: class (known positives)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def plot_reliability(calibration: dict) -> bytes:
    """Reliability diagrams: accuracy per confidence bin against the diagonal, overall and per attribute."""
    panels = {"overall": calibration["overall"], **calibration["per_attribute"]}
    fig, axes = _grid(len(panels), 4, 3.4, 3.4)
    for ax, (title, data) in zip(axes, panels.items()):
        edges = np.asarray(data["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        filled = np.asarray(data["count"]) > 0
        ax.bar(centres[filled], np.asarray(data["accuracy"])[filled], width=width[filled] * 0.9, color="#55a868",
               label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
        ax.plot(np.asarray(data["confidence"])[filled], np.asarray(data["accuracy"])[filled], "o", markersize=3,
                color="#c44e52", label="(mean confidence, accuracy)")
        ece = data["ece"]
        ax.set_title(f"{title}: ECE {100 * ece:.1f} %" if ece == ece else f"{title}: no data", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    axes[0].legend(fontsize=6, loc="upper left")
    return figure_png(fig)


def plot_coverage(curves: dict[str, tuple[np.ndarray, np.ndarray]],
                  marks: dict[str, tuple[float, float]] | None = None) -> bytes:
    """Accuracy of the answers against coverage (share answered) per attribute, when abstaining below a confidence
    threshold; ``marks`` are the tuned thresholds' (coverage, accuracy)."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for name, (coverage, accuracy) in curves.items():
        (line,) = ax.plot(100 * np.asarray(coverage), 100 * np.asarray(accuracy), label=name, linewidth=1.4)
        if marks and name in marks:
            ax.plot(100 * marks[name][0], 100 * marks[name][1], "o", color=line.get_color(), markersize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("coverage (% of images answered)")
    ax.set_ylabel("accuracy of the answers (%)")
    ax.set_title("accuracy against coverage" + (" (dots: tuned thresholds)" if marks else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def _series(history: list[dict], key: str, stage: str) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), float(r[key])) for r in history
              if r.get("stage") == stage and r.get(key) not in (None, "") and float(r[key]) == float(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: list[dict]) -> bytes:
    """Train loss, validation mAP (regular and EMA weights), per-attribute accuracy and learning rate per epoch;
    the prior stage dotted, the main stage solid."""
    accuracy_keys = sorted({k for row in history for k in row if k.startswith("acc_")})
    panels = (("train loss", ["train_loss"]), ("validation mAP", ["val_mAP", "val_mAP_ema"]),
              ("validation accuracy per attribute", accuracy_keys), ("learning rate (end of epoch)", ["lr"]))
    fig, axes = _grid(len(panels), 4, 3.8, 3.0)
    stages = list(dict.fromkeys(r.get("stage", "main") for r in history))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            for stage in stages:
                epochs, values = _series(history, key, stage)
                if epochs:
                    label = key.removeprefix("acc_").removeprefix("val_") + (f" ({stage})" if len(stages) > 1
                                                                              else "")
                    ax.plot(epochs, values, STAGE_STYLES.get(stage, "-"), marker="o", markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    return figure_png(fig)


def thumbnail_png(img: Image.Image, size: int = 96) -> bytes:
    """A small PNG of an image (aspect kept), for the gallery of mistakes."""
    img = img.copy()
    img.thumbnail((size, size))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
