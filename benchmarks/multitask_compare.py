"""CSL single-head vs the multi-head variants (mtl, latent, afa) on the demo data, with the same training budget.

    .venv/bin/python benchmarks/multitask_compare.py            # after `make demo` (uses its split)

Prints one table (also OUT/table.md): per-attribute test accuracy against the majority baseline, mAP, parameters,
training and inference images/s on this device; then the measurement behind the multitask claim: inference time of
one 3-head ``mtl`` network against three single-attribute networks of the same backbone on the same images.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from timing import images_per_second

from partial_csl.cli import make_parser
from partial_csl.data.schema import default_schema
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup.architectures import build_model, unread_defaults
from partial_csl.engine.tools.validate import validate_checkpoint
from partial_csl.engine.training.trainer import run_training
from partial_csl.models import create_model


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--split", type=Path, default=Path("outputs/demo/split"))
    p.add_argument("--images", default="data/demo/images")
    p.add_argument("--priors", default="outputs/demo_csl/run/priors/prior_ignore.csv",
                   help="priors for the csl selective run, so that it needs no extra prior stage (a CSL demo run: "
                        "see scripts/demo.sh); without them the csl run estimates its own first")
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/multitask"))
    p.add_argument("--archs", nargs="+", default=["csl", "mtl", "latent", "afa"])
    p.add_argument("--model-name", default="tresnet_m")
    p.add_argument("--branch-model", default="resnet18")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = TrainConfig(train_csv=str(args.split / "train.csv"), val_csv=str(args.split / "valid.csv"),
                       images=args.images, model_name=args.model_name, branch_model=args.branch_model,
                       image_size=args.image_size, batch_size=32, epochs=args.epochs, lr=5e-4, augment="light",
                       ema_decay=0.99, seed=0, resume=True, partial_loss_mode="selective", gamma_unann=4,
                       likelihood_topk=3, prior_path=args.priors if Path(args.priors).is_file() else None,
                       logit_adjust="none")  # plain softmax heads: the table compares architectures
    schema = default_schema()
    batch = torch.rand(32, 3, args.image_size, args.image_size)
    rows = []
    for arch in args.archs:
        run_dir = args.out / arch
        cfg = replace(base, arch=arch, output_dir=str(run_dir))
        cfg = replace(cfg, **unread_defaults(arch))  # the CSL settings would stop another architecture's run
        if arch == "csl" and cfg.prior_path is None:
            cfg = replace(cfg, partial_loss_mode="ignore")
        started = time.time()
        summary = run_training(cfg)
        metrics = pd.read_csv(summary["metrics_csv"])
        train_rate = len(pd.read_csv(cfg.train_csv)) * len(metrics) / metrics["seconds"].sum()
        report = validate_checkpoint(summary["best_checkpoint"], run_dir / "test_report",
                                     csv_path=str(args.split / "test.csv"), images=args.images)
        model = model_from_checkpoint(load_checkpoint(summary["best_checkpoint"]), "cpu")
        row = {"arch": arch, "mAP": report["mAP"],
               "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
               "train img/s (with val)": train_rate, "infer img/s": images_per_second(model, batch),
               "wall (s)": time.time() - started}
        for group in schema.groups:
            row[f"{group.name} acc"] = report["accuracy_per_attribute"][group.name]
            row[f"{group.name} majority"] = report["majority_accuracy_per_attribute"][group.name]
        rows.append(row)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    frame = pd.DataFrame(rows).set_index("arch")
    sizes = [g.num_classes for g in schema.groups]
    mtl = build_model("mtl", args.model_name, sum(sizes), group_sizes=sizes).eval()
    singles = [create_model(args.model_name, n).eval() for n in sizes]
    t_mtl = len(batch) / images_per_second(mtl, batch)
    t_singles = sum(len(batch) / images_per_second(m, batch) for m in singles)
    lines = [f"# Architectures on the demo data ({args.model_name} backbone, afa branches {args.branch_model}, "
             f"{args.image_size} px, {args.epochs} epochs, test split, CPU {torch.get_num_threads()} threads)", "",
             "| metric | " + " | ".join(frame.index) + " |", "|---|" + "---:|" * len(frame.index)]
    for column in frame.columns:
        lines.append(f"| {column} | " + " | ".join(f"{v:.2f}" for v in frame[column]) + " |")
    lines += ["", f"Inference on {len(batch)} images at {args.image_size} px: one 3-head mtl {args.model_name} "
              f"{t_mtl:.2f} s, three single-attribute {args.model_name} {t_singles:.2f} s "
              f"(ratio {t_singles / t_mtl:.2f}x)."]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
