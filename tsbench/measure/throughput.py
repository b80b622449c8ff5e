"""The largest batch that fits: double the batch until the device runs out of memory (or a cap)."""
from __future__ import annotations

import time
from typing import Any

import psutil
import torch

from tsbench.engine.generate import GuidanceConfig, generate_tokens
from tsbench.engine.sampling import SamplingConfig
from tsbench.measure.memory import kv_cache_bytes
from tsbench.models.base import ARImageModel

MAX_BATCH = 256


def largest_batch(model: ARImageModel, prompt: str, resolution: int, guidance: GuidanceConfig,
                  sampling: SamplingConfig, start: int = 1, cap: int = MAX_BATCH) -> dict[str, Any]:
    """Doubling search. On CUDA a batch fits when generation does not raise out-of-memory; on CPU,
    where running out of memory kills the process instead of raising, a batch fits while its KV cache
    stays under half of the available RAM."""
    device = next(model.parameters()).device
    grid = model.grid(resolution)
    best: dict[str, Any] = {"throughput.max_batch": 0}
    batch = start
    while batch <= cap:
        prompts = [prompt] * batch
        if device.type != "cuda" and kv_cache_bytes(model, prompts, resolution, guidance.enabled) * 2 > \
                psutil.virtual_memory().available:
            break
        try:
            t0 = time.perf_counter()
            generate_tokens(model, prompts, grid, guidance, sampling, list(range(batch)))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        best = {"throughput.max_batch": batch, "throughput.max_batch_visual_tokens_per_s":
                batch * grid[0] * grid[1] / seconds}
        batch *= 2
    best["throughput.max_batch_cap"] = cap
    return best
