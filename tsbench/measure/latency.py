"""Latency of the whole generation path, split into prefill, per-step decode and VQ decode.

Rules (optimum-benchmark's): warm up at exactly the measured shapes; repeat until both a minimum
count and a minimum time are reached; CUDA events on GPU and perf_counter on CPU; no device sync
inside the timed region; keep the raw samples.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from tsbench.engine.generate import GuidanceConfig, decode_images, generate_tokens
from tsbench.engine.sampling import SamplingConfig
from tsbench.models.base import ARImageModel


def summarize(values: list[float]) -> dict[str, float]:
    """count, mean, median, p90, min, stdev of raw samples (seconds)."""
    arr = np.asarray(values, dtype=float)
    return {"count": int(arr.size), "mean": float(arr.mean()), "median": float(np.median(arr)),
            "p90": float(np.percentile(arr, 90)), "min": float(arr.min()),
            "stdev": float(statistics.stdev(values)) if len(values) > 1 else 0.0}


class Clock:
    """Timestamps that cost no sync: CUDA events on GPU, perf_counter elsewhere; read once at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Seconds of every mark since the first one."""
        if self.cuda:
            torch.cuda.synchronize()
            return [self.marks[0].elapsed_time(m) / 1000.0 for m in self.marks]
        return [m - self.marks[0] for m in self.marks]


@dataclass
class GenerationTiming:
    """Raw samples of one cell: seconds per repeat (prefill, VQ decode, end to end) and per decode step."""

    batch: int
    visual_tokens: int  # per image
    prefill: list[float] = field(default_factory=list)
    decode_steps: list[float] = field(default_factory=list)
    vq_decode: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)

    def add(self, marks: list[float]) -> None:
        """marks: [start, after step 0, ..., after the last step, after VQ decode]."""
        steps = marks[1:-1]
        self.prefill.append(steps[0] - marks[0])
        self.decode_steps += list(np.diff(steps))
        self.vq_decode.append(marks[-1] - steps[-1])
        self.end_to_end.append(marks[-1] - marks[0])

    def to_row(self) -> dict[str, float | list[float]]:
        row: dict[str, float | list[float]] = {}
        for name, values in (("prefill_s", self.prefill), ("vq_decode_s", self.vq_decode),
                             ("end_to_end_s", self.end_to_end)):
            stats = summarize(values)
            row[f"latency.{name}"] = stats["median"]
            row[f"latency.{name}.raw"] = values
        if self.decode_steps:
            stats = summarize(self.decode_steps)
            row["latency.decode_step_s"] = stats["median"]
            row["latency.decode_step_s.p90"] = stats["p90"]
            row["latency.decode_step_s.raw"] = self.decode_steps
        e2e = summarize(self.end_to_end)["median"]
        row["latency.per_image_s"] = e2e / self.batch
        row["latency.repeats"] = len(self.end_to_end)
        row["throughput.images_per_s"] = self.batch / e2e
        row["throughput.visual_tokens_per_s"] = self.batch * self.visual_tokens / e2e
        return row


def time_generation(model: ARImageModel, prompts: list[str], resolution: int, guidance: GuidanceConfig,
                    sampling: SamplingConfig, seeds: list[int], warmup: int = 1, min_repeats: int = 3,
                    min_time_s: float = 0.0, on_repeat: Callable[[int], None] | None = None) -> GenerationTiming:
    """Time complete generations of ``prompts`` (one batch) including VQ decode."""
    device = next(model.parameters()).device
    grid = model.grid(resolution)
    timing = GenerationTiming(batch=len(prompts), visual_tokens=grid[0] * grid[1])

    def once() -> list[float]:
        clock = Clock(device)
        clock.mark()
        codes = generate_tokens(model, prompts, grid, guidance, sampling, seeds, on_step=lambda i, t: clock.mark())
        decode_images(model, codes)
        clock.mark()
        return clock.seconds()

    for _ in range(warmup):
        once()
    started = time.perf_counter()
    while len(timing.end_to_end) < min_repeats or time.perf_counter() - started < min_time_s:
        timing.add(once())
        if on_repeat is not None:
            on_repeat(len(timing.end_to_end))
    return timing
