"""The one way this package reads an image: fully decoded, size-checked, converted to 8-bit RGB for every PIL mode.

Training, validation of the CSV, inference, the web page and the offline rebalancing all call :func:`load_rgb`, so an
image that passes the CSV check is exactly what the model sees, and no consumer can disagree with another on what a
16-bit or transparent image looks like. Why not ``img.convert("RGB")``: PIL clips 16-bit and 32-bit grayscale to 255
(a 16-bit PNG becomes pure white), maps float images without scaling and drops alpha, showing whatever colour
transparent pixels happen to hold.

Conversions (``background`` is white, the backdrop of garment product photos; transparent pixels become white):

* ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``: value / 257, rounded (65535 -> 255).
* ``I`` (32-bit): treated as 16-bit (value / 257) when every value lies in 0..65535, which is how 16-bit PNG and
  TIFF data reach PIL; otherwise mapped linearly from [min(0, lowest), highest] onto 0..255.
* ``F``: value * 255 when the highest value is at most 1, else value * 255 / highest; NaN and negatives give 0.
* ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``, and ``P`` or ``L``/``RGB`` with a transparency key: composited over
  the background, ``round((c * a + bg * (255 - a)) / 255)``.
* ``YCbCr``: full-range BT.601 (JFIF), rounded. ``CMYK``: ``(255 - c) * (255 - k) / 255``, rounded (PIL's).
* ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``HSV``: PIL's conversion, which is exact for them.

The pixel limit (:data:`MAX_IMAGE_PIXELS`) replaces PIL's decompression-bomb check, which only warns below twice its
limit and above it raises an error that names no file: images over the limit raise :class:`ImageTooLargeError`.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

#: Default pixel limit: PIL's own hard limit (twice its 89,478,485-pixel warning threshold), about 13,400 x 13,400;
#: such an image takes about 0.5 GB as 8-bit RGB, already far beyond any training resolution.
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485
#: Environment variable that overrides the default limit (a positive integer number of pixels).
MAX_PIXELS_ENV = "PARTIAL_CSL_MAX_IMAGE_PIXELS"
MAX_IMAGE_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
WHITE = (255, 255, 255)

# Our limit, checked on every open by open_image, takes over from PIL's (see the module docstring).
Image.MAX_IMAGE_PIXELS = None

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageLoadError(ValueError):
    """An image that cannot be read; the message names the file. Built from one message string (so a DataLoader
    worker can re-raise it in the main process)."""


class ImageTooLargeError(ImageLoadError):
    """An image over the pixel limit (:func:`max_image_pixels`)."""


def max_image_pixels(limit: int | None = None) -> int:
    """The pixel limit in force: ``limit`` if given, else ``$PARTIAL_CSL_MAX_IMAGE_PIXELS``, else the module default."""
    if limit is not None:
        return int(limit)
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels") from None
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} must be positive")
    return value


def check_size(img: Image.Image, name: str, limit: int | None = None) -> None:
    """Raise ImageTooLargeError before decoding an image whose header announces more pixels than the limit."""
    width, height = img.size
    cap = max_image_pixels(limit)
    if width * height > cap:
        raise ImageTooLargeError(f"image {name} is {width}×{height} = {width * height:,} pixels, over the limit "
                                 f"{cap:,} (set {MAX_PIXELS_ENV} to raise it)")


def _round_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(values, nan=0.0)), 0, 255).astype(np.uint8)


def _gray_to_u8(img: Image.Image) -> np.ndarray:
    """8-bit gray levels of a 16-bit, 32-bit integer or float image (rules in the module docstring)."""
    values = np.asarray(img).astype(np.float64)
    if img.mode in _SIXTEEN_BIT:
        return _round_u8(values / 257.0)
    finite = values[np.isfinite(values)]
    high = float(finite.max()) if finite.size else 0.0
    if img.mode == "F":
        return _round_u8(values * 255.0 if high <= 1.0 else values * 255.0 / high)
    low = float(finite.min()) if finite.size else 0.0
    if low >= 0 and high <= 65535:
        return _round_u8(values / 257.0)
    low = min(low, 0.0)
    return _round_u8((values - low) * 255.0 / (high - low))


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGBA over an opaque background, rounded to the nearest level."""
    pixels = np.asarray(rgba.convert("RGBA")).astype(np.float64)
    alpha = pixels[..., 3:4]
    out = (pixels[..., :3] * alpha + np.asarray(background, dtype=np.float64) * (255.0 - alpha)) / 255.0
    return Image.fromarray(_round_u8(out), "RGB")


def _ycbcr_to_rgb(img: Image.Image) -> Image.Image:
    """Full-range BT.601 (JFIF) YCbCr to RGB, rounded (PIL's fixed-point version truncates)."""
    y, cb, cr = np.moveaxis(np.asarray(img).astype(np.float64), -1, 0)
    cb, cr = cb - 128.0, cr - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return Image.fromarray(_round_u8(rgb), "RGB")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """An 8-bit RGB copy of a decoded image of any PIL mode (rules in the module docstring)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return Image.fromarray(_gray_to_u8(img), "L").convert("RGB")
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        return _composite(img, background)
    if mode == "YCbCr":
        return _ycbcr_to_rgb(img)
    if mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def verify_image(path: str | Path, name: str | None = None, max_pixels: int | None = None) -> None:
    """Check that an image decodes completely and converts, as :func:`load_rgb` would; raise ImageLoadError if not.

    Faster than ``load_rgb`` for JPEGs: they are decoded at 1/8 scale (``draft``), which still reads every byte of
    the compressed data, so a truncated file fails here rather than in the middle of training.
    """
    name = str(path) if name is None else name
    try:
        with Image.open(path) as img:
            check_size(img, name, max_pixels)
            if img.format == "JPEG":
                img.draft(img.mode, (1, 1))
            img.load()
            to_rgb(img)
    except ImageLoadError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, struct.error, ... for corrupt files
        raise ImageLoadError(f"cannot read image {name}: {describe_error(err)}") from err


def resolve_image_path(image_dir: str | Path, filename: str) -> Path:
    """Path of ``filename`` inside ``image_dir``; refuses names that point outside it (``../x``, absolute paths)."""
    root = Path(image_dir).resolve()
    path = (root / filename).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"filename {filename!r} points outside the image folder {image_dir}")
    return path


def check_image_folder(folder: str | Path) -> Path:
    """``folder``, refused when it is a file or missing (rather than every image in it reported as not found)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "missing"
        raise ValueError(f"the image folder {folder} is {what}, not a folder (--images names the folder the "
                         "filenames are relative to)")
    return folder


def image_problem(path: str | Path, name: str | None = None) -> str | None:
    """Why ``path`` fails :func:`verify_image`, in the words of a CSV check; None for a good image."""
    try:
        verify_image(path, name)
    except ImageTooLargeError as err:
        return str(err)
    except ImageLoadError as err:
        return f"unreadable or corrupt image ({describe_error(err.__cause__)})"
    return None


def load_rgb(source: str | Path | BinaryIO | bytes, name: str | None = None, max_pixels: int | None = None,
             background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Open, size-check, fully decode and convert one image to 8-bit RGB.

    ``source`` is a path, an open binary file or the file's bytes; ``name`` is what errors call it (default: the
    path). Every failure (missing, not an image, truncated, too large, an unconvertible mode) raises
    :class:`ImageLoadError` naming the image, so a bad file is reported as that file, not as a bare PIL error.
    """
    if name is None:
        name = str(source) if isinstance(source, str | Path) else "<upload>"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            check_size(img, name, max_pixels)
            img.load()
            return to_rgb(img, background)
    except ImageLoadError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, struct.error, ... for corrupt files
        raise ImageLoadError(f"cannot read image {name}: {describe_error(err)}") from err


def describe_error(err: BaseException | None) -> str:
    """A short reason for a failed image read (what users can act on, not a traceback)."""
    if err is None:
        return "unknown error"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a folder, not an image file"
    text = str(err) or "no details"
    return f"{type(err).__name__}: {text}"


def content_duplicates(paths: list[Path]) -> dict[int, int]:
    """``{position: position of its first byte-identical copy}`` among ``paths`` (``x.JPG`` saved again as
    ``x.jpg``): sizes are compared first, so only files of equal size are read and hashed."""
    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        by_size.setdefault(Path(path).stat().st_size, []).append(i)
    copies: dict[int, int] = {}
    for group in (g for g in by_size.values() if len(g) > 1):
        first: dict[str, int] = {}
        for i in group:
            digest = hashlib.sha256(Path(paths[i]).read_bytes()).hexdigest()
            if digest in first:
                copies[i] = first[digest]
            else:
                first[digest] = i
    return copies
