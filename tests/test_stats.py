"""The one bootstrap helper: the interval of a mean, reproducible, stratified, honest about what cannot
be resampled, and the same for a statistic with several values per resample (the human evaluation's
rates and strengths) as for one."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tsbench.stats import bootstrap_ci, bootstrap_intervals, resampled_sums


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


def test_several_values_per_resample_are_each_their_own_interval() -> None:
    data = np.random.default_rng(2).normal(size=(50, 3))
    low, high = bootstrap_intervals(lambda idx: data[idx].mean(-2), [50], resamples=400, seed=3)
    assert low.shape == high.shape == (3,)
    for k in range(3):  # same seed, same resamples: each column's interval is its scalar interval
        scalar = bootstrap_ci(lambda idx: data[idx, k].mean(-1), [50], resamples=400, seed=3)
        assert (low[k], high[k]) == pytest.approx(scalar, rel=1e-12)  # equal up to summation order
    assert bootstrap_intervals(lambda idx: data[idx].mean(-2), [1]) is None
    assert bootstrap_intervals(lambda idx: data[idx].mean(-2), [50], resamples=0) is None


def test_two_units_split_zero_one() -> None:
    # a resample holds 0, 1 or 2 copies of the 1 with probabilities 1/4, 1/2, 1/4: the 95 % interval of
    # the mean is [0, 1], of its complement too, and the median resample (confidence 0) is 1/2
    units = np.array([[1.0, 0.0], [0.0, 1.0]])

    def shares(idx: np.ndarray) -> np.ndarray:
        sums = resampled_sums(units, idx)
        return sums / sums.sum(-1, keepdims=True)

    low, high = bootstrap_intervals(shares, [2], resamples=2000)
    assert list(low) == [0.0, 0.0] and list(high) == [1.0, 1.0]
    low, high = bootstrap_intervals(shares, [2], resamples=2001, confidence=0.0)
    assert list(low) == list(high) == [0.5, 0.5]
    same = np.array([[2.0, 1.0, 1.0]] * 5)  # identical units: every resample the same, a zero-width interval
    low, high = bootstrap_intervals(lambda idx: resampled_sums(same, idx) / 20, [5], resamples=200)
    assert np.allclose(low, [0.5, 0.25, 0.25]) and np.allclose(high, low)


def test_resampled_sums_are_the_drawn_units_summed() -> None:
    units = np.random.default_rng(4).integers(0, 5, size=(6, 2, 3)).astype(float)
    idx = np.random.default_rng(5).integers(0, 6, size=(7, 6))
    assert np.array_equal(resampled_sums(units, idx), units[idx].sum(axis=1))
    assert np.array_equal(resampled_sums(units, np.arange(6)), units.sum(axis=0))  # no batch axis
