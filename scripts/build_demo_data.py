"""Build the embedded demo dataset (garment attributes rendered from Fashion-MNIST) in the user's CSV format.

    python scripts/build_demo_data.py --out data/demo
    python scripts/build_demo_data.py --generator shapes --out data/shapes   # a second set, built differently
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from partial_csl.data.demo import FASHION_MNIST_DIR, build_demo_dataset
from partial_csl.data.demo_shapes import build_shapes_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/demo", help="writes OUT/images/*.png and OUT/attributes.csv")
    p.add_argument("--num-images", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", type=Path, default=FASHION_MNIST_DIR, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--skew", type=float, default=1.0,
                   help="demo: class frequencies raised to this power (1: garment-like; 1.5: a harder long tail)")
    p.add_argument("--generator", choices=("demo", "shapes"), default="demo",
                   help="demo: product type, colour and texture; shapes: neckline, sleeve bars and hue, correlated "
                        "attributes, rare classes more often #N/A (partial_csl.data.demo_shapes)")
    args = p.parse_args(argv)
    if args.generator == "shapes" and args.skew != 1.0:
        print("error: --skew applies to --generator demo", file=sys.stderr)
        return 2
    try:
        if args.generator == "shapes":
            csv_path = build_shapes_dataset(args.out, args.num_images, args.seed, args.source)
        else:
            csv_path = build_demo_dataset(args.out, args.num_images, args.seed, args.source, skew=args.skew)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"demo data: {csv_path} with images in {Path(args.out) / 'images'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
