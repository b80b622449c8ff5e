"""Run a suite: expand cells, skip the finished ones, run the rest one by one, write every row as soon
as it exists, then export tables and print a compact summary."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tsbench.config.suite import SuiteConfig
from tsbench.measure.env import environment
from tsbench.runner.cell import QualityHook, run_cell
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import expand_cells

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
    "quality.overall": "quality",
}


@dataclass
class RunOutcome:
    run_dir: Path
    ran: int
    skipped: int
    failed: list[str]


def run_suite(suite: SuiteConfig, run_dir: str | Path | None = None, force: bool = False,
              quality: QualityHook | None = None, progress: bool = True) -> RunOutcome:
    cells = expand_cells(suite)
    store = RunStore(run_dir or Path(suite.output_dir) / suite.name)
    store.write_manifest(suite.to_dict(), cells, environment(suite.model.device))
    done = {} if force else store.done_cells()
    todo = [cell for cell in cells if done.get(cell.id) != cell.hash]
    failed = []
    bar = tqdm(todo, desc=f"{suite.name}", unit="cell", disable=not progress, file=sys.stderr)
    for cell in bar:
        bar.set_postfix_str(cell.id)
        row = run_cell(cell, store.run_dir / "cells" / cell.id, quality)
        store.append(row)
        if row["status"] != "ok":
            failed.append(cell.id)
            tqdm.write(f"cell {cell.id}: {row['status']}: {row['message']}", file=sys.stderr)
    store.export()
    return RunOutcome(store.run_dir, ran=len(todo), skipped=len(cells) - len(todo), failed=failed)


def summary_table(run_dir: str | Path) -> str:
    """A compact terminal table of the run's cells."""
    import pandas as pd

    frame = pd.DataFrame(RunStore(run_dir).load_rows())
    columns = [c for c in SUMMARY_COLUMNS if c in frame.columns]
    table = frame[columns].rename(columns=SUMMARY_COLUMNS)
    if "GFLOP/img" in table:
        table["GFLOP/img"] = table["GFLOP/img"] / 1e9
    if "step ms" in table:
        table["step ms"] = table["step ms"] * 1e3
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
