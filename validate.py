"""Evaluate a checkpoint on labelled data; writes report.json and report.md (and prints the summary).

    python validate.py --checkpoint outputs/run/checkpoints/best.pt --csv data/split/test.csv --images data/images \
        --output-dir outputs/run/test-report
    python validate.py --checkpoint best.pt --dataset coco --data COCO_ROOT --output-dir outputs/run/val-report
"""

from __future__ import annotations

import argparse
import logging
import sys

from partial_csl.data.schema import load_schema
from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.data import DATASETS
from partial_csl.engine.validate import validate_checkpoint
from partial_csl.reports.evaluation import summary_line


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train.py")
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="where the report goes")
    p.add_argument("--dataset", choices=DATASETS, default="attributes")
    p.add_argument("--csv", help="attributes CSV with the ground truth (#N/A allowed)")
    p.add_argument("--images", help="image folder of the CSV (or of the COCO annotations)")
    p.add_argument("--annotations", help="COCO-format JSON (with --dataset coco)")
    p.add_argument("--data", help="COCO 2014 root: annotations/instances_val2014.json and val2014/")
    p.add_argument("--schema", default=None, help="optional: refuse the checkpoint unless it has this schema")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold of CP/CR/CF1/OP/OR/OF1")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA and for CPUs with native bfloat16)")
    p.add_argument("--on-bad-rows", "--on_bad_rows", dest="on_bad_rows", choices=("error", "skip"), default="error")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        schema = load_schema(args.schema) if args.schema else None
        report = validate_checkpoint(args.checkpoint, args.output_dir, args.dataset, args.csv, args.images,
                                     args.annotations, args.data, schema, args.batch_size, args.workers,
                                     args.threshold, args.device, args.on_bad_rows, args.amp)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_line(report))
    print(f"report: {report['files']['markdown']} and {report['files']['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
