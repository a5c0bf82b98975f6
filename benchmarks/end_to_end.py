"""The attribute default, end to end, on several attribute datasets of different construction; resumable.

    .venv/bin/python benchmarks/end_to_end.py            # 3 datasets x 8 recipes x 3 seeds (~16 CPU-hours, fp32)
    .venv/bin/python benchmarks/end_to_end.py --quick    # a smoke test of the machinery (CI)

Every cell trains a whole network as a user would, with ``make demo``'s flags (64 px, batch 32, lr 5e-4, light
augmentation, EMA 0.99, 8 epochs; CSL's ignore-mode prior stage adds its 3) on a CPU-sized ResNet-18 from scratch
(``--model-name tresnet_m`` for the demo's network: about 2.5x the time), and is scored on the dataset's
test split. Datasets (built here by the project's generators, split 70 / 10 / 20 with seed 0):

* ``demo``: the demo builder (texture = pattern, sleeve colour, product type = neck; labels missing at random);
* ``longtail``: the demo builder with ``--skew 1.5`` (pattern's rare classes at about 1 %);
* ``shapes``: the second generator (other cues, another skew, correlated attributes, rare classes more often
  ``#N/A``). It was never used to tune anything, and is reported last: the held-out dataset of the evidence protocol.

Recipes (RECIPES) are train.py settings on top of the demo's flags. Writes ``OUT/results.csv`` (one row per cell
and metric) and ``OUT/table.md`` (mean ± std over the seeds, best in bold, ties marked); a cell's ``result.json``
marks it done, so a killed run resumes where it stopped. ``--recipes A B --table NAME`` writes a subset's table to
``OUT/NAME.md`` (and ``OUT/NAME_results.csv``), leaving the full grid's.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
from grid import attribute_metrics, attribute_tables, long_rows, slug, train_and_test
from seed_tables import mean_std_table

from partial_csl.cli import make_parser
from partial_csl.data.demo import FASHION_MNIST_DIR, build_demo_dataset
from partial_csl.data.demo_shapes import build_shapes_dataset
from partial_csl.data.schema import default_schema
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.tools.split_csv import split_attribute_csv

CSL = dict(arch="csl", partial_loss_mode="selective", gamma_pos=0.0, gamma_neg=1.0, gamma_unann=4.0,
           likelihood_topk=3, prior_threshold=0.5, prior_epochs=3, logit_adjust="none")
HEADS = dict(arch="mtl")  # per-attribute softmax heads (under class-balanced weights unless a row says otherwise)
BALANCED = dict(HEADS, logit_adjust="balanced_softmax")
RECIPES = {  # row: train.py settings on top of the demo's flags
    # train.py's default for attribute data since 2026-12-06 (--arch auto resolves to exactly these settings)
    "CSL (ignore-mode prior stage, then selective)": CSL,
    # the default from 2026-12-06 until the TResNet-M grid (benchmarks/README.md) sent it back to CSL
    "per-attribute heads, class-balanced weights (--arch mtl)": HEADS,
    # the default until the imbalance table replaced it; the pseudo-label rows ran on top of it
    "per-attribute heads, balanced softmax (--logit-adjust balanced_softmax)": BALANCED,
    "balanced-softmax heads + teacher pseudo-labels (--pseudo-labels --pseudo-teacher ema)":
        dict(BALANCED, pseudo_labels=True, pseudo_teacher="ema"),
    "balanced-softmax heads + pseudo-labels from the better-validating weights (--pseudo-teacher validated)":
        dict(BALANCED, pseudo_labels=True, pseudo_teacher="validated"),
    "balanced-softmax heads + pseudo-labels, one threshold per attribute (--pseudo-thresholds attribute)":
        dict(BALANCED, pseudo_labels=True, pseudo_thresholds="attribute", pseudo_teacher="ema"),
    # the imbalance default: the same heads without a re-balancing, and with a sampler instead
    "per-attribute heads, plain softmax (--logit-adjust none)": dict(HEADS, logit_adjust="none"),
    "per-attribute heads, repeat-factor sampler (--sampler balanced)": dict(HEADS, sampler="balanced"),
}
DATASETS = {  # name: builder(out_dir, num_images, source) -> attributes.csv; the last is the held-out one
    "demo": lambda out, n, source: build_demo_dataset(out, num_images=n, seed=0, source=source),
    "longtail": lambda out, n, source: build_demo_dataset(out, num_images=n, seed=0, source=source, skew=1.5),
    "shapes": lambda out, n, source: build_shapes_dataset(out, num_images=n, seed=0, source=source),
}
QUICK = {"datasets": ["demo", "shapes"], "seeds": [0], "epochs": 1, "images": 120, "prior_epochs": 1}


def dataset_split(args: argparse.Namespace, name: str) -> tuple[Path, str]:
    """Build the dataset and split it once (both steps are skipped when already done)."""
    root = args.data / f"{name}_{args.images}"
    csv = DATASETS[name](root, args.images, args.source)
    split = args.out / "splits" / name
    if not (split / "test.csv").is_file():
        split_attribute_csv(csv, root / "images", split, default_schema(), ratios=(0.7, 0.1, 0.2), seed=0)
    return split, str(root / "images")


def recipe_config(args: argparse.Namespace, split: Path, images: str, recipe: dict, seed: int) -> TrainConfig:
    """``make demo``'s flags, the recipe's settings, this seed."""
    cfg = TrainConfig(train_csv=str(split / "train.csv"), val_csv=str(split / "valid.csv"), images=images,
                      model_name=args.model_name, image_size=args.image_size, batch_size=32, workers=0,
                      cache_images=True, epochs=args.epochs, lr=5e-4, augment="light", ema_decay=0.99, seed=seed,
                      device=args.device, resume=True)
    cfg = replace(cfg, **recipe)
    if cfg.prior_epochs is not None:
        cfg = replace(cfg, prior_epochs=args.prior_epochs)
    return cfg


def run_grid(args: argparse.Namespace) -> pd.DataFrame:
    """Every (seed, dataset, recipe) cell, seeds outermost so that an interrupted grid stays balanced."""
    splits = {name: dataset_split(args, name) for name in args.datasets}
    rows = []
    for seed in args.seeds:
        for name, (split, images) in splits.items():
            for recipe in args.recipes:
                cfg = recipe_config(args, split, images, RECIPES[recipe], seed)
                run_dir = args.out / "runs" / name / slug(recipe) / f"seed{seed}"
                metrics = partial(attribute_metrics, train_csv=split / "train.csv")
                result = train_and_test(cfg, run_dir, split, metrics)
                rows += long_rows(name, recipe, seed, result)
                print(f"{name:8s} seed {seed} {recipe[:40]:40s} mAP {result['overall mAP']:.2f} pattern acc "
                      f"{result['pattern accuracy']:.1f} bal. {result['pattern balanced accuracy']:.1f} "
                      f"({result['seconds']:.0f} s)", flush=True)
    return pd.DataFrame(rows)


SUMMARY = ["overall mAP", "mean accuracy", "mean balanced accuracy", "pattern accuracy", "pattern balanced accuracy",
           "pattern rare-class AP"]


def with_means(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus each cell's mean over the attributes of accuracy and of balanced accuracy."""
    cells = frame.pivot_table(index=["dataset", "row", "seed"], columns="column", values="value")
    extra = []
    for kind in ("accuracy", "balanced accuracy"):
        columns = [f"{g} {kind}" for g in default_schema().group_names]
        mean = cells[columns].mean(axis=1).rename("value").reset_index()
        extra.append(mean.assign(column=f"mean {kind}"))
    return pd.concat([frame, *extra], ignore_index=True)


def write_tables(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    frame.to_csv(args.out / ("results.csv" if args.table == "table" else f"{args.table}_results.csv"), index=False,
                 float_format="%.4f")
    frame = with_means(frame)
    lines = [f"# The attribute default end to end ({args.model_name}, {args.image_size} px, {args.epochs} epochs, "
             f"{args.images} images split 70/10/20, seeds {', '.join(map(str, args.seeds))}; test split)", "",
             "Mean ± std over the seeds; the best of each column in bold, ≈ a tie with it (within the larger std).", "",
             "## Summary", ""]
    for name in args.datasets:
        data = frame[(frame["dataset"] == name) & frame["column"].isin(SUMMARY)].rename(columns={"value": "mAP"})
        held_out = " (held out)" if name == list(DATASETS)[-1] else ""
        if not data.empty:  # (a grid still running)
            lines += [f"**{name}{held_out}**", "", *mean_std_table(data, args.recipes, SUMMARY, "mAP"), ""]
    for name in args.datasets:
        held_out = " (held out: never tuned on)" if name == list(DATASETS)[-1] else ""
        lines += attribute_tables(frame, name, args.recipes, name + held_out)
    text = "\n".join(lines)
    (args.out / f"{args.table}.md").write_text(text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/end_to_end"))
    p.add_argument("--data", type=Path, default=Path("data/end_to_end"), help="where the datasets are built")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES), metavar="RECIPE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--table", default="table", help="OUT/TABLE.md (and its results CSV): name a subset's table so "
                                                    "that it does not replace the full grid's")
    p.add_argument("--images", type=int, default=1200, help="images per dataset")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--prior-epochs", type=int, default=3, help="CSL's ignore-mode prior stage")
    p.add_argument("--model-name", default="resnet18", help="resnet18: a CPU-sized network trained from scratch")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--source", type=Path, default=FASHION_MNIST_DIR)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="2 datasets of 120 images, 1 seed, 1 epoch")
    args = p.parse_args(argv)
    if Path(args.table).name != args.table or args.table in ("", ".", ".."):
        p.error(f"--table {args.table!r}: a file name, not a path (the table goes to --out)")
    if args.quick:
        args.datasets, args.seeds, args.epochs, args.images, args.prior_epochs = (
            QUICK[k] for k in ("datasets", "seeds", "epochs", "images", "prior_epochs"))
    args.datasets = [d for d in DATASETS if d in args.datasets]  # the held-out one last
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_tables(run_grid(args), args))


if __name__ == "__main__":
    main()
