"""Decode roofline: what one decode step must move and compute, what the machine allows, and how close
a cell gets to it.

A decode step at small batch reads every weight once (all rows of the batch share the read) and the
keys and values that attention reads, and does little arithmetic per byte. Its bounds are

    steps/s <= read bandwidth / bytes per step        (memory bound)
    steps/s <= peak matmul FLOP/s / FLOPs per step    (compute bound)

and ``roofline.decode_fraction`` is the achieved steps/s over the smaller bound. The bytes come from
the model's own sizes, through its cost model (:func:`~tsbench.models.cost.decode_weights`,
:func:`~tsbench.models.cost.kv_bytes_per_position`); the FLOPs from the analytic model built on it.
Decode reads the filled prefix of the KV cache, except a compiled step inside a CUDA graph, which
reads the whole buffer; the bytes follow the engine that ran.

The machine's limits are measured once per machine and cached as JSON in the user cache directory
(``TSBENCH_CACHE_DIR`` overrides it), keyed on device name, torch version, thread count and dtype:
a CPU's read bandwidth depends on how many threads stream. Bandwidth is the better of a streaming
sum and a matrix-vector product (the kernel decode runs) over a buffer far larger than the last-level
cache. A model whose weights fit in that cache can therefore beat the bound, and will show a
fraction above 1.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from tsbench.io import atomic_write_text
from tsbench.measure.env import cpu_has_bf16_matrix_units, device_name
from tsbench.models.base import ARImageModel
from tsbench.models.compiled import reads_whole_cache
from tsbench.models.cost import decode_feed, decode_weights, kv_bytes_per_position

GiB = 2**30
CACHE_FILE = "machine_limits.json"


# ---- the machine -----------------------------------------------------------------------------------
def cache_path() -> Path:
    root = os.environ.get("TSBENCH_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("tsbench")
    return Path(root) / CACHE_FILE


def last_level_cache_bytes() -> int:
    """The largest CPU cache (Linux sysfs), 0 where unknown."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=0)


def _best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up (CUDA: synchronised around each call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.inference_mode()
def measure_read_bandwidth(device: torch.device, repeats: int = 5) -> float:
    """Bytes/s read from memory: the better of a streaming fp32 sum and an fp32 matrix-vector product
    (the decode kernel; on CPUs it often streams faster than a reduction) over a buffer of at least
    1 GiB and 4x the last-level cache."""
    elements = max(GiB, 4 * last_level_cache_bytes()) // 4
    cols = 16384
    matrix = torch.ones(elements // cols, cols, device=device)
    vector = torch.ones(1, cols, device=device)
    seconds = min(_best_seconds(matrix.sum, device, repeats),
                  _best_seconds(lambda: torch.nn.functional.linear(vector, matrix), device, repeats))
    return matrix.numel() * matrix.element_size() / seconds


@torch.inference_mode()
def measure_peak_matmul(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul in ``dtype`` (2 FLOPs per multiply-add)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / _best_seconds(lambda: a @ b, device, repeats)


def _threads(device: torch.device) -> int:
    return torch.get_num_threads() if device.type == "cpu" else 0


def machine_limits(device: str | torch.device, dtype: torch.dtype, refresh: bool = False) -> dict[str, float]:
    """``env.read_bandwidth_bytes_s`` and ``env.peak_matmul_flop_s`` (this dtype) of the machine,
    measured on first use (or when ``refresh``: limits measured while other work shared the machine
    are too low) and then read from the cache file."""
    device = torch.device(device)
    path = cache_path()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    machine = f"{device.type}|{device_name(device)}|torch {torch.__version__}|threads {_threads(device)}"
    if device.type == "cpu" and cpu_has_bf16_matrix_units():  # same CPU name, other matmul units
        machine += "|amx-bf16"
    keys = {"env.read_bandwidth_bytes_s": f"{machine}|read bandwidth",
            "env.peak_matmul_flop_s": f"{machine}|peak matmul {str(dtype).removeprefix('torch.')}"}
    measure = {"env.read_bandwidth_bytes_s": lambda: measure_read_bandwidth(device),
               "env.peak_matmul_flop_s": lambda: measure_peak_matmul(device, dtype)}
    missing = [column for column, key in keys.items() if refresh or key not in cached]
    for column in missing:
        cached[keys[column]] = measure[column]()
    if missing:
        atomic_write_text(path, json.dumps(cached, indent=2, sort_keys=True) + "\n")
    return {column: float(cached[key]) for column, key in keys.items()}


# ---- the step --------------------------------------------------------------------------------------
def decode_bytes(model: ARImageModel, rows: int, prompt_tokens: int, grid: tuple[int, int],
                 whole_buffer: bool) -> dict[str, float]:
    """Bytes one decode step reads, averaged over the image's decode steps, from the model's cost model:
    the weights once, and the keys and values of every position attention reads. After step k has
    written, that is the prompt and every position fed so far; over the ``whole_buffer``, all of them."""
    cost = model.cost_model()
    element_size = next(model.parameters()).element_size()
    fed = list(itertools.accumulate(decode_feed(cost, grid)))
    positions = prompt_tokens + (fed[-1] if whole_buffer else statistics.fmean(fed))
    return {"weights": float(decode_weights(cost) * element_size),
            "kv_cache": kv_bytes_per_position(cost, rows, element_size) * positions}


def roofline_columns(model: ARImageModel, rows: int, prompt_tokens: int, grid: tuple[int, int],
                     flops_per_step: float, step_seconds: float | None, limits: dict[str, float]) -> dict[str, Any]:
    """``roofline.*`` columns of a cell. ``rows``: the batch's rows (CFG doubles them); ``step_seconds``:
    the measured median decode step (None: no latency measured)."""
    whole_buffer = model.compiled_decode is not None and reads_whole_cache(next(model.parameters()).device)
    traffic = decode_bytes(model, rows, prompt_tokens, grid, whole_buffer)
    total = traffic["weights"] + traffic["kv_cache"]
    memory_bound = limits["env.read_bandwidth_bytes_s"] / total
    compute_bound = limits["env.peak_matmul_flop_s"] / flops_per_step
    row: dict[str, Any] = {
        "roofline.bytes_per_step": total,
        "roofline.weight_bytes_per_step": traffic["weights"],
        "roofline.kv_bytes_per_step": traffic["kv_cache"],
        "roofline.flops_per_step": flops_per_step,
        "roofline.arithmetic_intensity": flops_per_step / total,
        "roofline.bound_steps_per_s": min(memory_bound, compute_bound),
        "roofline.bound": "memory" if memory_bound <= compute_bound else "compute",
    }
    if step_seconds:
        row["roofline.achieved_flop_s"] = flops_per_step / step_seconds
        row["roofline.decode_fraction"] = (1.0 / step_seconds) / row["roofline.bound_steps_per_s"]
    return row


def cell_roofline(model: ARImageModel, prompts: list[str], resolution: int, cfg: bool,
                  step_seconds: float | None) -> dict[str, Any]:
    """``env.*`` machine limits and ``roofline.*`` columns of one runner cell (``prompts``: the batch)."""
    from tsbench.measure.flops import analytic_flops

    parameter = next(model.parameters())
    grid = model.grid(resolution)
    try:
        steps = len(decode_feed(model.cost_model(), grid))
        cond = model.condition(prompts, cfg=cfg, grid=grid)
        flops = analytic_flops(model, resolution, cfg=cfg, prompt_tokens=cond.length)
    except NotImplementedError as err:
        return {"roofline.skipped": f"{type(model).__name__} has no cost model: {err}"}
    if steps < 1:
        return {"roofline.skipped": "no decode step: the image is a single window"}
    limits = machine_limits(parameter.device, parameter.dtype)
    flops_per_step = len(prompts) * flops.by_phase["decode"] / steps
    return {**limits, **roofline_columns(model, cond.rows, cond.length, grid, flops_per_step, step_seconds, limits)}
