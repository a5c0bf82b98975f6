r"""Every CUDA claim of the project in one unattended command that fits a short GPU loan (about 5 minutes on one
H100-class GPU; a deadline keeps it under 8).

    PYTHONPATH=src python3 benchmarks/cuda_suite.py --data data/end_to_end/demo_1200 --out "$OUT"    # on a GPU
    .venv/bin/python benchmarks/cuda_suite.py --quick        # CPU, tiny sizes: every section it can (CI runs this)

Sections, in this order (``--sections`` picks some). Each is guarded: one that fails or is skipped keeps the others'
numbers. Each carries a generous guess of its time on one H100-class GPU, and it starts only if it should end by
``--deadline-s`` (450 s by default; abn 90 + precision 20 + end_to_end 90 + inference 90 + compile 150 = 440 s on one
GPU, where ddp skips at once), else it is skipped with that reason.

* ``abn``: the InPlace-ABN kernels, the pure-PyTorch ABN and timm's own BatchNormAct2d TResNet (the same weights fit
  all three). Forward and input gradients equal to the CPU pure-PyTorch path; training and inference img/s and peak
  memory (``torch.cuda.max_memory_allocated``) per model and image size; the largest training batch that fits
  ``--memory-gib`` (a line through the peaks at two batch sizes, confirmed by one step at that batch).
* ``precision``: the same short training run in float32, float16 autocast with a GradScaler, and bfloat16 autocast:
  each loss curve against float32's, non-finite losses, steps the scaler skipped, img/s.
* ``end_to_end``: the split script, ``train.py``, ``validate.py`` and ``infer.py`` on ``--data`` on this device.
* ``inference``: img/s of eager PyTorch (float32, and float16/bfloat16 autocast), the compiled model and the ONNX
  export under ONNX Runtime (its CUDA provider when installed, else the CPU one, said in the row).
* ``ddp``: ``torchrun --nproc_per_node 2 train.py`` over NCCL against the one-GPU run (needs 2 GPUs; gloo on CPU is
  in the tests).
* ``compile``: one training step eager vs ``torch.compile``: compile time and step time after warm-up.

``--quick`` leaves torch.compile out (Inductor spends minutes in the C++ compiler on a CPU).

Writes ``results.json`` (every number, loss curves included) and ``table.md`` under ``--out`` after each section,
so a killed run keeps what it measured. ``--out`` defaults to ``$OUT/cuda`` when the variable ``OUT`` is set (the
device machine's folder that comes back), else ``outputs/benchmarks/cuda``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch.nn import functional as F

from partial_csl.cli import make_parser
from partial_csl.layers.abn import inplace_abn_available
from partial_csl.models import create_model

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 21
FULL = dict(models=["tresnet_m", "tresnet_l"], sizes=[224, 448], batch=32, steps=10, warmup=3, parity_size=64,
            small_model="tresnet_m", small_size=224, precision_steps=40, compile_steps=10, e2e_model="tresnet_m",
            e2e_size=224, e2e_epochs=2, e2e_batch=64, infer_batch=64, compile=True)
QUICK = dict(models=["tresnet_m"], sizes=[32], batch=2, steps=1, warmup=1, parity_size=64, small_model="test_resnet",
             small_size=32, precision_steps=3, compile_steps=2, e2e_model="test_resnet", e2e_size=32, e2e_epochs=1,
             e2e_batch=8, infer_batch=4, compile=False)
NO_COMPILE = "--quick leaves torch.compile out: on a CPU, Inductor spends about 2 minutes in the C++ compiler"


class Skipped(Exception):
    """A section (or a row) that cannot run here; the message says why."""


@dataclass
class Suite:
    device: torch.device
    settings: dict
    data: Path | None
    out: Path
    memory_gib: float
    deadline: float  # time.monotonic() after which no section starts
    results: dict = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def require_cuda(self, what: str) -> None:
        if not self.cuda:
            raise Skipped(f"{what} needs CUDA (device {self.device})")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_tresnet(backend: str, name: str, device: torch.device) -> torch.nn.Module:
    """timm's own model ("timm") or the project's, with the ABN backend named."""
    if backend == "timm":
        return timm.create_model(name, num_classes=NUM_CLASSES).to(device)
    return create_model(name, num_classes=NUM_CLASSES, norm=backend, device=device)


def abn_backends() -> list[str]:
    return ["timm", "torch"] + (["inplace_abn"] if inplace_abn_available() else [])


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  target: torch.Tensor) -> float:
    loss = F.binary_cross_entropy_with_logits(model(x), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def timed(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def peak_training_memory(model: torch.nn.Module, batch: int, size: int, device: torch.device) -> int:
    """Peak bytes allocated by one training step at ``batch`` (CUDA)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    target = torch.rand(batch, NUM_CLASSES, device=device).round()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    training_step(model, optimizer, x, target)
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def largest_batch(model: torch.nn.Module, size: int, batch: int, budget: int, device: torch.device) -> str:
    """The largest training batch under ``budget`` bytes: peak memory is close to a line in the batch size, so two
    measured peaks give it; one step at that batch confirms it."""
    low, high = peak_training_memory(model, batch // 2, size, device), peak_training_memory(model, batch, size, device)
    per_image = (high - low) / (batch - batch // 2)
    fits = int((budget - (high - per_image * batch)) / per_image)
    if fits < 1:
        return "0"
    try:
        peak = peak_training_memory(model, fits, size, device)
    except torch.OutOfMemoryError:
        return f"< {fits} (estimate did not fit)"
    return f"{fits} ({peak / 2**30:.1f} GiB)"


def output_and_grad(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The model's output on ``x`` and the gradient of a fixed weighted sum of it with respect to ``x``, on the CPU."""
    images = x.to(device).requires_grad_(True)
    out = model(images)
    (out * torch.linspace(-1, 1, out.shape[1], device=device)).sum().backward()
    return out.detach().cpu(), images.grad.cpu()


def parity_rows(suite: Suite) -> list[dict]:
    """Forward output and input gradient of every backend on this device against the CPU pure-PyTorch ABN: same
    weights, same batch, training mode (batch statistics), float32 with TF32 off."""
    size = suite.settings["parity_size"]
    torch.manual_seed(0)
    reference = build_tresnet("torch", "tresnet_m", torch.device("cpu")).train()
    x = torch.rand(4, 3, size, size)
    expected_out, expected_grad = output_and_grad(reference, x, torch.device("cpu"))
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = []
    try:
        for backend in abn_backends():
            model = build_tresnet(backend, "tresnet_m", suite.device).train()
            model.load_state_dict(reference.state_dict())
            out, grad = output_and_grad(model, x, suite.device)
            forward = float((out - expected_out).abs().max() / expected_out.abs().max())
            backward = float((grad - expected_grad).abs().max() / expected_grad.abs().max())
            rows.append({"backend": backend, "device": str(suite.device), "forward rel. max |diff|": forward,
                         "input-grad rel. max |diff|": backward, "equal (< 1e-3)": forward < 1e-3 and backward < 1e-3})
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return rows


def abn_section(suite: Suite) -> dict:
    """Parity, then speed and memory of each ABN backend per model and image size."""
    rows = [backend_row(suite, name, size, backend) for name in suite.settings["models"]
            for size in suite.settings["sizes"] for backend in abn_backends()]
    skipped = [] if inplace_abn_available() else ["inplace_abn: the package does not import here (make inplace-abn)"]
    return {"parity": parity_rows(suite), "speed": rows, "notes": skipped}


def backend_row(suite: Suite, name: str, size: int, backend: str) -> dict:
    s, device = suite.settings, suite.device
    torch.manual_seed(0)
    model = build_tresnet(backend, name, device)
    x = torch.rand(s["batch"], 3, size, size, device=device)
    target = torch.rand(s["batch"], NUM_CLASSES, device=device).round()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    if suite.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train = timed(lambda: training_step(model, optimizer, x, target), s["steps"], s["warmup"], device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if suite.cuda else None
    model.eval()
    with torch.inference_mode():
        infer = timed(lambda: model(x), s["steps"], s["warmup"], device)
    fits = (largest_batch(model.train(), size, s["batch"], int(suite.memory_gib * 2**30), device)
            if suite.cuda else "n/a (CPU)")
    return {"model": name, "size": size, "backend": backend, "batch": s["batch"], "train img/s": s["batch"] / train,
            "infer img/s": s["batch"] / infer, "peak train MiB": peak,
            f"largest batch in {suite.memory_gib:g} GiB": fits}


def precision_section(suite: Suite) -> dict:
    """One short training run per precision from the same weights on the same fixed batches."""
    s = suite.settings
    runs = {"float32": None, "float16 + GradScaler": torch.float16, "bfloat16": torch.bfloat16}
    rows, curves, notes = [], {}, []
    for label, dtype in runs.items():
        if dtype is torch.float16 and not suite.cuda:
            notes.append("float16 + GradScaler: CUDA only")
            continue
        if dtype is torch.bfloat16 and suite.cuda and not torch.cuda.is_bf16_supported():
            notes.append("bfloat16: this GPU has no bfloat16")
            continue
        curve, skipped, seconds = precision_run(suite, dtype)
        curves[label] = curve
        reference = curves.get("float32", curve)
        rows.append({"precision": label, "final loss": curve[-1],
                     "max |loss - float32|": max(abs(a - b) for a, b in zip(curve, reference)),
                     "non-finite losses": sum(not torch.isfinite(torch.tensor(v)) for v in curve),
                     "scaler-skipped steps": skipped, "train img/s": s["batch"] * len(curve) / seconds})
    return {"runs": rows, "loss_curves": curves, "notes": notes,
            "setup": f"{s['small_model']} at {s['small_size']} px, batch {s['batch']}, {s['precision_steps']} steps"}


def precision_run(suite: Suite, dtype: torch.dtype | None) -> tuple[list[float], int, float]:
    s, device = suite.settings, suite.device
    torch.manual_seed(0)
    model = create_model(s["small_model"], num_classes=NUM_CLASSES, norm="torch", device=device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(s["batch"], 3, s["small_size"], s["small_size"], generator=generator),
                torch.rand(s["batch"], NUM_CLASSES, generator=generator).round()) for _ in range(4)]
    curve, skipped = [], 0
    sync(device)
    start = time.perf_counter()
    for step in range(s["precision_steps"]):
        x, target = (t.to(device) for t in batches[step % len(batches)])
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.binary_cross_entropy_with_logits(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        skipped += scale is not None and scaler.get_scale() < scale  # the scale drops exactly when a step is skipped
        curve.append(float(loss.detach()))
    sync(device)
    return curve, int(skipped), time.perf_counter() - start


def compile_section(suite: Suite) -> dict:
    """Training step time eager vs torch.compile (default mode), after warm-up; the first compiled call's time."""
    if not suite.settings["compile"]:
        raise Skipped(NO_COMPILE)
    rows = [compile_row(suite, compiled) for compiled in (False, True)]
    rows[1]["speed-up"] = rows[0]["step ms after warm-up"] / rows[1]["step ms after warm-up"]
    s = suite.settings
    return {"runs": rows, "setup": f"{s['small_model']} at {s['small_size']} px, batch {s['batch']}"}


def compile_row(suite: Suite, compiled: bool) -> dict:
    s, device = suite.settings, suite.device
    torch.manual_seed(0)
    x = torch.rand(s["batch"], 3, s["small_size"], s["small_size"], device=device)
    target = torch.rand(s["batch"], NUM_CLASSES, device=device).round()
    model = create_model(s["small_model"], num_classes=NUM_CLASSES, norm="torch", device=device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    run = torch.compile(model) if compiled else model
    sync(device)
    start = time.perf_counter()
    training_step(run, optimizer, x, target)
    sync(device)
    first = time.perf_counter() - start
    step = timed(lambda: training_step(run, optimizer, x, target), s["compile_steps"], 1, device)
    return {"mode": "torch.compile" if compiled else "eager", "first step s": first,
            "step ms after warm-up": 1000 * step, "train img/s": s["batch"] / step}


def run_script(args: list, log: Path, timeout: float) -> float:
    """Run one of the project's scripts as a user would; seconds taken. Its output goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(str(args[0])).name} exited with {done.returncode}: " + " | ".join(tail))
    return time.perf_counter() - start


def attribute_data(suite: Suite, folder: Path, images: int) -> Path:
    """``--data`` (a folder with attributes.csv and images/), or a demo set built into ``folder``."""
    if suite.data is not None:
        return suite.data
    from partial_csl.data.demo import FASHION_MNIST_DIR, build_demo_dataset

    if not FASHION_MNIST_DIR.is_dir():
        raise Skipped(f"no --data, and Fashion-MNIST is not under {FASHION_MNIST_DIR} to build the demo set")
    build_demo_dataset(folder, num_images=images, seed=0)
    return folder


def training_args(suite: Suite, data: Path, split: Path, out: Path, device: str) -> list:
    s = suite.settings
    return [ROOT / "train.py", "--train-csv", split / "train.csv", "--val-csv", split / "valid.csv",
            "--images", data / "images", "--model-name", s["e2e_model"], "--image-size", s["e2e_size"],
            "--batch-size", s["e2e_batch"], "--epochs", s["e2e_epochs"], "--lr", "5e-4", "--augment", "light",
            "--workers", 4 if suite.cuda else 0, "--seed", 0, "--device", device, "--output-dir", out]


def end_to_end_section(suite: Suite) -> dict:
    """Split, train, validate and infer on this device, as README's commands do."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = attribute_data(suite, tmp / "data", 48 if suite.settings["e2e_model"] == "test_resnet" else 1200)
        split, run = tmp / "split", tmp / "run"
        device, budget = str(suite.device), max(suite.deadline - time.monotonic(), 60)
        seconds = {"split": run_script([ROOT / "images_train_test_valid_split.py", "--csv", data / "attributes.csv",
                                        "--images", data / "images", "--output-dir", split, "--seed", 0],
                                       tmp / "split.log", budget)}
        seconds["train.py"] = run_script(training_args(suite, data, split, run, device), tmp / "train.log", budget)
        best = run / "checkpoints" / "best.pt"
        seconds["validate.py"] = run_script([ROOT / "validate.py", "--checkpoint", best, "--csv", split / "test.csv",
                                             "--images", data / "images", "--output-dir", tmp / "report",
                                             "--device", device], tmp / "validate.log", budget)
        seconds["infer.py"] = run_script([ROOT / "infer.py", "--checkpoint", best, "--csv", split / "test.csv",
                                          "--images", data / "images", "--output", tmp / "predictions.csv",
                                          "--device", device], tmp / "infer.log", budget)
        report = json.loads((tmp / "report" / "report.json").read_text())
        train_rows = sum(1 for _ in open(split / "train.csv")) - 1
    s = suite.settings
    return {"runs": [{"step": step, "seconds": value} for step, value in seconds.items()],
            "test mAP": report["mAP"], "test images": report["num_images"],
            "setup": f"{s['e2e_model']} at {s['e2e_size']} px, batch {s['e2e_batch']}, {s['e2e_epochs']} epoch(s) "
                     f"on {train_rows} training rows of {data}"}


def ddp_section(suite: Suite) -> dict:
    """torchrun with 2 processes on 2 GPUs (NCCL) against the same run on one GPU."""
    suite.require_cuda("NCCL DDP")
    if torch.cuda.device_count() < 2:
        raise Skipped(f"{torch.cuda.device_count()} GPU visible; NCCL DDP needs 2 (gloo on CPU: "
                      "tests/test_distributed_export.py)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = attribute_data(suite, tmp / "data", 1200)
        split = tmp / "split"
        budget = max(suite.deadline - time.monotonic(), 60)
        run_script([ROOT / "images_train_test_valid_split.py", "--csv", data / "attributes.csv", "--images",
                    data / "images", "--output-dir", split, "--seed", 0], tmp / "split.log", budget)
        one = run_script(training_args(suite, data, split, tmp / "one", "cuda"), tmp / "one.log", budget)
        args = training_args(suite, data, split, tmp / "two", "cuda")
        two = run_script(["-m", "torch.distributed.run", "--nproc_per_node", 2, *args], tmp / "two.log", budget)
        maps = [torch.load(tmp / run / "checkpoints" / "best.pt", weights_only=True, map_location="cpu")["metrics"]
                for run in ("one", "two")]
    return {"runs": [{"processes": 1, "train.py seconds": one, "val metrics": maps[0]},
                     {"processes": 2, "train.py seconds": two, "val metrics": maps[1]}]}


def onnx_session(model: torch.nn.Module, example: torch.Tensor, folder: Path):
    """The model exported by export.py's ONNX writer, in ONNX Runtime (CUDA provider when installed)."""
    import onnxruntime as ort

    from partial_csl.engine.tools.export import write_onnx

    path = folder / "model.onnx"
    write_onnx(model, example, {}, path, 18)
    cuda = "CUDAExecutionProvider" in ort.get_available_providers() and example.is_cuda
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), providers=providers), providers[0]


def inference_section(suite: Suite) -> dict:
    """Images/s of one model per runtime on a fixed batch already in memory (no decoding)."""
    from partial_csl.engine.tools.export import ProbabilityHead

    s, device = suite.settings, suite.device
    torch.manual_seed(0)
    model = ProbabilityHead(create_model(s["small_model"], num_classes=NUM_CLASSES, norm="torch", device=device)).eval()
    x = torch.rand(s["infer_batch"], 3, s["small_size"], s["small_size"], device=device)
    steps, warmup = s["steps"] * 2, s["warmup"]
    runtimes: dict[str, Callable] = {"PyTorch eager, float32": lambda: model(x)}
    half = torch.float16 if suite.cuda else torch.bfloat16
    runtimes[f"PyTorch eager, {str(half).removeprefix('torch.')} autocast"] = lambda: autocast_call(model, x, half)
    rows, notes = [], []
    if s["compile"]:
        compiled = torch.compile(model)
        runtimes["torch.compile, float32"] = lambda: compiled(x)
    else:
        notes.append(NO_COMPILE)
    with torch.inference_mode():
        reference = model(x).float().cpu()
        for label, fn in runtimes.items():
            seconds = timed(fn, steps, warmup, device)
            diff = float((fn().float().cpu() - reference).abs().max())
            rows.append({"runtime": label, "img/s": s["infer_batch"] / seconds, "max |prob - eager|": diff})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            session, provider = onnx_session(model, x[:2], Path(tmp))
        except Exception as err:  # an exporter or runtime that fails here must not cost the rows above
            notes.append(f"ONNX Runtime: {type(err).__name__}: {err}")
        else:
            feed = {"images": x.cpu().numpy()}
            seconds = timed(lambda: session.run(None, feed), steps, warmup, torch.device("cpu"))
            diff = float(abs(session.run(None, feed)[0] - reference.numpy()).max())
            rows.append({"runtime": f"ONNX Runtime ({provider}), float32", "img/s": s["infer_batch"] / seconds,
                         "max |prob - eager|": diff})
    return {"runs": rows, "notes": notes,
            "setup": f"{s['small_model']} at {s['small_size']} px, batch {s['infer_batch']}, "
                     "images already on the device (ONNX Runtime: copied from host each call)"}


def autocast_call(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=dtype):
        return model(x)


@dataclass(frozen=True)
class Section:
    run: Callable[[Suite], dict]
    gpu_seconds: float  # a generous guess of its time on one H100-class GPU: it starts only if that fits the deadline


SECTIONS = {  # in running order: the cheap, most-asked numbers first, Inductor's long compile last
    "abn": Section(abn_section, 90),
    "precision": Section(precision_section, 20),
    "end_to_end": Section(end_to_end_section, 90),
    "inference": Section(inference_section, 90),
    "ddp": Section(ddp_section, 120),
    "compile": Section(compile_section, 150),
}


def run_section(suite: Suite, name: str) -> dict:
    """One section's results with its status: ok, skipped (why) or failed (the error; the traceback in the JSON)."""
    section = SECTIONS[name]
    estimate = section.gpu_seconds if suite.cuda else 0.0
    if time.monotonic() + estimate > suite.deadline:
        reason = f"would not end before --deadline-s (about {section.gpu_seconds:g} s on a GPU)" if estimate else \
            "past --deadline-s"
        return {"status": "skipped", "reason": reason, "seconds": 0.0}
    start = time.perf_counter()
    try:
        result = {"status": "ok", **section.run(suite)}
    except Skipped as why:
        result = {"status": "skipped", "reason": str(why)}
    except Exception as err:  # one section's failure must not lose the others' numbers
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    finally:
        if suite.cuda:
            torch.cuda.empty_cache()
    return {**result, "seconds": time.perf_counter() - start}


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return {"device": name, "gpus": torch.cuda.device_count(), "torch": torch.__version__, "timm": timm.__version__,
            "cuda": torch.version.cuda, "inplace_abn": inplace_abn_available(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 0.01 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict]) -> list[str]:
    columns = [c for c in dict.fromkeys(k for row in rows for k in row)
               if all(not isinstance(row.get(c), (dict, list)) for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]


def report(suite: Suite, mode: str, total: float) -> str:
    env = suite.results["environment"]
    lines = [f"# CUDA suite ({mode}): {env['device']}, torch {env['torch']} (CUDA build {env['cuda']}), "
             f"timm {env['timm']}, {env['date']}; {total:.0f} s in all", ""]
    for name in SECTIONS:
        result = suite.results["sections"].get(name)
        if result is None:
            continue
        status = result["status"] + (f": {result['reason']}" if "reason" in result else "")
        lines += [f"## {name} ({status}; {result['seconds']:.0f} s)", ""]
        if "setup" in result:
            lines += [result["setup"], ""]
        for key in ("parity", "speed", "runs"):
            if result.get(key):
                lines += [*markdown_table(result[key]), ""]
        for key in ("test mAP",):
            if key in result:
                lines += [f"{key}: {cell(result[key])} on {result['test images']} images", ""]
        lines += [f"- {note}" for note in result.get("notes", [])] + ([""] if result.get("notes") else [])
    return "\n".join(lines)


def default_out() -> Path:
    return Path(os.environ["OUT"]) / "cuda" if os.environ.get("OUT") else ROOT / "outputs" / "benchmarks" / "cuda"


def main(argv: list[str] | None = None) -> dict:
    p = make_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny models and sizes on the CPU (CI)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", type=Path, help="a folder with attributes.csv and images/ (default: build the demo set)")
    p.add_argument("--out", type=Path, help="default: $OUT/cuda if OUT is set, else outputs/benchmarks/cuda")
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--memory-gib", type=float, default=16.0, help="the budget of the largest-batch column")
    p.add_argument("--deadline-s", type=float, default=450.0,
                   help="a section starts only if it should end by then (its GPU estimate; on the CPU: if not past)")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.quick else args.device)
    out = args.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    suite = Suite(device, QUICK if args.quick else FULL, args.data, out, args.memory_gib, start + args.deadline_s)
    suite.results = {"environment": environment(device), "settings": suite.settings, "sections": {}}
    mode = "quick, CPU" if args.quick else "full"
    for name in args.sections:
        print(f"[{time.monotonic() - start:5.0f} s] {name} ...", flush=True)
        suite.results["sections"][name] = result = run_section(suite, name)
        print(f"[{time.monotonic() - start:5.0f} s] {name}: {result['status']} {result.get('reason', '')}", flush=True)
        suite.results["seconds"] = time.monotonic() - start
        (out / "results.json").write_text(json.dumps(suite.results, indent=2, default=str) + "\n")
        (out / "table.md").write_text(report(suite, mode, time.monotonic() - start) + "\n")
    print(report(suite, mode, time.monotonic() - start))
    return suite.results


if __name__ == "__main__":
    main()
