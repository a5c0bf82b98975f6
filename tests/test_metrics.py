import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from partial_csl.metrics import average_precision, evaluate_predictions, mean_average_precision, threshold_metrics


def test_average_precision_by_hand():
    # ranking: pos, neg, pos, neg -> precision at the hits 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_ties_are_one_threshold_whatever_the_order():
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    # the reference gave 1.0 or 0.25 depending on where the positive sat; a tie block is one threshold: 1/4
    assert average_precision(scores, np.array([1, 0, 0, 0])) == pytest.approx(0.25)
    assert average_precision(scores, np.array([0, 0, 0, 1])) == pytest.approx(0.25)


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        labels = rng.integers(0, 2, n)
        labels[0] = 1
        scores = np.round(rng.random(n), 1)  # many ties
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))


def test_partial_map_leaves_unknowns_out_and_lists_excluded_classes():
    targets = np.array([[1, -1, 0], [0, -1, -1], [-1, 1, 0], [1, 0, 0]])
    scores = np.array([[0.9, 0.9, 0.1], [0.8, 0.1, 0.9], [0.99, 0.3, 0.2], [0.7, 0.2, 0.3]])
    result = mean_average_precision(targets, scores, ["a", "b", "c"])
    # class a over rows 0,1,3: ranking 0.9(+) 0.8(-) 0.7(+) -> (1 + 2/3) / 2; class b over rows 2,3: AP 1; c excluded
    assert result["ap_per_class"]["a"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert result["ap_per_class"]["b"] == pytest.approx(100.0)
    assert result["excluded_classes"] == ["c"]
    assert result["mAP"] == pytest.approx((100 * (1 + 2 / 3) / 2 + 100) / 2)
    naive = mean_average_precision(targets, scores, ["a", "b", "c"], unknown_as_negative=True)
    # unknown row 2 (score 0.99) now counts as a negative of class a and ranks first
    assert naive["ap_per_class"]["a"] == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)


def test_threshold_metrics_by_hand_on_known_entries():
    targets = np.array([[1, 0], [1, -1], [0, 1]])
    scores = np.array([[0.9, 0.6], [0.2, 0.9], [0.7, 0.8]])
    m = threshold_metrics(targets, scores, 0.5)
    # class 0: tp 1, fp 1, fn 1; class 1: tp 1, fp 1 (row 0), fn 0; the unknown (row 1) counts for nothing
    assert m["CP"] == pytest.approx(100 * (0.5 + 0.5) / 2)
    assert m["CR"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert m["OP"] == pytest.approx(100 * 2 / 4)
    assert m["OR"] == pytest.approx(100 * 2 / 3)
    assert m["OF1"] == pytest.approx(100 * 2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))


def test_evaluation_report_attribute_accuracy_and_majority_baseline():
    groups = {"g1": slice(0, 2), "g2": slice(2, 5)}
    targets = np.array([[1, 0, 0, 1, 0], [0, 1, -1, -1, -1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 0]])
    scores = np.array([[0.8, 0.1, 0.1, 0.7, 0.2], [0.6, 0.4, 0.5, 0.1, 0.1],
                       [0.7, 0.2, 0.1, 0.1, 0.9], [0.9, 0.3, 0.2, 0.6, 0.1]])
    report = evaluate_predictions(targets, scores, ["a0", "a1", "b0", "b1", "b2"], groups,
                                  majority={"g1": 0, "g2": 1})
    assert report["accuracy_per_attribute"] == pytest.approx({"g1": 75.0, "g2": 200 / 3})
    assert report["known_per_attribute"] == {"g1": 4, "g2": 3}
    # g2: truth b1, b2, b0 -> predicted b1, b2, b1: recalls b0 0, b1 1, b2 1
    assert report["macro_accuracy_per_attribute"]["g2"] == pytest.approx(200 / 3)
    assert report["macro_accuracy_per_attribute"]["g1"] == pytest.approx(50.0)
    assert report["majority_accuracy_per_attribute"] == pytest.approx({"g1": 75.0, "g2": 100 / 3})
    for key in ("mAP", "mAP_unknown_as_negative", "mAP_per_attribute", "ap_per_class", "excluded_classes",
                "CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert key in report
