"""The CSL benchmark table on a COCO-format dataset: loss modes x partial-label simulations.

    .venv/bin/python benchmarks/partial_modes.py                          # the shipped Fashion-MNIST COCO set, CPU
    .venv/bin/python benchmarks/partial_modes.py --data /data/coco2014 --image-size 448 --epochs 30 \\
        --model-path pretrained_weights/tresnet_m_miil_21k.pth --fpc 1000 --rps 0.5 --batch-size 64

Rows (CSL README conventions): Ignore CE, Negative CE, Negative ASL (4,1), Selective P-ASL with the README's gammas
(FPC: gamma_unann 4, gamma_neg 3, gamma_pos 0; RPS: gamma_unann 4, gamma_neg 1, gamma_pos 0; top-k 5; prior
threshold 0.5) with priors from the Ignore CE model estimated two ways (``mean``, the CSL average, and ``em``, the
label-shift correction), and Selective at each extra ``--thresholds``. Columns: FPC(n) and RPS(p). Cells: mAP on the
fully labelled validation set (partial-aware mAP, equal to the plain one there). Every run shares the seed, data,
model, epochs and image size. The Ignore CE model of each column is CSL's temporary model: its priors feed the
selective rows, and their quality (Spearman rho against the true class frequencies) is reported next to the naive
count of annotations. Writes ``OUT/table.md``, ``OUT/results.csv`` and ``OUT/priors_<column>.csv``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from partial_csl.cli import make_parser
from partial_csl.data.demo_coco import build_coco_benchmark
from partial_csl.engine.checkpoint import checkpoint_info, load_checkpoint, model_from_checkpoint
from partial_csl.engine.config import TrainConfig, resolve_device
from partial_csl.engine.inference.probabilities import predict_probabilities
from partial_csl.engine.setup.formats import load_training_data
from partial_csl.engine.setup.run_data import make_loader
from partial_csl.engine.training.trainer import run_training
from partial_csl.prior_estimates import priors_from_probabilities
from partial_csl.priors import prior_quality, save_priors

BASELINES = [  # (row, run folder, settings)
    ("Ignore, CE", "ignore_ce", dict(partial_loss_mode="ignore", gamma_pos=0, gamma_neg=0, gamma_unann=0, clip=0)),
    ("Negative, CE", "negative_ce", dict(partial_loss_mode="negative", gamma_pos=0, gamma_neg=0, gamma_unann=0,
                                         clip=0)),
    ("Negative, ASL (4,1)", "negative_asl", dict(partial_loss_mode="negative", gamma_pos=1, gamma_neg=4,
                                                 gamma_unann=4, clip=0.05)),
]
SELECTIVE_GAMMAS = {"fpc": dict(gamma_pos=0, gamma_neg=3, gamma_unann=4), "rps": dict(gamma_pos=0, gamma_neg=1,
                                                                                      gamma_unann=4)}


def run(cfg: TrainConfig, out: Path) -> dict:
    summary_path = out / "summary.json"
    if summary_path.is_file():  # finished earlier: the benchmark resumes where it stopped
        return json.loads(summary_path.read_text())
    return run_training(replace(cfg, output_dir=str(out), resume=True))


def column_priors(cfg: TrainConfig, ignore_dir: Path, column: str, out: Path) -> tuple[dict, list[dict]]:
    """Priors of the column's Ignore CE model (mean and em) and their quality against the true frequencies."""
    device = resolve_device(cfg.device)
    labels, train, _ = load_training_data(replace(cfg, output_dir=str(ignore_dir)), ignore_dir)
    ckpt = load_checkpoint(ignore_dir / "checkpoints" / "best.pt")
    model = model_from_checkpoint(ckpt, device)
    loader = make_loader(train.dataset(checkpoint_info(ckpt).data_config, train=False), cfg.batch_size, cfg.workers,
                         train=False)
    paths, rows = {}, []
    naive = (train.targets == 1).sum(axis=0).astype(float)
    probs = predict_probabilities(model, loader, device, None, desc="estimating priors")
    for method in ("mean", "em"):  # as the prior stage does (engine.training.trainer)
        priors, details = priors_from_probabilities(probs, train.targets, method)
        path = out / f"priors_{column}_{method}.csv"
        save_priors(path, labels.class_names, priors, details.pop("n_images"), method, details)
        paths[method] = str(path)
        quality = prior_quality(priors, labels.true_frequency, labels.class_names)
        rows.append({"column": column, "estimate": f"ignore-mode model, {method}", "spearman": quality["spearman"],
                     "pearson": float(np.corrcoef(priors, labels.true_frequency)[0, 1]), "top10": quality["top"]})
    quality = prior_quality(naive, labels.true_frequency, labels.class_names)
    rows.append({"column": column, "estimate": "naive count of annotated positives", "spearman": quality["spearman"],
                 "pearson": float(np.corrcoef(naive, labels.true_frequency)[0, 1]), "top10": quality["top"]})
    return paths, rows


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--data", default="data/coco_bench", help="COCO 2014 layout root (built here if it is the default)")
    p.add_argument("--out", default="outputs/benchmarks/partial_modes")
    p.add_argument("--fpc", type=int, nargs="*", default=[200], help="FPC columns: positives/negatives kept per class")
    p.add_argument("--rps", type=float, nargs="*", default=[0.5], help="RPS columns: probability of hiding a label")
    p.add_argument("--thresholds", type=float, nargs="*", default=[0.1], help="extra selective prior thresholds")
    p.add_argument("--model-name", default="resnet18", help="resnet18 keeps the CPU grid under an hour; any timm name")
    p.add_argument("--model-path", default=None)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.data == "data/coco_bench":
        build_coco_benchmark(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(dataset="coco", data=args.data, model_name=args.model_name, model_path=args.model_path,
                       image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       workers=args.workers, seed=args.seed, device=args.device, augment="light", ema_decay=0.99,
                       likelihood_topk=5, prior_threshold=0.5, loss_reduction="mean")
    columns = [("fpc", n, f"FPC({n})") for n in args.fpc] + [("rps", r, f"RPS({r})") for r in args.rps]
    results, prior_rows, started = [], [], time.time()
    for kind, param, label in columns:
        cfg = replace(base, simulate_partial_type=kind, simulate_partial_param=param)
        tag = label.replace("(", "_").replace(")", "")
        for name, folder, settings in BASELINES:
            summary = run(replace(cfg, **settings), out / tag / folder)
            results.append({"row": name, "column": label, **_scores(summary)})
        ignore_dir = out / tag / "ignore_ce"
        priors, quality = column_priors(cfg, ignore_dir, tag, out)
        prior_rows += quality
        for method in ("mean", "em"):
            for threshold in [0.5, *args.thresholds]:
                name = f"Selective, P-ASL ({method} priors, threshold {threshold})"
                settings = dict(partial_loss_mode="selective", prior_path=priors[method], prior_threshold=threshold,
                                **SELECTIVE_GAMMAS[kind])
                summary = run(replace(cfg, **settings), out / tag / f"selective_{method}_{threshold}")
                results.append({"row": name, "column": label, **_scores(summary)})
        print(f"[{time.time() - started:.0f}s] {label} done", flush=True)
    write_tables(results, prior_rows, args, out, time.time() - started)


def _scores(summary: dict) -> dict:
    report = load_checkpoint(summary["best_checkpoint"])["metrics"]
    return {"mAP": report["mAP"], "mAP_unknown_as_negative": report["mAP_unknown_as_negative"],
            "weights": summary["best_weights"]}


def write_tables(results: list[dict], prior_rows: list[dict], args, out: Path, seconds: float) -> None:
    frame = pd.DataFrame(results)
    frame.to_csv(out / "results.csv", index=False, float_format="%.2f")
    table = frame.pivot(index="row", columns="column", values="mAP")
    table = table.loc[list(dict.fromkeys(frame["row"])), list(dict.fromkeys(frame["column"]))]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    lines = [f"# Partial-label loss modes on `{args.data}`", "",
             f"{args.model_name}, {args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
             f"seed {args.seed}, {device}; {seconds / 60:.0f} min in all. Cells: validation mAP (full labels).", "",
             "| method | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for row, values in table.iterrows():
        lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines += ["", "## Prior estimates of the Ignore CE model vs the true class frequencies", "",
              "| column | estimate | Spearman rho | Pearson r |", "|---|---|---:|---:|"]
    for r in prior_rows:
        lines.append(f"| {r['column']} | {r['estimate']} | {r['spearman']:.3f} | {r['pearson']:.3f} |")
    for r in prior_rows:
        lines += ["", f"Top 10, {r['column']}, {r['estimate']}:", "",
                  "| rank | estimated class | estimate | true class | true frequency |", "|---:|---|---:|---|---:|"]
        lines += [f"| {t['rank']} | {t['estimated_class']} | {t['estimated_prior']:.3f} | {t['true_class']} | "
                  f"{t['true_frequency']:.3f} |" for t in r["top10"]]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    first_top10 = next(i for i, line in enumerate(lines) if line.startswith("Top 10"))
    print("\n".join(lines[:first_top10]))


if __name__ == "__main__":
    main()
