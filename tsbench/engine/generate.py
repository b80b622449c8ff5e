"""The generation loop every adapter shares: one prefill, one fused token per step, guidance by
schedule, seeded sampling, VQ decode. Read it top to bottom; measurement hooks in via ``on_step``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from tsbench.engine.cfg import cfg_scale as schedule_weight
from tsbench.engine.sampling import SamplingConfig, guide, sample
from tsbench.models.base import ARImageModel
from tsbench.models.shuffle import ar_steps, windows_to_grid
from tsbench.models.vq import to_uint8

StepCallback = Callable[[int, float], None]  # (step index, perf_counter timestamp after the step)


@dataclass(frozen=True)
class GuidanceConfig:
    scale: float = 7.5
    schedule: str = "half-linear"
    interval: tuple[float, float] | None = None

    @property
    def enabled(self) -> bool:
        """Without guidance (scale 1) the unconditional rows are not computed at all."""
        return self.scale != 1.0


@dataclass
class GenerationResult:
    images: list[np.ndarray]  # uint8 H x W x 3 per prompt
    tokens: torch.Tensor  # [B, h, w] VQ codes
    prompts: list[str]
    seeds: list[int]
    timings: dict[str, float | list[float]] = field(default_factory=dict)  # seconds

    def pil_images(self) -> list:
        from PIL import Image

        return [Image.fromarray(img) for img in self.images]


@torch.inference_mode()
def generate_tokens(model: ARImageModel, prompts: list[str], grid: tuple[int, int], guidance: GuidanceConfig,
                    sampling: SamplingConfig, seeds: list[int], on_step: StepCallback | None = None) -> torch.Tensor:
    """Sample the VQ code grid [B, h, w] for a batch of prompts."""
    device = next(model.parameters()).device
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    batch, s = len(prompts), model.window
    state, logits = model.start(model.condition(prompts, cfg=guidance.enabled, grid=grid), grid)
    steps = ar_steps(grid, s)
    weights = [schedule_weight(guidance.schedule, i, steps, guidance.scale, guidance.interval) for i in range(steps)]
    windows = torch.empty(batch, steps, s * s, dtype=torch.long, device=device)
    for i, weight in enumerate(weights):
        codes = sample(guide(logits, batch, weight), sampling, generators)
        windows[:, i] = codes
        if i + 1 < steps:  # the last window is never fed back
            logits = model.step(state, codes.repeat(logits.shape[0] // batch, 1))
        if on_step is not None:
            on_step(i, time.perf_counter())
    return windows_to_grid(windows, s, grid)


@torch.inference_mode()
def decode_images(model: ARImageModel, codes: torch.Tensor) -> list[np.ndarray]:
    return list(to_uint8(model.decode_codes(codes)))


def generate(model: ARImageModel, prompts: list[str] | str, resolution: int | tuple[int, int] = 256,
             cfg_schedule: str = "half-linear", cfg_scale: float = 7.5, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0, batch_size: int = 8,
             cfg_interval: tuple[float, float] | None = None, seeds: list[int] | None = None,
             on_step: StepCallback | None = None) -> GenerationResult:
    """Generate one image per prompt. Image i uses seed ``seed + i`` (or ``seeds[i]``), whatever the batching."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    guidance = GuidanceConfig(cfg_scale, cfg_schedule, cfg_interval)
    sampling = SamplingConfig(temperature, top_k, top_p)
    grid = model.grid(resolution)
    timings: dict[str, float] = {"tokens_s": 0.0, "vq_decode_s": 0.0}
    codes, images = [], []
    for lo in range(0, len(prompts), batch_size):
        t0 = time.perf_counter()
        batch_codes = generate_tokens(model, prompts[lo:lo + batch_size], grid, guidance, sampling,
                                      seeds[lo:lo + batch_size], on_step)
        t1 = time.perf_counter()
        images += decode_images(model, batch_codes)
        timings["tokens_s"] += t1 - t0
        timings["vq_decode_s"] += time.perf_counter() - t1
        codes.append(batch_codes.cpu())
    timings["total_s"] = timings["tokens_s"] + timings["vq_decode_s"]
    return GenerationResult(images, torch.cat(codes), prompts, seeds, timings)
