"""Speed (and, on CUDA, memory) of the ABN backends, against timm's own TResNet-M with BatchNormAct2d.

    .venv/bin/python benchmarks/abn_backends.py                     # current device, 64/128/224 px
    .venv/bin/python benchmarks/abn_backends.py --sizes 64 --batch 16 --steps 5

Prints one table: training and inference images/s of ``timm`` (the bare timm model), ``torch`` (our pure-PyTorch ABN)
and ``inplace_abn`` (the kernels, when the package imports), and the peak training memory on CUDA. The last column is
each backend's training speed relative to timm's model: our layer should cost nothing (within 5 %).
"""

from __future__ import annotations

import time

import timm
import torch

from partial_csl.cli import make_parser
from partial_csl.layers.abn import inplace_abn_available
from partial_csl.models import create_model


def build(backend: str, device: torch.device) -> torch.nn.Module:
    if backend == "timm":
        return timm.create_model("tresnet_m", num_classes=21).to(device)
    return create_model("tresnet_m", num_classes=21, norm=backend, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training(model, x, steps: int, warmup: int) -> float:
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.rand(x.shape[0], 21, device=x.device).round()
    for i in range(warmup + steps):
        if i == warmup:
            sync(x.device)
            start = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(x.device)
    return steps * x.shape[0] / (time.perf_counter() - start)


@torch.inference_mode()
def time_inference(model, x, steps: int, warmup: int) -> float:
    model.eval()
    for i in range(warmup + steps):
        if i == warmup:
            sync(x.device)
            start = time.perf_counter()
        model(x)
    sync(x.device)
    return steps * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    backends = ["timm", "torch"] + (["inplace_abn"] if inplace_abn_available() else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"TResNet-M, batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up, on {name}, "
          f"torch {torch.__version__}\n")
    print("| size | backend | train img/s | infer img/s | peak train memory (MiB) | train speed vs timm |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in args.sizes:
        baseline = None
        for backend in backends:
            torch.manual_seed(0)
            model = build(backend, device)
            x = torch.rand(args.batch, 3, size, size, device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            train = time_training(model, x, args.steps, args.warmup)
            memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "n/a"
            infer = time_inference(model, x, args.steps, args.warmup)
            baseline = baseline or train
            print(f"| {size} | {backend} | {train:.1f} | {infer:.1f} | {memory} | {100 * train / baseline:.1f} % |",
                  flush=True)
            del model


if __name__ == "__main__":
    main()
