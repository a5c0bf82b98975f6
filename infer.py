"""Predict with a trained checkpoint; needs nothing but the checkpoint and the images.

    python infer.py --checkpoint outputs/run/checkpoints/best.pt --images photos/ --output predictions.csv
    python infer.py --checkpoint best.pt --image shirt.jpg --output shirt.csv
    python infer.py --checkpoint best.pt --csv data/split/test.csv --images data/images --output test_predictions.csv
    python infer.py --onnx model.onnx --images photos/ --output predictions.csv
"""

from __future__ import annotations

import argparse
import logging
import sys

from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.infer import run_inference


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint written by train.py")
    p.add_argument("--onnx", help="instead of --checkpoint: a model written by export.py (run with ONNX Runtime)")
    p.add_argument("--image", help="one image file")
    p.add_argument("--images", help="an image folder (all images in it), or the folder of --csv's filenames")
    p.add_argument("--csv", help="predict the filenames listed in this CSV (relative to --images)")
    p.add_argument("--output", required=True, help="predictions CSV to write")
    p.add_argument("--threshold", type=float, default=0.5, help="label threshold for non-attribute models")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA and for CPUs with native bfloat16)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (often faster on GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster batches)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        result = run_inference(args.checkpoint, args.output, args.image, args.images, args.csv, args.threshold,
                               args.batch_size, args.device, args.channels_last, args.compile, args.amp, args.onnx)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, reason in result["failed"].items():
        print(f"skipped unreadable image {name}: {reason}", file=sys.stderr)
    print(f"wrote {result['predicted']} predictions to {result['output']}")
    return 0 if result["predicted"] else 1


if __name__ == "__main__":
    sys.exit(main())
