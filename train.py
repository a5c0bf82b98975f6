"""Train a multi-label classifier on partially labelled data (CSL: selective loss + class priors).

    python train.py --train-csv data/split/train.csv --val-csv data/split/valid.csv --images data/images \
        --partial_loss_mode selective --epochs 30 --output-dir outputs/my-run
    python train.py --dataset coco --data COCO_ROOT --simulate_partial_type fpc --simulate_partial_param 1000 \
        --gamma_unann 4 --gamma_neg 3 --gamma_pos 0 --image-size 448 --output-dir outputs/coco-fpc

Every flag accepts both spellings (``--partial_loss_mode`` and ``--partial-loss-mode``). A ``selective`` run without
``--prior_path`` first trains a temporary ignore-mode model for ``--prior_epochs`` to estimate the class priors.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from partial_csl.data.labels import LabelFileError
from partial_csl.data.partial import SIMULATIONS
from partial_csl.data.sampling import SAMPLERS
from partial_csl.data.transforms import AUGMENTATIONS
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.data import DATASETS
from partial_csl.engine.trainer import NonFiniteLossError, TrainingInterrupted, run_training
from partial_csl.losses import PARTIAL_LOSS_MODES, TASK_WEIGHTINGS, TOPK_SCOPES
from partial_csl.models import ARCHS
from partial_csl.models.factory import NORM_BACKENDS
from partial_csl.priors import PRIOR_ESTIMATES

DEFAULTS = TrainConfig()


def spellings(name: str) -> list[str]:
    """``--a_b`` and ``--a-b`` for one option."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}", f"--{name.replace('-', '_')}"]))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(group, name: str, **kwargs) -> None:
        dest = name.replace("-", "_")
        group.add_argument(*spellings(name), dest=dest, default=getattr(DEFAULTS, dest, None), **kwargs)

    data = p.add_argument_group("data")
    add(data, "dataset", choices=DATASETS, help="attributes: CSVs with #N/A; coco: COCO-format JSON")
    add(data, "train_csv", help="training attributes CSV (filename + one column per attribute)")
    add(data, "val_csv", help="validation attributes CSV")
    add(data, "images", help="image folder of the CSVs")
    add(data, "val_images", help="image folder of the validation data, when it differs from --images")
    add(data, "schema", help="JSON/YAML attribute schema (default: neck 7, sleeve_length 4, pattern 10)")
    add(data, "image_size", type=int, help="square input size; TResNet needs a multiple of 32")
    add(data, "batch_size", type=int)
    add(data, "workers", type=int, help="DataLoader worker processes")
    add(data, "augment", choices=AUGMENTATIONS, help="csl: Cutout + RandAugment (reference); light; none")
    add(data, "sampler", choices=SAMPLERS, help="uniform; balanced: LVIS repeat factors of the known positives; "
                                                "raking: per-image weights matching sqrt-frequency per attribute")
    add(data, "repeat_threshold", type=float, help="balanced: the frequency t below which classes are repeated")
    add(data, "sampler_max_weight", type=float, help="raking: cap on one image's weight relative to the lightest")
    add(data, "on_bad_rows", choices=("error", "skip"), help="skip: leave bad CSV rows out, listed in the run folder")

    coco = p.add_argument_group("COCO-format data (--dataset coco)")
    add(coco, "data", help="COCO 2014 root: annotations/instances_{train,val}2014.json, train2014/, val2014/")
    add(coco, "train_annotations", help="training COCO JSON (any COCO-format set; overrides --data)")
    add(coco, "val_annotations", help="validation COCO JSON")
    add(coco, "train_images", help="image folder of --train-annotations")
    add(coco, "drop_empty", action="store_true", help="drop images without annotations (the reference did)")
    add(coco, "simulate_partial_type", choices=SIMULATIONS,
        help="hide training labels: fpc (N per class) or rps (each with probability p)")
    add(coco, "simulate_partial_param", type=float, help="N for fpc, p for rps")

    model = p.add_argument_group("model")
    add(model, "arch", choices=ARCHS, help="csl: one sigmoid head, partial-label loss; mtl: one softmax head per "
                                           "attribute; latent: heads W = L S; afa: branches joined by AFA layers")
    add(model, "model_name", help="tresnet_m / tresnet_l / tresnet_xl / tresnet_v2_l, or any timm model")
    add(model, "model_path", help="pretrained weights (timm or MIIL format), see pretrained_weights/README.md")
    add(model, "norm", choices=NORM_BACKENDS, help="TResNet ABN backend: inplace_abn kernels or exact pure PyTorch")
    add(model, "task_weighting", choices=TASK_WEIGHTINGS, help="multi-head archs: equal, dwa or uncertainty")
    add(model, "dwa_temperature", type=float, help="DWA temperature T")
    add(model, "latent_tasks", type=int, help="latent: number K of shared latent tasks")
    add(model, "latent_reg", type=float, help="latent: weight of the grouping (l2,1) regulariser on S")
    add(model, "branch_model", help="afa: the ResNet-family timm model of each attribute branch")
    add(model, "afa_stages", help="afa: comma-separated stages (1-4) followed by an AFA layer, e.g. 3,4")
    add(model, "afa_grad_balance", action="store_true", help="afa: the original's gradient isolation")

    optim = p.add_argument_group("optimisation")
    add(optim, "lr", type=float, help="peak learning rate of OneCycle")
    add(optim, "weight_decay", type=float, help="L2 decay on weights (not on biases and norm parameters)")
    add(optim, "epochs", type=int)
    add(optim, "ema_decay", type=float, help="EMA decay per step; 0 disables the EMA model")
    add(optim, "ema_warmup", action="store_true", help="ramp the EMA decay up (useful for short runs)")
    add(optim, "amp", action=argparse.BooleanOptionalAction,
        help="mixed precision (default: on for CUDA, and on CPUs with native bfloat16); --no-amp for float32")
    add(optim, "amp_dtype", choices=("auto", "float16", "bfloat16"), help="auto: float16 on CUDA, bfloat16 on CPU")
    add(optim, "grad_clip", type=float, help="clip the gradient norm to this value (0: off)")
    add(optim, "sync_bn", action="store_true",
        help="under torchrun: synchronise BatchNorm statistics across GPUs (InPlaceABNSync for TResNet kernels)")

    loss = p.add_argument_group("loss (Partial Selective Asymmetric Loss)")
    add(loss, "partial_loss_mode", choices=PARTIAL_LOSS_MODES, help="how unknown labels are treated")
    for name in ("gamma_pos", "gamma_neg", "gamma_unann", "alpha_pos", "alpha_neg", "alpha_unann"):
        add(loss, name, type=float)
    add(loss, "clip", type=float, help="probability shift for negatives (ASL clip)")
    add(loss, "likelihood_topk", type=int, help="selective: ignore the k most likely unknowns (per sample budget)")
    add(loss, "likelihood_topk_scope", choices=TOPK_SCOPES, help="batch: k*B over the batch (reference); sample")
    add(loss, "prior_threshold", type=float, help="selective: ignore unknowns of classes with a prior above this")
    add(loss, "prior_path", help="prior CSV (class,prior); without it selective estimates priors first")
    add(loss, "prior_epochs", type=int, help="epochs of the temporary ignore-mode model (default: --epochs)")
    add(loss, "prior_estimate", choices=PRIOR_ESTIMATES,
        help="em: mean output corrected for the annotated base rates (label shift); mean: the CSL average")
    add(loss, "loss_reduction", choices=("mean", "sum"), help="mean: per-sample; sum: the reference's raw sum")

    run = p.add_argument_group("run")
    add(run, "output_dir", help="run folder (default outputs/<model>-<mode>-<time>)")
    add(run, "seed", type=int)
    add(run, "device", help="auto, cpu, cuda, cuda:1 ...")
    add(run, "resume", action="store_true", help="continue from the run folder's last checkpoint")
    add(run, "threshold", type=float, help="decision threshold of CP/CR/OP/OR")
    add(run, "stop_after_steps", type=int, help="stop (as if killed) after this many steps; for crash tests")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not args.output_dir:
        args.output_dir = f"outputs/{args.model_name}-{args.partial_loss_mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = TrainConfig.from_dict(vars(args))
    try:
        summary = run_training(cfg)
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 3
    except (LabelFileError, ValueError, FileNotFoundError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"best val mAP {summary['best_val_mAP']:.2f} ({summary['best_weights']} weights)")
    print(f"checkpoint: {summary['best_checkpoint']}\nmetrics: {summary['metrics_csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
