import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.data.coco import load_coco
from partial_csl.data.demo_coco import CATEGORY_IDS, build_coco_benchmark
from partial_csl.data.partial import simulate_partial
from partial_csl.engine.checkpoint import load_checkpoint


def write_coco(root, images, annotations, categories):
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    for img in images:
        Image.new("RGB", (8, 8)).save(root / "imgs" / img["file_name"])
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


CATS = [{"id": 7, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 40, "name": "bird"}]
IMAGES = [{"id": 5, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}, {"id": 9, "file_name": "empty.jpg"}]
ANNS = [{"id": 1, "image_id": 5, "category_id": 40}, {"id": 2, "image_id": 5, "category_id": 2},
        {"id": 3, "image_id": 1, "category_id": 7}, {"id": 4, "image_id": 1, "category_id": 7}]


def test_gapped_category_ids_map_in_ascending_order_and_empty_images_are_dropped_as_the_official_loader(tmp_path):
    path = write_coco(tmp_path, IMAGES, ANNS, CATS)
    coco = load_coco(path, tmp_path / "imgs")
    assert coco.category_ids == [2, 7, 40] and coco.class_names == ["dog", "cat", "bird"]
    assert coco.filenames == ["b.jpg", "a.jpg"]  # image id order; the image without annotations is dropped
    np.testing.assert_array_equal(coco.targets, [[0, 1, 0], [1, 0, 1]])
    kept = load_coco(path, tmp_path / "imgs", keep_empty=True)
    assert kept.filenames == ["b.jpg", "a.jpg", "empty.jpg"]
    np.testing.assert_array_equal(kept.targets[2], [0, 0, 0])


def test_training_and_validation_drop_empty_coco_images_unless_kept(tmp_path):
    from partial_csl.engine.config import TrainConfig
    from partial_csl.engine.setup.formats import coco_data
    from partial_csl.engine.tools.validate import trained_keep_empty

    path = write_coco(tmp_path, IMAGES, ANNS, CATS)
    paths = dict(dataset="coco", train_annotations=str(path), val_annotations=str(path),
                 train_images=str(tmp_path / "imgs"), val_images=str(tmp_path / "imgs"))
    _, train, val = coco_data(TrainConfig(**paths), tmp_path / "run")
    assert train.filenames == val.filenames == ["b.jpg", "a.jpg"]
    _, train, val = coco_data(TrainConfig(**paths, keep_empty=True), tmp_path / "run")
    assert len(train) == len(val) == 3
    # validate.py treats them as the checkpoint's run did; runs from before the setting kept them
    assert trained_keep_empty({"keep_empty": False}) is False
    assert trained_keep_empty({"drop_empty": False}) is True
    assert trained_keep_empty({"drop_empty": True}) is False


@pytest.mark.parametrize("change,message", [
    (lambda i, a: ([*i, {"id": 3, "file_name": "ghost.jpg"}], a), "'ghost.jpg' is listed but absent"),
    (lambda i, a: (i, [*a, {"id": 9, "image_id": 77, "category_id": 2}]), "annotation 9 points to unknown image id 77"),
    (lambda i, a: (i, [*a, {"id": 9, "image_id": 5, "category_id": 3}]), "points to unknown category id 3"),
])
def test_coco_errors(tmp_path, change, message):
    images, anns = change(list(IMAGES), list(ANNS))
    path = write_coco(tmp_path, IMAGES, anns, CATS)
    if len(images) > len(IMAGES):
        data = json.loads(path.read_text())
        data["images"] = images
        path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_coco(path, tmp_path / "imgs")
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        load_coco(tmp_path / "nope.json", tmp_path / "imgs")


def test_fpc_keeps_exactly_min_n_available_per_class_and_is_seeded():
    rng = np.random.default_rng(0)
    full = (rng.random((300, 6)) < np.array([0.5, 0.2, 0.05, 0.01, 0.9, 0.3])).astype(np.float32)
    partial = simulate_partial(full, "fpc", 20, seed=1)
    for c in range(6):
        n_pos, n_neg = int(full[:, c].sum()), int((full[:, c] == 0).sum())
        assert (partial[:, c] == 1).sum() == min(20, n_pos)
        assert (partial[:, c] == 0).sum() == min(20, n_neg)
    known = partial != -1
    assert np.array_equal(partial[known], full[known])  # never flips a label
    assert np.array_equal(partial, simulate_partial(full, "fpc", 20, seed=1))
    assert not np.array_equal(partial, simulate_partial(full, "fpc", 20, seed=2))


def test_rps_hides_the_requested_fraction():
    full = (np.random.default_rng(0).random((500, 40)) < 0.3).astype(np.float32)
    partial = simulate_partial(full, "rps", 0.5, seed=3)
    assert abs((partial == -1).mean() - 0.5) < 0.01
    known = partial != -1
    assert np.array_equal(partial[known], full[known])
    assert np.array_equal(partial, simulate_partial(full, "rps", 0.5, seed=3))
    with pytest.raises(ValueError, match="unknown partial-label simulation"):
        simulate_partial(full, "half", 0.5, seed=0)


def test_benchmark_set_has_the_2014_layout_gapped_ids_and_a_long_tail(tmp_path, fake_fashion_mnist):
    root = build_coco_benchmark(tmp_path / "bench", n_train=120, n_val=40, source=fake_fashion_mnist)
    for split in ("train", "val"):
        coco = load_coco(root / "annotations" / f"instances_{split}2014.json", root / f"{split}2014")
        assert coco.category_ids == CATEGORY_IDS and 10 not in coco.category_ids
        assert coco.filenames[0] == f"COCO_{split}2014_000000000001.jpg"
    freq = load_coco(root / "annotations" / "instances_train2014.json", root / "train2014").targets.mean(axis=0)
    assert freq.max() > 5 * np.median(freq)


def test_the_uniform_benchmark_set_has_even_categories_and_a_manifest_that_says_so(tmp_path, fake_fashion_mnist):
    root = build_coco_benchmark(tmp_path / "uniform", n_train=400, n_val=16, source=fake_fashion_mnist,
                                zipf_exponent=0)
    counts = load_coco(root / "annotations" / "instances_train2014.json", root / "train2014").targets.sum(axis=0)
    assert counts.max() < 2 * counts.min()  # 20 categories at ~46 positives each (binomial spread)
    assert json.loads((root / "manifest.json").read_text())["zipf_exponent"] == 0
    default = build_coco_benchmark(tmp_path / "longtail", n_train=16, n_val=16, source=fake_fashion_mnist)
    assert "zipf_exponent" not in json.loads((default / "manifest.json").read_text())


def test_train_validate_infer_on_coco_with_simulation(tmp_path, fake_fashion_mnist):
    root = build_coco_benchmark(tmp_path / "bench", n_train=48, n_val=16, source=fake_fashion_mnist)
    run = tmp_path / "run"
    assert train_script.main(["--dataset", "coco", "--data", str(root), "--simulate_partial_type", "fpc",
                              "--simulate_partial_param", "5", "--model-name", "test_resnet", "--image-size", "32",
                              "--batch-size", "8", "--workers", "0", "--epochs", "1", "--prior-epochs", "1",
                              "--output-dir", str(run)]) == 0
    simulated = pd.read_csv(run / "simulation" / "simulated_targets.csv")
    train_images = load_coco(root / "annotations" / "instances_train2014.json", root / "train2014").filenames
    assert len(train_images) < 48  # the set's images without annotations are dropped, as the official loader does
    assert simulated.shape == (len(train_images), 21) and set(np.unique(simulated.iloc[:, 1:])) <= {-1, 0, 1}
    summary = pd.read_csv(run / "simulation" / "simulation_summary.csv")
    assert (summary["annotated_positives"] <= 5).all()
    quality = json.loads((run / "priors" / "prior_quality.json").read_text())
    assert quality["reference"].startswith("true class frequency")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["schema"] is None and ckpt["class_names"][10] == "red tshirt"
    prior_file = pd.read_csv(run / "priors" / "prior_ignore.csv")
    assert (prior_file["method"] == "mean").all() and "annotated_rate" in prior_file

    report_dir = tmp_path / "report"
    assert validate_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--dataset", "coco",
                                 "--data", str(root), "--output-dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    val_images = load_coco(root / "annotations" / "instances_val2014.json", root / "val2014").filenames
    assert report["num_images"] == len(val_images) and "accuracy_per_attribute" not in report
    out = tmp_path / "pred.csv"
    assert infer_script.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--images",
                              str(root / "val2014"), "--output", str(out), "--threshold", "0.0"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns[:2]) == ["filename", "labels"] and len(pred) == 16
    assert pred["labels"].iloc[0].split(";")[0] == "tshirt"  # threshold 0: every label, in class order
