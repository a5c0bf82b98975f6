"""Our training step against a bare timm loop, and the data pipeline against the model step.

    .venv/bin/python benchmarks/train_overhead.py                       # tresnet_m, 224 px, batch 16
    .venv/bin/python benchmarks/train_overhead.py --model resnet18 --size 128 --batch 32

Same model, batch and image size, data already in memory, in one process:

* ``ours``: :func:`partial_csl.engine.training.trainer.train_one_epoch`: the selective P-ASL loss, Adam with two
  parameter groups, OneCycle stepped per iteration, EMA update, gradient scaler, non-finite check, progress bar;
* ``bare``: ``timm.create_model`` + ``BCEWithLogitsLoss`` + ``Adam``, nothing else.

in float32 and in bfloat16 autocast. Then the data pipeline alone (PNG decode + the training augmentation of the demo
images, through a DataLoader with the default 2 workers) against the model's step time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import timm
import torch

from partial_csl.cli import make_parser
from partial_csl.data.schema import default_schema
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup.build import build_criterion, build_optimizer
from partial_csl.engine.setup.run_data import LabelSpace, make_loader, read_attribute_split
from partial_csl.engine.training.trainer import train_one_epoch
from partial_csl.models import create_model


def batches(n: int, batch: int, size: int, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(batch, 3, size, size, generator=g),
             torch.randint(-1, 2, (batch, classes), generator=g).float()) for _ in range(n)]


def time_ours(model_name: str, data, amp_dtype) -> float:
    from timm.utils import ModelEmaV3

    torch.manual_seed(0)
    model = create_model(model_name, data[0][1].shape[1], norm="torch")
    cfg = TrainConfig(arch="csl", logit_adjust="none", likelihood_topk=3, gamma_unann=4)
    optimizer = build_optimizer(model, 2e-4, 1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-4, total_steps=len(data) + 1, pct_start=0.2)
    classes = data[0][1].shape[1]
    criterion = build_criterion(cfg, np.full(classes, 0.3), LabelSpace([f"c{i}" for i in range(classes)]))
    ema = ModelEmaV3(model, decay=0.9997)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    start = time.perf_counter()
    train_one_epoch(model, data, criterion, optimizer, scheduler, torch.device("cpu"), epoch=0, stage="bench",
                    ema=ema, scaler=scaler, amp_dtype=amp_dtype, grad_clip=0.0)
    return len(data) * data[0][0].shape[0] / (time.perf_counter() - start)


def time_bare(model_name: str, data, amp_dtype) -> float:
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=data[0][1].shape[1])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start = time.perf_counter()
    for images, targets in data:
        with torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        loss = loss_fn(logits.float(), targets.clamp(min=0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(data) * data[0][0].shape[0] / (time.perf_counter() - start)


def time_loader(csv_path: Path, images: Path, size: int, batch: int, workers: int, n_batches: int) -> float:
    split = read_attribute_split(csv_path, images, default_schema())
    loader = make_loader(split.dataset(size, train=True, augment="csl"), batch, workers, train=True)
    start, seen = time.perf_counter(), 0
    for i, (x, _) in enumerate(loader):
        seen += len(x)
        if i + 1 >= n_batches:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--model", default="tresnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="timed steps per measurement (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=2, help="alternate ours/bare this many times, keep the best")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--demo-csv", type=Path, default=Path("outputs/demo/split/train.csv"))
    p.add_argument("--demo-images", type=Path, default=Path("data/demo/images"))
    args = p.parse_args()
    classes = default_schema().num_classes
    data = batches(args.steps, args.batch, args.size, classes)
    warm = batches(2, args.batch, args.size, classes)
    print(f"{args.model}, {args.size} px, batch {args.batch}, {args.steps} steps, CPU with "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| precision | ours img/s | bare timm img/s | ours / bare |")
    print("|---|---:|---:|---:|")
    step_rate = None
    for label, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        ours = bare = 0.0
        for _ in range(args.repeats):
            time_ours(args.model, warm, dtype)
            ours = max(ours, time_ours(args.model, data, dtype))
            time_bare(args.model, warm, dtype)
            bare = max(bare, time_bare(args.model, data, dtype))
        step_rate = step_rate or ours
        print(f"| {label} | {ours:.1f} | {bare:.1f} | {100 * ours / bare:.1f} % |", flush=True)
    if args.demo_csv.is_file():
        rate = time_loader(args.demo_csv, args.demo_images, args.size, args.batch, args.workers, 2 * args.steps)
        verdict = "keeps up" if rate >= step_rate else "is the bottleneck"
        print(f"\ndata pipeline (decode + Cutout + RandAugment, {args.workers} workers): {rate:.1f} img/s vs the "
              f"float32 step {step_rate:.1f} img/s: the loader {verdict}")
    else:
        print(f"\n(no {args.demo_csv}: run `make demo` first to time the data pipeline)")


if __name__ == "__main__":
    main()
