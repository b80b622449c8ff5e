"""One self-contained HTML page per set of runs: highlights, sortable tables, plots, image grids,
published baselines and each run's config and environment.

The page works from file:// with no network (images in a sibling ``images/`` folder, inline CSS and
JS) and every string that came from a prompt or a config is escaped by Jinja's autoescape.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jinja2
import numpy as np
import pandas as pd
from PIL import Image

import tsbench
from tsbench.io import atomic_write_bytes, atomic_write_text
from tsbench.report.aggregate import CONFIG_COLUMNS, compare, export, geomean, higher_is_better, load_cells, tidy
from tsbench.report.baselines import load_baselines
from tsbench.report.human import human_sections
from tsbench.report.plots import GridSpec, caption, grid_specs, make_plots
from tsbench.report.quality import MISSING, scored, sections, unplaced_published, with_headline
from tsbench.runner.store import flatten_row, read_manifest, run_labels
from tsbench.scoring.aggregate import column as quality_column, scorers_in

TEMPLATES = Path(__file__).parent / "templates"
THUMBNAIL_PX = 256


@dataclass(frozen=True)
class Column:
    """A result column as shown in tables: label with unit, and the factor from stored to shown units."""

    key: str
    label: str
    scale: float = 1.0


COST_COLUMNS = [
    Column("latency.per_image_s", "s / image"),
    Column("latency.prefill_s", "prefill s"),
    Column("latency.decode_step_s", "decode step ms", 1e3),
    Column("latency.vq_decode_s", "VQ decode s"),
    Column("throughput.images_per_s", "images / s"),
    Column("throughput.visual_tokens_per_s", "visual tokens / s"),
    Column("flops.total", "GFLOP / image", 1e-9),
    Column("memory.peak_allocated_mib", "peak allocated MiB"),
    Column("memory.peak_reserved_mib", "peak reserved MiB"),
    Column("memory.peak_rss_mib", "peak RSS MiB"),
    Column("memory.kv_cache_mib", "KV cache MiB"),
    Column("workload.ar_steps", "AR steps"),
]
ALWAYS_SHOWN_CONFIG = ["resolution", "window", "cfg_schedule", "batch_size"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and not pd.isna(value)


def _fmt(value: Any, scale: float = 1.0) -> str:
    if _number(value):
        shown = float(value) * scale
        return str(int(shown)) if shown.is_integer() and abs(shown) < 1e7 else f"{shown:.4g}"
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    return str(value)


def _ratio(value: float) -> str | None:
    return f"{value:.2f}" if _number(value) else None


def _cell(value: Any, scale: float = 1.0) -> dict[str, str]:
    """A table cell: shown text and the raw value that the page's JS sorts by."""
    return {"text": _fmt(value, scale), "sort": repr(float(value) * scale) if _number(value) else ""}


def _present(cells: pd.DataFrame, columns: Iterable[Column]) -> list[Column]:
    return [c for c in columns if c.key in cells.columns and cells[c.key].notna().any()]


def _quality_columns(cells: pd.DataFrame) -> list[Column]:
    return [Column(s.headline_column, f"{s.scorer} {s.headline}") for s in with_headline(cells)]


def _config_split(cells: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Config columns worth showing: the usual sweep axes first, then the others that vary between cells."""
    varying = [c for c in CONFIG_COLUMNS if c not in ALWAYS_SHOWN_CONFIG and cells[c].nunique() > 1]
    return ALWAYS_SHOWN_CONFIG, varying


def _cells_table(cells: pd.DataFrame) -> dict[str, Any]:
    main, other = _config_split(cells)
    columns = ([Column("run", "run")] if cells["run"].nunique() > 1 else []) + [
        Column("cell_id", "cell"), Column("status", "status"), *[Column(c, c) for c in main],
        *_present(cells, COST_COLUMNS), *_quality_columns(cells), *[Column(c, c) for c in other],
        Column("message", "message")]
    return _table(cells, columns)


def _table(frame: pd.DataFrame, columns: list[Column]) -> dict[str, Any]:
    rows = [[_cell(row.get(c.key), c.scale) for c in columns] for _, row in frame.iterrows()]
    return {"headers": [c.label for c in columns], "rows": rows}


def _best(cells: pd.DataFrame) -> list[dict[str, str]]:
    """Best successful cell for each cost and quality column."""
    ok = cells[cells["status"] == "ok"]
    best = []
    for column in _present(ok, COST_COLUMNS) + _quality_columns(ok):
        if column.key == "workload.ar_steps":
            continue
        values = pd.to_numeric(ok[column.key], errors="coerce")
        higher = higher_is_better(column.key, ok)
        index = values.idxmax() if higher else values.idxmin()
        row = ok.loc[index]
        best.append({"metric": column.label, "direction": "highest" if higher else "lowest",
                     "value": _fmt(values[index], column.scale), "cell": row["cell_id"], "run": row["run"]})
    return best


def _speedups(frame: pd.DataFrame, cells: pd.DataFrame) -> dict[str, Any]:
    """Per-cell and per-window (geometric mean) gains of each window over s = 1 of the same config."""
    parts = [compare(frame, by="window", metric=metric, baseline=1).set_index(["run", "cell_id"])
             [["value", "baseline_value", "speedup"]].add_prefix(f"{name}_")
             for name, metric in (("latency", "latency.per_image_s"), ("flops", "flops.total"))]
    table = pd.concat(parts, axis=1)
    if table.empty:
        return {"summary": [], "table": None}
    main, other = _config_split(cells)
    keys = [c for c in main + other if c != "window"]
    table = table.join(cells.set_index(["run", "cell_id"])[[*keys, "window"]]).reset_index()
    table = table.sort_values([*keys, "window"], na_position="last")
    summary = [{"window": int(window), "configs": len(group), "speedup": _ratio(geomean(group["latency_speedup"])),
                "flops_ratio": _ratio(geomean(group["flops_speedup"]))}
               for window, group in table.groupby("window") if window != 1]
    columns = [Column("run", "run"), Column("cell_id", "cell"), Column("window", "window"),
               Column("latency_baseline_value", "s / image at s = 1"), Column("latency_value", "s / image"),
               Column("latency_speedup", "speedup over s = 1"), Column("flops_value", "GFLOP / image", 1e-9),
               Column("flops_speedup", "FLOPs reduction over s = 1"), *[Column(k, k) for k in keys]]
    columns = [c for c in columns if table[c.key].notna().any() and (c.key != "run" or table["run"].nunique() > 1)]
    return {"summary": summary, "table": _table(table, columns)}


def _unscored(cells: pd.DataFrame) -> list[str]:
    """'<scorer>: not scored: <reason> (N cells)' for every scorer that could not run."""
    notes = []
    for scorer in scorers_in(cells.columns):
        for status, count in cells[quality_column(scorer, "status")].dropna().astype(str).value_counts().items():
            if status != "scored":
                notes.append(f"{scorer}: {status} ({count} cell{'s' if count > 1 else ''})")
    return notes


def _runs(run_dirs: list[Path], cells: pd.DataFrame) -> list[dict[str, Any]]:
    runs = []
    for run_dir, name in zip(run_dirs, run_labels(run_dirs)):
        manifest = read_manifest(run_dir)
        suite = manifest.get("suite", {})
        statuses = cells.loc[cells["run"] == name, "status"].value_counts().to_dict()
        runs.append({"label": name, "path": str(run_dir.resolve()), "suite": suite.get("name", MISSING),
                     "description": (suite.get("description") or "").strip(),
                     "written_at": manifest.get("written_at", MISSING),
                     "statuses": ", ".join(f"{n} {s}" for s, n in statuses.items()) or "no cells",
                     "environment": [(k, _fmt(v)) for k, v in flatten_row(manifest.get("environment", {})).items()],
                     "suite_json": json.dumps(suite, indent=2, ensure_ascii=False, default=str)})
    return runs


def _thumbnail(source: Path, target: Path) -> None:
    """A copy at most THUMBNAIL_PX on a side: the page shows small tiles, and full-size noise images from
    random weights barely compress."""
    with Image.open(source) as image:
        if max(image.size) <= THUMBNAIL_PX:
            shutil.copyfile(source, target)
            return
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(target, buffer.getvalue())


def _copy_samples(spec: GridSpec, out: Path) -> dict[str, Any]:
    """The grid for the page: sample images copied (as thumbnails) under images/samples, one name per cell."""
    samples_dir = out / "images" / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    columns = []
    for cell in spec.columns:
        sources = []
        for i, path in enumerate(spec.images(cell)):
            if path is None:
                sources.append(None)
                continue
            digest = hashlib.sha1(f"{cell['run_dir']}\0{cell['cell_id']}".encode()).hexdigest()[:12]
            target = samples_dir / f"{digest}_{i:02d}.png"
            _thumbnail(path, target)
            sources.append(target.relative_to(out).as_posix())
        columns.append({"label": spec.column_label(cell), "cell": cell["cell_id"], "images": sources})
    rows = [{"prompt": prompt, "seed": seed, "images": [c["images"][i] if i < len(c["images"]) else None
                                                        for c in columns]}
            for i, (prompt, seed) in enumerate(spec.samples)]
    return {"title": spec.title, "columns": columns, "rows": rows, "png": f"images/{spec.filename}"}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_report(run_dirs: list[Path], out: Path) -> Path:
    """Write ``out/index.html`` (plus ``images/``, ``tidy.csv``, ``tidy.parquet``) for ``run_dirs``."""
    run_dirs = [Path(d) for d in run_dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = load_cells(run_dirs)
    frame = tidy(cells)
    export(frame, out)
    baselines = load_baselines()
    plots = make_plots(cells, baselines, out / "images")
    grids = [spec for spec in grid_specs(cells) if out / "images" / spec.filename in plots]
    grid_files = {spec.filename for spec in grids}
    quality = sections(cells, baselines)
    random_runs = sorted(set(cells.loc[cells["weights"] == "random", "run"]))
    context = {
        "title": "tsbench report: " + (", ".join(dict.fromkeys(cells["suite"].dropna())) or
                                       ", ".join(run_labels(run_dirs))),
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "version": tsbench.__version__,
        "random_runs": random_runs,
        "random_cells": int((cells["weights"] == "random").sum()),
        "n_cells": len(cells),
        "failures": [{"run": r["run"], "cell": r["cell_id"], "status": r["status"], "message": r.get("message") or ""}
                     for _, r in cells[cells["status"] != "ok"].iterrows()],
        "best": _best(cells),
        "speedups": _speedups(frame, cells),
        "cells_table": _cells_table(cells),
        "plots": [{"src": f"images/{p.name}", "caption": caption(p)} for p in plots if p.name not in grid_files],
        "grids": [_copy_samples(spec, out) for spec in grids],
        "quality": quality,
        "unscored": _unscored(cells),
        "published_only": unplaced_published(baselines, quality),
        "any_quality": bool(scored(cells)),
        "runs": _runs(run_dirs, cells),
        "human": human_sections(run_dirs, out / "images"),
    }
    index = out / "index.html"
    atomic_write_text(index, _environment().get_template("report.html").render(**context))
    return index
