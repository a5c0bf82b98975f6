"""Prediction from a checkpoint alone: the model, its preprocessing and its classes all come from the file."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ...data.images import ImageLoadError, load_rgb, to_rgb
from ...data.schema import AttributeSchema
from ...data.transforms import build_transform
from ...models import logits_to_probabilities, optimize_for_inference
from ..checkpoint import checkpoint_info, load_checkpoint, model_from_checkpoint
from ..config import resolve_amp, resolve_device

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class Predictor:
    """``Predictor.from_checkpoint(path).predict([PIL images])`` -> (N, C) probabilities."""

    def __init__(self, checkpoint: dict, device: torch.device | str = "cpu", norm: str = "auto",
                 channels_last: bool = False, compile_model: bool = False, amp: bool | None = None,
                 source: str | Path = "the checkpoint"):
        self.info = checkpoint_info(checkpoint)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.amp_dtype = resolve_amp(amp, "auto", self.device)
        self.model = optimize_for_inference(model_from_checkpoint(checkpoint, self.device, norm, source),
                                            channels_last, compile_model)
        self.class_names: list[str] = self.info.class_names
        self.schema: AttributeSchema | None = self.info.schema
        self.data_config = self.info.data_config  # exactly the preprocessing training used
        self.image_size = self.data_config.image_size
        self.transform = build_transform(self.data_config, train=False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", norm: str = "auto", channels_last: bool = False,
                        compile_model: bool = False, amp: bool | None = None) -> Predictor:
        return cls(load_checkpoint(path), resolve_device(device), norm, channels_last, compile_model, amp, path)

    @torch.inference_mode()
    def run_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities (B, C) of a preprocessed batch."""
        layout = torch.channels_last if self.channels_last else torch.preserve_format
        batch = batch.to(self.device, memory_format=layout)
        enabled = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled):
            logits = self.model(batch)
        return logits_to_probabilities(self.model, logits).cpu().numpy()

    def predict_batch(self, batch: torch.Tensor, tta: bool = False) -> np.ndarray:
        """Probabilities of a preprocessed batch; with ``tta``, the mean of the image's and its mirror image's."""
        probs = self.run_batch(batch)
        if tta:
            probs = (probs + self.run_batch(torch.flip(batch, dims=[3]))) / 2
        return probs

    def predict(self, images: Sequence[Image.Image], batch_size: int = 32, tta: bool = False) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            batch = torch.stack([self.transform(img if img.mode == "RGB" else to_rgb(img)) for img in chunk])
            out.append(self.predict_batch(batch, tta))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), dtype=np.float32)

    def default_workers(self) -> int:
        """Decoding processes worth starting: on a GPU, up to 8 (the CPU is free while the model runs); on the CPU,
        only the cores the model's own threads leave idle (it already keeps ``torch.get_num_threads()`` busy, and
        competing with it is slower than decoding in turn: measured in benchmarks/infer_speed.py)."""
        cores = os.cpu_count() or 1
        if getattr(self, "device", torch.device("cpu")).type == "cuda":
            return min(8, cores)
        return max(0, min(4, cores - torch.get_num_threads()))

    def predict_files(self, paths: Sequence[Path], batch_size: int = 32, workers: int | None = 0,
                      tta: bool = False) -> tuple[list[Path], np.ndarray, dict]:
        """Predict every readable file; returns (predicted paths, probabilities, {unreadable path: reason}).

        Files are decoded and preprocessed by a DataLoader (``workers`` processes, None for
        :meth:`default_workers`, none for a single batch, whose start-up would cost more than it saves) while the
        model runs on the previous batch. One bad file (corrupt, truncated, over the pixel limit) is a failure of
        that file only: it goes to the returned failures and every other file is still predicted.
        """
        workers = self.default_workers() if workers is None else workers
        loader = DataLoader(ImageFiles(paths, self.transform), batch_size=batch_size, collate_fn=collate_images,
                            num_workers=workers if len(paths) > batch_size else 0,
                            pin_memory=getattr(self, "device", torch.device("cpu")).type == "cuda")
        done, probs, failures = [], [], {}
        for batch, indices, failed in loader:
            for index, reason in failed.items():
                failures[str(paths[index])] = reason
                log.warning("skipping unreadable image %s (%s)", paths[index], reason)
            if batch is not None:
                probs.append(self.predict_batch(batch, tta))
                done.extend(Path(paths[i]) for i in indices)
        empty = np.zeros((0, len(self.class_names)), dtype=np.float32)
        return done, np.concatenate(probs) if probs else empty, failures

    def attribute_predictions(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """Argmax class index within each attribute group (attribute checkpoints only)."""
        if self.schema is None:
            raise ValueError("this checkpoint has no attribute schema")
        return {name: probs[:, sl].argmax(axis=1) for name, sl in self.schema.group_slices().items()}


class OnnxPredictor(Predictor):
    """The same preprocessing and outputs as :class:`Predictor`, run by ONNX Runtime on a file from export.py."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        path = Path(path)
        sidecar = path.with_suffix(path.suffix + ".json")
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if not sidecar.is_file():
            raise FileNotFoundError(f"metadata sidecar not found: {sidecar} (export.py writes it)")
        meta = json.loads(sidecar.read_text())
        self.info = checkpoint_info(meta)  # the sidecar has a checkpoint's keys
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.class_names = self.info.class_names
        self.schema = self.info.schema
        self.data_config = self.info.data_config
        self.image_size = self.data_config.image_size
        self.transform = build_transform(self.data_config, train=False)

    def run_batch(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(["probabilities"], {"images": batch.numpy()})[0]


class ImageFiles(Dataset):
    """Image files as preprocessed tensors, for a DataLoader; a file that cannot be read gives its reason instead
    (an exception in a worker process would end the whole run)."""

    def __init__(self, paths: Sequence[Path], transform: Callable):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            return self.transform(load_rgb(self.paths[index])), index, None
        except ImageLoadError as err:  # load_rgb reports every failure of one file as this
            return None, index, str(err)


def collate_images(items: list[tuple]) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
    """A batch of the readable files (None when there is none), their indices, and {index: reason} of the others."""
    good = [(tensor, index) for tensor, index, reason in items if reason is None]
    failed = {index: reason for _, index, reason in items if reason is not None}
    batch = torch.stack([tensor for tensor, _ in good]) if good else None
    return batch, [index for _, index in good], failed


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        raise ValueError(f"--images {folder} is a file, not a folder (--image predicts one image)")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
