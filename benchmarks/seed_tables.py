"""Markdown tables of mean ± std over seeds, shared by the multi-seed benchmarks (partial_methods, imbalance_compare).

Run as scripts, the benchmarks import this module by name (a script's folder comes first on the import path); the tests
do the same through pytest's ``pythonpath``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cell_text(mean: float, std: float, count: int, digits: int, best: tuple[float, float], tie: bool) -> str:
    """``mean ± std``, bold for the best mean, ``≈`` for a tie with it (the gap within the larger of the two
    standard deviations)."""
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if count > 1 else f"{mean:.{digits}f}"
    if mean == best[0]:
        return f"**{text}**"
    return f"≈ {text}" if tie else text


def mean_std_table(frame: pd.DataFrame, rows: list[str], columns: list[str], value: str,
                   higher_is_better: bool = True) -> list[str]:
    """Markdown rows of mean ± std per (row, column): the best mean of each column in bold, ties with it marked, and,
    where ``frame`` has a ``seed`` column, the number of seeds of a cell that has fewer than the table's
    fullest."""
    stats = frame.groupby(["row", "column"])[value].agg(["mean", "std", "count"])
    stats["std"] = stats["std"].fillna(0.0)  # one seed: no spread (a NaN mean, e.g. an undefined rho, stays NaN)
    # seeds, not values: a row may pool several runs of a seed (the prior estimates' rows)
    seeds = frame.dropna(subset=[value]).groupby(["row", "column"])["seed"].nunique() if "seed" in frame else None
    most = max((n for (r, c), n in seeds.items() if r in rows and c in columns), default=0) if seeds is not None else 0
    digits = 2 if value == "mAP" else 3
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    best = {}
    for column in columns:
        means = stats.xs(column, level="column").dropna(subset=["mean"])
        if means.empty:  # every estimate undefined (e.g. constant): nothing to bold
            best[column] = (float("nan"), 0.0)
            continue
        winner = means["mean"].idxmax() if higher_is_better else means["mean"].idxmin()
        best[column] = (means.loc[winner, "mean"], means.loc[winner, "std"])
    for row in rows:
        cells = []
        for column in columns:
            if (row, column) not in stats.index:
                cells.append("")
                continue
            mean, std, count = stats.loc[(row, column)]
            if np.isnan(mean):
                cells.append("n/a")
                continue
            tie = abs(best[column][0] - mean) <= max(std, best[column][1])
            text = cell_text(mean, std, int(count), digits, best[column], tie)
            found = int(seeds.get((row, column), most)) if seeds is not None else most
            if found < most:  # a cell still missing seeds (a grid half run) says so
                text += f" ({found} seed{'s' if found > 1 else ''})"
            cells.append(text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines
