import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from partial_csl.engine.inference import estimate_priors
from partial_csl.priors import PriorFileError, RunningPrior, load_priors, prior_quality, save_priors

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


def test_estimate_priors_averages_eval_mode_probabilities():
    model = BiasOnly([0.0, 2.0, -1.0]).train()
    loader = DataLoader(TensorDataset(torch.rand(10, 3, 4, 4), torch.zeros(10, 3)), batch_size=4)
    priors, details = estimate_priors(model, loader)
    assert details["n_images"] == 10
    np.testing.assert_allclose(priors, torch.sigmoid(torch.tensor([0.0, 2.0, -1.0])).numpy(), rtol=1e-6)
    assert model.training  # restored


def test_running_prior_is_the_reference_estimate():
    running = RunningPrior(2)
    running.update(torch.tensor([[0.0, 0.0], [0.0, 100.0]]))
    np.testing.assert_allclose(running.value(), [0.5, 0.75])


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
    from partial_csl.priors import em_prior_shift

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
    from partial_csl.priors import em_prior_shift

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
    from partial_csl.priors import em_prior_shift, priors_from_probabilities

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
