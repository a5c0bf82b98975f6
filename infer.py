r"""Predict with a trained checkpoint; needs nothing but the checkpoint and the images.

    python infer.py --checkpoint outputs/run/checkpoints/best.pt --images photos/ --output predictions.csv
    python infer.py --checkpoint best.pt --image shirt.jpg --output shirt.csv
    python infer.py --checkpoint best.pt --csv data/split/test.csv --images data/images --output test_predictions.csv \
        --batch-size 64 --workers 4 --tta --names --no-probabilities
    python infer.py --onnx model.onnx --images photos/ --output predictions.csv
    python infer.py --checkpoint best.pt --dataset openimages --data data/openimages --output val_predictions.csv

An attribute is written as its class index (its name with --names), or #N/A where the checkpoint holds abstention
thresholds (train.py / validate.py --tune-thresholds with --abstain-accuracy or --abstain-coverage) and the model is
less sure than that; multi-label checkpoints write the labels at their tuned per-class thresholds, else at
--threshold.
"""

from __future__ import annotations

import argparse
import logging
import sys

from partial_csl.cli import add_option, call_reporting_errors, make_parser
from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.setup.formats import DATASETS
from partial_csl.engine.tools.infer import run_inference


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    add_option(p, "checkpoint", help="a checkpoint written by train.py (best.pt)")
    add_option(p, "onnx", help="instead of --checkpoint: a model written by export.py (run with ONNX Runtime)")
    add_option(p, "image", help="one image file")
    add_option(p, "images", help="an image folder (all images in it), or the folder of --csv's filenames")
    add_option(p, "csv", help="predict the filenames listed in this CSV (relative to --images)")
    add_option(p, "dataset", choices=sorted(DATASETS), default=None,
               help="predict the validation images of a dataset, read as validate.py reads them: --data DIR (or "
                    "--annotations and --images; attributes and multilabel_csv: --csv and --images)")
    add_option(p, "data", help="--dataset's folder (coco, openimages, lvis)")
    add_option(p, "annotations", help="--dataset: the validation annotations file, instead of the one in --data")
    add_option(p, "output", required=True, help="predictions CSV to write")
    add_option(p, "threshold", type=float, default=None,
               help="label threshold of multi-label models (default: the checkpoint's tuned per-class thresholds, "
                    "else 0.5)")
    add_option(p, "ignore_thresholds", action="store_true",
               help="ignore the checkpoint's tuned thresholds: no #N/A answers, labels at --threshold or 0.5")
    add_option(p, "names", action="store_true", help="write class names instead of class indices")
    add_option(p, "probabilities", action=argparse.BooleanOptionalAction, default=True,
               help="one prob_<class> column per class (--no-probabilities leaves them out)")
    add_option(p, "tta", action="store_true", help="test-time augmentation: average with the mirrored image")
    add_option(p, "batch_size", type=int, default=32, help="images per forward pass")
    add_option(p, "workers", type=int, default=None,
               help="DataLoader processes that decode and resize the images (default: up to 8 on a GPU; on the CPU "
                    "the cores the model's threads leave idle, often none)")
    add_option(p, "device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    add_option(p, "amp", action=argparse.BooleanOptionalAction, default=None,
               help="mixed precision (default: on for CUDA and for CPUs with native bfloat16)")
    add_option(p, "channels_last", action="store_true", help="NHWC memory format (often faster on GPU)")
    add_option(p, "compile", action="store_true", help="torch.compile the model (slow start, faster batches)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    result = call_reporting_errors(lambda: run_inference(
        args.checkpoint, args.output, image=args.image, images=args.images, csv_path=args.csv,
        threshold=args.threshold, batch_size=args.batch_size, device=args.device, channels_last=args.channels_last,
        compile_model=args.compile, amp=args.amp, onnx=args.onnx, workers=args.workers, tta=args.tta,
        probabilities=args.probabilities, class_names=args.names, use_thresholds=not args.ignore_thresholds,
        dataset=args.dataset, data_root=args.data, annotations=args.annotations),
        (CheckpointError, ValueError, FileNotFoundError))
    if result is None:
        return 2
    for name, reason in result["failed"].items():
        print(f"skipped unreadable image {name}: {reason}", file=sys.stderr)
    print(f"wrote {result['predicted']} predictions to {result['output']}")
    return 0 if result["predicted"] else 1


if __name__ == "__main__":
    sys.exit(main())
