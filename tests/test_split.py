import numpy as np
import pandas as pd
from conftest import file_digest, make_attribute_dataset, tree_digest
from PIL import Image

import images_train_test_valid_split as split_script
from partial_csl.data.split import iterative_stratification


def run_split(csv_path, images, out_dir, *extra):
    return split_script.main(["--csv", str(csv_path), "--images", str(images), "--out-dir", str(out_dir), *extra])


def make_distinct(images):
    """Mark every generated image (equal labels draw equal pixels): byte-identical copies stay in one split, which
    would bend the ratios this test checks."""
    for k, path in enumerate(sorted(images.iterdir())):
        pixels = np.asarray(Image.open(path)).copy()
        pixels[-1, -1] = [k % 256, k // 256, 7]
        Image.fromarray(pixels).save(path)


def test_split_is_deterministic_complete_and_leaves_inputs_untouched(tmp_path):
    csv_path = make_attribute_dataset(tmp_path / "data", n=120, seed=3, missing=0.3)
    images = tmp_path / "data" / "images"
    make_distinct(images)
    before_csv, before_images = file_digest(csv_path), tree_digest(images)
    assert run_split(csv_path, images, tmp_path / "a", "--seed", "7") == 0
    assert run_split(csv_path, images, tmp_path / "b", "--seed", "7") == 0
    for name in ("train.csv", "valid.csv", "test.csv", "split_distribution.csv"):
        assert file_digest(tmp_path / "a" / name) == file_digest(tmp_path / "b" / name)
    assert (tmp_path / "a" / "split_distribution.png").stat().st_size > 1000
    assert file_digest(csv_path) == before_csv and tree_digest(images) == before_images

    original = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    parts = [pd.read_csv(tmp_path / "a" / f"{s}.csv", dtype=str, keep_default_na=False)
             for s in ("train", "valid", "test")]
    assert sorted(pd.concat(parts)["filename"]) == sorted(original["filename"])
    assert abs(len(parts[0]) - 96) <= 6 and all(len(p) >= 9 for p in parts[1:])
    for column in ("neck", "sleeve_length", "pattern"):
        for value in original[column].unique():
            if value != "#N/A" and (original[column] == value).sum() >= 3:
                assert all((p[column] == value).any() for p in parts), f"{column}={value} misses a split"
    # rows are written exactly as read, #N/A included
    merged = pd.concat(parts).set_index("filename").loc[original["filename"]]
    assert (merged.reset_index()[original.columns].values == original.values).all()
    assert (original == "#N/A").any().any()


def test_every_class_with_three_examples_reaches_every_split():
    rng = np.random.default_rng(0)
    n = 200
    labels = np.zeros((n, 6), dtype=bool)
    labels[:, 0] = True                      # a dominant class
    for c, count in zip(range(1, 6), (3, 4, 5, 9, 30)):
        labels[rng.choice(n, count, replace=False), c] = True
    assignment = iterative_stratification(labels, [0.8, 0.1, 0.1], seed=1)
    for c in range(6):
        present = {int(s) for s in assignment[labels[:, c]]}
        assert present == {0, 1, 2}, f"class {c} only in splits {present}"
    counts = np.bincount(assignment, minlength=3)
    assert abs(counts[0] - 160) <= 4


def test_split_reports_every_planted_fault_and_touches_nothing(tmp_path, capsys):
    csv_path = make_attribute_dataset(tmp_path / "data", n=30)
    images = tmp_path / "data" / "images"
    lines = csv_path.read_text().splitlines()
    lines[3] = "img_002.png,12,1,1"          # line 4: out of range
    lines[5] = lines[4]                     # line 6: duplicate of line 5
    lines[8] = "ghost.png,1,1,1"            # line 9: missing image
    lines[10] = "img_009.png,1,one,1"       # line 11: not a number
    faulty = tmp_path / "faulty.csv"
    faulty.write_text("\n".join(lines) + "\n")
    before_csv, before_images = file_digest(faulty), tree_digest(images)

    assert run_split(faulty, images, tmp_path / "out") == 2
    err = capsys.readouterr().err
    for text in ("line 4, column 'neck', value '12'", "line 6, column 'filename'", "duplicate of line 5",
                 "line 9, column 'filename', value 'ghost.png': image file not found",
                 "line 11, column 'sleeve_length', value 'one': not a number"):
        assert text in err
    assert not (tmp_path / "out" / "train.csv").exists()

    assert run_split(faulty, images, tmp_path / "out", "--on-bad-rows", "skip") == 0
    rejected = pd.read_csv(tmp_path / "out" / "rejected_rows.csv")
    assert sorted(rejected["line"].tolist()) == [4, 6, 9, 11]
    kept = sum(len(pd.read_csv(tmp_path / "out" / f"{s}.csv")) for s in ("train", "valid", "test"))
    assert kept == 30 - 4
    assert file_digest(faulty) == before_csv and tree_digest(images) == before_images
