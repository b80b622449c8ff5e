"""Share a run out over the processes that ``torchrun`` starts, one per device, on one node or many.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them (or with one process) none of
this is used and a run is the plain single-process one. With N ranks:

1. Efficiency: cell i of the cells still to run is measured by rank i mod N alone, on that rank's
   device (``cuda:LOCAL_RANK``), so different cells are measured in parallel and no device ever holds
   two measurements. The owner appends the row, with ``env.rank``, to ``results.jsonl``
   (``RunStore.append`` locks).
2. Quality, after every efficiency measurement: each quality cell runs the pipeline of
   ``runner/quality.py`` on all ranks together. Rank r generates the images of the prompts at positions
   r mod N into the shared cell directory (appending to the one ``images.jsonl`` under a lock), then
   scores an N-th of the images that have no score yet. Rank 0 merges every rank's score rows, saves
   them, summarises with the benchmark's rules and appends the cell's row, which carries the owner's
   efficiency columns (held in memory until then).
3. Rank 0 alone writes the manifest and the tables.

Resume is the single-process resume (cells by cell hash, images by prompt id, sample and cell hash,
scores by prompt id, sample and scorer), so a rerun at any world size completes only what is missing.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as td
from tqdm import tqdm

from tsbench.config.suite import SuiteConfig
from tsbench.runner.cell import failure_columns, load_cell_model, run_cell
from tsbench.runner.quality import ScoredShard, Shard, generate_shard, merge_scores, score_shard
from tsbench.runner.run import RunOutcome, cell_directory, note_failure, open_run
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import Cell

T = TypeVar("T")

# A rank waits in a collective while the others measure their whole share of efficiency cells, which can
# take hours; a rank that dies is caught by torchrun (it stops the others), not by this timeout.
COLLECTIVE_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among torchrun's ranks; ``World()`` is a lone process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        """This rank's share of a quality cell's prompts and images."""
        return Shard(self.rank, self.size)

    def owns(self, index: int) -> bool:
        """Whether the ``index``-th cell to run is measured here (round robin over the ranks)."""
        return self.shard.owns(index)

    def all_gather(self, obj: T) -> list[T]:
        """``obj`` of every rank in rank order; returns only when every rank got here."""
        if self.size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.size
        td.all_gather_object(gathered, obj)
        return gathered

    def place(self, cell: Cell) -> Cell:
        """``cell`` on this rank's GPU: a CUDA device becomes ``cuda:LOCAL_RANK`` (never the global rank,
        which exceeds the GPU count on multi-node runs). Id and hash stay, so resume ignores the GPU."""
        if self.size == 1 or torch.device(cell.config.model.device).type != "cuda":
            return cell
        model = dataclasses.replace(cell.config.model, device=f"cuda:{self.local_rank}")
        return dataclasses.replace(cell, config=dataclasses.replace(cell.config, model=model))


def torchrun_world() -> World:
    """The ranks torchrun describes in the environment; a lone process without it."""
    env = os.environ
    return World(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device: str) -> Iterator[World]:
    """Join torchrun's process group for the length of a run: NCCL on ``cuda:LOCAL_RANK`` for a CUDA
    suite, else gloo. A lone process joins nothing."""
    world = torchrun_world()
    if world.size == 1:
        yield world
        return
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(world.local_rank)  # also where a scorer's plain "cuda" lands
        td.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=torch.device("cuda", world.local_rank))
    else:
        td.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield world
    finally:
        td.destroy_process_group()


def run_distributed(suite: SuiteConfig, world: World, run_dir: str | Path | None = None, force: bool = False,
                    scorer_python: str | None = None, progress: bool = True) -> RunOutcome:
    """``run_suite`` shared out over torchrun's ranks (see the module docstring); every rank must call
    it, and every rank gets the same outcome."""
    store, cells, todo = open_run(suite, run_dir, force, manifest=world.is_main)
    world.all_gather(None)  # every rank has read which cells are done before any rank appends a row
    held = _measure_share(store, todo, world, progress and world.is_main)
    held = {cell_id: row for share in world.all_gather(held) for cell_id, row in share.items()}
    for cell in todo:
        if cell.id in held:
            row = _quality_row(world.place(cell), cell_directory(store, cell), world, scorer_python, held[cell.id])
            if row is not None:
                store.append(row)
                if row["status"] != "ok":
                    note_failure(row)
    world.all_gather(None)  # every row is on disk
    rows = {row["cell_id"]: row for row in store.load_rows()}
    if world.is_main:
        store.export()
    failed = [cell.id for cell in todo if rows[cell.id]["status"] != "ok"]
    return RunOutcome(store.run_dir, ran=len(todo), skipped=len(cells) - len(todo), failed=failed)


def _measure_share(store: RunStore, todo: list[Cell], world: World, progress: bool) -> dict[str, dict[str, Any]]:
    """Measure this rank's cells. A row is final unless the cell also wants quality and measured fine:
    those rows are returned, to be completed by the quality pass on all ranks."""
    held = {}
    mine = [cell for index, cell in enumerate(todo) if world.owns(index)]
    for cell in tqdm(mine, desc=f"rank {world.rank}", unit="cell", disable=not progress, file=sys.stderr):
        row = {**run_cell(world.place(cell), cell_directory(store, cell)), "env.rank": world.rank}
        if row["status"] == "ok" and cell.config.quality.benchmark:
            held[cell.id] = row
            continue
        store.append(row)
        if row["status"] != "ok":
            note_failure(row)
    return held


def _quality_row(cell: Cell, cell_dir: Path, world: World, scorer_python: str | None,
                 row: dict[str, Any]) -> dict[str, Any] | None:
    """Generate and score one cell's benchmark images on every rank; rank 0 returns the cell's row
    (``row``, the efficiency columns, completed with the quality columns or the first failure)."""
    started = time.perf_counter()
    q = cell.config.quality
    columns, failure = _attempt(lambda: generate_shard(cell, load_cell_model(cell), cell_dir, world.shard))
    failures = world.all_gather(failure)  # also: every rank's images are on disk
    shares: list[tuple[ScoredShard | None, dict[str, Any] | None]] = []
    if not any(failures):
        shares = world.all_gather(_attempt(lambda: score_shard(q, cell_dir, world.shard, scorer_python)))
        failures = [failure for _, failure in shares]
    if not world.is_main:
        return None
    failure = _first_failure(failures)
    if failure is None:
        scores, failure = _attempt(lambda: merge_scores(q, cell_dir, [share for share, _ in shares if share]))
        columns = {**columns, **(scores or {})}
    row = {**row, **(columns or {}), **(failure or {})}
    row["cell_seconds"] += time.perf_counter() - started
    return row


def _attempt(fn: Callable[[], T]) -> tuple[T | None, dict[str, Any] | None]:
    """``(result, None)``, or ``(None, failure columns)``: a failure must not skip a collective."""
    try:
        return fn(), None
    except Exception as err:  # noqa: BLE001 - as in run_cell, a cell's failure is data
        return None, failure_columns(err)


def _first_failure(failures: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    for rank, failure in enumerate(failures):
        if failure is not None:
            return {**failure, "message": f"rank {rank}: {failure['message']}"}
    return None
