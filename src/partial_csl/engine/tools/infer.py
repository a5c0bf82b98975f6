"""Predict attributes (or labels) for images and write a CSV; unreadable images are reported and skipped.

The inputs (the CSV, the images, the model file and its sidecar) are never overwritten: an ``--output`` that is one
of them, by path or by inode, is refused before the model is loaded, and the predictions and the failures list are
written as new files (temp file + rename).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.labels import FILENAME_COLUMN, read_filename_column
from ...safe_io import atomic_open, atomic_write_text, check_output_file, refuse_inputs_as_outputs
from ..inference.predictor import OnnxPredictor, Predictor, list_images
from ..inference.stored_thresholds import abstained, label_thresholds
from ..setup.formats import EvalRequest, get_dataset

MISSING = "#N/A"  # the CSV format's unknown value: also what the model answers when it is unsure
TABLE_SUFFIXES = (".csv", ".tsv")  # what an output inside the image folder may be (never listed as an image)


def collect_inputs(image: str | None, images: str | None, csv_path: str | None) -> tuple[list[Path], list[str]]:
    """The files to predict and the name each gets in the output (relative to the image folder).

    A CSV's filename column is validated first, with line numbers (an empty name or one outside the folder is an
    error, as are an unreadable or ragged CSV); a listed image that is missing or unreadable is a per-image failure.
    An image listed on several rows (a long CSV lists it once per label) is predicted once, under its first name.
    """
    if image:
        return [Path(image)], [Path(image).name]
    if csv_path:
        if not images:
            raise ValueError("--csv needs --images (the folder its filenames are relative to)")
        first: dict[Path, str] = {}
        for _, name, path in read_filename_column(csv_path, images):
            first.setdefault(path, name)
        return list(first), list(first.values())
    if images:
        paths = list_images(images)
        return paths, [str(p.relative_to(images)) for p in paths]
    raise ValueError("give one of --image, --images or --csv with --images")


def failures_path(output: str | Path) -> Path:
    """Where the unreadable images of a run are listed, beside the predictions."""
    return Path(output).with_suffix(".failures.json")


def _model_files(checkpoint: str | Path | None, onnx: str | Path | None) -> list[Path]:
    if onnx is not None:
        return [Path(onnx), Path(f"{onnx}.json")]
    return [Path(checkpoint)]


def check_outputs(output: str | Path, inputs: list[Path], image_folder: str | Path | None = None) -> None:
    """Refuse an output that is a folder, cannot be written, is (or would overwrite) any input, or lies in the image
    folder other than as a new table file."""
    output = Path(output)
    check_output_file(output, "--output")
    refuse_inputs_as_outputs([output, failures_path(output)], inputs)
    if image_folder is not None:
        check_not_in_image_folder(output, Path(image_folder))


def check_not_in_image_folder(output: Path, image_folder: Path) -> None:
    """An output inside the image folder may only be a new table file: an existing file there (an image the CSV
    does not list, the user's notes) would be replaced, and a new image-named file would be read as an image."""
    if not output.resolve().is_relative_to(image_folder.resolve()):
        return
    for path in (output, failures_path(output)):
        if path.exists():
            raise ValueError(f"--output {output} lies inside the image folder {image_folder}, where {path} already "
                             "exists and would be replaced; write the predictions outside the image folder")
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--output {output} lies inside the image folder {image_folder} and is not a "
                         f"{'/'.join(TABLE_SUFFIXES)} file; write the predictions outside the image folder")


def _names_done(paths: list[Path], names: list[str], done: list[Path]) -> list[str]:
    """The output name of each predicted path (``done`` is ``paths`` in order, less the failures)."""
    out, k = [], 0
    for path, name in zip(paths, names):
        if k < len(done) and done[k] == Path(path):
            out.append(name)
            k += 1
    return out


def write_predictions(output: Path, rows: dict[str, list], failed: dict[str, str]) -> None:
    """The predictions CSV and, when some images failed, its failures list (a stale one is removed)."""
    with atomic_open(output, "w", newline="") as f:
        pd.DataFrame(rows).to_csv(f, index=False, lineterminator="\n")
    if failed:
        atomic_write_text(failures_path(output), json.dumps(failed, indent=2) + "\n")
    else:
        failures_path(output).unlink(missing_ok=True)


def prediction_rows(predictor: Predictor, names: list[str], probs: np.ndarray, threshold: float | None = None,
                    probabilities: bool = True, class_names: bool = False, use_thresholds: bool = True) -> dict:
    """The CSV's columns. Attributes: the predicted class index (its name with ``class_names``), ``#N/A`` where
    the checkpoint's abstention thresholds say the model is unsure; multi-label data: the labels at the tuned
    per-class thresholds (or ``threshold``). Then, with ``probabilities``, one ``prob_<class>`` column per class."""
    entry = predictor.info.thresholds if use_thresholds else None
    rows: dict[str, list] = {FILENAME_COLUMN: names}
    if predictor.schema is not None:
        unsure = abstained(entry, probs, predictor.schema.group_slices()) or {}
        predicted = predictor.attribute_predictions(probs)
        for group in predictor.schema.groups:
            classes = predicted[group.name]
            values = [group.class_names[c] for c in classes] if class_names else classes.tolist()
            if group.name in unsure:
                values = [MISSING if unsure_here else v for v, unsure_here in zip(values, unsure[group.name])]
            rows[group.name] = values
    else:
        cut = label_thresholds(entry, len(predictor.class_names), threshold)
        rows["labels"] = [";".join(c for c, p, t in zip(predictor.class_names, row, cut) if p >= t) for row in probs]
    if probabilities:
        for c, name in enumerate(predictor.class_names):
            rows[f"prob_{name}"] = [round(float(v), 6) for v in probs[:, c]]
    return rows


def dataset_inputs(predictor: Predictor | OnnxPredictor, source: str, output: str | Path, *, dataset: str,
                   data_root: str | None, annotations: str | None, images: str | None,
                   csv_path: str | None) -> tuple[list[Path], list[str]]:
    """The validation images of ``--dataset`` as validate.py reads them (``--data DIR``, or explicit
    ``--annotations`` / ``--images`` / ``--csv``), each listed image checked as there; their names are the split's."""
    request = EvalRequest(checkpoint=source, class_names=predictor.class_names, schema=predictor.schema,
                          output_dir=Path(output).parent, csv_path=csv_path, images=images, annotations=annotations,
                          data_root=data_root)
    split = get_dataset(dataset).read_evaluation(request)
    return [split.image_dir / name for name in split.filenames], list(split.filenames)


def run_inference(checkpoint: str | Path | None, output: str | Path, *, image: str | None = None,
                  images: str | None = None, csv_path: str | None = None, threshold: float | None = None,
                  batch_size: int = 32, device: str = "auto", channels_last: bool = False,
                  compile_model: bool = False, amp: bool | None = None, onnx: str | Path | None = None,
                  workers: int | None = None, tta: bool = False, probabilities: bool = True, class_names: bool = False,
                  use_thresholds: bool = True, dataset: str | None = None, data_root: str | None = None,
                  annotations: str | None = None) -> dict:
    """Predict with a checkpoint (PyTorch) or an exported ONNX model (ONNX Runtime), same pre/post-processing.

    Images are decoded by ``workers`` processes (None: as many as the device leaves cores idle, see
    :meth:`.Predictor.default_workers`) in batches of ``batch_size``; ``tta`` averages each image with its
    mirror image. ``threshold`` (multi-label data) overrides the tuned per-class thresholds; ``use_thresholds=False``
    ignores every stored threshold (no ``#N/A`` answers, 0.5 for labels).
    """
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of --checkpoint and --onnx")
    given = [Path(p) for p in (image, images, csv_path, data_root, annotations) if p]
    paths, names = collect_inputs(image, images, csv_path) if dataset is None else ([], [])  # inputs' errors first
    check_outputs(output, [*_model_files(checkpoint, onnx), *given, *paths], images or data_root)
    if onnx is not None:
        predictor = OnnxPredictor(onnx)
    else:
        predictor = Predictor.from_checkpoint(checkpoint, device, channels_last=channels_last,
                                              compile_model=compile_model, amp=amp)
    if dataset is not None:  # the split's images, read as validate.py reads them (the checkpoint's classes)
        paths, names = dataset_inputs(predictor, str(checkpoint or onnx), output, dataset=dataset,
                                      data_root=data_root, annotations=annotations, images=images, csv_path=csv_path)
        check_outputs(output, paths, images or data_root)
    done, probs, failures = predictor.predict_files(paths, batch_size, workers=workers, tta=tta)
    rows = prediction_rows(predictor, _names_done(paths, names, done), probs, threshold, probabilities, class_names,
                           use_thresholds)
    name_of = {str(p): n for p, n in zip(paths, names)}
    failed = {name_of.get(p, p): reason for p, reason in failures.items()}
    write_predictions(Path(output), rows, failed)
    return {"output": str(output), "predicted": len(done), "failed": failed}
