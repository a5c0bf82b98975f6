r"""infer.py's throughput on the CPU, before and after decoding moved to a DataLoader: images/s from files on disk.

    .venv/bin/python benchmarks/infer_speed.py --images 256 --source-size 256 --image-size 64 --model-name tresnet_m
    .venv/bin/python benchmarks/infer_speed.py --images 32 --image-size 32 --model-name test_resnet \
        --workers 0 2 --batch-size 16

"before" is the old loop (decode every image in the main process, then run the batch); "after" is
:meth:`partial_csl.engine.inference.predictor.Predictor.predict_files` with ``--workers`` processes decoding the
next batches while the model runs. The images are JPEG photos of noise at ``--source-size`` px (decoding cost grows
with it), and the model is untrained (speed does not depend on the weights).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from partial_csl.cli import make_parser
from partial_csl.data.images import load_rgb
from partial_csl.data.schema import default_schema
from partial_csl.data.transforms import resolve_data_config
from partial_csl.engine.checkpoint import model_metadata, save_checkpoint
from partial_csl.engine.config import TrainConfig
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.engine.setup.architectures import build_model, get_architecture
from partial_csl.engine.setup.run_data import LabelSpace


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def write_checkpoint(path: Path, model_name: str, image_size: int) -> Path:
    schema = default_schema()
    cfg = TrainConfig(model_name=model_name, image_size=image_size, norm="torch", arch="csl", logit_adjust="none")
    labels = LabelSpace(schema.class_names, schema, [1] * len(schema.class_names))
    model = build_model(cfg.arch, model_name, len(labels.class_names), norm="torch", device="cpu",
                        **get_architecture(cfg.arch).arch_args(cfg, labels))
    data_config = resolve_data_config(model_name, image_size)
    meta = model_metadata(cfg, labels, model, data_config, None, "main")
    return save_checkpoint({**meta, "model": model.state_dict(), "weights": "regular", "metrics": {}}, path)


def before(predictor: Predictor, paths: list[Path], batch_size: int) -> int:
    """The old infer.py loop: decode a batch in the main process, then predict it."""
    done = 0
    for start in range(0, len(paths), batch_size):
        images = [load_rgb(p) for p in paths[start:start + batch_size]]
        done += len(predictor.predict(images, batch_size))
    return done


def rate(fn) -> float:
    start = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - start)


def best_rates(methods: list[tuple[str, int, object]], repeat: int) -> list[tuple[str, int, float]]:
    """images/s of each method, the best of ``repeat`` interleaved runs after one warm-up each (a shared machine's
    other jobs only ever slow a run down)."""
    for _, _, fn in methods:
        fn()
    best = [0.0] * len(methods)
    for _ in range(repeat):
        for k, (_, _, fn) in enumerate(methods):
            best[k] = max(best[k], rate(fn))
    return [(name, workers, value) for (name, workers, _), value in zip(methods, best)]


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--images", type=int, default=256, help="number of image files")
    p.add_argument("--source-size", type=int, default=256, help="side of the JPEG files")
    p.add_argument("--image-size", type=int, default=64, help="the model's input size")
    p.add_argument("--model-name", default="tresnet_m", help="any model train.py builds")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader processes to time")
    p.add_argument("--repeat", type=int, default=3, help="runs of each method; the best counts")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, args.source_size)
        predictor = Predictor.from_checkpoint(write_checkpoint(Path(tmp) / "best.pt", args.model_name,
                                                               args.image_size), "cpu", amp=False)
        batch = args.batch_size

        def files(workers: int | None, tta: bool = False):
            return lambda: len(predictor.predict_files(paths, batch, workers=workers, tta=tta)[0])

        methods = [("before: decode in the main process", 0, lambda: before(predictor, paths, batch)),
                   *(("after: DataLoader", w, files(w)) for w in args.workers),
                   ("after: DataLoader, infer.py's default --workers", predictor.default_workers(), files(None)),
                   ("after: DataLoader, --tta", max(args.workers), files(max(args.workers), True))]
        rows = best_rates(methods, args.repeat)
    print(f"{args.model_name} at {args.image_size} px from {args.images} JPEGs of {args.source_size} px, batch "
          f"{args.batch_size}, CPU with {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| infer.py | workers | images/s |")
    print("|---|---:|---:|")
    for name, workers, value in rows:
        print(f"| {name} | {workers} | {value:.1f} |")


if __name__ == "__main__":
    main()
