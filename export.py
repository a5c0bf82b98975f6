r"""Export a trained checkpoint to ONNX or a torch.export program (.pt2).

Input: a normalised image batch (any batch size, images at the checkpoint's size); output: per-class probabilities.
The class names, schema, preprocessing and tuned thresholds go to a JSON sidecar ``<output>.json``.

    python export.py --checkpoint outputs/run/checkpoints/best.pt --format onnx \
        --output outputs/run/model.onnx
    python infer.py --onnx outputs/run/model.onnx --images photos/ --output predictions.csv
    python export.py --checkpoint outputs/run/checkpoints/best.pt --format torch-export \
        --output outputs/run/model.pt2

In PyTorch, ``torch.export.load("model.pt2").module()(images)`` gives the probabilities (load only files you trust).
"""

from __future__ import annotations

import argparse
import sys

from partial_csl.cli import add_option, call_reporting_errors, make_parser
from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.tools.export import EXPORT_FORMATS, export_checkpoint


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    add_option(p, "checkpoint", required=True, help="a checkpoint written by train.py")
    add_option(p, "format", choices=EXPORT_FORMATS, required=True,
               help="onnx (ONNX Runtime) or torch-export (a torch.export .pt2 archive; TorchScript is gone)")
    add_option(p, "output", required=True, help="the model file to write (metadata: <output>.json)")
    add_option(p, "opset", type=int, default=18, help="ONNX opset")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = call_reporting_errors(lambda: export_checkpoint(args.checkpoint, args.format, args.output, args.opset),
                                   (CheckpointError, ValueError, FileNotFoundError))
    if result is None:
        return 2
    print(f"wrote {result['output']} ({result['format']}) and {result['metadata']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
