"""Heads (linear, ML-Decoder with fixed or learnt queries, label graph) on one frozen backbone, from cached
embeddings, over several seeds; and what the cache saves against end-to-end training of the same head.

    .venv/bin/python benchmarks/heads_compare.py --backbone outputs/demo/run/checkpoints/best.pt   # after make demo
    .venv/bin/python benchmarks/heads_compare.py --backbone B.pt --seeds 0 1 2 --epochs 15 --end-to-end-epochs 3
    .venv/bin/python benchmarks/heads_compare.py --backbone R.pt --model-name resnet18 --coco data/coco_bench

Every head trains on the same backbone features (``train.py --freeze-backbone --cache-embeddings`` with one shared
``--embeddings-dir``; the backbone weights come from ``--backbone``, a checkpoint of this project or any weights file
``--model-path`` takes). Reported on the test split: mAP mean and standard deviation over the seeds, the head's
parameters, head-only training time per run, and inference images/s of the whole model. With
``--end-to-end-epochs`` a last row trains the ML-Decoder head end to end (backbone included), with its own time and
mAP, to show what the two-stage sweep saves. The backbone's own classifier is dropped first, so the linear head
starts from scratch like the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timing import images_per_second

from partial_csl.cli import make_parser
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.tools.validate import validate_checkpoint
from partial_csl.engine.training.trainer import run_training

HEADS = {  # row: the settings of its head
    "linear": {"head": "linear"},
    "ml_decoder": {"head": "ml_decoder"},  # fixed queries, as the official head
    "ml_decoder_learnable": {"head": "ml_decoder", "decoder_learnable_queries": True},
    "label_graph": {"head": "label_graph"},
}


def head_parameters(model: torch.nn.Module) -> int:
    head = model.head if hasattr(model, "head") and hasattr(model, "backbone") else model.get_classifier()
    return sum(p.numel() for p in head.parameters())


def backbone_weights(path: str, out: Path) -> str:
    """The backbone of a checkpoint of this project, without its classifier (kept in our format: ABN semantics)."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    classifier = model.get_classifier() if not hasattr(model, "backbone") else None
    prefix = next((n for n, m in model.named_modules() if m is classifier), None)
    state = {k: v for k, v in ckpt["model"].items() if prefix is None or not k.startswith(f"{prefix}.")}
    target = out / "backbone.pt"
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint({**ckpt, "model": state}, target)
    return str(target)


def one_run(cfg: TrainConfig, out: Path, test: dict) -> dict:
    started = time.perf_counter()
    summary = run_training(cfg)
    seconds = time.perf_counter() - started
    report = validate_checkpoint(summary["best_checkpoint"], out / "test_report", **test)
    model = model_from_checkpoint(load_checkpoint(summary["best_checkpoint"]))
    batch = torch.rand(32, 3, cfg.image_size, cfg.image_size)
    history = pd.read_csv(Path(summary["metrics_csv"]))
    trained = cfg.epochs * json.loads((out / "config.json").read_text())["num_train_images"]
    # training images per second: the epochs' own time (validation included), not the run's start-up
    return {"mAP": report["mAP"], "seconds": seconds, "head_params": head_parameters(model),
            "train_img_s": trained / history["seconds"].sum(),
            "infer_img_s": images_per_second(model, batch, steps=3, warmup=1)}


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--backbone", required=True, help="weights of the backbone (e.g. the demo's best.pt)")
    p.add_argument("--model-name", default="tresnet_m")
    p.add_argument("--split", type=Path, default=Path("outputs/demo/split"))
    p.add_argument("--images", default="data/demo/images")
    p.add_argument("--coco", help="a COCO-format root (2014 layout) instead of the attribute split: val is the test")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/heads"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--end-to-end-epochs", type=int, default=0, help="0: skip the end-to-end row")
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.coco:
        data = {"dataset": "coco", "data": args.coco}
        test = {"dataset": "coco", "data_root": args.coco}
    else:
        data = {"train_csv": str(args.split / "train.csv"), "val_csv": str(args.split / "valid.csv"),
                "images": args.images}
        test = {"csv_path": str(args.split / "test.csv"), "images": args.images}
    base = TrainConfig(**data, model_name=args.model_name,
                       model_path=backbone_weights(args.backbone, args.out),
                       image_size=args.image_size, batch_size=64, epochs=args.epochs, lr=1e-3, ema_decay=0.0,
                       arch="csl", partial_loss_mode="negative", freeze_backbone=True, cache_embeddings=True,
                       embeddings_dir=str(args.out / "embeddings"), decoder_embed=256, overwrite=True)
    results = {}
    for head in args.heads:
        for seed in args.seeds:
            run = args.out / f"{head}-seed{seed}"
            results[f"{head}/{seed}"] = one_run(replace(base, **HEADS[head], seed=seed, output_dir=str(run)), run, test)
            (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.end_to_end_epochs:
        run = args.out / "ml_decoder-end-to-end"
        cfg = replace(base, head="ml_decoder", freeze_backbone=False, cache_embeddings=False,
                      epochs=args.end_to_end_epochs, lr=5e-4, batch_size=32, augment="light", output_dir=str(run))
        results["ml_decoder end to end/0"] = one_run(cfg, run, test)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, args)


def print_table(results: dict, args: argparse.Namespace) -> None:
    print(f"# Heads on a frozen {args.model_name} backbone ({args.backbone}), {args.image_size} px, test split\n")
    print("| head | mAP (mean ± std) | seeds | head params | seconds per run | train img/s | inference img/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = dict.fromkeys(key.split("/")[0] for key in results)
    for name in names:
        rows = [v for k, v in results.items() if k.split("/")[0] == name]
        maps = np.array([r["mAP"] for r in rows])
        spread = f" ± {maps.std(ddof=1):.2f}" if len(maps) > 1 else ""
        print(f"| {name} | {maps.mean():.2f}{spread} | {len(rows)} | {rows[0]['head_params']:,} | "
              f"{np.mean([r['seconds'] for r in rows]):.0f} | {np.mean([r['train_img_s'] for r in rows]):.0f} | "
              f"{np.mean([r['infer_img_s'] for r in rows]):.0f} |")


if __name__ == "__main__":
    main()
