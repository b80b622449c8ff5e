"""Sweep expansion: counts, zip pairing, largest-first order, unique file-system-safe ids, hashes."""
from __future__ import annotations

import re
from typing import Any

import pytest

from tsbench.config.suite import ConfigError, SuiteConfig, SweepConfig, suite_from_dict
from tsbench.runner.sweep import cell_hash, cell_name, expand_cells

SAFE_ID = re.compile(r"[A-Za-z0-9._+=,-]+")


def suite(sweep: dict[str, Any] | None = None, **sections: Any) -> SuiteConfig:
    return suite_from_dict({"name": "demo", "sweep": sweep, **sections})


def test_no_sweep_gives_one_default_cell() -> None:
    base = suite(model={"window": 2})
    (cell,) = expand_cells(base)
    assert cell.id == "default" and cell.overrides == {}
    assert cell.config == base and cell.hash == cell_hash(base)


def test_grid_is_cartesian_and_runs_largest_first() -> None:
    cells = expand_cells(suite({"grid": {"model.window": [4, 1, 2], "workload.resolution": [256, 512]}}))
    assert len(cells) == 6
    order = [(c.config.workload.resolution, c.config.model.window) for c in cells]
    assert order == [(512, 1), (512, 2), (512, 4), (256, 1), (256, 2), (256, 4)]
    assert cells[0].id == "window=1,resolution=512"
    for cell in cells:
        assert SAFE_ID.fullmatch(cell.id)
        assert cell.config.sweep is None
        assert cell.overrides == {"model.window": cell.config.model.window,
                                  "workload.resolution": cell.config.workload.resolution}
        assert cell.hash == cell_hash(cell.config)
    assert len({c.id for c in cells}) == len({c.hash for c in cells}) == 6


def test_zip_pairs_values_and_crosses_with_grid() -> None:
    cells = expand_cells(suite({"grid": {"model.window": [1, 2]},
                                "zip": {"workload.cfg_scale": [1, 7.5], "workload.cfg_schedule": ["constant", "linear"]}}))
    assert len(cells) == 4
    pairs = {(c.config.model.window, c.config.workload.cfg_scale, c.config.workload.cfg_schedule) for c in cells}
    assert pairs == {(1, 1.0, "constant"), (1, 7.5, "linear"), (2, 1.0, "constant"), (2, 7.5, "linear")}
    # resolved values are stored, so cfg_scale 1 and 1.0 name the same cell
    assert cells[0].id == "window=1,cfg_scale=1.0,cfg_schedule=constant"


def test_order_is_stable_and_configurable() -> None:
    cells = expand_cells(suite({"grid": {"workload.seed": [3, 1, 2]}}))
    assert [c.config.workload.seed for c in cells] == [3, 1, 2]
    cells = expand_cells(suite({"grid": {"model.window": [1, 2], "workload.seed": [3, 1]},
                                "order": ["-model.window", "workload.seed"]}))
    assert [(c.config.model.window, c.config.workload.seed) for c in cells] == [(2, 1), (2, 3), (1, 1), (1, 3)]


def test_ids_stay_safe_and_unambiguous() -> None:
    cells = expand_cells(suite({"grid": {"workload.prompts": [["a cat"], ["a/dog"]], "workload.top_p": [None, 0.9],
                                         "workload.seed": [0], "workload.cfg_interval": [[0, 0.5]]}}))
    assert len({c.id for c in cells}) == 4
    for cell in cells:
        assert SAFE_ID.fullmatch(cell.id), cell.id
        assert "seed=0,cfg_interval=0.0-0.5" in cell.id
    assert {c.id.split(",")[1] for c in cells} == {"top_p=null", "top_p=0.9"}
    assert cell_name({"workload.prompts": ["x" * 300]}).startswith("prompts=h")
    # an entry of a mapping field that shares its last segment with another key keeps its full key
    assert cell_name({"quality.scorer_options.seed": 1, "workload.seed": 0}) == \
        "quality.scorer_options.seed=1,workload.seed=0"


def test_hash_ignores_name_and_output_dir_but_not_measured_axes() -> None:
    a = suite(model={"window": 2})
    assert cell_hash(a) == cell_hash(suite_from_dict({**a.to_dict(), "name": "other", "output_dir": "x"}))
    assert cell_hash(a) != cell_hash(suite(model={"window": 2}, measure={"warmup": 5}))


def test_duplicate_cells_are_rejected() -> None:
    with pytest.raises(ConfigError, match="same id 'cfg_scale=1.0'"):
        expand_cells(suite({"grid": {"workload.cfg_scale": [1, 1.0]}}))


def test_invalid_cell_built_in_python_is_reported() -> None:
    base = SuiteConfig(name="demo", sweep=SweepConfig(grid={"model.window": [1, 0]}))
    with pytest.raises(ConfigError, match=r"model\.window=0.*must be an integer >= 1"):
        expand_cells(base)
