r"""The official CSL code (Alibaba-MIIL/PartialLabelingCSL) beside this project's, on the same COCO-format set under
FPC and RPS, modes ignore / negative / selective, with the same image size, epochs, batch and learning rate; resumable.

    .venv/bin/pip install randaugment==1.0.2      # the official code's augmentation (not a dependency of the project)
    .venv/bin/python benchmarks/official_csl.py --repo /path/to/PartialLabelingCSL
    .venv/bin/python benchmarks/official_csl.py --repo /path/to/PartialLabelingCSL --quick   # 1 seed, FPC, 2 epochs

The official code is an external baseline: it stays in its own folder, is never copied into the package, and runs
unmodified in a child process, patched at run time only where a CPU and this data set need it (with ``--device
cuda`` only the last four apply, and both codes train in fp16 as they do by default on a GPU):

* ``.cuda()`` on tensors and modules returns them where they are, and its loss's ``torch.device('cuda')`` is the CPU;
* its ``autocast`` / ``GradScaler`` (CUDA fp16) are off: float32, as the project's runs on this CPU;
* its model factory (TResNets only) builds timm's ``--model-name`` from scratch, as the project's end-to-end runs do;
* its COCO reader's targets are sized by the set's categories (it hard-codes COCO's 80), and ``--num-classes`` is
  read as a number (it has no type);
* Python's, NumPy's and torch's generators are seeded (its FPC/RPS simulation draws from NumPy's, unseeded);
* ``np.int`` is ``int`` again: its augmentation package (``randaugment`` 1.0.2) uses the alias NumPy 1.24 removed.

Its data path is the COCO 2014 layout (``--debug_mode on_farm``). Each run's folder is the child's working directory,
so what the official code writes relative to it (``./outputs/`` priors and its per-epoch checkpoints, deleted once
the run's result is written) stays there; the repository is only read. Per protocol and seed the official
``selective`` run reads its priors from the ``ignore`` run's ``train_avg_preds.csv``, as the official README's
recipe does; the project's selective run estimates them in its own ignore-mode prior stage.

Both codes are scored the official way: the highest validation mAP over the epochs of max(regular, EMA), on the
fully labelled validation split. The simulated labels are drawn by each code's own simulator with the same protocol
and seed number, not the same draws, so the comparison is over seeds, not image by image. Writes ``OUT/results.csv``
and ``OUT/table.md`` (mean ± std per mode and protocol, the two codes side by side) from every finished cell in OUT of
the grid's settings, whichever invocation trained it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from grid import finished_cell, finished_result, resumable, seeds_on_disk, train_cell
from seed_tables import mean_std_table

from partial_csl.cli import make_parser
from partial_csl.engine.config import TrainConfig
from partial_csl.safe_io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = {"FPC(200)": ("fpc", 200), "RPS(0.5)": ("rps", 0.5)}
SELECTIVE_GAMMAS = {"fpc": (0, 3, 4), "rps": (0, 1, 4)}  # the official README's (pos, neg, unann) per protocol


def mode_settings(mode: str, simulator: str) -> dict:
    """The loss settings of one mode, the same for both codes (the official flag names are the project's)."""
    if mode == "ignore":
        return dict(partial_loss_mode="ignore", gamma_pos=0, gamma_neg=1, gamma_unann=4)
    if mode == "negative":
        return dict(partial_loss_mode="negative", gamma_pos=1, gamma_neg=4, gamma_unann=4, clip=0.05)
    pos, neg, unann = SELECTIVE_GAMMAS[simulator]
    return dict(partial_loss_mode="selective", gamma_pos=pos, gamma_neg=neg, gamma_unann=unann, likelihood_topk=5,
                prior_threshold=0.5)


MODES = ("ignore", "negative", "selective")  # in running order: selective reads the ignore run's priors
CODES = ("official", "project", "project-raw")  # project-raw: the project fed the official code's [0, 1] inputs


class CpuTorch:
    """``torch`` as the official loss module sees it: the same, except that ``torch.device('cuda')`` is the CPU."""

    def __init__(self, torch_module):
        self._torch = torch_module

    def __getattr__(self, name: str):
        return getattr(self._torch, name)

    def device(self, *args, **kwargs):
        return self._torch.device("cpu")


def targets_sized_by_categories(dataset) -> dict:
    """The official ``CocoDetection.get_targets`` with the set's number of categories where it hard-codes 80 (a
    category is positive for an image when any of its boxes is; the size split it takes the max over is kept)."""
    import torch

    targets = {}
    for img_id in dataset.ids:
        output = torch.zeros((3, len(dataset.cat2cat)), dtype=torch.long)
        for obj in dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=img_id)):
            size = 0 if obj["area"] < 32 * 32 else 1 if obj["area"] < 96 * 96 else 2
            output[size][dataset.cat2cat[obj["category_id"]]] = 1
        targets[img_id] = output.max(dim=0)[0]
    return targets


def patched_official(cpu: bool = True):
    """Import the official ``train`` module (its repository is on the child's PYTHONPATH, see :func:`official_run`)
    with the patches of the module docstring."""
    import importlib
    import types

    import timm
    import torch

    try:
        import inplace_abn  # noqa: F401  (its TResNet imports it; the runs build timm models)
    except ImportError:
        from partial_csl.layers.abn import ABN

        sys.modules["inplace_abn"] = types.SimpleNamespace(InPlaceABN=ABN)
    np.int = int  # randaugment 1.0.2 still uses the alias
    helpers = importlib.import_module("src.helper_functions.helper_functions")
    helpers.CocoDetection.get_targets = targets_sized_by_categories
    official = importlib.import_module("train")
    official.create_model = lambda args: timm.create_model(args.model_name, num_classes=args.num_classes)
    next(a for a in official.parser._actions if a.dest == "num_classes").type = int
    if cpu:
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
        importlib.import_module("src.loss_functions.partial_asymmetric_loss").torch = CpuTorch(torch)
        official.autocast = contextlib.nullcontext
        official.GradScaler = lambda: torch.amp.GradScaler("cpu", enabled=False)
    return official


def run_official_child(spec_path: Path) -> None:
    """The child process: seed, patch, and run the official ``main()`` with the spec's command line."""
    import torch

    spec = json.loads(spec_path.read_text())
    random.seed(spec["seed"])
    np.random.seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    official = patched_official(cpu=spec["device"] == "cpu")
    sys.argv = ["train.py", *spec["argv"]]
    official.main()


@functools.cache
def category_count(data: str) -> int:
    """The categories of a COCO layout's training annotations (read once: real COCO's file is large)."""
    return len(json.loads((Path(data) / "annotations" / "instances_train2014.json").read_text())["categories"])


def official_argv(args: argparse.Namespace, simulator: str, param: float, mode: str, priors: Path | None) -> list:
    num_classes = category_count(str(args.data))
    argv = ["--data", Path(args.data).resolve(), "--debug_mode", "on_farm", "--model-name", args.model_name,
            "--model-path", "", "--num-classes", num_classes, "--image-size", args.image_size, "--epochs", args.epochs,
            "--lr", args.lr, "--batch-size", args.batch_size, "-j", 0, "--simulate_partial_type", simulator,
            "--simulate_partial_param", param, "--path_dest", "outputs"]
    for key, value in mode_settings(mode, simulator).items():
        argv += [f"--{key}", value]
    return [str(a) for a in argv + (["--prior_path", priors.resolve()] if priors else [])]


def official_run(args: argparse.Namespace, run_dir: Path, seed: int, argv: list[str]) -> dict:
    """One official run in a child process whose working directory is ``run_dir``; its log is ``run_dir/log.txt``."""
    def compute() -> dict:
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = run_dir / "spec.json"
        spec.write_text(json.dumps({"repo": str(Path(args.repo).resolve()), "seed": seed, "argv": argv,
                                    "device": args.device}, indent=2))
        # the official code imports its own top-level ``src`` and ``train``: its folder leads the child's path
        paths = [str(Path(args.repo).resolve()), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        with open(run_dir / "log.txt", "w") as log:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec.resolve())],
                                  cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        text = (run_dir / "log.txt").read_text()
        if done.returncode != 0:
            raise RuntimeError(f"the official code failed (exit {done.returncode}); see {run_dir / 'log.txt'}:\n"
                               + "\n".join(text.splitlines()[-8:]))
        for checkpoint in (run_dir / "outputs").glob("*.ckpt"):
            checkpoint.unlink()
        epochs = [float(m) for m in re.findall(r"current_mAP = ([\d.]+)", text)]
        return {"mAP": max(epochs), "epochs": epochs}

    return resumable(run_dir, compute, official_settings(args, seed, argv))


def official_settings(args: argparse.Namespace, seed: int, argv: list[str]) -> dict:
    """What an official run's result is recorded with (a change of any of them runs it again)."""
    return {"argv": argv, "seed": seed, "device": args.device}


def project_config(args: argparse.Namespace, simulator: str, param: float, mode: str, seed: int,
                   raw_inputs: bool = False) -> TrainConfig:
    """The project's run of one cell: train.py's defaults for COCO-format data (CSL's recipe: its augmentation, EMA,
    a selective run's own ignore-mode prior stage), with the grid's size, epochs, batch and learning rate.
    ``raw_inputs``: [0, 1] pixels, as the official code feeds them, not the backbone's (ImageNet) normalisation."""
    inputs = dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]) if raw_inputs else {}
    return TrainConfig(**inputs, dataset="coco", data=args.data, model_name=args.model_name, image_size=args.image_size,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, workers=0, cache_images=True,
                       device=args.device, arch="csl", logit_adjust="none", amp=args.device != "cpu",
                       simulate_partial_type=simulator,
                       simulate_partial_param=param, seed=seed, **mode_settings(mode, simulator))


def cell(args: argparse.Namespace, protocol: str, seed: int, mode: str, code: str, train: bool = True) -> dict | None:
    """One cell's result: trained (or read, if it finished with these settings), or with ``train=False`` only read
    (None when it has not finished with them)."""
    simulator, param = PROTOCOLS[protocol]
    folder = args.out / "runs" / f"{simulator}_{param}" / f"seed{seed}"
    if code == "official":
        priors = folder / "official_ignore" / "outputs" / "train_avg_preds.csv"
        argv = official_argv(args, simulator, param, mode, priors if mode == "selective" else None)
        run_dir = folder / f"official_{mode}"
        if not train:
            return finished_result(run_dir, official_settings(args, seed, argv))
        return official_run(args, run_dir, seed, argv)
    cfg = project_config(args, simulator, param, mode, seed, raw_inputs=code == "project-raw")
    run_dir = folder / f"{code.replace('-', '_')}_{mode}"
    if not train:
        return finished_cell(cfg, run_dir)
    return train_cell(cfg, run_dir, lambda s: {"mAP": s["best_val_mAP"]})


def run_grid(args: argparse.Namespace) -> None:
    """Train the requested cells (finished ones are read, not trained again), with progress."""
    done, started = 0, time.time()
    total = len(args.protocols) * len(args.seeds) * len(args.modes) * len(args.codes)
    for protocol in args.protocols:
        for seed in args.seeds:
            for mode in args.modes:
                for code in args.codes:
                    result = cell(args, protocol, seed, mode, code)
                    done += 1
                    print(f"[{time.time() - started:5.0f}s {done}/{total}] {protocol} seed {seed} {code:8s} "
                          f"{mode:9s} mAP {result['mAP']:.2f}", flush=True)


def finished_grid(args: argparse.Namespace) -> pd.DataFrame:
    """Every cell in ``args.out`` finished with this grid's settings, whichever invocation trained it (a run of one
    code or seed adds to the table, it does not replace it); cells of other settings are left out."""
    rows = []
    for protocol, (simulator, param) in PROTOCOLS.items():
        for seed in seeds_on_disk(args.out / "runs" / f"{simulator}_{param}"):
            for mode in MODES:
                for code in CODES:
                    result = cell(args, protocol, seed, mode, code, train=False)
                    if result is not None:
                        rows.append({"code": code, "mode": mode, "protocol": protocol, "seed": seed,
                                     "mAP": result["mAP"], "seconds": round(result["seconds"], 1)})
    return pd.DataFrame(rows)


def write_table(results: pd.DataFrame, args: argparse.Namespace) -> str:
    atomic_write_text(args.out / "results.csv", results.to_csv(index=False, float_format="%.4f"))
    frame = results.assign(row=results["code"] + " " + results["mode"], column=results["protocol"])
    rows = [f"{code} {mode}" for mode in MODES for code in CODES if f"{code} {mode}" in set(frame["row"])]
    protocols = [c for c in PROTOCOLS if c in set(results["protocol"])]
    seeds = ", ".join(map(str, sorted(set(results["seed"]))))
    precision = "float32 on the CPU" if args.device == "cpu" else "fp16 on CUDA"
    lines = [f"# The official CSL code beside the project's on `{args.data}`", "",
             f"{args.model_name} from scratch, {args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, "
             f"lr {args.lr:g}, {precision}; seeds {seeds}. Highest validation mAP over the "
             "epochs (max of regular and EMA weights), mean ± std over the seeds; bold the best of each column, ≈ a "
             "tie with it. Every finished cell of these settings in the folder is here, whichever command trained it.",
             "", *mean_std_table(frame, rows, protocols, "mAP")]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "table.md", text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--repo", type=Path, help="a checkout of Alibaba-MIIL/PartialLabelingCSL (read only)")
    p.add_argument("--data", default="data/coco_bench", help="a COCO 2014 layout (partial_methods.py builds this one)")
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/official_csl"))
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--codes", nargs="+", default=["official", "project"], choices=CODES,
                   help="project-raw: the project on [0, 1] inputs (mean 0, std 1), as the official code feeds them")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                   help="an official selective run reads its priors from the same seed's official ignore run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--model-name", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: both codes as on a GPU (fp16)")
    p.add_argument("--quick", action="store_true", help="FPC only, seed 0, 2 epochs")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one official run in this process
    args = p.parse_args(argv)
    args.modes = [m for m in MODES if m in args.modes]  # running order: ignore before selective
    if args.quick:
        args.protocols, args.seeds, args.epochs = ["FPC(200)"], [0], 2
    return args


def main(argv: list[str] | None = None) -> str | None:
    args = parse_args(argv)
    if args.child:
        return run_official_child(args.child)
    if "official" in args.codes and (args.repo is None or not (args.repo / "train.py").is_file()):
        sys.exit(f"error: --repo {args.repo} is not a checkout of the official CSL code (no train.py in it)")
    args.out.mkdir(parents=True, exist_ok=True)
    run_grid(args)
    results = finished_grid(args)
    text = write_table(results, args) if len(results) else f"no finished cell in {args.out}"
    print(text)
    return text


if __name__ == "__main__":
    main()
