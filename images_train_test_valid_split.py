r"""Split an attribute CSV into train/valid/test CSVs, stratified and seeded; images and the input CSV are only read.

An output that would land on an input (``--csv DIR/train.csv --output-dir DIR``, or a link to it) is refused before
anything is written.

    python images_train_test_valid_split.py --csv attributes.csv --images images/ --output-dir data/split
    python images_train_test_valid_split.py --csv attributes.csv --images images/ --output-dir data/split \
        --ratios 0.7 0.15 0.15 --seed 1 --rebalance balanced --rebalance-max-copies 5
"""

from __future__ import annotations

import argparse
import sys

from partial_csl.cli import add_option, make_parser
from partial_csl.data.schema import load_schema
from partial_csl.engine.tools.split_csv import check_split_paths, rebalance_train_split, split_attribute_csv
from partial_csl.safe_io import describe_os_error


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    add_option(p, "csv", required=True, help="attributes CSV: filename plus one column per attribute")
    add_option(p, "images", required=True, help="folder holding the images named in the CSV")
    add_option(p, "output_dir", "out_dir", required=True,
               help="where train.csv, valid.csv, test.csv and the report go (--out-dir: the old name)")
    add_option(p, "schema", default=None, help="JSON/YAML attribute schema (default: neck 7, sleeve_length 4, "
                                               "pattern 10)")
    add_option(p, "ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"),
               help="shares of the three splits")
    add_option(p, "seed", type=int, default=0, help="same inputs and seed give byte-identical files")
    add_option(p, "on_bad_rows", choices=("error", "skip"), default="error",
               help="skip: leave bad rows out and list them in OUTPUT_DIR/rejected_rows.csv")
    add_option(p, "rebalance", choices=("balanced", "raking"), default=None,
               help="also write augmented copies of rare-class training images to OUTPUT_DIR/rebalanced_images/ "
                    "and OUTPUT_DIR/train_rebalanced.csv (originals untouched)")
    add_option(p, "repeat_threshold", type=float, default=0.3, help="balanced: LVIS frequency threshold t")
    add_option(p, "rebalance_max_copies", type=int, default=10, help="at most this many copies of one image")
    add_option(p, "rebalance_max_total", type=int, default=None,
               help="at most this many copies in all (default: the training set's size)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_split_paths(args.csv, args.images, args.output_dir, bool(args.rebalance),
                          [args.schema] if args.schema else [])
        schema = load_schema(args.schema)
        summary = split_attribute_csv(args.csv, args.images, args.output_dir, schema, tuple(args.ratios), args.seed,
                                      args.on_bad_rows)
        rebalanced = rebalance_train_split(summary["files"]["train"], args.images, args.output_dir, schema,
                                           kind=args.rebalance, threshold=args.repeat_threshold,
                                           max_copies=args.rebalance_max_copies, max_total=args.rebalance_max_total,
                                           seed=args.seed) if args.rebalance else None
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    print(summary["distribution_markdown"])
    print(f"rows: {summary['rows']}")
    if summary["content_duplicates"]:
        shown = ", ".join(f"{c['filename']} (line {c['line']}) = {c['copy_of']} (line {c['copy_of_line']})"
                          for c in summary["content_duplicates"][:10])
        print(f"{len(summary['content_duplicates'])} image(s) are byte-identical copies of another listed image, each "
              f"put in its original's split (all in split_summary.json): {shown}")
    if summary["rejected_rows"]:
        print(f"{summary['rejected_rows']} bad row(s) left out, listed in {summary['rejected_file']}")
    print(f"wrote {', '.join(summary['files'].values())} and {summary['report']['markdown']}")
    if rebalanced:
        print(f"rebalanced: {rebalanced['copies']} augmented copies, {rebalanced['rows']} training rows in "
              f"{rebalanced['csv']} (images: {rebalanced['images']}; before/after: {rebalanced['report']['markdown']})")
        if rebalanced["removed"]:
            print(f"removed {len(rebalanced['removed'])} image(s) of the earlier rebalancing that this one did not "
                  f"write again: {', '.join(rebalanced['removed'])}")
        if rebalanced["kept"]:
            print(f"left {len(rebalanced['kept'])} file(s) that no rebalancing wrote: {', '.join(rebalanced['kept'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
