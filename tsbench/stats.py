"""Bootstrap confidence intervals: the one resampling helper of tsbench (quality tables, paired
comparisons of cells, and anything else that needs an interval over units such as prompts).

A statistic never sees the data: it gets the resampled *indices* of each sample and looks its data up
itself. So everything that belongs to one unit (a prompt's four images, a rater's answers) always moves
together, and one resample can feed any number of numbers (e.g. both cells of a paired difference).
Resampling is scipy.stats.bootstrap's (percentile intervals), with a fixed seed, so a rerun gives the
same interval.
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


def bootstrap_ci(statistic: Statistic, sizes: Sequence[int], *, resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of ``statistic(*indices)``.

    ``sizes[i]`` is the number of units of sample i; each sample is resampled with replacement on its
    own (several samples = a stratified bootstrap, e.g. GenEval's prompts within each tag), and a sample
    of one unit stays as it is. The statistic is vectorised: it receives one integer array of shape
    ``(batch, sizes[i])`` per sample and returns one value per resample, shape ``(batch,)``. Returns
    (nan, nan) when nothing can be resampled (``resamples`` < 1, or no sample with two or more units).
    """
    varying = [i for i, n in enumerate(sizes) if n >= 2]
    if resamples < 1 or not varying or min(sizes) < 1:
        return math.nan, math.nan
    from scipy import stats  # scipy is a core dependency; imported here to keep `import tsbench` light

    def resampled(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = idx[0].shape[:-1]
        full = [np.zeros((*batch, 1), dtype=np.intp)] * len(sizes)  # one-unit samples: always that unit
        for i, indices in zip(varying, idx):
            full[i] = indices
        return statistic(*full)

    samples = tuple(np.arange(sizes[i]) for i in varying)
    with warnings.catch_warnings():
        # all resamples equal (e.g. every image correct): the interval is that value, not a problem
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            result = stats.bootstrap(samples, resampled, n_resamples=resamples, vectorized=True,
                                     confidence_level=confidence, method="percentile",
                                     rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)
