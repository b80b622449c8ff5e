"""Expand a suite's sweep into resolved, validated cells in the order they should run.

Cells run largest-first (highest resolution, smallest window) so out-of-memory failures show up at the
start of a long run rather than at its end. Each cell carries a hash of everything it measures, which
the results store compares to decide whether a finished cell can be skipped on resume.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tsbench.config.suite import (AXES, DEFAULT_ORDER, ConfigError, SuiteConfig, changed_options, config_hash,
                                  get_key, with_overrides)

_SAFE_VALUE = re.compile(r"[A-Za-z0-9._+-]{1,40}")
_MAX_ID_LEN = 200  # stay well under the 255-byte file-name limit; the id names the cell's directory


@dataclass
class Cell:
    """One benchmark run: the sweep values that define it and the fully resolved config."""

    id: str
    overrides: dict[str, Any]
    config: SuiteConfig
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "overrides": self.overrides, "config": self.config.to_dict()}


def cell_hash(config: SuiteConfig) -> str:
    """Hash of the axes that decide a cell's results (not its name, description or output directory)."""
    return config_hash({axis: dataclasses.asdict(getattr(config, axis)) for axis in AXES})


def expand_cells(suite: SuiteConfig) -> list[Cell]:
    """All cells of ``suite``, largest-first; a suite without a sweep gives one cell named 'default'."""
    combos = zip(suite.sweep.combinations(), suite.sweep.items()) if suite.sweep else [({}, {})]
    cells = [_make_cell(suite, overrides, items) for overrides, items in combos]
    _check_unique(cells)
    order = suite.sweep.order if suite.sweep and suite.sweep.order is not None else DEFAULT_ORDER
    return _sorted(cells, order)


def _make_cell(suite: SuiteConfig, overrides: dict[str, Any], items: dict[str, str]) -> Cell:
    config = with_overrides(suite, overrides, source=f"suite {suite.name!r}", items=items)
    resolved = {key: _plain(get_key(config, key)) for key in overrides}  # e.g. 7 -> 7.0 for a float field
    return Cell(id=cell_name(resolved), overrides=resolved, config=config, hash=cell_hash(config))


def _plain(value: Any) -> Any:
    """A swept ``model.options`` as the options that differ from the adapter's defaults (what was written)."""
    return changed_options(value) if dataclasses.is_dataclass(value) else value


def cell_name(overrides: dict[str, Any]) -> str:
    """Readable, file-system-safe id such as ``resolution=512,window=2`` (like Hydra's override dirname).

    Keys are shortened to their last segment unless that is ambiguous; values that are long or hold
    unsafe characters (prompt lists, paths) are replaced by a short hash of the value.
    """
    if not overrides:
        return "default"
    counts = Counter(key.rsplit(".", 1)[-1] for key in overrides)
    parts = []
    for key, value in overrides.items():
        short = key.rsplit(".", 1)[-1]
        parts.append(f"{short if counts[short] == 1 else key}={_value_text(value)}")
    name = ",".join(parts)
    return name if len(name) <= _MAX_ID_LEN else f"cell-{config_hash(overrides)}"


def _value_text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        text = json.dumps(value)  # null / true / false, as written in YAML
    elif isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value):
        text = "-".join(str(v) for v in value)
    else:
        text = str(value)
    return text if _SAFE_VALUE.fullmatch(text) else f"h{config_hash(value)[:8]}"


def _check_unique(cells: list[Cell]) -> None:
    """Two cells with the same id or hash would overwrite each other's results: a sweep mistake."""
    for attr in ("id", "hash"):
        seen: dict[str, Cell] = {}
        for cell in cells:
            other = seen.setdefault(getattr(cell, attr), cell)
            if other is not cell:
                raise ConfigError(f"sweep cells {other.overrides} and {cell.overrides} have the same {attr} "
                                  f"{getattr(cell, attr)!r}; remove the duplicate sweep value")


def _sorted(cells: list[Cell], order: tuple[str, ...] | list[str]) -> list[Cell]:
    """Stable multi-key sort: apply the keys last to first; '-key' sorts descending."""
    for spec in reversed(order):
        key = spec.removeprefix("-")
        cells = sorted(cells, key=lambda c: _sort_value(get_key(c.config, key)), reverse=spec.startswith("-"))
    return cells


def _sort_value(value: Any) -> tuple[bool, Any]:
    return value is None, value
