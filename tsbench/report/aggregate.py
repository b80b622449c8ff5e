"""Run directories -> one tidy table (one row per cell x metric), with pivot, speedup and export helpers.

The tidy shape is what every plot, table and export starts from whatever a run happened to record: a
column missing from a run is an absent metric, not an error. Cells keep their config values as
columns (window, resolution, ...) so any pair of runs can be compared on them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from tsbench.models.base import PARTIAL_RANDOM
from tsbench.runner.store import RunStore, read_manifest, run_labels, write_tables
from tsbench.scoring.aggregate import column as quality_column

# config column -> row keys that may hold it, first non-null wins (error rows lack the model.* keys); the
# window the model really ran at comes first (a null config window means "the checkpoint's")
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "adapter": ("config.model.adapter", "model.adapter"),
    "preset": ("config.model.preset", "model.preset"),
    "window": ("model.window", "config.model.window"),
    "resolution": ("config.workload.resolution",),
    "cfg_schedule": ("config.workload.cfg_schedule",),
    "cfg_scale": ("config.workload.cfg_scale",),
    "batch_size": ("config.workload.batch_size",),
    "dtype": ("config.model.dtype", "env.dtype"),
    "device": ("config.model.device", "env.device"),
    "compile": ("config.model.compile",),
    "weights": ("model.weights",),
}
CONFIG_COLUMNS = list(CONFIG_KEYS)
# config columns that legitimately change with the compared one: a trained preset may ship one checkpoint
# per window, so its weights hash follows the window and must not block the pairing
VARIES_WITH: dict[str, tuple[str, ...]] = {"window": ("weights",)}
ID_COLUMNS = ["run", "suite", "cell_id", "status", *CONFIG_COLUMNS]
INTEGER_COLUMNS = ("window", "resolution", "batch_size")
METRIC_PREFIXES = ("flops.", "latency.", "throughput.", "memory.", "quality.", "roofline.", "workload.",
                   "model.params", "cell_seconds")
NOT_METRICS = ("quality.prompts", "quality.images_per_prompt", "quality.benchmark_prompts")
# Weights that make a row cost-only: new, untrained modules around a trained backbone. Their quality
# columns are dropped, so no table or plot sets them beside trained models' quality.
COST_ONLY_WEIGHTS = (PARTIAL_RANDOM,)
HIGHER_IS_BETTER = ("throughput.", "quality.", "roofline.decode_fraction", "roofline.achieved_flop_s")
KEY_FORMATS = {"window": "s = {}", "resolution": "{} px", "batch_size": "batch {}", "cfg_scale": "cfg {:g}"}


def is_metric(column: str) -> bool:
    """Measured numbers only: config, environment, raw timing samples, FLOP metadata and the quality
    protocol's counts are not metrics."""
    return (column.startswith(METRIC_PREFIXES) and not column.startswith("flops.meta.")
            and not column.endswith(".raw") and column not in NOT_METRICS)


def higher_is_better(metric: str, cells: pd.DataFrame | None = None) -> bool:
    """Throughput grows with goodness; time, FLOPs and memory shrink; a quality column goes the way its
    scorer declared (``quality.<scorer>.direction`` in ``cells``), higher by default."""
    if metric.startswith("quality.") and cells is not None:
        direction = quality_column(metric.split(".")[1], "direction")
        if direction in cells and (cells[direction] == "lower").any():
            return False
    return metric.startswith(HIGHER_IS_BETTER)


def key_text(key: str, value: Any) -> str:
    """A config value as the report writes it: 's = 2', '512 px', 'constant', 'compiled'."""
    if key == "compile" and pd.notna(value):
        return "compiled" if value else "eager"
    return KEY_FORMATS.get(key, "{}").format(value) if pd.notna(value) else f"{key} ?"


def _coalesce(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _weights(row: dict[str, Any]) -> Any:
    """'random' or the weights' hash; a failed cell that never loaded a model falls back to its config."""
    if row.get("model.weights") is not None:
        return row["model.weights"]
    if "config.model.checkpoint" in row:
        return "random" if row["config.model.checkpoint"] is None else row["config.model.checkpoint"]
    return None


def _cell_rows(run_dir: Path, label: str) -> list[dict[str, Any]]:
    suite = read_manifest(run_dir).get("suite", {}).get("name") or run_dir.name
    rows = []
    for row in RunStore(run_dir).load_rows():
        ids = {"run": label, "suite": suite, "cell_id": row["cell_id"], "status": row.get("status")}
        ids.update({name: _coalesce(row, keys) for name, keys in CONFIG_KEYS.items()})
        ids["weights"] = _weights(row)
        cost_only = ids["weights"] in COST_ONLY_WEIGHTS
        rows.append({**ids, "run_dir": str(run_dir), **{k: v for k, v in row.items() if k not in ids and
                                                        not (cost_only and k.startswith("quality."))}})
    return rows


def load_cells(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per cell of every run: the ID columns, ``run_dir``, then every raw result column."""
    run_dirs = [Path(d) for d in run_dirs]
    for run_dir in run_dirs:
        if not (run_dir / "results.jsonl").is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no results.jsonl); "
                                    "give directories written by 'tsbench run'")
    rows = [row for run_dir, label in zip(run_dirs, run_labels(run_dirs)) for row in _cell_rows(run_dir, label)]
    frame = pd.DataFrame(rows, columns=None if rows else [*ID_COLUMNS, "run_dir"])
    for column in INTEGER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["cfg_scale"] = pd.to_numeric(frame["cfg_scale"], errors="coerce").astype("float64")
    frame["compile"] = frame["compile"].astype("boolean").fillna(False).astype(bool)  # runs before the option: eager
    return frame


def tidy(cells: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per cell x numeric metric (ID columns, ``metric``, ``value``); NaNs dropped."""
    metrics = [c for c in cells.columns if is_metric(c) and _numeric(cells[c])]
    long = cells[ID_COLUMNS + metrics].melt(id_vars=ID_COLUMNS, value_vars=metrics, var_name="metric",
                                           value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype("float64")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def load_runs(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """The tidy table of any number of run directories."""
    return tidy(load_cells(run_dirs))


def wide(frame: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Back to one row per cell, one column per metric (in first-seen order), ID columns first."""
    if metrics is not None:
        frame = frame[frame["metric"].isin(list(metrics))]
    order = list(dict.fromkeys(frame["metric"]))
    values = frame.pivot_table(index=["run", "cell_id"], columns="metric", values="value", aggfunc="first")
    ids = frame[ID_COLUMNS].drop_duplicates(["run", "cell_id"]).set_index(["run", "cell_id"])
    return ids.join(values[order]).reset_index()[ID_COLUMNS + order]


def compare(frame: pd.DataFrame, by: str = "window", metric: str = "latency.per_image_s",
            baseline: Any = 1) -> pd.DataFrame:
    """Each cell's gain over the cell that differs only in ``by`` (set to ``baseline``).

    ``speedup`` > 1 means better than the baseline: baseline / value for time, FLOPs and memory,
    value / baseline for throughput and quality. Cells are matched on every other config column
    (resolution, schedule, preset, ...), across runs; cells without a baseline partner are dropped.
    """
    keys = [c for c in CONFIG_COLUMNS if c != by and c not in VARIES_WITH.get(by, ())]
    rows = frame[(frame["metric"] == metric) & (frame["status"] == "ok")]
    base = (rows[rows[by] == baseline].groupby(keys, dropna=False)["value"].mean()
            .rename("baseline_value").reset_index())
    out = rows.merge(base, on=keys, how="inner")
    ratio = out["value"] / out["baseline_value"]
    out["speedup"] = ratio if higher_is_better(metric) else 1 / ratio
    return out[["run", "cell_id", *keys, by, "metric", "value", "baseline_value", "speedup"]].reset_index(drop=True)


def geomean(values: Iterable[float]) -> float:
    """Mean of ratios across configurations (a 2x and a 0.5x average to 1x, as they should)."""
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def export(frame: pd.DataFrame, out_dir: str | Path, stem: str = "tidy") -> tuple[Path, Path]:
    """``<stem>.csv`` and ``<stem>.parquet`` in ``out_dir``, each replaced atomically."""
    return write_tables(frame, Path(out_dir) / f"{stem}.csv", Path(out_dir) / f"{stem}.parquet")
