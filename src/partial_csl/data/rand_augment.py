"""RandAugment as the CSL and ASL reference code applies it: the policy of the ``randaugment`` 1.0.2 package that
their ``train.py`` imports, written for this package (the package itself calls ``np.int``, which NumPy 1.24 removed).

It is not torchvision's ``T.RandAugment`` (two operations always applied, at magnitude 9 of 31, one of them possibly
the identity). Here:

* a policy is two (operation, level) pairs, each drawn uniformly and independently from 15 operations x levels 1..9;
* each of the two is applied with probability 0.5, so a quarter of the images pass unchanged;
* a level ``k`` is ``k / 9`` of the way along the operation's range, so level 9 is its end: shear 0.3, translation
  150/331 of the side, rotation 30 degrees (counter-clockwise only), a colour / contrast / sharpness / brightness
  factor of 1 +- 0.9 (sign drawn), posterize from 8 to 4 bits, the solarize threshold from 256 to 0, and a Cutout
  square of 0 to 20 px; autocontrast, equalize and invert have no magnitude.

Geometric operations fill with grey (128); Cutout paints (125, 122, 113), as in the reference. On a 64 px image the
translation and the 20 px Cutout are large; that is the reference's policy, kept as it is.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

LEVELS = 10  # each range has 10 levels, 0..9; a policy draws 1..9
APPLY_PROBABILITY = 0.5
GREY = (128, 128, 128)
CUTOUT_FILL = (125, 122, 113)


def level_value(low: float, high: float, level: int) -> float:
    """The value of ``level`` (0..9) on the range from ``low`` to ``high``, bit for bit the reference's."""
    return float(np.linspace(low, high, LEVELS)[level])


def _sign() -> int:
    return random.choice((-1, 1))


def _affine(img: Image.Image, coefficients: tuple, resample: Image.Resampling) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, coefficients, resample, fillcolor=GREY)


def _rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Counter-clockwise, the uncovered corners grey (through an alpha mask, as the reference does)."""
    rotated = img.convert("RGBA").rotate(degrees)
    return Image.composite(rotated, Image.new("RGBA", rotated.size, (*GREY, 128)), rotated).convert(img.mode)


def cutout(img: Image.Image, size: int) -> Image.Image:
    """A square of ``size`` px (``size // 2`` either side of a random centre, clipped to the image)."""
    img = img.copy()
    w, h = img.size
    cx, cy = random.randrange(w), random.randrange(h)
    x0, y0, x1, y1 = max(0, cx - size // 2), max(0, cy - size // 2), min(w, cx + size // 2), min(h, cy + size // 2)
    if x1 > x0 and y1 > y0:  # PIL's rectangle includes its last row and column
        ImageDraw.Draw(img).rectangle((x0, y0, x1 - 1, y1 - 1), fill=CUTOUT_FILL)
    return img


def _enhance(kind: type) -> Callable[[Image.Image, int], Image.Image]:
    return lambda img, k: kind(img).enhance(1 + level_value(0.0, 0.9, k) * _sign())


OPERATIONS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "invert": lambda img, k: ImageOps.invert(img),
    "cutout": lambda img, k: cutout(img, round(level_value(0, 20, k))),
    "sharpness": _enhance(ImageEnhance.Sharpness),
    "autocontrast": lambda img, k: ImageOps.autocontrast(img),
    "posterize": lambda img, k: ImageOps.posterize(img, round(level_value(8, 4, k))),
    "shear_x": lambda img, k: _affine(img, (1, level_value(0, 0.3, k) * _sign(), 0, 0, 1, 0),
                                      Image.Resampling.BICUBIC),
    "translate_x": lambda img, k: _affine(img, (1, 0, level_value(0, 150 / 331, k) * img.size[0] * _sign(), 0, 1, 0),
                                          Image.Resampling.NEAREST),
    "translate_y": lambda img, k: _affine(img, (1, 0, 0, 0, 1, level_value(0, 150 / 331, k) * img.size[1] * _sign()),
                                          Image.Resampling.NEAREST),
    "shear_y": lambda img, k: _affine(img, (1, 0, 0, level_value(0, 0.3, k) * _sign(), 1, 0),
                                      Image.Resampling.BICUBIC),
    "rotate": lambda img, k: _rotate(img, level_value(0, 30, k)),
    "equalize": lambda img, k: ImageOps.equalize(img),
    "contrast": _enhance(ImageEnhance.Contrast),
    "color": _enhance(ImageEnhance.Color),
    "solarize": lambda img, k: ImageOps.solarize(img, level_value(256, 0, k)),
    "brightness": _enhance(ImageEnhance.Brightness),
}


class ReferenceRandAugment:
    """Two (operation, level) draws, each applied with probability 0.5 (see the module docstring). Draws from
    Python's ``random``, which the data loader seeds per worker."""

    def __call__(self, img: Image.Image) -> Image.Image:
        policy = [(random.choice(list(OPERATIONS)), random.randint(1, LEVELS - 1)) for _ in range(2)]
        for name, level in policy:
            if random.random() < APPLY_PROBABILITY:
                img = OPERATIONS[name](img, level)
        return img

    def __repr__(self) -> str:
        levels = f"levels 1..{LEVELS - 1}"
        return f"{type(self).__name__}(2 of {len(OPERATIONS)} operations x {levels}, p={APPLY_PROBABILITY})"
