"""Run one sweep cell: load, count FLOPs, time, measure memory, save sample images.

Order inside a cell follows optimum-benchmark: load (timed) -> FLOP count -> warm-up and latency
pass -> a separate memory pass (which also writes the sample images), so trackers do not disturb
each other. Any exception becomes the cell's status; the sweep goes on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from PIL import Image
from tqdm import tqdm

import tsbench
from tsbench.config.suite import SuiteConfig, WorkloadConfig, locate
from tsbench.engine.generate import GuidanceConfig
from tsbench.engine.sampling import SamplingConfig
from tsbench.measure.env import environment
from tsbench.measure.latency import time_generation
from tsbench.measure.memory import kv_cache_bytes, track_peak_memory
from tsbench.measure.roofline import cell_roofline
from tsbench.measure.throughput import largest_batch
from tsbench.models.checkpoint import CheckpointError
from tsbench.models.compiled import compile_now
from tsbench.models.shuffle import ar_steps
from tsbench.benchmarks.layout import write_png
from tsbench.runner.store import flatten_row
from tsbench.runner.sweep import Cell
from tsbench.runner.validate import checkpoint_key

QualityHook = Callable[[Cell, Any, Path], dict[str, Any]]


def batch_prompts(prompts: list[str], batch: int) -> list[str]:
    """The first ``batch`` prompts, cycling when the suite lists fewer."""
    return [prompts[i % len(prompts)] for i in range(batch)]


def sampling_options(work: WorkloadConfig) -> dict[str, Any]:
    """A workload's guidance and sampling settings as keyword arguments of ``tsbench.generate``."""
    return {"cfg_schedule": work.cfg_schedule, "cfg_scale": work.cfg_scale,
            "cfg_interval": tuple(work.cfg_interval) if work.cfg_interval else None,
            "temperature": work.temperature, "top_k": work.top_k, "top_p": work.top_p}


def load_cell_model(cell: Cell):
    """The cell's model. Random weights are drawn from a fixed seed, so every process (each torchrun
    rank, each rerun) holds the same model and a cell's images do not depend on which process made them."""
    m = cell.config.model
    with torch.random.fork_rng(devices=[]), checkpoint_origin(cell.config):  # leave the CPU random state as it was
        torch.manual_seed(0)
        return tsbench.load_model(m.adapter, preset=m.preset, checkpoint=m.checkpoint, window=m.window,
                                  device=m.device, dtype=m.dtype, compile=m.compile, options=m.options)


@contextlib.contextmanager
def checkpoint_origin(config: SuiteConfig) -> Iterator[None]:
    """Prefix a CheckpointError with the option its file came from (``--vq-checkpoint v.pt:
    model.options.vq_checkpoint: ...``, or the suite line), since the adapter only knows the path."""
    try:
        yield
    except CheckpointError as err:
        key = checkpoint_key(config, err)
        raise CheckpointError(f"{locate(config, key)}: {key}: {err}", err.path) from None


def measure_cell(cell: Cell, cell_dir: Path, quality: QualityHook | None = None) -> dict[str, Any]:
    """All measurements of one cell as flat ``section.name`` columns."""
    cfg, work, measure = cell.config, cell.config.workload, cell.config.measure
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    model = load_cell_model(cell)
    row["latency.load_model_s"] = time.perf_counter() - t0
    row.update(flatten_row({"model": model.describe()}))
    device = next(model.parameters()).device
    row.update(environment(device))
    row["env.dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")

    options = sampling_options(work)
    guidance = GuidanceConfig(work.cfg_scale, work.cfg_schedule, options["cfg_interval"])
    sampling = SamplingConfig(work.temperature, work.top_k, work.top_p)
    prompts = batch_prompts(work.prompts, work.batch_size)
    seeds = [work.seed + i for i in range(len(prompts))]
    grid = model.grid(work.resolution)
    row["workload.visual_tokens"] = grid[0] * grid[1]
    row["workload.ar_steps"] = ar_steps(grid, model.window)
    if measure.flops or measure.latency or measure.memory or measure.max_batch_search:  # the workload prompts run
        # each distinct prompt once; its padded length (the longest prompt's) is the batch's prefill length
        distinct = list(dict.fromkeys(prompts))
        cond = model.condition(distinct, cfg=guidance.enabled, grid=grid)
        row["workload.truncated_prompts"] = cond.truncated
        if cond.truncated:
            tqdm.write(f"warning: cell {cell.id}: {cond.truncated} of {len(distinct)} prompt(s) are longer than the "
                       f"model's text budget ({cond.text_budget} tokens) and were cut (workload.truncated_prompts)",
                       file=sys.stderr)

    if measure.flops:
        from tsbench.measure.flops import analytic_flops

        prompt_tokens = int(cond.length)
        flops = analytic_flops(model, work.resolution, cfg=guidance.enabled, prompt_tokens=prompt_tokens)
        row.update(flatten_row({"flops": flops.to_dict()}))
    if model.compiled_decode is not None:  # compiled before anything is timed, reported apart
        row["latency.compile_s"] = compile_now(model, model.condition(prompts, cfg=guidance.enabled, grid=grid), grid)
    if measure.latency:
        timing = time_generation(model, prompts, work.resolution, guidance, sampling, seeds,
                                 warmup=measure.warmup, min_repeats=measure.min_repeats,
                                 min_time_s=measure.min_time_s)
        row.update(timing.to_row())
    if measure.roofline and measure.latency:  # the fraction is of the measured step; a quality-only run skips it
        row.update(cell_roofline(model, prompts, work.resolution, guidance.enabled, row.get("latency.decode_step_s")))
    if measure.memory:
        row["memory.kv_cache_mib"] = kv_cache_bytes(model, prompts, work.resolution, guidance.enabled) / 2**20
        steps = tqdm(total=row["workload.ar_steps"], desc="decode", unit="step", leave=False, file=sys.stderr,
                     disable=None)
        with track_peak_memory(device) as peak:
            result = tsbench.generate(model, prompts, work.resolution, seeds=seeds, batch_size=len(prompts),
                                      on_step=lambda i, t: steps.update(), **options)
        steps.close()
        row.update(peak)
        samples = []
        for i, image in enumerate(result.images):
            path = cell_dir / "samples" / f"{i:02d}.png"
            write_png(Image.fromarray(image), path)
            samples.append(str(path.relative_to(cell_dir.parent.parent)))
        row["samples.paths"] = samples
        row["samples.prompts"] = prompts
        row["samples.seeds"] = seeds
    if measure.max_batch_search:
        row.update(largest_batch(model, prompts[0], work.resolution, guidance, sampling, start=work.batch_size))
    if quality is not None and cfg.quality.benchmark:
        row.update(quality(cell, model, cell_dir))
    return row


def failure_columns(err: Exception) -> dict[str, Any]:
    """``status``/``message`` (and traceback) of a failed cell; out-of-memory gets its own status."""
    if isinstance(err, torch.OutOfMemoryError):
        return {"status": "oom", "message": str(err).splitlines()[0]}
    return {"status": "error", "message": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}


def run_cell(cell: Cell, cell_dir: Path, quality: QualityHook | None = None) -> dict[str, Any]:
    """One result row; failures are recorded, never raised (out-of-memory gets its own status)."""
    axes = {"model": dataclasses.asdict(cell.config.model), "workload": dataclasses.asdict(cell.config.workload)}
    base = {"cell_id": cell.id, "cell_hash": cell.hash, **flatten_row({"config": axes})}
    base.pop("config.workload.prompts", None)
    started = time.perf_counter()
    try:
        row = {**base, **measure_cell(cell, cell_dir, quality), "status": "ok", "message": ""}
    except Exception as err:  # noqa: BLE001 - a cell's failure is data, the sweep goes on
        row = {**base, **failure_columns(err)}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["cell_seconds"] = time.perf_counter() - started
    return row
