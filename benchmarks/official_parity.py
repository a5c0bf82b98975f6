r"""What the official CSL code and this project compute identically, checked against a checkout of the official code
(Alibaba-MIIL/PartialLabelingCSL) and the ``randaugment`` 1.0.2 package its ``train.py`` imports.

* **Training steps.** One timm network, copied twice, trains on the same random batches (positive, negative and
  unknown labels) under the official ``PartialSelectiveLoss`` + ``add_weight_decay`` + Adam + ``OneCycleLR`` (its
  loss summed over the batch) and under the project's criterion and optimiser (a per-image mean, Adam's ``eps`` and
  the L2 term scaled to it), per mode: ignore, negative, selective with a prior file. Reported: the largest
  parameter difference after the last step, and the two losses of the first step.
* **Augmentation.** Every operation of the reference RandAugment at every level, on random images, beside
  :mod:`partial_csl.data.rand_augment`, pixel by pixel (the same random signs and Cutout centres for both).

    .venv/bin/pip install randaugment==1.0.2
    .venv/bin/python benchmarks/official_parity.py --repo /path/to/PartialLabelingCSL

The repository is only read (its loss and helpers are imported from it). Writes ``OUT/parity.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from official_csl import CpuTorch, mode_settings, project_config
from official_csl import parse_args as grid_args
from torch.optim.lr_scheduler import OneCycleLR

from partial_csl.data import rand_augment
from partial_csl.engine.setup.architectures import resolve_auto
from partial_csl.engine.setup.build import build_criterion, build_optimizer, reference_gradient_scale
from partial_csl.engine.setup.run_data import LabelSpace

OFFICIAL_DEFAULTS = dict(clip=0.0, gamma_pos=0.0, gamma_neg=1.0, gamma_unann=2.0, alpha_pos=1.0, alpha_neg=1.0,
                         alpha_unann=1.0, likelihood_topk=5, prior_path=None, prior_threshold=0.05)
REFERENCE_NAMES = {"shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX",
                   "translate_y": "TranslateY", "autocontrast": "AutoContrast"}


def load_file(path: Path, name: str):
    """A module of the official code, loaded from its file (the repository is not put on the import path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def official_on_cpu(repo: Path):
    """The official loss and helper modules, loaded from ``repo`` with ``.cuda()`` and ``torch.device('cuda')``
    kept on the CPU; ``.cuda()`` is restored on exit."""
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        loss = load_file(repo / "src" / "loss_functions" / "partial_asymmetric_loss.py", "official_partial_loss")
        loss.torch = CpuTorch(torch)
        yield loss, load_file(repo / "src" / "helper_functions" / "helper_functions.py", "official_helpers")
    finally:
        torch.Tensor.cuda = cuda


def random_batch(generator: torch.Generator, batch: int, classes: int, size: int) -> tuple:
    images = torch.randn(batch, 3, size, size, generator=generator)
    targets = (torch.rand(batch, classes, generator=generator) < 0.3).long()
    targets[torch.rand(batch, classes, generator=generator) < 0.5] = -1
    return images, targets


def step_parity(official, args: argparse.Namespace, mode: str, priors: np.ndarray, prior_file: Path) -> dict:
    """Train two copies of one network ``args.steps`` steps, the official way and the project's; compare."""
    loss_module, helpers = official
    settings = mode_settings(mode, "rps")
    torch.manual_seed(args.seed)
    classes = len(priors)
    base = timm.create_model(args.model_name, num_classes=classes)
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    official_args = argparse.Namespace(**{**OFFICIAL_DEFAULTS, **settings, "prior_path": str(prior_file)})
    their_loss = loss_module.PartialSelectiveLoss(official_args)
    their_opt = torch.optim.Adam(helpers.add_weight_decay(theirs, args.weight_decay), lr=args.lr, weight_decay=0)
    their_schedule = OneCycleLR(their_opt, max_lr=args.lr, steps_per_epoch=args.steps, epochs=1, pct_start=0.2)
    cfg = resolve_auto(project_config(grid_args(["--lr", str(args.lr)]), "rps", 0.5, mode, args.seed))
    labels = LabelSpace([f"class {k}" for k in range(classes)], None, np.ones(classes), None)
    our_loss = build_criterion(cfg, priors if mode == "selective" else None, labels)
    scale = reference_gradient_scale(our_loss.reduction, args.batch_size)
    our_opt = build_optimizer(torch.nn.ModuleList([ours, our_loss]), args.lr, args.weight_decay, scale)
    our_schedule = OneCycleLR(our_opt, max_lr=[g["lr"] for g in our_opt.param_groups], steps_per_epoch=args.steps,
                              epochs=1, pct_start=0.2)
    generator, first = torch.Generator().manual_seed(args.seed), None
    for _ in range(args.steps):
        images, targets = random_batch(generator, args.batch_size, classes, args.image_size)
        their_value = their_loss(theirs(images).float(), targets.clone())
        theirs.zero_grad()
        their_value.backward()
        their_opt.step()
        their_schedule.step()
        our_value = our_loss(ours(images).float(), targets.clone())
        our_opt.zero_grad()
        our_value.backward()
        our_opt.step()
        our_schedule.step()
        first = first or (their_value.item(), our_value.item() / scale)
    gap = max((a - b).abs().max().item() for a, b in zip(theirs.parameters(), ours.parameters()))
    return {"mode": mode, "official loss (step 1)": first[0], "project loss x batch (step 1)": first[1],
            "largest parameter difference": gap}


def augmentation_parity(images: int, seed: int) -> tuple[int, int]:
    """(operation x level x image cases, cases that differ in any pixel) against ``randaugment``'s SubPolicy."""
    np.int = int  # randaugment 1.0.2 still uses the alias
    from randaugment.randaugment import SubPolicy

    rng, cases, differ = np.random.default_rng(seed), 0, 0
    for n in range(images):
        img = rand_augment.Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        for name in rand_augment.OPERATIONS:
            for level in range(1, rand_augment.LEVELS):
                random.seed(n), np.random.seed(n)
                theirs = SubPolicy(1.0, REFERENCE_NAMES.get(name, name.capitalize()), level, 0.0, "Invert", 1)(img)
                random.seed(n), np.random.seed(n)
                # the reference draws the Cutout centre from NumPy's generator: x, then y
                centre = iter([np.random.randint(img.size[0]), np.random.randint(img.size[1])])
                draw = rand_augment.random.randrange
                rand_augment.random.randrange = lambda _, centre=centre: next(centre)
                random.seed(n)
                random.random()  # SubPolicy draws whether to apply the operation before the operation's own draws
                ours = rand_augment.OPERATIONS[name](img, level)
                rand_augment.random.randrange = draw
                cases += 1
                differ += int(np.any(np.asarray(theirs) != np.asarray(ours)))
    return cases, differ


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True, help="a checkout of Alibaba-MIIL/PartialLabelingCSL")
    p.add_argument("--out", type=Path, default=Path("outputs/benchmarks/official_parity"))
    p.add_argument("--model-name", default="resnet18")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--augmentation-images", type=int, default=20, help="0: skip the augmentation check")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.repo / "src" / "loss_functions" / "partial_asymmetric_loss.py").is_file():
        sys.exit(f"error: --repo {args.repo} is not a checkout of the official CSL code")
    priors = np.linspace(0.02, 0.7, args.classes)  # a few classes above the 0.5 threshold: their unknowns ignored
    lines = [f"# The official CSL code and the project, step by step ({args.model_name}, {args.steps} steps, batch "
             f"{args.batch_size}, {args.image_size} px, lr {args.lr:g})", "",
             "| mode | official loss (step 1) | project loss x batch (step 1) | largest parameter difference |",
             "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp, official_on_cpu(args.repo) as official:
        prior_file = Path(tmp) / "priors.csv"
        prior_file.write_text("Classes,avg_pred\n" + "".join(f"class {k},{v}\n" for k, v in enumerate(priors)))
        for mode in ("ignore", "negative", "selective"):
            row = step_parity(official, args, mode, priors, prior_file)
            lines.append(f"| {mode} | {row['official loss (step 1)']:.4f} | {row['project loss x batch (step 1)']:.4f}"
                         f" | {row['largest parameter difference']:.3g} |")
    if args.augmentation_images:
        cases, differ = augmentation_parity(args.augmentation_images, args.seed)
        lines += ["", f"RandAugment: {cases} cases (15 operations x levels 1-9 x {args.augmentation_images} images), "
                      f"{differ} differ in any pixel."]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
