r"""Train a multi-label classifier on partially labelled data: per-attribute softmax heads under the balanced softmax
for attribute data, CSL (selective loss + class priors) for COCO-format data or with ``--arch csl``.

    python train.py --train-csv data/split/train.csv --val-csv data/split/valid.csv --images data/images \
        --epochs 30 --output-dir outputs/my-run
    python train.py --train-csv data/split/train.csv --val-csv data/split/valid.csv --images data/images \
        --arch csl --partial_loss_mode selective --epochs 30 --output-dir outputs/my-csl-run
    python train.py --dataset coco --data COCO_ROOT --simulate_partial_type fpc --simulate_partial_param 1000 \
        --gamma_unann 4 --gamma_neg 3 --gamma_pos 0 --image-size 448 --output-dir outputs/coco-fpc
    python train.py --config outputs/my-run/config.json --output-dir outputs/my-run-again
    python train.py --config run.yaml --epochs 5 --abstain-accuracy 0.9 --output-dir outputs/short

Every flag accepts both spellings (``--partial_loss_mode`` and ``--partial-loss-mode``). A ``selective`` run without
``--prior_path`` first trains a temporary ignore-mode model for ``--prior_epochs`` to estimate the class priors.
``--config FILE`` (YAML, or JSON such as a run's own config.json) gives any flag (key ``a_b`` or ``a-b`` for
``--a-b``); flags on the command line override it, and a run's config.json repeats that run.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import replace

from partial_csl.cli import CONFIG_FLAG, HelpFormatter, call_reporting_errors, config_file_argv, option_flag
from partial_csl.data.labels import LabelFileError
from partial_csl.data.partial import SIMULATIONS
from partial_csl.data.sampling import SAMPLERS
from partial_csl.data.transforms import AUGMENTATIONS, INTERPOLATIONS
from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.config import DECLARED_OPTIONS, TrainConfig, with_new_defaults
from partial_csl.engine.setup.architectures import ARCHITECTURES, get_architecture, resolve_auto
from partial_csl.engine.setup.formats import DATASETS
from partial_csl.engine.setup.read_settings import unread_by
from partial_csl.engine.setup.rebalancing import CLASS_WEIGHTINGS, LOGIT_ADJUSTMENTS
from partial_csl.engine.training.pseudo import TEACHERS, THRESHOLD_SCOPES
from partial_csl.engine.training.records import TrainingInterrupted
from partial_csl.engine.training.trainer import NonFiniteLossError, TrainingStopped, run_training
from partial_csl.losses import LOSSES, TASK_WEIGHTINGS
from partial_csl.models import PretrainedLoadError
from partial_csl.models.factory import NORM_BACKENDS
from partial_csl.models.heads import HEAD_NAMES
from partial_csl.prior_estimates import PRIOR_ESTIMATES
from partial_csl.thresholds import CLASS_MODES

DEFAULTS = TrainConfig()


def spellings(name: str) -> list[str]:
    """``--a_b`` and ``--a-b`` for one option."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}", f"--{name.replace('-', '_')}"]))


def _adder(group: argparse._ArgumentGroup):
    """``add(name, ...)``: an option in both spellings whose default is TrainConfig's."""
    def add(name: str, **kwargs) -> None:
        dest = name.replace("-", "_")
        if kwargs.get("action") == "store_true":  # --no-x too, so that the command line can undo a --config file
            kwargs["action"] = argparse.BooleanOptionalAction
        group.add_argument(*spellings(name), dest=dest, default=getattr(DEFAULTS, dest, None), **kwargs)
    return add


def _data_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("data"))
    add("dataset", choices=DATASETS, help="; ".join(entry.help for entry in DATASETS.values()))
    add("train_csv", help="training CSV: attributes (filename + one column per attribute) or multilabel_csv "
                          "(filename,label,value)")
    add("val_csv", help="validation CSV, in the same format")
    add("images", help="image folder of the CSVs")
    add("val_images", help="image folder of the validation data, when it differs from --images")
    add("classes", help="multilabel_csv: the class names, one per line, in output order; openimages: LabelNames "
                        "(e.g. the trainable classes) (default: the training file's labels, sorted)")
    add("schema", help="JSON/YAML attribute schema (default: neck 7, sleeve_length 4, pattern 10)")
    add("image_size", type=int, help="square input size; TResNet needs a multiple of 32")
    add("mean", type=float, nargs=3, help="input normalisation mean (default: the model's pretrained config; "
                                          "TResNet 0 0 0, most timm models ImageNet's)")
    add("std", type=float, nargs=3, help="input normalisation std (default: the model's pretrained config)")
    add("interpolation", choices=sorted(INTERPOLATIONS), help="resize interpolation (default: the model's)")
    add("batch_size", type=int)
    add("workers", type=int, help="DataLoader worker processes")
    add("freeze_backbone", action="store_true",
        help="train the head only, on backbone features computed once (eval mode, no augmentation)")
    add("cache_embeddings", action="store_true",
        help="--freeze-backbone: keep the features on disk, keyed by model, weights and images (reused when equal)")
    add("embeddings_dir", help="--cache-embeddings: where (default <run>/embeddings; share it across a sweep)")
    add("cache_images", action="store_true",
        help="decode and resize every image once, in memory, for all epochs (N x size^2 x 3 bytes; small images)")
    add("augment", choices=AUGMENTATIONS, help="csl: Cutout + RandAugment (reference); light; none")
    add("sampler", choices=SAMPLERS, help="uniform; balanced: LVIS repeat factors of the known positives; "
                                          "raking: per-image weights matching sqrt-frequency per attribute")
    add("repeat_threshold", type=float, help="balanced: the frequency t below which classes are repeated")
    add("sampler_max_weight", type=float, help="raking: cap on one image's weight relative to the lightest")
    add("sampler_power", type=float, help="balanced, raking: strength; repeat factors (t / f)^p, raking target "
                                          "freq^(1 - p); 0.5 the square root, 0 uniform")
    add("sampler_max_repeats", type=float, help="balanced, raking: cap on one image's weight relative to the "
                                                "lightest (default: none)")
    add("sampler_replacement", action=argparse.BooleanOptionalAction,
        help="--no-sampler-replacement: each image floor(expected) times, the rest drawn without replacement")
    add("on_bad_rows", choices=("error", "skip"), help="skip: leave bad CSV rows out, listed in the run folder")

    add = _adder(p.add_argument_group("COCO-format data (--dataset coco)"))
    add("data", help="COCO 2014 root (annotations/instances_{train,val}2014.json, train2014/, val2014/) or Open "
                      "Images root (oidv6-class-descriptions.csv, the human-verified label CSVs, train/, validation/)")
    add("train_annotations", help="training COCO JSON or Open Images label CSV (overrides --data)")
    add("val_annotations", help="validation COCO JSON or Open Images label CSV")
    add("train_images", help="image folder of --train-annotations")
    add("keep_empty", action="store_true", help="keep images without annotations as all-negative (default: "
                                                "dropped from train and val, as the official loader does)")
    add("simulate_partial_type", choices=SIMULATIONS,
        help="hide training labels: fpc (N per class), rps (each with probability p), known (each kept with "
             "probability q), missing_positives (positives kept with probability r, the rest negatives), "
             "single_positive (one positive per image)")
    add("simulate_partial_param", type=float, help="N for fpc, p for rps, q for known, r for missing_positives")


def _model_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("model"))
    add("arch", choices=["auto", *ARCHITECTURES], help="csl: one sigmoid head, partial-label loss; mtl: one softmax "
                                                      "head per attribute; latent: heads W = L S; afa: branches "
                                                      "joined by AFA layers; auto: mtl for attribute data, csl for "
                                                      "COCO-format data")
    add("model_name", help="tresnet_m / tresnet_l / tresnet_xl / tresnet_v2_l, or any timm model")
    add("model_path", help="pretrained weights (timm or MIIL format), see pretrained_weights/README.md")
    add("norm", choices=NORM_BACKENDS, help="TResNet ABN backend: inplace_abn kernels or exact pure PyTorch")
    add("head", choices=HEAD_NAMES, help="--arch csl: linear (pooled features + linear layer), ml_decoder "
                                         "(cross-attention group queries), label_graph (graph attention over class "
                                         "co-occurrence), cosine (normalised features and weights, for --loss aam)")
    add("task_weighting", choices=TASK_WEIGHTINGS, help="multi-head archs: equal, dwa or uncertainty")
    add("dwa_temperature", type=float, help="DWA temperature T")
    add("latent_tasks", type=int, help="latent: number K of shared latent tasks")
    add("latent_reg", type=float, help="latent: weight of the grouping (l2,1) regulariser on S")
    add("branch_model", help="afa: the ResNet-family timm model of each attribute branch")
    add("afa_stages", help="afa: comma-separated stages (1-4) followed by an AFA layer, e.g. 3,4")
    add("afa_grad_balance", action="store_true", help="afa: the original's gradient isolation")
    add("reset_head", action="store_true", help="re-initialise the classifier of --model-path (cRT with "
                                               "--freeze-backbone --sampler balanced)")


def _optim_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("optimisation"))
    add("lr", type=float, help="peak learning rate of OneCycle")
    add("weight_decay", type=float, help="L2 decay on weights (not on biases and norm parameters)")
    add("epochs", type=int)
    add("ema_decay", type=float, help="EMA decay per step; 0 disables the EMA model")
    add("ema_warmup", action="store_true", help="ramp the EMA decay up (useful for short runs)")
    add("amp", action=argparse.BooleanOptionalAction,
        help="mixed precision (default: on for CUDA, and on CPUs with native bfloat16); --no-amp for float32")
    add("amp_dtype", choices=("auto", "float16", "bfloat16"), help="auto: float16 on CUDA, bfloat16 on CPU")
    add("grad_clip", type=float, help="clip the gradient norm to this value (0: off)")
    add("sync_bn", action="store_true",
        help="under torchrun: synchronise BatchNorm statistics across GPUs (InPlaceABNSync for TResNet kernels)")


def _loss_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("loss (Partial Selective Asymmetric Loss and the plain multi-label losses)"))
    add("loss", choices=LOSSES, help="; ".join(f"{name}: {entry.help}" for name, entry in LOSSES.items()))
    add("prior_path", help="prior CSV (class,prior); without it selective estimates priors first")
    add("prior_epochs", type=int, help="epochs of the temporary ignore-mode model (default: --epochs)")
    add("prior_estimate", choices=PRIOR_ESTIMATES,
        help="mean: the CSL average (best in benchmarks/partial_methods.py but under FPC); em: mean output "
             "corrected for the annotated base rates (label shift), bounded by the annotated counts")
    add("prior_loss", choices=LOSSES, help="the prior stage's loss, in ignore mode (bce: plain cross-entropy on the "
                                           "annotated labels; the main stage's gammas and clip do not apply)")
    add("prior_holdout", type=float, help="share of each class's annotated positives and negatives the prior model "
                                          "does not train on (em only): its calibration is fitted on them")
    add("expected_positives", type=float, help="epr, role: positives expected per image (default: estimated from "
                                               "the training labels)")
    add = _adder(p.add_argument_group("settings of the losses and heads (declared by them: each names its readers)"))
    for name, (option, readers) in DECLARED_OPTIONS.items():
        add(name, **option_flag(option, readers))
    add = _adder(p.add_argument_group("class imbalance (counts from the annotated training labels; #N/A excluded)"))
    add("class_weights", choices=["auto", *CLASS_WEIGHTINGS],
        help="effective_number: (1 - beta) / (1 - beta^n_c), mean 1, on the positive terms (csl) or per class in "
             "each attribute's CE; auto: effective_number for per-attribute heads unless --logit-adjust or --sampler "
             "is given, none for csl")
    add("cb_beta", type=float, help="effective_number: beta")
    add("drw_start_epoch", type=int, help="class weights from this epoch (0-based) on; before it the plain loss (DRW)")
    add("logit_adjust", choices=["auto", *LOGIT_ADJUSTMENTS],
        help="train: + tau log prior in the loss; posthoc: - tau log prior at prediction (stored in the checkpoint); "
             "balanced_softmax: + log n_c in each attribute's softmax (multi-head archs); auto: none where class "
             "weights (the per-attribute heads' default) or a sampler re-balance already, else balanced_softmax for "
             "per-attribute heads and none for csl")
    add("la_tau", type=float, help="logit adjustment: tau")


def _pseudo_label_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("teacher pseudo-labels for the unknown labels (main stage; default: off)"))
    add("pseudo_labels", action="store_true",
        help="a teacher (--pseudo-teacher), shown the un-augmented view, labels the unknown entries it is sure of for "
             "the augmented view (per-class thresholds from the validation labels, at most the expected positives per "
             "image, one-hot for an unknown attribute); with any loss and architecture")
    add("pseudo_teacher", choices=sorted(TEACHERS),
        help="; ".join(f"{name}: {what}" for name, what in sorted(TEACHERS.items())))
    add("pseudo_warmup", type=int, help="epochs before the first pseudo-label (at least 1: the thresholds come from "
                                        "the teacher's validation scores after an epoch)")
    add("pseudo_precision", type=float, help="a class's positive threshold: the lowest teacher score above which "
                                             "its validation predictions are right this share of the time")
    add("pseudo_negative_precision", type=float, help="a class's negative threshold: the highest score below which "
                                                      "this share of its validation labels are negatives")
    add("pseudo_thresholds", choices=list(THRESHOLD_SCOPES),
        help="; ".join(f"{name}: {what}" for name, what in THRESHOLD_SCOPES.items()))


def _run_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("run"))
    add("output_dir", help="run folder (default outputs/<model>-<mode>-<time>)")
    add("seed", type=int)
    add("device", help="auto, cpu, cuda, cuda:1 ...")
    add("resume", action="store_true", help="continue the run in --output-dir (its settings must be the same)")
    add("overwrite", action="store_true", help="replace the run in --output-dir (its files only) by a new one")
    add("threshold", type=float, help="decision threshold of CP/CR/OP/OR")
    add("stop_after_steps", type=int, help="stop (as if killed) after this many steps; for crash tests")


def _threshold_options(p: argparse.ArgumentParser) -> None:
    add = _adder(p.add_argument_group("thresholds, tuned on the validation split when training ends (default: off)"))
    add("class_thresholds", choices=CLASS_MODES,
        help="multi-label data: per-class thresholds maximising F1, or reaching --target-precision")
    add("target_precision", type=float, help="--class-thresholds precision: the precision each class should reach")
    add("abstain_accuracy", type=float,
        help="attributes: infer.py answers #N/A below the confidence at which the answers reach this accuracy")
    add("abstain_coverage", type=float,
        help="attributes: infer.py answers this share of the images, #N/A for the least confident others")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument(CONFIG_FLAG, help="YAML or JSON file of settings (a run's config.json too); flags override it")
    for options in (_data_options, _model_options, _optim_options, _loss_options, _pseudo_label_options,
                    _threshold_options, _run_options):
        options(p)
    return p


def resume_command(argv: list[str], output_dir: str) -> str:
    """The command that continues a stopped run: the one given, with its --output-dir, plus --resume."""
    words = [w for w in argv if w not in ("--overwrite", "--resume")]
    if not any(w.split("=")[0] in spellings("output_dir") for w in words):
        words += ["--output-dir", output_dir]
    script = sys.argv[0] if sys.argv[0].endswith("train.py") else "train.py"
    return shlex.join(["python", script, *words, "--resume"])


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = config_file_argv(parser, given, unread=lambda saved: unread_by(with_new_defaults(saved)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    del args.config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = resolve_auto(TrainConfig.from_dict(vars(args)))
    except ValueError as err:  # a typed setting the architecture does not read
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not cfg.output_dir:
        method = cfg.partial_loss_mode if get_architecture(cfg.arch).uses_priors else cfg.arch
        cfg = replace(cfg, output_dir=f"outputs/{cfg.model_name}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")
    logging.info("--arch %s, --logit-adjust %s", cfg.arch, cfg.logit_adjust)
    try:
        summary = call_reporting_errors(lambda: run_training(cfg), (LabelFileError, ValueError, FileNotFoundError,
                                                                     NonFiniteLossError, CheckpointError,
                                                                     PretrainedLoadError))
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 3
    except TrainingStopped as err:
        print(f"{err}; resume with: {resume_command(given, cfg.output_dir)}", file=sys.stderr)
        return 130
    if summary is None:
        return 2
    print(f"best val mAP {summary['best_val_mAP']:.2f} ({summary['best_weights']} weights)")
    print(f"checkpoint: {summary['best_checkpoint']}\nmetrics: {summary['metrics_csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
