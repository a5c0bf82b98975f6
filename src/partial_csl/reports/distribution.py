"""Class-distribution tables and charts (per attribute, per split), formatted from :func:`class_distribution`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ..safe_io import atomic_open, atomic_write_text


def distribution_markdown(dist: pd.DataFrame) -> str:
    """One Markdown table per attribute: rows are classes (and #N/A), columns are splits, cells 'count (share)'."""
    parts = ["Class counts per split. Shares: a class over the rows where the attribute is known; "
             "`#N/A` over all rows.\n"]
    for attribute, block in dist.groupby("attribute", sort=False):
        splits = list(dict.fromkeys(block["split"]))
        parts.append(f"### {attribute}\n")
        parts.append("| class | " + " | ".join(splits) + " |")
        parts.append("|---|" + "---:|" * len(splits))
        for class_name, rows in block.groupby("class", sort=False):
            cells = [f"{int(r['count'])} ({100 * r['share']:.1f} %)" for _, r in rows.iterrows()]
            parts.append(f"| {class_name} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def plot_distribution(dist: pd.DataFrame, path: str | Path, title: str = "class distribution") -> Path:
    """Bar chart, one panel per attribute, bars grouped by class with one bar per split (shares)."""
    attributes = list(dict.fromkeys(dist["attribute"]))
    fig, axes = plt.subplots(len(attributes), 1, figsize=(10, 3.2 * len(attributes)), squeeze=False)
    for ax, attribute in zip(axes[:, 0], attributes):
        block = dist[dist["attribute"] == attribute]
        table = block.pivot(index="class", columns="split", values="share")
        table = table.loc[list(dict.fromkeys(block["class"])), list(dict.fromkeys(block["split"]))]
        (100 * table).plot.bar(ax=ax, rot=30, width=0.8)
        ax.set_ylabel("share (%)")
        ax.set_title(f"{attribute}")
        ax.set_xlabel("")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path


def write_distribution(dist: pd.DataFrame, out_dir: str | Path, stem: str, title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    atomic_write_text(csv_path, dist.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    atomic_write_text(md_path, f"# {title}\n\n" + distribution_markdown(dist))
    png_path = plot_distribution(dist, out_dir / f"{stem}.png", title)
    return {"csv": csv_path, "markdown": md_path, "png": png_path}
