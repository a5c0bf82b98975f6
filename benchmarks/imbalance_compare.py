"""Imbalance handling x datasets x seeds on the demo attributes: per attribute accuracy, balanced accuracy, mAP and
rare-class AP on the test split; resumable.

    .venv/bin/python benchmarks/imbalance_compare.py            # frozen backbone, the default grid (see below)
    .venv/bin/python benchmarks/imbalance_compare.py --quick    # a smoke test of the machinery
    .venv/bin/python benchmarks/imbalance_compare.py --end-to-end --epochs 8   # whole networks (a GPU's grid)

Datasets: ``demo`` (``make demo``'s split) and ``longtail`` (the demo builder with ``--skew 1.5``: pattern's rare
classes at about 1 % instead of 3.5 %, split the same way). Arms (ARMS) are train.py settings on top of one base
(train.py's defaults, the demo's recipe); the first, uniform sampling and the plain loss, is the baseline.

By default every arm trains the head only (``--freeze-backbone``) on the features of one backbone per dataset: the
baseline trained end to end for ``--backbone-epochs`` first (or ``--backbone``), cached once, so a 3-seed grid fits
a 2-core CPU. That is the decoupled setting of cRT (Kang et al. 2020): there the ``cRT`` arm *is* the balanced
sampler with a new head. ``--end-to-end`` trains whole networks, and ``cRT`` re-trains a reset head on the baseline's
backbone of the same seed, with the balanced sampler.

The baseline's checkpoints are kept: the ``logit adjustment, post hoc`` cell is the baseline's network of the same
seed with the offset train.py would store (its training run is the same), and end to end cRT starts from it.

Rare-class AP: the mean AP of the bottom third (rounded, at least one) of each attribute's classes by training
frequency. Writes ``OUT/results.csv`` (one row per cell and metric) and ``OUT/table.md`` (mean ± std over the
seeds, the best in bold, ties marked: seed_tables.py); a cell's ``result.json`` marks it done.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
from grid import attribute_metrics, attribute_tables, long_rows, resumable, slug, test_checkpoint, train_and_test

from partial_csl.cli import make_parser
from partial_csl.data.demo import build_demo_dataset
from partial_csl.data.schema import default_schema
from partial_csl.engine.checkpoint import load_checkpoint, save_checkpoint, with_posthoc_adjustment
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup.architectures import resolve_auto, unread_defaults
from partial_csl.engine.setup.formats import load_training_data
from partial_csl.engine.tools.split_csv import split_attribute_csv
from partial_csl.engine.training.trainer import run_training

GENTLE = dict(sampler_power=0.25, sampler_max_repeats=3.0, sampler_replacement=False)
ARMS = {  # row: settings on top of the base; "drw" is replaced by two thirds of the epochs
    "uniform, plain loss (baseline)": {},
    "balanced sampler": dict(sampler="balanced"),
    "raking sampler": dict(sampler="raking"),
    "balanced, gentle (p 0.25, cap 3, no repl.)": dict(sampler="balanced", **GENTLE),
    "raking, gentle (p 0.25, cap 3, no repl.)": dict(sampler="raking", **GENTLE),
    "class-balanced weights (beta 0.999)": dict(class_weights="effective_number"),
    "DRW (class-balanced from 2/3 of the epochs)": dict(class_weights="effective_number", drw_start_epoch="drw"),
    "logit adjustment, training": dict(logit_adjust="train"),
    "logit adjustment, post hoc": dict(logit_adjust="posthoc"),
    "Distribution-Balanced loss": dict(loss="db"),
    "cRT (new head, balanced sampler)": dict(sampler="balanced", crt=True),
    "post hoc LA + gentle raking": dict(logit_adjust="posthoc", sampler="raking", **GENTLE),
    "mtl: softmax heads": dict(arch="mtl"),
    "mtl: balanced softmax": dict(arch="mtl", logit_adjust="balanced_softmax"),
    "mtl: logit adjustment, post hoc": dict(arch="mtl", logit_adjust="posthoc"),
    "mtl: class-balanced weights": dict(arch="mtl", class_weights="effective_number"),
}
QUICK = {"arms": ["uniform, plain loss (baseline)", "balanced, gentle (p 0.25, cap 3, no repl.)",
                  "logit adjustment, post hoc", "cRT (new head, balanced sampler)", "mtl: balanced softmax"],
         "datasets": ["demo"], "seeds": [0, 1], "epochs": 1}


def longtail_split(args: argparse.Namespace) -> tuple[Path, str]:
    """The demo builder with ``--skew`` and the same stratified split (built once)."""
    root = Path(args.longtail_data)
    csv = build_demo_dataset(root, num_images=args.longtail_images, seed=0, skew=args.skew, source=args.source)
    split = args.out / "longtail_split"
    if not (split / "test.csv").is_file():
        split_attribute_csv(csv, root / "images", split, default_schema(), seed=0)
    return split, str(root / "images")


def base_config(args: argparse.Namespace, split: Path, images: str) -> TrainConfig:
    """The baseline: the demo's recipe before the imbalance default (scripts/demo.sh with --arch csl and its flags)."""
    return TrainConfig(train_csv=str(split / "train.csv"), val_csv=str(split / "valid.csv"), images=images,
                       model_name=args.model_name, image_size=args.image_size, batch_size=32, workers=0,
                       gamma_unann=4, likelihood_topk=3, prior_epochs=3, epochs=args.epochs, lr=5e-4, augment="light",
                       ema_decay=0.99, device=args.device, resume=True, arch="csl", logit_adjust="none")


def backbone(args: argparse.Namespace, base: TrainConfig, name: str) -> str:
    """The baseline trained end to end: the frozen grid's backbone (trained here on first use)."""
    if args.backbone:
        return args.backbone
    run_dir = args.out / "backbones" / name
    if not (run_dir / "summary.json").is_file():
        print(f"training the {name} backbone ({args.backbone_epochs} epochs) ...", flush=True)
        run_training(replace(base, epochs=args.backbone_epochs, cache_images=True, output_dir=str(run_dir)))
    return str(run_dir / "checkpoints" / "best.pt")


def arm_config(base: TrainConfig, arm: dict, args: argparse.Namespace, frozen_from: str | None,
               crt_from: str | None) -> TrainConfig:
    settings = {k: v for k, v in arm.items() if k != "crt"}
    if settings.get("drw_start_epoch") == "drw":
        settings["drw_start_epoch"] = max(1, 2 * base.epochs // 3)
    cfg = replace(base, **settings)
    cfg = replace(cfg, **unread_defaults(cfg.arch))  # the baseline's CSL settings would stop a per-attribute arm
    if frozen_from is not None:
        return replace(cfg, model_path=frozen_from, freeze_backbone=True, cache_embeddings=True, ema_decay=0.0,
                       lr=1e-3, embeddings_dir=str(args.out / "embeddings"), reset_head=True)
    if arm.get("crt"):
        return replace(cfg, model_path=crt_from, freeze_backbone=True, reset_head=True, ema_decay=0.0, lr=1e-3)
    return replace(cfg, cache_images=True)


def posthoc_cell(cfg: TrainConfig, baseline_dir: Path, run_dir: Path, split: Path) -> dict:
    """``--logit-adjust posthoc`` trains exactly the baseline's run (same seed, same plain loss): its cell is the
    baseline's best.pt with the offset train.py would store, tested, instead of a second identical run."""
    def compute() -> dict:
        run_dir.mkdir(parents=True, exist_ok=True)
        labels, _, _ = load_training_data(cfg, run_dir)
        adjusted = run_dir / "best_posthoc.pt"
        save_checkpoint(with_posthoc_adjustment(load_checkpoint(baseline_dir / "checkpoints" / "best.pt"),
                                                replace(resolve_auto(cfg), output_dir=str(baseline_dir)), labels,
                                                ignore=("la_tau",)), adjusted)
        report = test_checkpoint(adjusted, run_dir, split, cfg.images, cfg.device)
        adjusted.unlink()
        return attribute_metrics(report, split / "train.csv")

    return resumable(run_dir, compute)


def run_dataset(args: argparse.Namespace, name: str, split: Path, images: str) -> list[dict]:
    base = base_config(args, split, images)
    frozen_from = None if args.end_to_end else backbone(args, base, name)
    rows, baseline = [], next(iter(ARMS))
    metrics = partial(attribute_metrics, train_csv=split / "train.csv")
    for seed in args.seeds:
        baseline_dir = args.out / "runs" / name / "baseline" / f"seed{seed}"
        for arm in args.arms:
            folder = baseline_dir if arm == baseline else args.out / "runs" / name / slug(arm) / f"seed{seed}"
            crt_from = str(baseline_dir / "checkpoints" / "best.pt")
            if ARMS[arm].get("crt") and args.end_to_end:
                train_and_test(arm_config(replace(base, seed=seed), {}, args, None, None), baseline_dir, split,
                               metrics, keep=True)
            cfg = arm_config(replace(base, seed=seed), ARMS[arm], args, frozen_from, crt_from)
            reuse = (folder / "result.json").is_file() or (baseline_dir / "checkpoints" / "best.pt").is_file()
            if ARMS[arm] == {"logit_adjust": "posthoc"} and reuse:  # the baseline's network, adjusted
                result = posthoc_cell(cfg, baseline_dir, folder, split)
            else:
                result = train_and_test(cfg, folder, split, metrics, keep=arm == baseline)
            rows += long_rows(name, arm, seed, result)
            print(f"{name:8s} seed {seed} {arm:44s} mAP {result['overall mAP']:.2f} "
                  f"pattern bal. acc {result['pattern balanced accuracy']:.1f} rare AP "
                  f"{result['pattern rare-class AP']:.1f} ({result['seconds']:.0f} s)", flush=True)
    return rows


def write_tables(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    frame.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    setup = "end to end" if args.end_to_end else f"heads on a frozen {args.model_name} backbone (cached features)"
    lines = [f"# Imbalance handling on the demo attributes ({setup}; {args.image_size} px, {args.epochs} epochs, "
             f"seeds {', '.join(map(str, args.seeds))}; test split)", "",
             "Mean ± std over the seeds; the best of each column in bold, ≈ a tie with it (within the larger std).", ""]
    for name in args.datasets:
        lines += attribute_tables(frame, name, args.arms, name)
    text = "\n".join(lines)
    (args.out / "table.md").write_text(text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--split", type=Path, default=Path("outputs/demo/split"), help="the demo split (make demo)")
    p.add_argument("--images", default="data/demo/images")
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/imbalance"))
    p.add_argument("--datasets", nargs="+", default=["demo", "longtail"], choices=["demo", "longtail"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15, help="per arm (heads: seconds each; --end-to-end: use 8)")
    p.add_argument("--model-name", default="tresnet_m")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--backbone", help="frozen grid: the backbone's weights (default: the baseline, trained here)")
    p.add_argument("--backbone-epochs", type=int, default=8)
    p.add_argument("--longtail-data", default="data/demo_longtail")
    p.add_argument("--longtail-images", type=int, default=3000)
    p.add_argument("--skew", type=float, default=1.5)
    p.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--end-to-end", action="store_true", help="train whole networks; cRT on the baseline's backbone")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="5 arms, the demo data, 2 seeds, 1 epoch")
    args = p.parse_args(argv)
    if args.quick:
        args.arms, args.datasets, args.seeds, args.epochs = (QUICK[k] for k in ("arms", "datasets", "seeds", "epochs"))
        args.backbone_epochs = 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    splits = {"demo": lambda: (args.split, args.images), "longtail": lambda: longtail_split(args)}
    rows = []
    for name in args.datasets:
        rows += run_dataset(args, name, *splits[name]())
    print(write_tables(pd.DataFrame(rows), args))


if __name__ == "__main__":
    main()
