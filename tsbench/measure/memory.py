"""Peak memory of a cell: allocator peaks on CUDA, sampled peak RSS on CPU, and the KV cache size."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import psutil
import torch

from tsbench.models.base import ARImageModel

MiB = 1024 * 1024


class RSSPeak:
    """Polls this process's resident set size in a thread (10 ms): the CPU analogue of a peak gauge.
    Peaks shorter than the period can be missed; the number is a lower bound."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.peak = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self.period_s)

    def __enter__(self) -> "RSSPeak":
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@contextmanager
def track_peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict filled on exit with ``memory.*`` columns in MiB (2^20 bytes)."""
    result: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result["memory.peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MiB
        result["memory.peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MiB
    else:
        with RSSPeak() as rss:
            yield result
        result["memory.peak_rss_mib"] = rss.peak / MiB


def kv_cache_bytes(model: ARImageModel, prompts: list[str], resolution: int, cfg: bool) -> int:
    """Bytes of the KV cache for this batch (keys + values, all layers, the whole image), as the adapter
    reports it: the prompt rows are formed, nothing is run."""
    grid = model.grid(resolution)
    cond = model.condition(prompts, cfg=cfg, grid=grid)
    return model.kv_cache_bytes(cond.rows, cond.length, grid)
