"""Where one epoch of ``make demo`` spends its time, piece by piece, on this machine.

    .venv/bin/python benchmarks/demo_epoch_profile.py [--split outputs/demo/split --images data/demo/images]

With the demo's settings (TResNet-M, 64 px, batch 32, light augmentation) it times, each alone: reading the training
set through the DataLoader (decoding PNGs with 0 or 2 workers, or from the in-memory cache), one training step on
ready tensors (float32, bfloat16 autocast, channels_last), evaluating the validation split, and writing a checkpoint.
The sum says what an epoch costs; the rows say what to change.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import torch
from timm.utils import ModelEmaV3

from partial_csl.cli import make_parser
from partial_csl.data.schema import default_schema
from partial_csl.data.transforms import resolve_data_config
from partial_csl.engine.setup.build import build_optimizer
from partial_csl.engine.setup.run_data import make_loader, read_attribute_split
from partial_csl.losses import PartialSelectiveLoss
from partial_csl.models import create_model


def seconds(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def loader_seconds(split, data_config, batch: int, workers: int, cache: bool) -> float:
    split.cache = None
    if cache:
        split.cache_images(data_config)
    dataset = split.dataset(data_config, train=True, augment="light")
    loader = make_loader(dataset, batch, workers, train=True)
    return seconds(lambda: [None for _ in loader])


def step_seconds(model, batch: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype | None, steps: int) -> float:
    criterion = PartialSelectiveLoss("negative", reduction="mean")
    optimizer = build_optimizer(model, 1e-4, 1e-4)
    ema = ModelEmaV3(model, decay=0.99)

    def step():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(batch)
        loss = criterion(logits.float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)

    model.train()
    step()
    return seconds(step, steps)


@torch.inference_mode()
def eval_seconds(model, batch: torch.Tensor, dtype: torch.dtype | None, n_images: int) -> float:
    model.eval()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        model(batch)
        per_batch = seconds(lambda: model(batch), 3)
    return per_batch * n_images / len(batch)


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--split", default="outputs/demo/split")
    p.add_argument("--images", default="data/demo/images")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    schema = default_schema()
    train = read_attribute_split(Path(args.split) / "train.csv", args.images, schema)
    val = read_attribute_split(Path(args.split) / "valid.csv", args.images, schema)
    data_config = resolve_data_config("tresnet_m", args.image_size)
    n_steps = len(train) // args.batch_size
    rows = []
    for workers, cache in ((2, False), (0, False), (0, True)):
        total = loader_seconds(train, data_config, args.batch_size, workers, cache)
        rows.append((f"data: DataLoader, {workers} workers{', in-memory cache' if cache else ', PNG decode'}", total))
    batch = torch.rand(args.batch_size, 3, args.image_size, args.image_size)
    targets = torch.randint(0, 2, (args.batch_size, schema.num_classes)).float()
    for dtype, layout in ((None, "contiguous"), (torch.bfloat16, "contiguous"), (torch.bfloat16, "channels_last"),
                          (None, "channels_last")):
        model = create_model("tresnet_m", schema.num_classes)
        x = batch
        if layout == "channels_last":
            model, x = model.to(memory_format=torch.channels_last), batch.to(memory_format=torch.channels_last)
        name = "bf16" if dtype else "fp32"
        rows.append((f"train steps ({name}, {layout})", step_seconds(model, x, targets, dtype, args.steps) * n_steps))
        rows.append((f"evaluate {len(val)} val images, one model ({name}, {layout})",
                     eval_seconds(model, x, dtype, len(val))))
    buffer = io.BytesIO()
    state = {"model": model.state_dict(), "ema": model.state_dict(), "opt": build_optimizer(model, 1, 1).state_dict()}
    rows.append(("write one checkpoint (to memory)", seconds(lambda: torch.save(state, buffer))))
    print(f"# One demo epoch, piece by piece ({len(train)} train / {len(val)} val images, {args.image_size} px, "
          f"batch {args.batch_size}, {n_steps} steps, {torch.get_num_threads()} threads)\n")
    print("| piece | seconds per epoch |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
