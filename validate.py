r"""Evaluate a checkpoint on labelled data: report.json and report.md (the numbers), report.html (the error analysis
a person reads, self-contained: confusion matrices, per-class precision/recall/F1, AP and precision-recall curves,
calibration, training curves, accuracy against coverage, the most confident mistakes), its PNGs under figures/,
and predictions.csv (per image: truth, prediction, confidence, right or wrong).

    python validate.py --checkpoint outputs/run/checkpoints/best.pt --csv data/split/test.csv --images data/images \
        --output-dir outputs/run/test-report
    python validate.py --checkpoint best.pt --dataset coco --data COCO_ROOT --output-dir outputs/run/val-report
    python validate.py --checkpoint outputs/run/checkpoints/best.pt --csv data/split/valid.csv \
        --images data/images --output-dir outputs/run/tuned --tune-thresholds --abstain-accuracy 0.9

--tune-thresholds tunes the thresholds on the given data (use the validation split, not the test split) and writes
them to OUTPUT_DIR/thresholds.json and OUTPUT_DIR/best.pt, a copy of the checkpoint that holds them (the given
checkpoint is never written); settings not given are those the checkpoint was tuned or trained with.
"""

from __future__ import annotations

import argparse
import logging
import sys

from partial_csl.cli import add_option, call_reporting_errors, make_parser
from partial_csl.data.schema import load_schema
from partial_csl.engine.checkpoint import CheckpointError
from partial_csl.engine.setup.formats import DATASETS
from partial_csl.engine.tools.validate import validate_checkpoint
from partial_csl.reports.evaluation import summary_line
from partial_csl.thresholds import CLASS_MODES


def _threshold_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("thresholds (with --tune-thresholds; default: as the checkpoint was tuned or trained)")
    add_option(g, "tune_thresholds", action="store_true",
               help="tune thresholds on this data; writes thresholds.json and a best.pt that holds them")
    add_option(g, "class_thresholds", choices=CLASS_MODES, default=None,
               help="multi-label data: per-class thresholds maximising F1, or reaching --target-precision")
    add_option(g, "target_precision", type=float, default=None, help="--class-thresholds precision: the target")
    add_option(g, "abstain_accuracy", type=float, default=None,
               help="attributes: answer #N/A below the confidence at which the answers reach this accuracy")
    add_option(g, "abstain_coverage", type=float, default=None,
               help="attributes: answer this share of the images, #N/A for the least confident others")


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    add_option(p, "checkpoint", required=True, help="a checkpoint written by train.py")
    add_option(p, "output_dir", required=True, help="where the report goes")
    add_option(p, "dataset", choices=DATASETS, default="attributes",
               help="; ".join(entry.help for entry in DATASETS.values()))
    add_option(p, "csv", help="the ground truth: an attributes CSV (#N/A allowed) or a multilabel_csv long CSV")
    add_option(p, "images", help="image folder of the CSV (or of the COCO / Open Images labels)")
    add_option(p, "annotations", help="COCO-format JSON (--dataset coco) or an Open Images human-verified label CSV")
    add_option(p, "data", help="COCO 2014 root (annotations/instances_val2014.json, val2014/) or Open Images root "
                               "(oidv6-class-descriptions.csv, *validation-annotations-human-imagelabels.csv, "
                               "validation/)")
    add_option(p, "schema", default=None, help="optional: refuse the checkpoint unless it has this schema")
    add_option(p, "batch_size", type=int, default=64, help="images per forward pass")
    add_option(p, "workers", type=int, default=2, help="DataLoader worker processes")
    add_option(p, "threshold", type=float, default=0.5, help="decision threshold of CP/CR/CF1/OP/OR/OF1")
    add_option(p, "device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    add_option(p, "amp", action=argparse.BooleanOptionalAction, default=None,
               help="mixed precision (default: on for CUDA and for CPUs with native bfloat16)")
    add_option(p, "on_bad_rows", choices=("error", "skip"), default="error",
               help="skip: leave bad CSV rows out, listed in OUTPUT_DIR/rejected_rows.csv")
    add_option(p, "html", action=argparse.BooleanOptionalAction, default=True,
               help="also write report.html, its figures and predictions.csv")
    _threshold_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    tune = {k: getattr(args, k) for k in ("class_thresholds", "target_precision", "abstain_accuracy",
                                          "abstain_coverage")}
    if not args.tune_thresholds and any(v is not None for v in tune.values()):
        print("error: the threshold settings apply with --tune-thresholds only", file=sys.stderr)
        return 2
    report = call_reporting_errors(lambda: validate_checkpoint(
        args.checkpoint, args.output_dir, dataset=args.dataset, csv_path=args.csv, images=args.images,
        annotations=args.annotations, data_root=args.data, schema=load_schema(args.schema) if args.schema else None,
        batch_size=args.batch_size, workers=args.workers, threshold=args.threshold, device=args.device,
        on_bad_rows=args.on_bad_rows, amp=args.amp, html=args.html,
        tune_thresholds=tune if args.tune_thresholds else None), (CheckpointError, ValueError, FileNotFoundError))
    if report is None:
        return 2
    print(summary_line(report))
    files = report["files"]
    print(f"report: {files['markdown']} and {files['json']}" + (f"; {files['html']}" if "html" in files else ""))
    if "thresholds" in files:
        print(f"thresholds: {files['thresholds']}; checkpoint with them: {files['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
