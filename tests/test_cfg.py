import math

import pytest

import tsbench
from tsbench.config.registry import RegistryError

SCALE = 7.5
TOTAL = 1000


def sigma(x: float) -> float:
    return 1 / (1 + math.exp(-x))


EXPECTED = {
    "constant": lambda t: SCALE,
    "linear": lambda t: 1 + (SCALE - 1) * t,
    "half-linear": lambda t: 1 + (SCALE - 1) * min(1, 2 * t),
    "drop-first": lambda t: 1.0 if t == 0 else SCALE,
    "sin": lambda t: 1 + (SCALE - 1) * math.sin(math.pi * t / 2),
    "cosine": lambda t: 1 + (SCALE - 1) * (1 - math.cos(math.pi * t)) / 2,
    "sigmoid": lambda t: 1 + (SCALE - 1) * (sigma(10 * (t - 0.5)) - sigma(-5)) / (sigma(5) - sigma(-5)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("step", [0, 250, 500, TOTAL - 1])
def test_schedule_matches_formula(name: str, step: int) -> None:
    t = step / TOTAL
    assert tsbench.cfg_scale(name, step, TOTAL, SCALE) == pytest.approx(EXPECTED[name](t), abs=1e-12)


def test_ramps_start_at_one_and_reach_scale() -> None:
    for name in ("linear", "half-linear", "drop-first", "sin", "cosine", "sigmoid"):
        assert tsbench.cfg_scale(name, 0, TOTAL, SCALE) == pytest.approx(1.0)
        assert tsbench.cfg_scale(name, TOTAL - 1, TOTAL, SCALE) == pytest.approx(SCALE, abs=0.05)
    assert tsbench.cfg_scale("half-linear", 500, TOTAL, SCALE) == SCALE


def test_every_registered_schedule_is_tested() -> None:
    assert set(tsbench.list_schedules()) == set(EXPECTED)


def test_interval_switches_guidance_off_outside() -> None:
    assert tsbench.cfg_scale("constant", 100, TOTAL, SCALE, interval=(0.2, 0.8)) == 1.0
    assert tsbench.cfg_scale("constant", 200, TOTAL, SCALE, interval=(0.2, 0.8)) == SCALE
    assert tsbench.cfg_scale("constant", 800, TOTAL, SCALE, interval=(0.2, 0.8)) == 1.0


def test_unknown_schedule_suggests_close_name() -> None:
    with pytest.raises(RegistryError, match="half-linear"):
        tsbench.cfg_scale("half_linear", 0, TOTAL, SCALE)


def test_step_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        tsbench.cfg_scale("linear", TOTAL, TOTAL, SCALE)
