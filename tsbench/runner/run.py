"""Run a suite: expand cells, skip the finished ones, run the rest one by one, write every row as soon
as it exists, then export tables and print a compact summary."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tsbench.config.suite import SuiteConfig
from tsbench.measure.env import environment
from tsbench.runner.cell import QualityHook, run_cell
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import Cell, expand_cells
from tsbench.runner.validate import validate_cells
from tsbench.scoring.aggregate import column, scorers_in

SUMMARY_COLUMNS = {
    "cell_id": "cell",
    "status": "status",
    "model.weights": "weights",
    "flops.total": "GFLOP/img",
    "latency.per_image_s": "s/img",
    "latency.prefill_s": "prefill s",
    "latency.decode_step_s": "step ms",
    "memory.peak_rss_mib": "peak RSS MiB",
    "memory.peak_allocated_mib": "peak alloc MiB",
    "throughput.images_per_s": "img/s",
}


@dataclass
class RunOutcome:
    run_dir: Path
    ran: int
    skipped: int
    failed: list[str]


def open_run(suite: SuiteConfig, run_dir: str | Path | None, force: bool,
             manifest: bool = True) -> tuple[RunStore, list[Cell], list[Cell]]:
    """The run's store, all its cells and those still to run; ``manifest=False`` for the torchrun ranks
    that must leave the manifest to rank 0. Every cell is checked first (``validate_cells``), so a bad
    cell fails the run before any cell runs or the run directory is touched."""
    cells = expand_cells(suite)
    validate_cells(cells)
    store = RunStore(run_dir or Path(suite.output_dir) / suite.name)
    done = {} if force else store.done_cells()  # read first: a damaged results file fails before any write
    if manifest:
        store.write_manifest(suite.to_dict(), cells, environment(suite.model.device))
    return store, cells, [cell for cell in cells if done.get(cell.id) != cell.hash]


def cell_directory(store: RunStore, cell: Cell) -> Path:
    return store.run_dir / "cells" / cell.id


def note_failure(row: dict[str, Any]) -> None:
    tqdm.write(f"cell {row['cell_id']}: {row['status']}: {row['message']}", file=sys.stderr)


def run_suite(suite: SuiteConfig, run_dir: str | Path | None = None, force: bool = False,
              quality: QualityHook | None = None, progress: bool = True) -> RunOutcome:
    store, cells, todo = open_run(suite, run_dir, force)
    failed = []
    bar = tqdm(todo, desc=f"{suite.name}", unit="cell", disable=not progress, file=sys.stderr)
    for cell in bar:
        bar.set_postfix_str(cell.id)
        row = run_cell(cell, cell_directory(store, cell), quality)
        store.append(row)
        if row["status"] != "ok":
            failed.append(cell.id)
            note_failure(row)
    store.export()
    return RunOutcome(store.run_dir, ran=len(todo), skipped=len(cells) - len(todo), failed=failed)


def summary_table(run_dir: str | Path) -> str:
    """A compact terminal table of the run's cells."""
    import pandas as pd

    rows = RunStore(run_dir).load_rows()
    frame = pd.DataFrame(rows)
    columns = [c for c in SUMMARY_COLUMNS if c in frame.columns]
    table = frame[columns].rename(columns=SUMMARY_COLUMNS)
    if "GFLOP/img" in table:
        table["GFLOP/img"] = table["GFLOP/img"] / 1e9
    if "step ms" in table:
        table["step ms"] = table["step ms"] * 1e3
    for scorer in scorers_in(frame.columns):
        table[scorer] = [quality_headline(row, scorer) for row in rows]
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def quality_headline(row: dict[str, Any], scorer: str) -> str:
    """'0.412 [0.37, 0.45]' (overall, or mean), 'partial', or why the scorer did not run."""
    status = row.get(column(scorer, "status"))
    if status is None or status != "scored":
        return status or ""
    for tag in ("overall", "mean"):
        value = row.get(column(scorer, tag))
        if value is not None:
            low, high = row.get(column(scorer, tag, "ci_low")), row.get(column(scorer, tag, "ci_high"))
            return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
    return str(row.get(column(scorer, "summary"), ""))
