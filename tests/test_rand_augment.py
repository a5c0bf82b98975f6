"""The reference code's RandAugment: each operation's values by hand, and the policy's draws."""

import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from partial_csl.data import rand_augment as ra
from partial_csl.data.transforms import build_transform, resolve_data_config


def _image(value: int = 100, size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=int)


def test_levels_run_linearly_to_the_end_of_each_range():
    assert ra.level_value(0, 30, 9) == 30.0  # rotation's last level
    assert ra.level_value(0, 30, 3) == pytest.approx(10.0)
    assert ra.level_value(256, 0, 5) == pytest.approx(256 - 5 * 256 / 9)  # the solarize threshold falls


def test_solarize_inverts_the_pixels_at_or_above_its_threshold():
    img = Image.fromarray(np.array([[[100] * 3, [120] * 3, [200] * 3]], dtype=np.uint8))
    out = _pixels(ra.OPERATIONS["solarize"](img, 5))  # threshold 256 - 5 * 256 / 9 = 113.8
    assert out[0, :, 0].tolist() == [100, 255 - 120, 255 - 200]


def test_posterize_keeps_fewer_bits_at_higher_levels():
    assert _pixels(ra.OPERATIONS["posterize"](_image(255), 2))[0, 0, 0] == 254  # 8 - 4 * 2 / 9 = 7.1 -> 7 bits
    assert _pixels(ra.OPERATIONS["posterize"](_image(255), 9))[0, 0, 0] == 240  # 4 bits


def test_invert_needs_no_level():
    assert _pixels(ra.OPERATIONS["invert"](_image(100), 1))[0, 0, 0] == 155


def test_cutout_paints_a_square_of_its_level_in_the_reference_colour(monkeypatch):
    centres = iter([10, 12])
    monkeypatch.setattr(ra.random, "randrange", lambda n: next(centres))
    img = _image(0, size=32)
    out = _pixels(ra.OPERATIONS["cutout"](img, 3))  # round(20 * 3 / 9) = 7 px: 3 either side of the centre
    painted = (out == ra.CUTOUT_FILL).all(axis=2)
    assert painted.sum() == 6 * 6
    rows, cols = np.nonzero(painted)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 14, 7, 12)  # y from 12, x from 10
    assert _pixels(img).max() == 0  # the input image is not drawn on


def test_translation_at_the_last_level_moves_150_331_of_the_side_and_fills_grey(monkeypatch):
    monkeypatch.setattr(ra.random, "choice", lambda options: 1)
    img = Image.new("RGB", (64, 64), (0, 0, 0))
    img.paste((255, 255, 255), (40, 0, 64, 64))  # white from column 40
    out = _pixels(ra.OPERATIONS["translate_x"](img, 9))  # 150 / 331 * 64 = 29.003 px to the left
    assert out[0, 10, 0] == 0 and out[0, 11, 0] == 255  # column 11 samples 11.5 + 29.003 (nearest): column 40
    assert (out[:, 34] == 255).all()
    assert (out[:, 64 - 29:] == ra.GREY).all()


def test_rotation_is_counter_clockwise_with_grey_corners():
    img = Image.new("RGB", (33, 33), (0, 0, 0))
    img.paste((255, 255, 255), (17, 16, 33, 17))  # a bar from the centre to the right edge
    out = _pixels(ra.OPERATIONS["rotate"](img, 9))  # 30 degrees
    assert out[16 - 5, 16 + 9, 0] == 255  # the bar now points up and to the right (10 px out: y -5, x +8.7)
    assert (out[0, 0] == ra.GREY).all()


def test_the_policy_draws_two_operations_each_applied_half_of_the_time(monkeypatch):
    applied = []
    monkeypatch.setattr(ra, "OPERATIONS", {name: (lambda img, k, name=name: applied.append((name, k)) or img)
                                           for name in ra.OPERATIONS})
    random.seed(0)
    augment, n = ra.ReferenceRandAugment(), 6000
    for _ in range(n):
        augment(_image())
    assert len(applied) == pytest.approx(n, rel=0.03)  # two draws x probability 0.5
    names, levels = Counter(name for name, _ in applied), Counter(k for _, k in applied)
    assert set(names) == set(ra.OPERATIONS) and len(names) == 15
    assert set(levels) == set(range(1, 10))  # level 0 (no change) is never drawn
    assert max(names.values()) / min(names.values()) < 1.4


def test_the_same_seed_gives_the_same_augmented_image():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    outputs = []
    for _ in range(2):
        random.seed(7)
        outputs.append(_pixels(ra.ReferenceRandAugment()(img)))
    assert (outputs[0] == outputs[1]).all()


def test_the_csl_augmentation_is_cutout_then_the_reference_policy():
    steps = build_transform(resolve_data_config("resnet18", 32), train=True, augment="csl").transforms
    assert [type(s).__name__ for s in steps[:3]] == ["Resize", "CutoutPIL", "ReferenceRandAugment"]
