"""CPU inference speed of one checkpoint in PyTorch eager, a torch.export program and ONNX Runtime.

    .venv/bin/python benchmarks/export_speed.py --checkpoint outputs/demo/run/checkpoints/best.pt --size 224

Exports the checkpoint to a temporary folder (``export.py``'s code) at ``--size`` (exported graphs have a fixed image
size; the model is fully convolutional, so a 64 px checkpoint runs at 224 px too), then times batches of random
images and prints images/s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import images_per_second

from partial_csl.cli import make_parser
from partial_csl.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from partial_csl.engine.tools.export import ProbabilityHead, export_checkpoint


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--checkpoint", default="outputs/demo/run/checkpoints/best.pt")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    import onnxruntime as ort

    ckpt = load_checkpoint(args.checkpoint)
    eager = ProbabilityHead(model_from_checkpoint(ckpt, "cpu", norm="torch")).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        # exported graphs have a fixed image size: re-export the (fully convolutional) model at --size
        resized = Path(tmp) / "checkpoint.pt"
        resized_ckpt = {**ckpt, "image_size": args.size}
        if ckpt.get("data_config"):  # format 2 keeps the size here too
            resized_ckpt["data_config"] = {**ckpt["data_config"], "image_size": args.size}
        save_checkpoint(resized_ckpt, resized)
        onnx_path, pt2_path = Path(tmp) / "m.onnx", Path(tmp) / "m.pt2"
        export_checkpoint(resized, "onnx", onnx_path)
        export_checkpoint(resized, "torch-export", pt2_path)
        program = torch.export.load(pt2_path).module()
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            reference = eager(x).numpy()
            results = {
                "PyTorch eager (fp32)": images_per_second(eager, x, args.steps),
                "PyTorch eager (bf16 autocast)": images_per_second(lambda t: _bf16(eager, t), x, args.steps),
                "torch.export program (fp32)": images_per_second(program, x, args.steps),
            }
        def run_onnx(t: torch.Tensor):
            return session.run(None, {"images": t.numpy()})

        results["ONNX Runtime (fp32)"] = images_per_second(run_onnx, x, args.steps)
        diff = np.abs(session.run(None, {"images": x.numpy()})[0] - reference).max()
    print(f"{ckpt['model_name']} at {args.size} px, batch {args.batch}, CPU with {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}; max |ORT - eager| = {diff:.1e}\n")
    print("| runtime | images/s |")
    print("|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.1f} |")


def _bf16(model, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x)


if __name__ == "__main__":
    main()
