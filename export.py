"""Export a trained checkpoint to ONNX or TorchScript.

Input: a normalised image batch (any batch size, images at the checkpoint's size); output: per-class probabilities.
The class names, schema and preprocessing go to a JSON sidecar ``<output>.json``.

    python export.py --checkpoint outputs/run/checkpoints/best.pt --format onnx --output outputs/run/model.onnx
    python infer.py --onnx outputs/run/model.onnx --images photos/ --output predictions.csv
"""

from __future__ import annotations

import argparse
import sys

from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.export import EXPORT_FORMATS, export_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--opset", type=int, default=18, help="ONNX opset")
    args = p.parse_args(argv)
    try:
        result = export_checkpoint(args.checkpoint, args.format, args.output, args.opset)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result['output']} ({result['format']}) and {result['metadata']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
