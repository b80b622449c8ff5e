"""Bootstrap confidence intervals: the one resampling helper of tsbench (quality tables, paired
comparisons of cells, the human evaluation's rates and Bradley–Terry strengths, and anything else that
needs an interval over units such as prompts).

A statistic never sees the data: it gets the resampled *indices* of each sample and looks its data up
itself. So everything that belongs to one unit (a prompt's four images, all votes on a prompt) always
moves together, and one resample can feed any number of numbers (e.g. both cells of a paired
difference, or the strengths of every system). Resampling is scipy.stats.bootstrap's (percentile
intervals), with a fixed seed, so a rerun gives the same interval.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0

Statistic = Callable[..., np.ndarray]


def bootstrap_intervals(statistic: Statistic, sizes: Sequence[int], *, resamples: int = DEFAULT_RESAMPLES,
                        confidence: float = CONFIDENCE,
                        seed: int = SEED) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile intervals of a statistic with any number of values per resample.

    ``sizes[i]`` is the number of units of sample i; each sample is resampled with replacement on its
    own (several samples = a stratified bootstrap, e.g. GenEval's prompts within each tag), and a sample
    of one unit stays as it is. The statistic is vectorised: it receives one integer array of shape
    ``(batch, sizes[i])`` per sample and returns shape ``(batch, *shape)``. Returns (low, high), each of
    ``shape``, or None when nothing can be resampled (``resamples`` < 1, or no sample with two or more
    units).
    """
    varying = [i for i, n in enumerate(sizes) if n >= 2]
    if resamples < 1 or not varying or min(sizes) < 1:
        return None
    from scipy import stats  # scipy is a core dependency; imported here to keep `import tsbench` light

    def resampled(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = idx[0].shape[:-1]
        full = [np.zeros((*batch, 1), dtype=np.intp)] * len(sizes)  # one-unit samples: always that unit
        for i, indices in zip(varying, idx):
            full[i] = indices
        return np.moveaxis(np.asarray(statistic(*full)), 0, -1)  # scipy wants the resamples last

    samples = tuple(np.arange(sizes[i]) for i in varying)
    with warnings.catch_warnings():
        # all resamples equal (e.g. every image correct): the interval is that value, not a problem
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            result = stats.bootstrap(samples, resampled, n_resamples=resamples, vectorized=True,
                                     confidence_level=confidence, method="percentile",
                                     rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return np.asarray(low), np.asarray(high)


def bootstrap_ci(statistic: Statistic, sizes: Sequence[int], *, resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of a statistic with one value per resample (shape ``(batch,)``), as in
    ``bootstrap_intervals``; (nan, nan) when nothing can be resampled."""
    bounds = bootstrap_intervals(statistic, sizes, resamples=resamples, confidence=confidence, seed=seed)
    if bounds is None:
        return math.nan, math.nan
    return float(bounds[0]), float(bounds[1])


def resampled_sums(units: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per resample, the sum of the drawn units' additive statistics (e.g. a prompt's win / tie / lose
    counts): ``units[indices]`` summed over the draws, without building every drawn row. ``units[u]`` is
    unit u's array; ``indices`` is ``(batch, n)`` as a statistic receives it (or ``(n,)``); returns
    ``(batch, *units.shape[1:])``."""
    units = np.asarray(units, dtype=float)
    n, batch = len(units), indices.shape[:-1]
    draws = indices.reshape(-1, indices.shape[-1])
    cells = (np.arange(len(draws))[:, None] * n + draws).ravel()
    times_drawn = np.bincount(cells, minlength=len(draws) * n).reshape(len(draws), n)
    return (times_drawn @ units.reshape(n, -1)).reshape(*batch, *units.shape[1:])
