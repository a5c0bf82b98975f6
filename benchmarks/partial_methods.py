"""Partial- and missing-label methods x labelling protocols x seeds, on a COCO-format set: one command, resumable.

    .venv/bin/python benchmarks/partial_methods.py                  # the default grid on the shipped set, ~1 h, CPU
    .venv/bin/python benchmarks/partial_methods.py --quick          # a smoke test of the machinery, minutes
    .venv/bin/python benchmarks/partial_methods.py --coco-set uniform --protocols "FPC(100)" --end-to-end
    .venv/bin/python benchmarks/partial_methods.py --coco-set scenes --end-to-end    # the held-out third set
    .venv/bin/python benchmarks/partial_methods.py --data /data/coco2014 --backbone tresnet_m_miil_21k.pth \\
        --model-name tresnet_m --image-size 448 --epochs 30 --end-to-end   # a GPU, the full recipe

Every method (a ``--loss`` with its settings, see METHODS) is trained under every protocol (a
``--simulate_partial_type`` with its parameter, see PROTOCOLS) with every seed; the seed also draws the simulation,
so a seed is a new labelling as well as a new initialisation. Cells are the best validation mAP over the epochs (the
CSL convention; validation keeps its full labels).

By default the grid trains heads on a *frozen* backbone from cached embeddings (``--freeze-backbone``): each run is
seconds, so a 3-seed grid fits a CPU. The backbone is ResNet-18 trained first on a disjoint pretraining set (one
product per image, photos the benchmark never uses: ``build_pretraining_set``), as an ImageNet backbone is for COCO,
so it has seen none of the benchmark's images or labels. ``--end-to-end`` trains whole networks instead.

Writes ``OUT/results.csv`` (one row per run), ``OUT/table.md`` (mean ± standard deviation per cell, best of each
column in bold, and the prior estimates' quality per protocol) and one folder per run, whose checkpoints are deleted
once its row is written (a run's ``result.json`` marks it done, so a re-run skips it). The tables hold every finished
cell in OUT trained with the grid's settings, whichever invocation trained it: a run of a few rows adds to them.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from grid import finished_cell, seeds_on_disk, train_cell
from scipy.stats import spearmanr
from seed_tables import mean_std_table

from partial_csl.cli import make_parser
from partial_csl.data.demo_coco import build_coco_benchmark, build_pretraining_set
from partial_csl.data.demo_coco_scenes import build_coco_scenes
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.training.trainer import run_training
from partial_csl.safe_io import atomic_write_text

NEGATIVE_ASL = dict(loss="partial_asl", partial_loss_mode="negative", gamma_pos=1, gamma_neg=4, gamma_unann=4,
                    clip=0.05)
SELECTIVE = dict(loss="partial_asl", partial_loss_mode="selective")  # train.py's defaults otherwise
METHODS = {  # row: settings on top of the grid's base config
    "Ignore (BCE on annotated)": dict(loss="bce"),
    "AN (assume negative)": dict(loss="an"),
    "WAN": dict(loss="wan"),
    "AN-LS": dict(loss="an_ls"),
    "EPR": dict(loss="epr"),
    "ROLE": dict(loss="role"),
    "Hill": dict(loss="hill"),
    "SPLC": dict(loss="splc"),
    "LL-R": dict(loss="ll_r"),
    "LL-Ct": dict(loss="ll_ct"),
    "LL-Cp": dict(loss="ll_cp"),
    "Negative ASL (4,1)": NEGATIVE_ASL,
    "CSL selective (top-5 per batch)": SELECTIVE,
    "CSL selective, em priors": dict(SELECTIVE, prior_estimate="em"),
    "CSL selective, adaptive top-k": dict(SELECTIVE, likelihood_topk_scope="adaptive"),
    # under FPC the ignore-mode model learns each class's 50 % annotated rate: EM undoes it before k = Σ prior
    "CSL selective, adaptive top-k, em priors": dict(SELECTIVE, likelihood_topk_scope="adaptive", prior_estimate="em"),
    "Negative ASL (4,1) + pseudo-labels": dict(NEGATIVE_ASL, pseudo_labels=True, pseudo_teacher="ema"),
    "Ignore (BCE on annotated) + pseudo-labels": dict(loss="bce", pseudo_labels=True, pseudo_teacher="ema"),
    # end to end the EMA teacher lags (EMA 0.99 over ~23 steps an epoch): a frozen copy of the better-validating
    # weights instead
    "Ignore (BCE on annotated) + pseudo-labels, validated teacher": dict(loss="bce", pseudo_labels=True,
                                                                         pseudo_teacher="validated"),
    "Negative ASL (4,1) + pseudo-labels, validated teacher": dict(NEGATIVE_ASL, pseudo_labels=True,
                                                                  pseudo_teacher="validated"),
    # CSL's README trains FPC with stronger focusing than train.py's defaults (γ+ 0, γ- 1, γu 2)
    "CSL selective, its README's FPC focusing (0,3,4)": dict(SELECTIVE, gamma_pos=0, gamma_neg=3, gamma_unann=4),
    # negative ASL's mode under CSL's default focusing: is a gap to CSL selective the focusing or the selection?
    "Negative, CSL's focusing (0,1,2)": dict(loss="partial_asl", partial_loss_mode="negative"),
    # CSL selective less its prior step: only the top-5 per batch ignored (no prior stage)
    "CSL selective, top-5 only (no prior step)": dict(SELECTIVE, prior_threshold=0),
}
PROTOCOLS = {  # column: (simulator, parameter)
    "FPC(200)": ("fpc", 200),
    # the uniform set's classes have 151-188 positives, all kept by FPC(200); 100 leaves ~1 unknown positive an image
    "FPC(100)": ("fpc", 100),
    "RPS(0.5)": ("rps", 0.5),
    "known(0.2)": ("known", 0.2),
    "missing_positives(0.4)": ("missing_positives", 0.4),
    "single_positive": ("single_positive", 0),
}
COCO_SETS = {  # --coco-set: the generated set's folder and its builder (skips a set already built)
    "longtail": ("data/coco_bench", build_coco_benchmark),  # Zipf category frequencies, 20 categories
    "uniform": ("data/coco_bench_uniform", partial(build_coco_benchmark, zipf_exponent=0.0)),
    "scenes": ("data/coco_bench_scenes", build_coco_scenes),  # 30 categories that co-occur by scene
}
QUICK = {"methods": ["AN (assume negative)", "ROLE", "LL-Cp", "CSL selective, adaptive top-k"],
         "protocols": ["FPC(200)", "single_positive"], "seeds": [0], "epochs": 2}


def pretrained_backbone(args: argparse.Namespace, out: Path) -> str:
    """Weights of a backbone trained on the disjoint pretraining set (trained here on first use)."""
    root = build_pretraining_set(args.pretraining_data, n_train=args.pretraining_images)
    cfg = TrainConfig(dataset="coco", data=str(root), model_name=args.model_name, image_size=args.image_size,
                      epochs=args.pretraining_epochs, batch_size=64, lr=1e-3, augment="light", ema_decay=0.0,
                      partial_loss_mode="negative", loss="bce", workers=0, cache_images=True,
                      output_dir=str(out / "backbone"), resume=True, arch="csl", logit_adjust="none")
    best = out / "backbone" / "checkpoints" / "best.pt"
    if not (out / "backbone" / "summary.json").is_file():
        print(f"training the backbone on {root} ({args.pretraining_epochs} epochs) ...", flush=True)
        run_training(cfg)
    return str(best)


def base_config(args: argparse.Namespace, out: Path) -> TrainConfig:
    common = dict(dataset="coco", data=args.data, model_name=args.model_name, image_size=args.image_size,
                  epochs=args.epochs, batch_size=args.batch_size, workers=0, device=args.device, resume=True,
                  loss_reduction="mean", arch="csl", logit_adjust="none")  # resolved: compared with saved cells
    if args.end_to_end:
        return TrainConfig(**common, model_path=args.backbone, lr=args.lr or 1e-3, augment="light", ema_decay=0.99,
                           cache_images=True)
    backbone = args.backbone or pretrained_backbone(args, out)
    return TrainConfig(**common, model_path=backbone, lr=args.lr or 1e-3, ema_decay=0.0, freeze_backbone=True,
                       cache_embeddings=True, embeddings_dir=str(out / "embeddings"))


def prior_quality(run_dir: Path) -> list[dict]:
    """Spearman and mean absolute error against the true frequencies of the run's prior estimates, if it had any."""
    path = run_dir / "priors" / "prior_ignore.csv"
    if not path.is_file():
        return []
    priors = pd.read_csv(path)
    truth = pd.read_csv(run_dir / "simulation" / "simulation_summary.csv")["true_frequency"].to_numpy()
    estimates = {"annotated positive rate (no model)": priors["annotated_rate"].to_numpy(),
                 "mean posterior (CSL)": priors["mean_posterior"].to_numpy(),
                 f"{priors['method'].iloc[0]} (the run's estimate)": priors["prior"].to_numpy()}
    return [{"estimator": name, "spearman": float(spearmanr(value, truth).statistic),
             "mae": float(np.abs(value - truth).mean())} for name, value in estimates.items()]


def pseudo_label_counts(run_dir: Path) -> dict:
    """Pseudo-labels made over the run and their precision against the simulation's truth (under --pseudo-labels)."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    if "pseudo_positives" not in metrics:
        return {}
    out = {}
    for kind in ("positives", "negatives"):
        made = metrics[f"pseudo_{kind}"].fillna(0)
        right = (metrics[f"pseudo_{kind}_precision"].fillna(0) * made).sum()
        out[f"pseudo_{kind}"] = int(made.sum())
        out[f"pseudo_{kind}_precision"] = float(right / made.sum()) if made.sum() else None
    return out


def one_run(cfg: TrainConfig, run_dir: Path) -> dict:
    """One cell (resumable, see grid.train_cell): best validation mAP, the prior estimates' quality and, under
    --pseudo-labels, how many pseudo-labels were made and how many rightly."""
    return train_cell(cfg, run_dir, lambda summary: {"mAP": summary["best_val_mAP"],
                                                     "best_weights": summary["best_weights"],
                                                     "priors": prior_quality(run_dir),
                                                     **pseudo_label_counts(run_dir)})


def cell_folder(out: Path, protocol: str, method: str) -> Path:
    """The folder of one row and column's cells (a ``seed<N>`` folder per seed)."""
    folder = f"{protocol}/{method}".replace(" ", "_").replace(",", "").replace("(", "_").replace(")", "")
    return out / "runs" / folder


def cell_settings(base: TrainConfig, protocol: str, method: str, seed: int) -> TrainConfig:
    kind, param = PROTOCOLS[protocol]
    return replace(base, simulate_partial_type=kind, simulate_partial_param=param, seed=seed, **METHODS[method])


def result_row(method: str, protocol: str, seed: int, result: dict) -> dict:
    return {"method": method, "protocol": protocol, "seed": seed, "mAP": result["mAP"],
            "seconds": round(result["seconds"], 1), **{k: v for k, v in result.items() if k.startswith("pseudo_")}}


def run_grid(args: argparse.Namespace, base: TrainConfig, out: Path) -> None:
    """Train the requested cells (finished ones are read, not trained again), with progress."""
    done, started, total = 0, time.time(), len(args.protocols) * len(args.seeds) * len(args.methods)
    for protocol in args.protocols:
        for seed in args.seeds:
            for method in args.methods:
                cfg = cell_settings(base, protocol, method, seed)
                result = one_run(cfg, cell_folder(out, protocol, method) / f"seed{seed}")
                done += 1
                print(f"[{time.time() - started:5.0f}s {done}/{total}] {protocol:24s} seed {seed} "
                      f"{method:34s} mAP {result['mAP']:.2f}", flush=True)


def finished_grid(base: TrainConfig, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every cell in ``out`` finished with this grid's settings, whichever invocation trained it (a run of a few rows
    or seeds adds to the tables, it does not replace them); cells of other settings are left out."""
    rows, prior_rows = [], []
    for protocol in PROTOCOLS:
        for method in METHODS:
            folder = cell_folder(out, protocol, method)
            for seed in seeds_on_disk(folder):
                result = finished_cell(cell_settings(base, protocol, method, seed), folder / f"seed{seed}")
                if result is not None:
                    rows.append(result_row(method, protocol, seed, result))
                    prior_rows += [{"protocol": protocol, "seed": seed, "method": method, **q}
                                   for q in result["priors"]]
    return pd.DataFrame(rows), pd.DataFrame(prior_rows)


def write_tables(results: pd.DataFrame, priors: pd.DataFrame, args: argparse.Namespace, out: Path) -> str:
    atomic_write_text(out / "results.csv", results.to_csv(index=False, float_format="%.4f"))
    methods = [m for m in METHODS if m in set(results["method"])]
    protocols = [c for c in PROTOCOLS if c in set(results["protocol"])]
    seeds = ", ".join(map(str, sorted(set(results["seed"]))))
    setup = "end to end" if args.end_to_end else f"a frozen {args.model_name} backbone (cached embeddings)"
    lines = [f"# Partial-label methods on `{args.data}`", "",
             f"{setup}, {args.image_size} px, {args.epochs} epochs, seeds {seeds}; best validation mAP, mean ± std "
             "over the seeds. The best mean of each column is in bold; ≈ marks a tie with it (the gap is within "
             "the larger of the two standard deviations). Every finished cell of these settings in the folder is "
             "here, whichever command trained it.", ""]
    lines += mean_std_table(results.rename(columns={"method": "row", "protocol": "column"}), methods, protocols, "mAP")
    if len(priors):
        priors = priors.rename(columns={"estimator": "row", "protocol": "column"})
        estimators = list(dict.fromkeys(priors["row"]))
        for value, label, higher in (("spearman", "Spearman rho", True), ("mae", "mean absolute error", False)):
            lines += ["", f"## Prior estimates vs the true class frequencies: {label} (every selective run)", ""]
            lines += mean_std_table(priors, estimators, [c for c in protocols if c in set(priors["column"])],
                                    value, higher)
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", text)
    atomic_write_text(out / "priors.csv", priors.to_csv(index=False, float_format="%.4f"))
    return text


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--data", help="a COCO 2014 layout root (default: the --coco-set, built here on first use)")
    p.add_argument("--coco-set", choices=list(COCO_SETS), default="longtail",
                   help="the generated set to use without --data: Zipf (long-tailed) or uniform category frequencies, "
                        "or scenes (30 categories co-occurring by scene, data/demo_coco_scenes.py)")
    p.add_argument("--out", type=Path,
                   help="default outputs/benchmarks/partial_methods (_uniform, _scenes on those sets)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS), metavar="PROTOCOL")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default 1e-3")
    p.add_argument("--model-name", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--backbone", help="pretrained weights (default: trained here on the pretraining set)")
    p.add_argument("--pretraining-data", default="data/coco_pretraining")
    p.add_argument("--pretraining-images", type=int, default=4000)
    p.add_argument("--pretraining-epochs", type=int, default=8)
    p.add_argument("--end-to-end", action="store_true", help="train whole networks (a GPU's grid)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="a small grid (4 methods, 2 protocols, 1 seed, 2 epochs)")
    args = p.parse_args()
    if args.quick:
        args.methods, args.protocols, args.seeds, args.epochs = (QUICK[k] for k in ("methods", "protocols", "seeds",
                                                                                    "epochs"))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    suffix = f"_{args.coco_set}" if args.data is None and args.coco_set != "longtail" else ""
    args.out = args.out or Path(f"outputs/benchmarks/partial_methods{suffix}")
    if args.data is None:
        args.data, build = COCO_SETS[args.coco_set]
        build(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_config(args, args.out)
    run_grid(args, base, args.out)
    results, priors = finished_grid(base, args.out)
    print(write_tables(results, priors, args, args.out) if len(results) else f"no finished cell in {args.out}")


if __name__ == "__main__":
    main()
