"""Uniform vs imbalance-aware sampling on the demo data: same model, seed, epochs and number of images seen.

    .venv/bin/python benchmarks/sampler_compare.py                 # after `make demo` (uses its split)
    .venv/bin/python benchmarks/sampler_compare.py --epochs 8 --samplers uniform balanced raking

Prints (and writes to OUT/table.md) per attribute: accuracy, macro accuracy (mean per-class recall), the AP of its
three rarest classes, and the overall mAP, all on the test split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from partial_csl.cli import make_parser
from partial_csl.data.schema import default_schema
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.tools.validate import validate_checkpoint
from partial_csl.engine.training.trainer import run_training


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--split", type=Path, default=Path("outputs/demo/split"))
    p.add_argument("--images", default="data/demo/images")
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/sampler"))
    p.add_argument("--samplers", nargs="+", default=["uniform", "balanced", "raking"])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--model-name", default="tresnet_m")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = TrainConfig(train_csv=str(args.split / "train.csv"), val_csv=str(args.split / "valid.csv"),
                       images=args.images, model_name=args.model_name, image_size=args.image_size, batch_size=32,
                       epochs=args.epochs, lr=5e-4, augment="light", ema_decay=0.99, partial_loss_mode="ignore",
                       gamma_neg=1, seed=args.seed, resume=True, arch="csl", logit_adjust="none")
    train = pd.read_csv(args.split / "train.csv", dtype=str, keep_default_na=False)
    schema = default_schema()
    rows = []
    for sampler in args.samplers:
        run_dir = args.out / sampler
        summary = run_training(replace(base, sampler=sampler, output_dir=str(run_dir)))
        report = validate_checkpoint(summary["best_checkpoint"], run_dir / "test_report",
                                     csv_path=str(args.split / "test.csv"), images=args.images)
        row = {"sampler": sampler, "mAP": report["mAP"]}
        for group in schema.groups:
            counts = train[group.name][train[group.name] != "#N/A"].astype(float).astype(int).value_counts()
            order = sorted(range(group.num_classes), key=lambda k: counts.get(k, 0))
            rarest = [group.class_names[k] for k in order[:3]]
            row[f"{group.name} acc"] = report["accuracy_per_attribute"][group.name]
            row[f"{group.name} macro acc"] = report["macro_accuracy_per_attribute"][group.name]
            row[f"{group.name} rare-3 AP"] = float(np.mean([report["ap_per_class"][c] for c in rarest]))
        rows.append(row)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    frame = pd.DataFrame(rows).set_index("sampler")
    lines = [f"# Sampling on the demo data ({args.model_name}, {args.image_size} px, {args.epochs} epochs, "
             f"ignore mode, seed {args.seed}; test split)", "",
             "| metric | " + " | ".join(frame.index) + " |", "|---|" + "---:|" * len(frame.index)]
    for column in frame.columns:
        lines.append(f"| {column} | " + " | ".join(f"{v:.2f}" for v in frame[column]) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
