"""Export a checkpoint for deployment: ONNX or a ``torch.export`` program (``.pt2``), taking a normalised image
batch (any batch size) and returning per-class probabilities. What inference needs besides the weights (class names,
attribute schema, image size, normalisation, the tuned thresholds) goes to a JSON sidecar ``<output>.json`` and into
the file itself (ONNX metadata props; the ``.pt2`` archive's ``metadata.json``).

Both formats start from the same :func:`torch.export.export` graph (the ONNX exporter traces with it too).
TorchScript is gone: ``torch.jit.trace/save/load`` are deprecated in torch 2.14, and ``torch.export`` covers what it
did (a Python-free graph that ``torch.export.load`` runs, AOTInductor can compile, and ExecuTorch can lower).
A ``.pt2`` file is a program: load only files you trust (``torch.export.load`` may unpickle).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ...models import logits_to_probabilities
from ...safe_io import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    check_output_file,
    refuse_inputs_as_outputs,
)
from ..checkpoint import CheckpointInfo, checkpoint_info, load_checkpoint, model_from_checkpoint

MAX_BATCH = 4096  # the exported graphs' batch dimension is dynamic up to this


class ProbabilityHead(nn.Module):
    """model(x) -> probabilities in float32 (sigmoid, or softmax within each attribute for multi-head models)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return logits_to_probabilities(self.model, self.model(images))


def postprocessing(model: nn.Module, info: CheckpointInfo) -> dict:
    """How the exported outputs were made from the logits: a sigmoid per class, or a softmax within each attribute."""
    if getattr(model, "output_activation", "sigmoid") == "group_softmax":
        groups = {name: [int(start), int(stop)] for name, (start, stop) in zip(info.schema.group_names,
                                                                                model.group_bounds)}
        return {"activation": "softmax_per_attribute", "attribute_slices": groups}
    return {"activation": "sigmoid"}


def export_metadata(info: CheckpointInfo, model: nn.Module) -> dict:
    data_config = info.data_config
    post = postprocessing(model, info)
    output = ("softmax of the logits within each attribute" if post["activation"] == "softmax_per_attribute"
              else "sigmoid of the logits")
    return {"class_names": info.class_names, "schema": info.schema.to_dict() if info.schema else None,
            "arch": info.arch, "image_size": data_config.image_size,
            "data_config": data_config.to_dict(),
            "normalization": {"mean": list(data_config.mean), "std": list(data_config.std)},
            "postprocessing": post, "model_name": info.model_name, "thresholds": info.thresholds,
            "input": f"images: float32 (N, 3, {data_config.image_size}, {data_config.image_size}), RGB in [0, 1] "
                     f"resized ({data_config.interpolation}), minus mean, divided by std",
            "output": f"probabilities: float32 (N, C), {output}"}


def write_onnx(model: nn.Module, example: torch.Tensor, meta: dict, output: Path, opset: int) -> None:
    import onnx

    program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["probabilities"],
                                dynamic_shapes={"images": {0: batch_dim()}}, opset_version=opset, dynamo=True)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"partial_label_csl": json.dumps(meta)})
    atomic_write_bytes(output, proto.SerializeToString())


def write_exported_program(model: nn.Module, example: torch.Tensor, meta: dict, output: Path, opset: int) -> None:
    """A ``torch.export`` archive; ``torch.export.load(path).module()(images)`` gives the probabilities."""
    program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch_dim()}})
    with atomic_open(output, "wb") as f:
        torch.export.save(program, f, extra_files={"metadata.json": json.dumps(meta)})


def batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


# format: writer(model, example, meta, path, opset)
EXPORTERS = {"onnx": write_onnx, "torch-export": write_exported_program}
EXPORT_FORMATS = tuple(EXPORTERS)


def export_checkpoint(checkpoint: str | Path, fmt: str, output: str | Path, opset: int = 18) -> dict:
    if fmt not in EXPORTERS:
        removed = " (TorchScript was removed: torch.jit is deprecated; use torch-export)" * (fmt == "torchscript")
        raise ValueError(f"unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}{removed}")
    output = Path(output)
    sidecar = output.with_suffix(output.suffix + ".json")
    check_output_file(output, "--output")
    check_output_file(sidecar, "--output (its metadata sidecar)")
    refuse_inputs_as_outputs([output, sidecar], [checkpoint])
    ckpt = load_checkpoint(checkpoint)
    network = model_from_checkpoint(ckpt, "cpu", norm="torch", source=checkpoint)
    model = ProbabilityHead(network).eval()
    info = checkpoint_info(ckpt)
    example = torch.rand(2, 3, info.image_size, info.image_size)
    meta = export_metadata(info, network)
    EXPORTERS[fmt](model, example, meta, output, opset)
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")
    return {"output": str(output), "metadata": str(sidecar), "format": fmt}
