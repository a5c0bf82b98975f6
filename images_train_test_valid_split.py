"""Split an attribute CSV into train/valid/test CSVs, stratified and seeded; images and the input CSV are only read.

An output that would land on an input (``--csv DIR/train.csv --out-dir DIR``, or a link to it) is refused before
anything is written.

    python images_train_test_valid_split.py --csv attributes.csv --images images/ --out-dir data/split
"""

from __future__ import annotations

import argparse
import sys

from partial_csl.data.schema import load_schema
from partial_csl.engine.split import check_split_paths, rebalance_train_split, split_attribute_csv


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", required=True, help="attributes CSV: filename plus one column per attribute")
    p.add_argument("--images", required=True, help="folder holding the images named in the CSV")
    p.add_argument("--out-dir", required=True, help="where train.csv, valid.csv, test.csv and the report go")
    p.add_argument("--schema", default=None, help="JSON/YAML attribute schema (default: neck 7, sleeve_length 4, "
                                                  "pattern 10)")
    p.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    p.add_argument("--seed", type=int, default=0, help="same inputs and seed give byte-identical files")
    p.add_argument("--on-bad-rows", choices=("error", "skip"), default="error",
                   help="skip: leave bad rows out and list them in OUT_DIR/rejected_rows.csv")
    p.add_argument("--rebalance", choices=("balanced", "raking"), default=None,
                   help="also write augmented copies of rare-class training images to OUT_DIR/rebalanced_images/ "
                        "and OUT_DIR/train_rebalanced.csv (originals untouched)")
    p.add_argument("--repeat-threshold", type=float, default=0.3, help="balanced: LVIS frequency threshold t")
    p.add_argument("--rebalance-max-copies", type=int, default=10, help="at most this many copies of one image")
    p.add_argument("--rebalance-max-total", type=int, default=None, help="at most this many copies in all "
                                                                         "(default: the training set's size)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_split_paths(args.csv, args.images, args.out_dir, bool(args.rebalance),
                          [args.schema] if args.schema else [])
        schema = load_schema(args.schema)
        summary = split_attribute_csv(args.csv, args.images, args.out_dir, schema, tuple(args.ratios), args.seed,
                                      args.on_bad_rows)
        rebalanced = rebalance_train_split(summary["files"]["train"], args.images, args.out_dir, schema,
                                           args.rebalance, args.repeat_threshold, args.rebalance_max_copies,
                                           args.rebalance_max_total, args.seed) if args.rebalance else None
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary["distribution_markdown"])
    print(f"rows: {summary['rows']}")
    if summary["rejected_rows"]:
        print(f"{summary['rejected_rows']} bad row(s) left out, listed in {summary['rejected_file']}")
    print(f"wrote {', '.join(summary['files'].values())} and {summary['report']['markdown']}")
    if rebalanced:
        print(f"rebalanced: {rebalanced['copies']} augmented copies, {rebalanced['rows']} training rows in "
              f"{rebalanced['csv']} (images: {rebalanced['images']}; before/after: {rebalanced['report']['markdown']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
