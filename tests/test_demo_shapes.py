"""The second attribute generator: another cue per attribute, another skew, correlated attributes, and #N/A that
depends on the class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from partial_csl.data.demo_shapes import (
    DOMINANT,
    MISSING_RATE_RANGE,
    build_shapes_dataset,
    draw_classes,
    missing_rates,
    shape_frequencies,
)
from partial_csl.data.labels import read_attribute_csv
from partial_csl.data.schema import load_schema


def test_frequencies_are_a_power_law_with_another_dominant_class_than_the_demo():
    for name, freq in shape_frequencies().items():
        assert abs(freq.sum() - 1) < 1e-12
        assert int(freq.argmax()) == DOMINANT[name] != len(freq) - 1  # the demo's dominant class is the last
    neck = shape_frequencies()["neck"]
    ranked = np.sort(neck)[::-1]
    np.testing.assert_allclose(ranked / ranked[0], np.arange(1, 8) ** -1.3)


def test_rarer_classes_are_missing_more_often():
    freq = shape_frequencies()["pattern"]
    rates = missing_rates(freq)
    assert rates[freq.argmax()] == MISSING_RATE_RANGE[0] and np.isclose(rates[freq.argmin()], MISSING_RATE_RANGE[1])
    order = np.argsort(freq)
    assert (np.diff(rates[order]) <= 1e-12).all()  # the more frequent, the less missing


def test_a_rare_class_pulls_the_other_attributes_to_their_dominant_class():
    rng = np.random.default_rng(0)
    frequencies = shape_frequencies()
    draws = [draw_classes(rng, frequencies) for _ in range(4000)]
    rare_neck = [d for d in draws if frequencies["neck"][d["neck"]] < 0.5 / 7]
    common_neck = [d for d in draws if d["neck"] == DOMINANT["neck"]]
    share = lambda rows: np.mean([d["pattern"] == DOMINANT["pattern"] for d in rows])  # noqa: E731
    assert share(rare_neck) > share(common_neck) + 0.1  # about 0.61 vs 0.41


def test_the_build_is_in_the_users_format_deterministic_and_missing_not_at_random(tmp_path, fake_fashion_mnist):
    csv_a = build_shapes_dataset(tmp_path / "a", num_images=600, seed=4, source=fake_fashion_mnist, image_size=32)
    csv_b = build_shapes_dataset(tmp_path / "b", num_images=600, seed=4, source=fake_fashion_mnist, image_size=32)
    assert csv_a.read_bytes() == csv_b.read_bytes()
    first = "images/00000.png"
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    table = read_attribute_csv(csv_a, load_schema(None), image_dir=tmp_path / "a" / "images")
    assert len(table) == 600
    frame = pd.read_csv(csv_a, dtype=str, keep_default_na=False)
    for name, freq in shape_frequencies().items():
        known = frame.loc[frame[name] != "#N/A", name].astype(int)
        assert 0.08 < (frame[name] == "#N/A").mean() < 0.45
        # rare classes go missing more often and pull the others to their dominant class: the annotated labels
        # overstate the dominant class
        assert (known == DOMINANT[name]).mean() > freq[DOMINANT[name]]
