"""Hostile inputs: outputs that are inputs, links, malformed CSVs, odd image modes, truncated and huge images.

One test per case of the issue (``test_case_<n>_...``), plus the safe-writing rules of ``partial_csl.safe_io``.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import file_digest, make_attribute_dataset, tree_digest
from PIL import Image

import images_train_test_valid_split as split_script
import infer as infer_script
from partial_csl.app.predictions import open_upload
from partial_csl.data.dataset import MultiLabelImageDataset
from partial_csl.data.images import (
    MAX_PIXELS_ENV,
    ImageLoadError,
    ImageTooLargeError,
    load_rgb,
    max_image_pixels,
    to_rgb,
)
from partial_csl.data.labels import LabelFileError, read_attribute_csv, read_filename_column
from partial_csl.data.problems import CsvFormatError
from partial_csl.data.schema import default_schema
from partial_csl.data.transforms import DataConfig, build_transform
from partial_csl.engine.checkpoint import CheckpointInfo
from partial_csl.engine.inference.predictor import Predictor
from partial_csl.engine.tools import split_csv as engine_split
from partial_csl.safe_io import (
    OutputIsInputError,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    refuse_inputs_as_outputs,
    same_file,
)

HEADER = "filename,neck,sleeve_length,pattern\n"


class StubPredictor(Predictor):
    """The real file handling of Predictor with a constant model (no checkpoint needed)."""

    def __init__(self):
        self.checkpoint = {}
        self.schema = default_schema()
        self.class_names = self.schema.class_names
        self.image_size = 8
        self.data_config = DataConfig(8)
        self.info = CheckpointInfo("mtl", "stub", self.class_names, self.schema, self.data_config, None, None, None,
                                   [], {}, {}, [], "last", None, None)
        self.transform = build_transform(self.data_config, train=False)

    def run_batch(self, batch):
        return np.full((len(batch), len(self.class_names)), 0.5, dtype=np.float32)


@pytest.fixture
def stub_predictor(monkeypatch):
    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(lambda cls, *args, **kwargs: StubPredictor()))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with almost no data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")


def save_image(path: Path, value: int = 90, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, 40)).save(path)
    return path


def run_infer(*args: str) -> int:
    return infer_script.main([*map(str, args)])


# --- safe_io ------------------------------------------------------------------------------------------------------


def test_safe_io_same_file_catches_links_and_spellings(tmp_path):
    original = tmp_path / "data.csv"
    original.write_text("x\n")
    (tmp_path / "sub").mkdir()
    os.link(original, tmp_path / "hard.csv")
    (tmp_path / "soft.csv").symlink_to(original)
    for alias in (tmp_path / "hard.csv", tmp_path / "soft.csv", tmp_path / "sub" / ".." / "data.csv",
                  Path(os.path.relpath(original))):
        assert same_file(alias, original)
        with pytest.raises(OutputIsInputError, match=r"refusing to write .*: it is the input .*data\.csv"):
            refuse_inputs_as_outputs([tmp_path / "other.csv", alias], [original])
    assert not same_file(tmp_path / "missing.csv", original)
    (tmp_path / "copy.csv").write_text("x\n")
    assert not same_file(tmp_path / "copy.csv", original)
    refuse_inputs_as_outputs([tmp_path / "copy.csv", tmp_path / "new.csv"], [original, tmp_path / "sub"])
    with pytest.raises(OutputIsInputError):  # an output folder that is an input, by another spelling
        refuse_inputs_as_outputs([tmp_path / "sub" / "."], [tmp_path / "sub"])
    with pytest.raises(OutputIsInputError):  # an output at an input's path, even before either exists
        refuse_inputs_as_outputs([tmp_path / "later.csv"], [tmp_path / "sub" / ".." / "later.csv"])


def test_safe_io_atomic_writes_replace_links_respect_umask_and_clean_up(tmp_path):
    bystander = tmp_path / "bystander.bin"
    bystander.write_bytes(b"keep me")
    target = tmp_path / "out.bin"
    os.link(bystander, target)
    old = os.umask(0o027)
    try:
        atomic_write_bytes(target, b"new")
        atomic_write_text(tmp_path / "fresh.txt", "text\n")
    finally:
        os.umask(old)
    assert bystander.read_bytes() == b"keep me" and target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o640 and ((tmp_path / "fresh.txt").stat().st_mode & 0o777) == 0o640
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bystander.bin", "fresh.txt", "out.bin"]


# --- case 1: the split script never overwrites its inputs ----------------------------------------------------------


def test_case_1_split_refuses_outputs_that_are_inputs(tmp_path, capsys):
    data = tmp_path / "d"
    csv_path = make_attribute_dataset(data, n=30)
    images = data / "images"
    train_csv = data / "train.csv"
    train_csv.write_bytes(csv_path.read_bytes())
    before = tree_digest(data)
    argv = ["--images", str(images)]
    assert split_script.main(["--csv", str(train_csv), "--out-dir", str(data), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(train_csv) in err and "it is the input" in err
    out = tmp_path / "out"
    out.mkdir()
    os.link(csv_path, out / "valid.csv")
    assert split_script.main(["--csv", str(csv_path), "--out-dir", str(out), *argv]) == 2
    (out / "valid.csv").unlink()
    (out / "test.csv").symlink_to(csv_path)
    assert split_script.main(["--csv", str(csv_path), "--out-dir", str(out), *argv]) == 2
    (out / "test.csv").unlink()
    (out / "rebalanced_images").symlink_to(images)
    assert split_script.main(["--csv", str(csv_path), "--out-dir", str(out), *argv, "--rebalance", "balanced"]) == 2
    assert tree_digest(data) == before and sorted(p.name for p in out.iterdir()) == ["rebalanced_images"]
    (out / "rebalanced_images").unlink()
    bystander = tmp_path / "bystander.csv"
    bystander.write_text("not yours\n")
    os.link(bystander, out / "train.csv")  # an existing output must be replaced, not written through
    assert split_script.main(["--csv", str(csv_path), "--out-dir", str(out), *argv]) == 0
    assert bystander.read_text() == "not yours\n" and (out / "train.csv").read_text().startswith("filename,")
    assert tree_digest(data) == before
    assert split_script.main(["--csv", str(csv_path), "--out-dir", str(images), *argv]) == 2  # the image folder
    assert tree_digest(data) == before


# --- case 2: infer.py never overwrites its inputs ------------------------------------------------------------------


def test_case_2_infer_refuses_outputs_that_are_inputs(tmp_path, capsys, stub_predictor):
    data = tmp_path / "d"
    csv_path = make_attribute_dataset(data, n=6)
    images = data / "images"
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"a checkpoint")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    (tmp_path / "m.onnx.json").write_text("{}")
    os.link(csv_path, tmp_path / "labels_link.csv")
    (tmp_path / "labels_soft.csv").symlink_to(csv_path)
    before = {p: file_digest(p) for p in [csv_path, checkpoint, onnx, tmp_path / "m.onnx.json"]} | tree_digest(images)
    model = ["--checkpoint", checkpoint]
    refused = [
        [*model, "--csv", csv_path, "--images", images, "--output", csv_path],
        [*model, "--csv", csv_path, "--images", images, "--output", tmp_path / "labels_link.csv"],
        [*model, "--csv", csv_path, "--images", images, "--output", tmp_path / "labels_soft.csv"],
        [*model, "--image", images / "img_000.png", "--output", images / "img_000.png"],
        [*model, "--images", images, "--output", images / "sub" / ".." / "img_003.png"],
        [*model, "--images", images, "--output", checkpoint],
        ["--onnx", onnx, "--images", images, "--output", tmp_path / "m.onnx.json"],
    ]
    for argv in refused:
        assert run_infer(*argv) == 2, argv
        assert "it is the input" in capsys.readouterr().err
    assert {p: file_digest(p) for p in [csv_path, checkpoint, onnx, tmp_path / "m.onnx.json"]} | tree_digest(
        images) == before
    bystander = tmp_path / "bystander.csv"
    bystander.write_text("keep\n")
    os.link(bystander, tmp_path / "preds.csv")
    assert run_infer(*model, "--csv", csv_path, "--images", images, "--output", tmp_path / "preds.csv") == 0
    assert bystander.read_text() == "keep\n" and len(pd.read_csv(tmp_path / "preds.csv")) == 6


# --- case 3: offline rebalancing never writes onto an original -----------------------------------------------------


def test_case_3_rebalance_copies_never_overwrite_originals(tmp_path):
    images = tmp_path / "images"
    rare = ["x_rb1.png", "x_rb2.png", "x_rb1_png.png", "A_rb1_png.png", "x.png", "a.jpg", "a.png"]  # copies last
    common = [f"c{i:02d}.png" for i in range(40)]
    lines = [HEADER.strip()]
    for k, name in enumerate(rare + common):
        save_image(images / name, value=(37 * k) % 250)
        lines.append(f"{name},{6 if name in rare else 0},0,0")
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("\n".join(lines) + "\n")
    digests = {name: hashlib.sha256((images / name).read_bytes()).hexdigest() for name in rare + common}
    out = tmp_path / "out"
    for _ in range(2):  # a second run into the same folder (links already there) is just as safe
        result = engine_split.rebalance_train_split(train_csv, images, out, default_schema(), threshold=1.0,
                                                    max_copies=3)
        assert {n: hashlib.sha256((images / n).read_bytes()).hexdigest() for n in digests} == digests
    table = pd.read_csv(result["csv"], dtype=str, keep_default_na=False)
    generated = table["filename"].tolist()[len(digests):]
    assert result["copies"] == len(generated) >= len(rare)
    folded = [n.casefold() for n in table["filename"]]
    assert len(set(folded)) == len(folded)  # distinct from the originals and from each other, in any letter case
    assert {"x_rb2_png.png", "a_rb1_jpg.png", "a_rb2_png.png"} <= set(generated)  # x_rb1_png / A_rb1_png are taken
    for name in table["filename"]:
        assert (out / "rebalanced_images" / name).is_file()
    for name in rare:  # the linked originals are still the originals
        assert same_file(out / "rebalanced_images" / name, images / name) or file_digest(
            out / "rebalanced_images" / name) == file_digest(images / name)


# --- case 6: malformed CSVs ---------------------------------------------------------------------------------------


def test_case_6_ragged_rows_duplicate_headers_line_numbers_and_missing_tokens(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("filename,note,neck,sleeve_length,pattern\n"   # 1
                    "a.png,,1,2,3\n"                                # 2
                    "\n"                                            # 3: blank
                    'b.png,"two\nlines",1,1,1\n'                    # 4-5: one row
                    "c.png,,NAN,n/a,Na\n"                           # 6: all missing
                    "d.png,,inf,1,1\n"                              # 7
                    "e.png,1\n"                                     # 8: too few fields
                    "f.png,,1,1,1,9\n"                              # 9: too many
                    "\n\n"                                          # 10, 11
                    "g.png,,1x,1,1\n")                              # 12
    with pytest.raises(LabelFileError) as info:
        read_attribute_csv(path, default_schema())
    message = str(info.value)
    for text in ("line 7, column 'neck', value 'inf': not a whole number",
                 "line 8 has 2 fields, the header has 5", "line 9 has 6 fields, the header has 5",
                 "line 12, column 'neck', value '1x': not a number"):
        assert text in message
    assert len(info.value.problems) == 4
    table = read_attribute_csv(path, default_schema(), on_bad_rows="skip")
    assert table.filenames == ["a.png", "b.png", "c.png"] and table.lines == [2, 4, 6]
    np.testing.assert_array_equal(table.values[2], [-1, -1, -1])
    assert table.raw["note"].tolist() == ["", "two\nlines", ""]
    dup = tmp_path / "dup.csv"
    dup.write_text("filename,neck,sleeve_length,neck,pattern\na.png,1,1,2,1\n")
    with pytest.raises(CsvFormatError, match=r"dup\.csv, line 1: duplicated column 'neck' \(columns 2 and 4"):
        read_attribute_csv(dup, default_schema())


# --- case 7: one image under several spellings --------------------------------------------------------------------


def test_case_7_duplicate_images_under_other_spellings(tmp_path):
    images = tmp_path / "images"
    save_image(images / "x.jpg")
    (images / "sub").mkdir()
    os.link(images / "x.jpg", images / "hard.jpg")
    (images / "soft.jpg").symlink_to(images / "x.jpg")
    names = ["x.jpg", "./x.jpg", "sub/../x.jpg", str((images / "x.jpg").resolve()), "hard.jpg", "soft.jpg"]
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "".join(f"{n},1,1,1\n" for n in [*names, "../x.jpg"]))
    with pytest.raises(LabelFileError) as info:
        read_attribute_csv(path, default_schema(), image_dir=images)
    problems = info.value.problems
    assert [(p.line, p.value) for p in problems] == [(k + 2, n) for k, n in enumerate(names[1:], start=1)] + [
        (8, "../x.jpg")]
    assert all(p.reason.startswith("duplicate of line 2, 'x.jpg'") for p in problems[:-1])
    assert problems[-1].reason == "points outside the image folder"
    table = read_attribute_csv(path, default_schema(), image_dir=images, on_bad_rows="skip")
    assert table.filenames == ["x.jpg"]


# --- case 8: every PIL mode to 8-bit RGB --------------------------------------------------------------------------


def gray(img: Image.Image) -> list[int]:
    rgb = np.asarray(to_rgb(img))
    assert rgb.dtype == np.uint8 and rgb.shape[-1] == 3 and (rgb == rgb[..., :1]).all()
    return rgb[0, :, 0].tolist()


def test_case_8_every_mode_converts_to_the_expected_rgb(tmp_path):
    sixteen = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    assert gray(Image.fromarray(sixteen)) == [0, 100, 255, 0]
    assert gray(Image.frombytes("I;16B", (4, 1), sixteen.astype(">u2").tobytes())) == [0, 100, 255, 0]
    assert gray(Image.frombytes("I;16L", (4, 1), sixteen.astype("<u2").tobytes())) == [0, 100, 255, 0]
    assert gray(Image.fromarray(sixteen.astype(np.int32))) == [0, 100, 255, 0]
    assert gray(Image.fromarray(np.array([[-100, 0, 100_000]], dtype=np.int32))) == [0, 0, 255]
    assert gray(Image.fromarray(np.array([[0, 0.5, 1.0, np.nan, -1]], dtype=np.float32))) == [0, 128, 255, 0, 0]
    assert gray(Image.fromarray(np.array([[0, 2, 4]], dtype=np.float32))) == [0, 128, 255]
    assert gray(Image.frombytes("1", (8, 1), bytes([0b01000000]))) == [0, 255, 0, 0, 0, 0, 0, 0]
    assert gray(Image.new("L", (1, 1), 77)) == [77]
    assert gray(Image.frombytes("LA", (2, 1), bytes([100, 128, 100, 255]))) == [177, 100]
    rgba = Image.frombytes("RGBA", (3, 1), bytes([200, 0, 50, 0, 200, 0, 50, 255, 200, 0, 50, 51]))
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [200, 0, 50], [244, 204, 214]]]
    palette = Image.frombytes("P", (2, 1), bytes([0, 1]))
    palette.putpalette([255, 0, 0, 0, 255, 0])
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 0, 0], [0, 255, 0]]]
    palette.info["transparency"] = 1
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    pa = Image.frombytes("PA", (2, 1), bytes([0, 255, 1, 0]))
    pa.putpalette([255, 0, 0, 0, 255, 0])
    assert np.asarray(to_rgb(pa)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 0, 100, 50, 25, 128]))
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 255, 255], [77, 102, 115]]]  # (255-c)(255-k)/255
    ycc = Image.frombytes("YCbCr", (2, 1), bytes([100, 128, 128, 100, 90, 200]))
    assert np.asarray(to_rgb(ycc)).tolist() == [[[100, 100, 100], [201, 62, 33]]]  # JFIF: 200.9, 61.7, 32.7
    Image.fromarray(sixteen).save(tmp_path / "g16.png")  # the reported file: a 16-bit PNG, read by every consumer
    assert np.asarray(load_rgb(tmp_path / "g16.png"))[0, :, 1].tolist() == [0, 100, 255, 0]
    upload, _ = open_upload("g16.png", (tmp_path / "g16.png").read_bytes())
    assert np.asarray(upload)[0, :, 2].tolist() == [0, 100, 255, 0]
    item, _ = MultiLabelImageDataset(tmp_path, ["g16.png"], np.zeros((1, 21)))[0]
    assert np.asarray(item)[0, :, 0].tolist() == [0, 100, 255, 0]
    assert engine_split.load_rgb is load_rgb


# --- case 10: truncated images ------------------------------------------------------------------------------------


def test_case_10_truncated_jpeg_is_caught_by_the_csv_check_and_named_at_load(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "full.jpg", quality=90)
    data = (images / "full.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "full.jpg,1,1,1\ncut.jpg,1,1,1\n")
    with pytest.raises(LabelFileError) as info:
        read_attribute_csv(path, default_schema(), image_dir=images)
    [problem] = info.value.problems
    assert problem.line == 3 and problem.value == "cut.jpg" and "truncated" in problem.reason
    dataset = MultiLabelImageDataset(images, ["full.jpg", "cut.jpg"], np.zeros((2, 21)))
    assert dataset[0][0].size == (64, 64)
    with pytest.raises(ImageLoadError, match=r"cannot read image 'cut\.jpg' .*truncated"):
        dataset[1]


# --- case 11: huge images -----------------------------------------------------------------------------------------


def test_case_11_images_over_the_pixel_limit_fail_alone_with_a_named_error(tmp_path, monkeypatch, stub_predictor):
    images = tmp_path / "images"
    save_image(images / "good.png")
    (images / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    limit = "image {} is 20000×20000 = 400,000,000 pixels, over the limit 178,956,970"
    with pytest.raises(ImageTooLargeError, match=limit.format("bomb")):
        load_rgb(images / "bomb.png", name="bomb")
    out = tmp_path / "preds.csv"
    assert run_infer("--checkpoint", tmp_path / "any.pt", "--images", images, "--output", out) == 0
    assert pd.read_csv(out)["filename"].tolist() == ["good.png"]
    failed = (tmp_path / "preds.failures.json").read_text()
    assert "bomb.png" in failed and "over the limit 178,956,970" in failed
    image, message = open_upload("bomb.png", (images / "bomb.png").read_bytes())
    assert image is None and message.startswith(limit.format("bomb.png"))
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "good.png,1,1,1\nbomb.png,1,1,1\n")
    with pytest.raises(LabelFileError, match=r"line 3, column 'filename', value 'bomb.png': image bomb.png is 20000"):
        read_attribute_csv(path, default_schema(), image_dir=images)
    with pytest.raises(ImageTooLargeError):
        MultiLabelImageDataset(images, ["bomb.png"], np.zeros((1, 21)))[0]
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")  # the limit is configurable: environment, or a parameter
    assert max_image_pixels() == 100 and max_image_pixels(10**9) == 10**9
    with pytest.raises(ImageTooLargeError, match=r"16×16 = 256 pixels, over the limit 100"):
        load_rgb(images / "good.png")
    assert load_rgb(images / "good.png", max_pixels=256).size == (16, 16)


# --- case 14: infer's CSV ------------------------------------------------------------------------------------------


def test_case_14_bad_csvs_give_one_clear_error_with_file_and_line(tmp_path, capsys):
    images = tmp_path / "images"
    save_image(images / "a.png")
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"unused: the CSV is checked first")
    files = {
        "empty_name.csv": (HEADER + "a.png,1,1,1\n ,1,1,1\n").encode(), "empty.csv": b"",
        "latin1.csv": (HEADER + "a.png,1,1,1\ncafé.png,1,1,1\n").encode("latin-1"),
        "ragged.csv": (HEADER + "a.png,1,1,1\na.png,1,1\n").encode(),
    }
    expected = {"empty_name.csv": "line 3, column 'filename', value ' ': empty filename",
                "empty.csv": "empty.csv: empty file: no header line",
                "latin1.csv": "latin1.csv, line 3: not UTF-8 text (byte 0xe9)",
                "ragged.csv": "line 3 has 3 fields, the header has 4"}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert run_infer("--checkpoint", checkpoint, "--csv", path, "--images", images,
                         "--output", tmp_path / "p.csv") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(path) in err and expected[name] in err, err
        assert "Traceback" not in err
        with pytest.raises(LabelFileError, match=re.escape(expected[name])):
            read_filename_column(path, images)
        with pytest.raises(LabelFileError, match=re.escape(expected[name])):
            read_attribute_csv(path, default_schema())
    assert not (tmp_path / "p.csv").exists()
