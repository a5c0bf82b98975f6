"""Evaluate a checkpoint on a labelled attribute CSV; writes report.json and report.md.

    python validate.py --checkpoint outputs/run/checkpoints/best.pt --csv data/split/test.csv --images data/images \
        --output-dir outputs/run/test-report
"""

from __future__ import annotations

import argparse
import logging
import sys

from src.data.schema import load_schema
from src.engine.checkpoint import CheckpointError
from src.engine.validate import validate_checkpoint
from src.reports.evaluation import summary_line


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train.py")
    p.add_argument("--csv", required=True, help="attributes CSV with the ground truth (#N/A allowed)")
    p.add_argument("--images", required=True, help="image folder of the CSV")
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="where the report goes")
    p.add_argument("--schema", default=None, help="optional: refuse the checkpoint unless it has this schema")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold of CP/CR/CF1/OP/OR/OF1")
    p.add_argument("--device", default="auto")
    p.add_argument("--on-bad-rows", "--on_bad_rows", dest="on_bad_rows", choices=("error", "skip"), default="error")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        schema = load_schema(args.schema) if args.schema else None
        report = validate_checkpoint(args.checkpoint, args.csv, args.images, args.output_dir, schema,
                                     args.batch_size, args.workers, args.threshold, args.device, args.on_bad_rows)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_line(report))
    print(f"report: {report['files']['markdown']} and {report['files']['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
