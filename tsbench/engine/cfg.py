"""Classifier-free-guidance schedules: pure functions of (t = step / total_steps, scale).

Every schedule ramps from 1 (no guidance) towards ``scale`` over the image's AR steps; the
formulas are tsbench's reading of the paper's Fig. 5 (the paper prints none) and each result row
records the schedule by name.
"""
from __future__ import annotations

import math
from typing import Callable

from tsbench.config.registry import Registry

Schedule = Callable[[float, float], float]
CFG_SCHEDULES: Registry[Schedule] = Registry("CFG schedule")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _ramp(shape: Callable[[float], float]) -> Schedule:
    """A schedule 1 + (scale - 1) * shape(t), shape going from 0 to 1."""
    return lambda t, scale: 1.0 + (scale - 1.0) * shape(t)


CFG_SCHEDULES.register("constant", lambda t, scale: scale)
CFG_SCHEDULES.register("linear", _ramp(lambda t: t))
CFG_SCHEDULES.register("half-linear", _ramp(lambda t: min(1.0, 2.0 * t)))
CFG_SCHEDULES.register("drop-first", lambda t, scale: 1.0 if t == 0.0 else scale)
CFG_SCHEDULES.register("sin", _ramp(lambda t: math.sin(math.pi * t / 2.0)))
CFG_SCHEDULES.register("cosine", _ramp(lambda t: (1.0 - math.cos(math.pi * t)) / 2.0))
CFG_SCHEDULES.register(
    "sigmoid", _ramp(lambda t: (_sigmoid(10.0 * (t - 0.5)) - _sigmoid(-5.0)) / (_sigmoid(5.0) - _sigmoid(-5.0)))
)


def cfg_scale(schedule: str, step: int, total_steps: int, scale: float,
              interval: tuple[float, float] | None = None) -> float:
    """Guidance weight for AR step ``step`` of ``total_steps``.

    ``interval = (start, end)`` in fractions of the image applies guidance only for start <= t < end
    (weight 1 elsewhere), the "guidance interval" idea on top of any schedule.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} is outside [0, {total_steps})")
    t = step / total_steps
    if interval is not None and not interval[0] <= t < interval[1]:
        return 1.0
    return float(CFG_SCHEDULES.get(schedule)(t, scale))


def list_schedules() -> list[str]:
    return CFG_SCHEDULES.names()
