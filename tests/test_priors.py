import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from partial_csl import prior_calibration, prior_estimates
from partial_csl.engine.inference.probabilities import predict_probabilities
from partial_csl.prior_calibration import recalibrate_to_annotated
from partial_csl.prior_estimates import (
    em_prior_shift,
    holdout_mask,
    prior_bounds,
    priors_from_probabilities,
)
from partial_csl.priors import PriorFileError, load_priors, prior_quality, save_priors

NAMES = ["neck_0", "neck_1", "sleeve_0"]


class BiasOnly(nn.Module):
    """Ignores the image; its logits are fixed, so the expected prior is sigmoid(bias)."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(bias))
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x):
        assert not self.training, "priors must be estimated in eval mode"
        return self.bias.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


def estimate_priors(model, loader, method="mean"):
    """What the prior stage does: eval-mode probabilities of the training images, then the estimate."""
    probs = predict_probabilities(model, loader, torch.device("cpu"), None)
    targets = getattr(loader.dataset, "targets", None)
    return priors_from_probabilities(probs, None if targets is None else np.asarray(targets), method)


def test_estimate_priors_averages_eval_mode_probabilities():
    model = BiasOnly([0.0, 2.0, -1.0]).train()
    loader = DataLoader(TensorDataset(torch.rand(10, 3, 4, 4), torch.zeros(10, 3)), batch_size=4)
    priors, details = estimate_priors(model, loader)
    assert details["n_images"] == 10
    np.testing.assert_allclose(priors, torch.sigmoid(torch.tensor([0.0, 2.0, -1.0])).numpy(), rtol=1e-6)
    assert model.training  # restored


def test_save_and_load_by_name_in_any_row_order(tmp_path):
    path = save_priors(tmp_path / "p.csv", NAMES, np.array([0.1, 0.7, 0.25]), n_images=42)
    assert path.read_text().splitlines()[0] == "class,prior,method"
    np.testing.assert_allclose(load_priors(path, NAMES), [0.1, 0.7, 0.25])
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("class,prior\nsleeve_0,0.25\nneck_0,0.1\nneck_1,0.7\n")
    np.testing.assert_allclose(load_priors(shuffled, NAMES), [0.1, 0.7, 0.25])
    assert '"n_images": 42' in (tmp_path / "p.csv.json").read_text()


# bad rows that both prior layouts (ours and the reference's) refuse with the same reason
BAD_PRIOR_ROWS = [
    ("neck_0,0.1\nneck_0,0.2\nneck_1,0.3\nsleeve_0,0.3\n", "class 'neck_0' is duplicated (first on line 2)"),
    ("neck_0,0.1\nneck_1,0.2\n", "missing class(es) of the model: ['sleeve_0']"),
    ("neck_0,0.1\nneck_1,0.2\nsleeve_0,0.3\nhat,0.3\n", "unknown class(es) not in the model: ['hat']"),
    ("neck_0,nan\nneck_1,0.2\nsleeve_0,0.3\n", "class 'neck_0' has a NaN prior"),
    ("neck_0,1.5\nneck_1,0.2\nsleeve_0,0.3\n", "class 'neck_0' has prior 1.5 outside [0, 1]"),
]


@pytest.mark.parametrize("body,message", [
    *BAD_PRIOR_ROWS,
    ("neck_0,high\nneck_1,0.2\nsleeve_0,0.3\n", "non-numeric prior 'high'"),
])
def test_bad_prior_files_are_refused_with_the_reason(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text("class,prior\n" + body)
    with pytest.raises(PriorFileError) as info:
        load_priors(path, NAMES)
    assert message in str(info.value) and "bad.csv" in str(info.value)


def test_the_reference_prior_file_is_read_by_class_name(tmp_path, caplog):
    # CSL's layout (ComputePrior.save_prior): Classes,avg_pred, no index column; its shipped prior_fpc_1000.csv
    # ends with a stray one-field line
    path = tmp_path / "prior_fpc_1000.csv"
    path.write_text("Classes,avg_pred\nsleeve_0,0.25\nneck_0,0.1\nneck_1,0.7\n1542867\n")
    with caplog.at_level(logging.WARNING, logger="partial_csl.priors"):
        np.testing.assert_allclose(load_priors(path, NAMES), [0.1, 0.7, 0.25])
    assert "line 5 ('1542867') has no prior value and is skipped" in caplog.text
    train_avg_preds = tmp_path / "train_avg_preds.csv"
    train_avg_preds.write_text("Classes,avg_pred\nneck_0,0.1\nneck_1,0.7\nsleeve_0,0.25\n")
    np.testing.assert_allclose(load_priors(train_avg_preds, NAMES), [0.1, 0.7, 0.25])


@pytest.mark.parametrize("body,message", [
    *BAD_PRIOR_ROWS,
    ("neck_0\nneck_1,0.2\nsleeve_0,0.3\n", "line 2: class 'neck_0' has a non-numeric prior ''"),
])
def test_reference_prior_files_get_the_same_checks(tmp_path, body, message):
    path = tmp_path / "train_avg_preds.csv"
    path.write_text("Classes,avg_pred\n" + body)
    with pytest.raises(PriorFileError) as info:
        load_priors(path, NAMES)
    assert message in str(info.value)


def test_other_column_names_are_refused_naming_both_layouts(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("name,value\nneck_0,0.1\n")
    with pytest.raises(PriorFileError, match=r"expected the columns \['class', 'prior'\] \(or the reference's "
                                             r"\['Classes', 'avg_pred'\]\), found \['name', 'value'\]"):
        load_priors(path, NAMES)


def test_prior_quality_reports_spearman_and_top_classes():
    quality = prior_quality(np.array([0.1, 0.5, 0.3]), np.array([0.05, 0.6, 0.2]), NAMES, top=2)
    assert quality["spearman"] == pytest.approx(1.0)
    assert [r["estimated_class"] for r in quality["top"]] == ["neck_1", "sleeve_0"]
    assert quality["top"][0]["true_frequency"] == pytest.approx(0.6)


def calibrated_posteriors(x: np.ndarray, base_rate: float) -> np.ndarray:
    """Exact posteriors for x ~ N(+1, 1) (positives) vs N(-1, 1) (negatives) under a class prior ``base_rate``."""
    f1, f0 = np.exp(-0.5 * (x - 1) ** 2), np.exp(-0.5 * (x + 1) ** 2)
    return base_rate * f1 / (base_rate * f1 + (1 - base_rate) * f0)


def test_em_recovers_a_shifted_prior():
    from partial_csl.prior_estimates import em_prior_shift

    rng = np.random.default_rng(0)
    true_priors, annotated = np.array([0.1, 0.3, 0.02]), np.array([0.5, 0.5, 0.4])
    n = 20000
    columns = []
    for pi, a in zip(true_priors, annotated):
        y = rng.random(n) < pi
        x = np.where(y, rng.normal(1, 1, n), rng.normal(-1, 1, n))
        columns.append(calibrated_posteriors(x, a))  # a model trained where positives had rate a
    posteriors = np.stack(columns, axis=1)
    mean_only = posteriors.mean(axis=0)
    assert np.all(np.abs(mean_only - true_priors) > 0.05)  # the plain mean is far off
    priors, iterations = em_prior_shift(posteriors, annotated)
    np.testing.assert_allclose(priors, true_priors, atol=0.015)
    assert np.all((iterations > 1) & (iterations < 1000))


def test_em_without_shift_returns_the_annotated_rate_and_handles_edges():
    from partial_csl.prior_estimates import em_prior_shift

    rng = np.random.default_rng(1)
    a = 0.3
    y = rng.random(50000) < a
    x = np.where(y, rng.normal(1, 1, y.size), rng.normal(-1, 1, y.size))
    posteriors = np.stack([calibrated_posteriors(x, a), np.zeros(y.size), (y).astype(float)], axis=1)
    priors, iterations = em_prior_shift(posteriors, np.array([a, 0.0, 0.2]))
    assert priors[0] == pytest.approx(a, abs=0.01)
    assert priors[1] == 0.0 and iterations[1] == 0  # no annotated positive: the mean posterior, no EM
    assert priors[2] == pytest.approx(y.mean(), abs=1e-9)  # hard 0/1 posteriors are their own fixed point


def test_estimate_priors_em_uses_the_annotated_rate_of_the_loader():
    class Labelled(torch.utils.data.Dataset):
        def __init__(self):
            self.targets = torch.tensor([[1, -1], [0, 0], [-1, 1], [0, -1]], dtype=torch.float32)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(3, 4, 4), self.targets[i]

    model = BiasOnly([0.0, 0.0])
    loader = DataLoader(Labelled(), batch_size=2)
    priors, details = estimate_priors(model, loader, method="em")
    np.testing.assert_allclose(details["annotated_rate"], [1 / 3, 1 / 2])
    # posteriors that carry no information (0.5 everywhere) are shifted to the annotated rate and stay there
    np.testing.assert_allclose(priors, [1 / 3, 1 / 2], atol=1e-6)
    with pytest.raises(ValueError, match="unknown prior estimate"):
        estimate_priors(model, loader, method="median")


def test_em_after_recalibration_stays_put_without_a_shift():
    """Random (label-independent) annotation and a model that overpredicts: raw EM runs away, ours does not."""
    from partial_csl.prior_estimates import em_prior_shift, priors_from_probabilities

    rng = np.random.default_rng(2)
    n, a = 20000, 0.05
    y = rng.random(n) < a
    x = np.where(y, rng.normal(1.5, 1, n), rng.normal(-1.5, 1, n))
    biased = calibrated_posteriors(x, 0.2)  # calibrated to 0.2 instead of the true 0.05
    targets = np.where(rng.random(n) < 0.3, -1, y.astype(float))[:, None]  # 30 % unknown, at random
    runaway = em_prior_shift(biased[:, None], np.array([a]))[0][0]
    assert runaway > 0.1
    priors, details = priors_from_probabilities(biased[:, None], targets, "em")
    assert priors[0] == pytest.approx(a, abs=0.01)
    assert details["mean_posterior"][0] > 0.07  # the plain mean is off too


# --- the robust em estimate: cross-fitted calibration, plausibility bounds, clipped-mean fallback (issue 20) ---

def test_holdout_mask_holds_out_a_seeded_share_of_each_label_and_never_an_unknown():
    targets = np.full((10, 3), -1)
    targets[:5, 0], targets[5:, 0] = 1, 0  # 5 positives, 5 negatives
    targets[0, 1], targets[1:4, 1] = 1, 0  # 1 positive, 3 negatives, 6 unknown
    targets[:2, 2], targets[2:4, 2] = 1, 0  # 2 and 2
    mask = holdout_mask(targets, 0.4, seed=7)
    np.testing.assert_array_equal(mask, holdout_mask(targets, 0.4, seed=7))  # the same on every call
    assert not (mask & (targets == -1)).any()
    held = [((mask[:, c] & (targets[:, c] == 1)).sum(), (mask[:, c] & (targets[:, c] == 0)).sum()) for c in range(3)]
    # round(0.4 * 5) = 2 of 5; a lone positive stays; round(0.4 * 3) = 1 of 3; round(0.4 * 2) = 1 of 2
    assert held == [(2, 2), (0, 1), (1, 1)]
    most = holdout_mask(targets, 0.9, seed=7)  # round(0.9 * 2) = 2, but one of each is kept for training
    for c in range(3):
        for label in (1, 0):
            assert ((targets[:, c] == label) & ~most[:, c]).sum() >= 1
    assert not holdout_mask(targets, 0.0, seed=7).any()
    with pytest.raises(ValueError, match="holdout share"):
        holdout_mask(targets, 1.0, seed=7)


def test_recalibration_fitted_on_a_mask_uses_only_those_entries():
    def logit(p):
        return np.log(p / (1 - p))

    targets = np.array([[1], [0], [1], [0]])
    probs = np.array([[0.9], [0.2], [0.8], [0.8]])
    fit = np.array([[False], [False], [True], [True]])
    # the fit entries (0.8, 0.8) have positive rate 1/2: the shift is -logit(0.8), applied to every entry
    expected = 1 / (1 + np.exp(-(logit(probs) - logit(0.8))))
    np.testing.assert_allclose(recalibrate_to_annotated(probs, targets, fit)[0], expected, atol=1e-9)
    other = probs.copy()
    other[:2] = [[0.3], [0.01]]  # entries outside the mask do not move the shift
    np.testing.assert_allclose(recalibrate_to_annotated(other, targets, fit)[0][2:], expected[2:], atol=1e-9)
    # without the mask all four count: mean(0.9, 0.2, 0.8, 0.8) = 0.675 != 0.5, another shift
    assert not np.allclose(recalibrate_to_annotated(probs, targets)[0], expected, atol=1e-3)


def test_prior_bounds_come_from_the_annotated_counts():
    targets = np.array([[1, 0, -1], [1, -1, -1], [-1, 0, -1], [0, -1, 1]])
    lower, upper = prior_bounds(targets)
    np.testing.assert_allclose(lower, [2 / 4, 0 / 4, 1 / 4])  # annotated positives / N
    np.testing.assert_allclose(upper, [1 - 1 / 4, 1 - 2 / 4, 1])  # 1 - annotated negatives / N


ANNOTATED = [1, 1, 0, 0] + [-1] * 6  # 10 images: 2 positives, 2 negatives, 6 unknown; bounds [0.2, 0.8]


def test_em_outside_the_bounds_is_clipped_to_the_nearest_bound_with_a_warning(caplog):
    targets = np.array([ANNOTATED, ANNOTATED]).T
    # class 0: calibrated on its annotated images (mean 0.5 = their rate), unknowns near 0; the odds ratios average
    # below 1, so EM runs to a prior of about 0, below the 2 / 10 annotated positives. Class 1: nothing to shift.
    col0 = np.array([0.6, 0.6, 0.4, 0.4] + [0.01] * 6)
    col1 = np.array([0.9, 0.9, 0.1, 0.1] + [0.5] * 6)
    with caplog.at_level(logging.WARNING, logger="partial_csl.prior_estimates"):
        priors, details = priors_from_probabilities(np.stack([col0, col1], axis=1), targets, "em",
                                                    class_names=["hat", "scarf"])
    assert details["estimator"] == ["em_clipped", "em"]
    assert priors[0] == pytest.approx(0.2)  # EM's likelihood is concave in the prior: its bounded maximum
    assert priors[1] == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(details["lower_bound"], [0.2, 0.2])
    assert "ended outside" in caplog.text and "the nearest bound" in caplog.text
    assert "hat 0.2000 [0.2000, 0.8000]" in caplog.text and "scarf" not in caplog.text


def test_em_that_does_not_converge_falls_back_to_the_clipped_mean(caplog, monkeypatch, tmp_path):
    monkeypatch.setattr(prior_estimates, "EM_MAX_ITER", 1)  # no class converges in one iteration
    targets = np.array([ANNOTATED]).T
    probs = np.array([[0.06, 0.06, 0.04, 0.04] + [0.001] * 6]).T  # raw mean 0.0206, below the bound 0.2
    with caplog.at_level(logging.WARNING, logger="partial_csl.prior_estimates"):
        priors, details = prior_estimates.priors_from_probabilities(probs, targets, "em", class_names=["hat"])
    assert details["estimator"] == ["fallback_unconverged"] and details["em_iterations"][0] == 1
    assert priors[0] == pytest.approx(0.2)  # the mean posterior, clipped up to annotated positives / N
    assert "did not converge in 1 iterations" in caplog.text and "hat 0.2000" in caplog.text
    details.pop("n_images")
    path = save_priors(tmp_path / "p.csv", ["hat"], priors, 10, "em", details)
    row = path.read_text().splitlines()
    assert row[0].split(",")[-5:] == ["estimator", "lower_bound", "upper_bound", "calibration", "evidence"]
    assert "fallback_unconverged" in row[1]


def fpc_like(seed: int, n: int = 20000, prior: float = 0.05, kept: int = 300):
    """One class at ``prior``, x ~ N(+-1, 1); FPC-like annotation keeps ``kept`` positives and ``kept`` negatives."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prior
    x = np.where(y, rng.normal(1, 1, n), rng.normal(-1, 1, n))
    targets = np.full((n, 1), -1)
    targets[rng.choice(np.flatnonzero(y), kept, replace=False), 0] = 1
    targets[rng.choice(np.flatnonzero(~y), kept, replace=False), 0] = 0
    return x, targets, y.mean()


def test_a_miscalibrated_model_no_longer_collapses_a_rare_class():
    robust_estimates, truths = [], []
    for seed in range(5):  # 120 held-out labels calibrate: one draw is noisy, so five
        x, targets, true_prior = fpc_like(seed=seed)
        holdout = holdout_mask(targets, 0.2, seed=0)
        flat = 1 / (1 + np.exp(-2 * x[:, None] / 3))  # the exact log-odds (2x) scaled by 1/3: underconfident
        # the old in-sample EM (a logit shift only) sends the class to about 0 ...
        assert em_prior_shift(recalibrate_to_annotated(flat, targets)[0], np.array([0.5]))[0][0] < 1e-3
        # ... the robust one fits a scale too on the held-out entries (Platt, about 3: the Wald test takes it)
        robust, details = priors_from_probabilities(flat, targets, "em", holdout=holdout)
        held = holdout[:, 0] & (targets[:, 0] != -1)
        fit = prior_calibration.platt_scaling(2 * x[held] / 3, targets[held, 0] == 1)
        assert details["estimator"] == ["em"] and abs(fit.scale - 1) > 2 * fit.scale_error
        assert details["calibration"] == ["platt"]
        assert true_prior / 2 < robust[0] < true_prior * 2
        robust_estimates.append(robust[0])
        truths.append(true_prior)
    assert np.mean(robust_estimates) == pytest.approx(np.mean(truths), rel=0.3)


def test_platt_scaling_is_finite_on_separable_entries_and_one_without_miscalibration():
    fit = prior_calibration.platt_scaling(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    assert fit.converged and np.isfinite(fit.scale) and 1 < fit.scale < 10
    assert fit.shift == pytest.approx(0, abs=1e-9)  # symmetric: no shift
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 50000)
    labels = rng.random(50000) < 1 / (1 + np.exp(-logits))  # calibrated by construction
    fit = prior_calibration.platt_scaling(logits, labels)
    assert abs(fit.scale - 1) <= 2 * fit.scale_error  # no evidence of miscalibration: the shift alone is used
    assert fit.scale == pytest.approx(1, abs=0.03) and fit.shift == pytest.approx(0, abs=0.03)


def overconfident_labels(seed: int, per_label: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_label`` positives and negatives with x ~ N(+-1.2, 1); the exact log-odds are 2.4 x."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(1.2, 1, per_label), rng.normal(-1.2, 1, per_label)])
    return x, np.r_[np.ones(per_label), np.zeros(per_label)]


def test_platt_scaling_converges_on_an_overconfident_model_where_plain_newton_ran_off():
    # logits 7.2 x are three times the exact log-odds: saturated sigmoids, a near-zero Hessian at (1, 0); the
    # undamped Newton iteration went to a scale of about 10,000 on this draw
    x, labels = overconfident_labels(seed=0, per_label=60)
    fit = prior_calibration.platt_scaling(7.2 * x, labels)
    # a proper fit: the unpenalised logistic regression of the labels on the logit, by scikit-learn
    from sklearn.linear_model import LogisticRegression

    proper = LogisticRegression(C=1e6, tol=1e-10, max_iter=1000).fit((7.2 * x)[:, None], labels)
    assert fit.converged
    assert fit.scale == pytest.approx(float(proper.coef_[0, 0]), rel=0.1)
    assert fit.shift == pytest.approx(float(proper.intercept_[0]), abs=0.1)


def test_a_platt_fit_that_does_not_converge_is_not_used(caplog):
    x, labels = overconfident_labels(seed=0, per_label=60)
    targets = np.r_[labels, [-1] * 10][:, None]
    probs = 1 / (1 + np.exp(-7.2 * np.r_[x, np.zeros(10)]))[:, None]
    assert recalibrate_to_annotated(probs, targets, fit_scale=True)[1] == ["platt"]
    with pytest.MonkeyPatch.context() as patch:  # a fit that failed
        patch.setattr(prior_calibration, "platt_scaling",
                      lambda *a: prior_calibration.PlattFit(1e4, 40.0, 1.0, converged=False))
        shifted, calibration = recalibrate_to_annotated(probs, targets, fit_scale=True)
        assert calibration == ["shift_platt_unconverged"]
        # the shift alone: the posteriors of the annotated entries average to their positive rate
        assert shifted[:120, 0].mean() == pytest.approx(0.5, abs=1e-6)
        with caplog.at_level(logging.WARNING, logger="partial_csl.prior_estimates"):
            priors_from_probabilities(probs, targets, "em", holdout=targets != -1, class_names=["hat"])
    assert "Platt scaling fit did not converge for 1 class(es)" in caplog.text and "hat" in caplog.text


def test_em_on_an_overconfident_model_finds_a_rare_class(caplog):
    # a class of prior 0.02 in 20,000 images, FPC-like annotation (300 positives, 300 negatives, all held out for
    # calibration), a model three times over-confident: the undamped Platt fit sent EM to the share predicted
    # positive (0.13); the damped fit, with EM clipped to its bounds, stays near the truth on every draw
    for seed in range(3):
        rng = np.random.default_rng(seed)
        truth = np.zeros(20000, dtype=bool)
        truth[:400] = True
        x = np.where(truth, rng.normal(1.2, 1, 20000), rng.normal(-1.2, 1, 20000))
        targets = np.full((20000, 1), -1)
        targets[np.flatnonzero(truth)[:300], 0] = 1
        targets[np.flatnonzero(~truth)[:300], 0] = 0
        probs = 1 / (1 + np.exp(-7.2 * x))[:, None]
        priors, details = priors_from_probabilities(probs, targets, "em", holdout=targets != -1)
        assert details["calibration"] == ["platt"]
        assert 0.01 < priors[0] < 0.04, (seed, priors[0], details["estimator"])
        assert probs.mean() > 0.13  # what the share predicted positive would have said


def test_fully_annotated_classes_take_their_annotated_rate_without_a_fallback_warning(caplog):
    targets = np.array([[1, 0], [0, 1], [0, -1], [0, 0]])  # class 0 annotated on every image, class 1 not
    probs = np.full((4, 2), 0.9)
    with caplog.at_level(logging.WARNING, logger="partial_csl.prior_estimates"):
        priors, details = priors_from_probabilities(probs, targets, "em", class_names=["hat", "scarf"])
    assert details["estimator"][0] == "annotated" and priors[0] == pytest.approx(0.25)
    assert "hat" not in caplog.text
