"""Class-conditional mixture metrics (``cmix``): the Bayes classifier and the class-conditional
log density against closed form on a small case, per-class mode masses, class-conditional SW2,
and the evaluation wiring of the ``cmix`` task."""

from __future__ import annotations

import math

import pytest
import torch

from diffgym.benchmarks.conditional_metrics import (
    bayes_accuracy,
    bayes_classifier,
    class_sliced_wasserstein,
    conditional_log_density,
    conditional_mixture_metrics,
    conditional_mode_tv,
)
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS, measured_metrics, task_metrics
from diffgym.envs import make_task
from diffgym.envs.denoisers import FullCovGaussianMixture, GaussianMixture


def _two_class_1d() -> FullCovGaussianMixture:
    """Class 0: N(-1, 0.5^2) (weight 0.3); class 1: N(1, 1) (0.3) and N(3, 0.25^2) (0.4)."""
    means = torch.tensor([[-1.0], [1.0], [3.0]], dtype=torch.float64)
    covs = torch.tensor([0.25, 1.0, 0.0625], dtype=torch.float64).reshape(3, 1, 1)
    return FullCovGaussianMixture(means, covs, [0.3, 0.3, 0.4], [0, 1, 1])


def _normal_pdf(x: torch.Tensor, mu: float, var: float) -> torch.Tensor:
    return torch.exp(-0.5 * (x - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_bayes_classifier_and_conditional_log_density_closed_form():
    m = _two_class_1d()
    x = torch.linspace(-3, 4, 71, dtype=torch.float64)[:, None]
    p0 = 0.3 * _normal_pdf(x[:, 0], -1.0, 0.25)
    p1 = 0.3 * _normal_pdf(x[:, 0], 1.0, 1.0) + 0.4 * _normal_pdf(x[:, 0], 3.0, 0.0625)
    expected = (p1 > p0).long()
    assert torch.equal(bayes_classifier(x, m), expected)
    labels = torch.tensor([0, 1] * 35 + [1])
    agree = float((expected == labels).double().mean())
    assert bayes_accuracy(x, labels, m) == pytest.approx(agree)
    cond = torch.where(labels == 0, torch.log(p0 / 0.3), torch.log(p1 / 0.7))
    assert conditional_log_density(x, labels, m) == pytest.approx(float(cond.mean()), rel=1e-12)
    # the same numbers from an isotropic mixture with the same components
    iso = GaussianMixture(m.means, [0.5, 1.0, 0.25], [0.3, 0.3, 0.4], [0, 1, 1])
    assert torch.equal(bayes_classifier(x, iso), expected)
    assert conditional_log_density(x, labels, iso) == pytest.approx(float(cond.mean()), rel=1e-12)


def test_real_data_scores_well_and_wrong_labels_do_not():
    m = _two_class_1d()
    g = torch.Generator().manual_seed(0)
    x, labels = m.sample(20_000, g, dtype=torch.float64)
    # Bayes accuracy of the classes, by numerical integration
    grid = torch.linspace(-6, 8, 200_001, dtype=torch.float64)
    p0 = 0.3 * _normal_pdf(grid, -1.0, 0.25)
    p1 = 0.3 * _normal_pdf(grid, 1.0, 1.0) + 0.4 * _normal_pdf(grid, 3.0, 0.0625)
    acc = float(torch.maximum(p0, p1).sum() * (grid[1] - grid[0]))
    assert bayes_accuracy(x, labels, m) == pytest.approx(acc, abs=0.01)
    # overlapping components: the argmax assignment misplaces a few percent of real samples
    assert conditional_mode_tv(x, labels, m) < 0.06
    assert bayes_accuracy(x, 1 - labels, m) < 0.2
    assert conditional_mode_tv(x, 1 - labels, m) > 0.3  # exactly 0.4 in expectation


def test_conditional_mode_tv_counts_within_class_masses():
    m = _two_class_1d()
    # every class-1 sample in the N(3, .25^2) mode: class 1's mass (3/7, 4/7) becomes (0, 1)
    x = torch.tensor([[-1.0]] * 3 + [[3.0]] * 7, dtype=torch.float64)
    labels = torch.tensor([0] * 3 + [1] * 7)
    # target component masses (0.3, 0.7 * 3/7, 0.7 * 4/7) = (0.3, 0.3, 0.4); empirical (0.3, 0, 0.7)
    assert conditional_mode_tv(x, labels, m) == pytest.approx(0.3)


def test_class_sliced_wasserstein():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(400, 3, generator=g, dtype=torch.float64)
    lab = torch.arange(400) % 2
    assert class_sliced_wasserstein(ref, lab, ref, lab) == 0.0
    shifted = ref + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    # a pure shift m gives SW2 = sqrt(mean_u (m.u)^2) ~ |m| / sqrt(d) in every class
    val = class_sliced_wasserstein(shifted, lab, ref, lab, num_projections=4096)
    assert val == pytest.approx(2.0 / math.sqrt(3), rel=0.05)
    # swapping the labels of a class-separated set is caught, unlike the unconditional distance
    sep = ref + 5.0 * lab[:, None].double()
    assert class_sliced_wasserstein(sep, 1 - lab, sep, lab) > 2.0
    with pytest.raises(ValueError, match=r"labels must have shape \(400,\)"):
        class_sliced_wasserstein(ref, lab[:3], ref, lab)


def test_conditional_metrics_bad_input():
    m = _two_class_1d()
    x = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"labels contains 2; allowed labels are 0..1"):
        bayes_accuracy(x, torch.tensor([0, 1, 2, 0]), m)
    with pytest.raises(TypeError, match=r"labels must be an integer tensor"):
        conditional_log_density(x, torch.zeros(4), m)
    with pytest.raises(ValueError, match=r"no component labels"):
        bayes_accuracy(x, torch.zeros(4, dtype=torch.long), GaussianMixture(torch.zeros(2, 1), 1.0))
    with pytest.raises(TypeError, match=r"mixture must be a GaussianMixture or FullCov"):
        conditional_mode_tv(x, torch.zeros(4, dtype=torch.long), object())


def test_conditional_mixture_metrics_bundle():
    m = _two_class_1d()
    g = torch.Generator().manual_seed(2)
    x, lab = m.sample(500, g, dtype=torch.float64)
    ref, ref_lab = m.sample(500, g, lab, dtype=torch.float64)
    out = conditional_mixture_metrics(x, lab, m, ref, ref_lab, torch.Generator().manual_seed(0))
    assert set(out) == {"logp", "bayes_accuracy", "mode_tv", "class_sw2", "sw2", "mmd",
                        "precision", "recall"}
    assert out["logp"] == pytest.approx(conditional_log_density(x, lab, m))
    assert out["bayes_accuracy"] == pytest.approx(bayes_accuracy(x, lab, m))
    assert out["mode_tv"] == pytest.approx(conditional_mode_tv(x, lab, m))
    assert out["precision"] > 0.9 and out["recall"] > 0.9


def test_cmix_task_metrics_wiring():
    task = make_task("cmix")
    names = measured_metrics(task)
    assert task.headline_metric == "logp" and task.metric_suite == "conditional_mixture"
    assert task.headline_metric in names and all(k in METRIC_DIRECTIONS for k in names)
    labels = task.sample_labels(256, torch.Generator().manual_seed(0))
    x, _ = task.target.sample(256, torch.Generator().manual_seed(1), labels)
    out = task_metrics(task, x, labels, seed=5)
    assert tuple(out) == names
    assert out["bayes_accuracy"] > 0.95
    with pytest.raises(ValueError, match="its metrics need the labels"):
        task_metrics(task, x, None, seed=5)
