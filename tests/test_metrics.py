import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from partial_csl.metrics import (
    CONVENTIONS,
    ap_of_entries,
    ap_per_class,
    average_precision,
    evaluate_predictions,
    mean_average_precision,
    reference_average_precision,
    reference_map,
    threshold_metrics,
)
from partial_csl.reports.evaluation import report_markdown


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


def test_all_classes_at_once_equal_one_class_at_a_time_with_ties_and_unknowns():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, c = rng.integers(1, 40), rng.integers(1, 6)
        targets, scores = rng.integers(-1, 2, (n, c)), np.round(rng.random((n, c)), 1)  # many tied scores
        expected = [average_precision(scores[targets[:, k] != -1, k], targets[targets[:, k] != -1, k])
                    if 0 < (targets[:, k] == 1).sum() < (targets[:, k] != -1).sum() else np.nan for k in range(c)]
        np.testing.assert_allclose(ap_per_class(targets, scores), expected, atol=1e-12)


def test_ap_of_entries_by_hand_in_any_order():
    # class 0: ranked 0.9 (+), 0.5 (-), 0.4 (+): AP = (1/1 + 2/3) / 2; class 1: 0.7 (-), 0.2 (+): AP = 1/2;
    # class 2: positives only; class 3: no entry
    classes = np.array([1, 0, 2, 0, 1, 0])
    scores = np.array([0.2, 0.4, 0.3, 0.9, 0.7, 0.5])
    labels = np.array([1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(ap_of_entries(classes, scores, labels, 4), [(1 + 2 / 3) / 2, 0.5, np.nan, np.nan])
    assert np.isnan(ap_of_entries(np.array([], int), np.array([]), np.array([]), 2)).all()


def test_partial_map_leaves_unknowns_out_and_lists_excluded_classes():
    targets = np.array([[1, -1, 0], [0, -1, -1], [-1, 1, 0], [1, 0, 0]])
    scores = np.array([[0.9, 0.9, 0.1], [0.8, 0.1, 0.9], [0.99, 0.3, 0.2], [0.7, 0.2, 0.3]])
    result = mean_average_precision(targets, scores, ["a", "b", "c"])
    # class a over rows 0,1,3: ranking 0.9(+) 0.8(-) 0.7(+) -> (1 + 2/3) / 2; class b over rows 2,3: AP 1; c excluded
    assert result["ap_per_class"]["a"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert result["ap_per_class"]["b"] == pytest.approx(100.0)
    assert result["excluded_classes"] == {"c": "no known positive"}
    assert result["mAP"] == pytest.approx((100 * (1 + 2 / 3) / 2 + 100) / 2)
    # the reference's mAP: unknown row 2 (score 0.99) counts as a negative of class a and ranks first; class b ranks
    # its positive (row 2, 0.3) second behind the unknown row 0 (0.9); class c has no positive: AP 0, still averaged
    assert reference_map(targets, scores) == pytest.approx(100 * ((1 / 2 + 2 / 4) / 2 + 1 / 2 + 0) / 3)


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


def _reference_ap_loop(scores: np.ndarray, targets: np.ndarray) -> float:
    """The reference's AP, re-implemented from its description: walk the ranking of numpy's argsort reversed, add
    the precision at every positive, divide by (#positives + 1e-8)."""
    hits, total = 0, 0.0
    for rank, index in enumerate(scores.argsort()[::-1], start=1):
        if targets[index] == 1:
            hits += 1
            total += hits / rank
    return total / (hits + 1e-8)


def _reference_map_loop(targets: np.ndarray, scores: np.ndarray) -> float:
    return 100 * float(np.mean([_reference_ap_loop(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]))


@pytest.mark.parametrize("labels,expected", [
    ([0, 0, 0, 1], 1.0),    # all tied: argsort reversed puts the last index first
    ([1, 0, 0, 0], 0.25),   # ... and the first index last
    ([0, 0, 0, 0], 0.0),    # no positive: AP 0 (and it counts in the mean)
    ([1, 1, 1, 1], 1.0),    # all positive (less 1e-8)
    ([-1, 0, -1, 1], 1.0),  # unknown is a negative
])
def test_reference_ap_edge_cases(labels, expected):
    scores, labels = np.full(4, 0.5, dtype=np.float32), np.array(labels)
    assert reference_average_precision(scores, labels) == pytest.approx(expected, abs=1e-7)
    assert reference_average_precision(scores, labels) == pytest.approx(_reference_ap_loop(scores, labels), rel=1e-12)


def test_map_unknown_as_negative_is_the_reference_map():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n, c = int(rng.integers(1, 30)), int(rng.integers(1, 6))
        targets = rng.integers(-1, 2, (n, c))
        targets[:, 0] = 0  # a class without a positive: the reference scores it 0, it still counts
        if c > 1:
            targets[:, 1] = 1  # all positive
        scores = np.round(rng.random((n, c)), 1).astype(np.float32)  # many ties
        expected = _reference_map_loop(targets, scores)
        assert reference_map(targets, scores) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        report = evaluate_predictions(targets, scores, [f"k{i}" for i in range(c)])
        assert report["mAP_unknown_as_negative"] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_a_class_without_a_known_negative_is_excluded_from_the_partial_map():
    # class b: two known positives and no known negative; any ranking would give it AP 1.0
    targets = np.array([[1, 1], [0, -1], [1, 1], [0, -1]])
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.3], [0.1, 0.4]])
    result = mean_average_precision(targets, scores, ["a", "b"])
    assert result["excluded_classes"] == {"b": "no known negative"}
    assert result["ap_per_class"]["b"] is None
    assert result["mAP"] == pytest.approx(100 * (1 + 2 / 3) / 2)  # class a alone
    never_known = mean_average_precision(np.array([[1, -1], [0, -1]]), np.array([[0.9, 0.5], [0.1, 0.5]]))
    assert never_known["excluded_classes"] == {"1": "no known label"}


def test_cp_and_cr_average_over_every_class_as_the_reference():
    # class 0: tp 1 fp 1 fn 0; class 1: known positives but no true positive; class 2: no positive at all
    targets = np.array([[1, 1, 0], [0, 1, 0], [-1, 0, -1]])
    scores = np.array([[0.9, 0.1, 0.2], [0.7, 0.2, 0.1], [0.8, 0.3, 0.9]])
    m = threshold_metrics(targets, scores, 0.5)
    assert m["CP"] == pytest.approx(100 * (0.5 + 0 + 0) / 3)
    assert m["CR"] == pytest.approx(100 * (1.0 + 0 + 0) / 3)
    assert m["OP"] == pytest.approx(100 * 1 / 2) and m["OR"] == pytest.approx(100 * 1 / 3)


def test_the_report_names_the_convention_of_every_number():
    targets = np.array([[1, 1], [0, 1]])
    report = evaluate_predictions(targets, np.array([[0.9, 0.1], [0.2, 0.4]]), ["a", "b"])
    assert set(report["conventions"]) == set(CONVENTIONS) == {"mAP", "mAP_unknown_as_negative", "CP, CR, CF1",
                                                              "OP, OR, OF1"}
    text = report_markdown(report)
    assert "Excluded from mAP: b (no known negative)" in text
    assert "## Conventions" in text and "numpy argsort order" in text and "sklearn" in text


def test_equal_infinite_scores_are_one_tie_in_any_order():
    inf = np.inf
    assert average_precision([inf, inf, 0], [1, 0, 0]) == average_precision([inf, inf, 0], [0, 1, 0]) == 0.5
    np.testing.assert_allclose(ap_of_entries(np.zeros(3, int), np.array([inf, inf, 0.0]), np.array([0, 1, 0]), 1),
                               [0.5])
