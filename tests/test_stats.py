"""The one bootstrap helper: the interval of a mean, reproducible, stratified, and honest about what
cannot be resampled."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tsbench.stats import bootstrap_ci


def test_interval_of_a_mean_is_scipys_percentile_interval() -> None:
    data = np.random.default_rng(1).normal(3.0, 1.0, size=200)
    low, high = bootstrap_ci(lambda idx: data[idx].mean(-1), [len(data)], resamples=2000, seed=7)
    reference = stats.bootstrap((data,), np.mean, n_resamples=2000, method="percentile",
                                rng=np.random.default_rng(7)).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high))
    assert low < data.mean() < high and high - low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.2)
    assert bootstrap_ci(lambda idx: data[idx].mean(-1), [len(data)], resamples=2000, seed=7) == (low, high)


def test_samples_are_resampled_separately_and_single_units_stay() -> None:
    a, b = np.array([0.0, 1.0, 0.0, 1.0]), np.array([5.0])

    def mean_of_means(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        assert ia.shape[-1] == 4 and ib.shape[-1] == 1  # each sample keeps its own size
        return (a[ia].mean(-1) + b[ib].mean(-1)) / 2

    low, high = bootstrap_ci(mean_of_means, [4, 1], resamples=500)
    assert 2.5 <= low < 2.75 < high <= 3.0  # only a varies; b's single unit is always 5


def test_nothing_to_resample_gives_no_interval() -> None:
    def one(*idx: np.ndarray) -> np.ndarray:
        return np.ones(idx[0].shape[:-1])

    assert all(math.isnan(v) for v in bootstrap_ci(one, [1], resamples=100))
    assert all(math.isnan(v) for v in bootstrap_ci(one, [10], resamples=0))
    assert bootstrap_ci(one, [10], resamples=100) == (1.0, 1.0)  # constant data: a point, not an error
