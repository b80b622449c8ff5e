"""The interface every adapter gives the generation engine.

An adapter turns prompts into a :class:`Conditioning`, runs one prefill that yields the logits of
the first window, and then one :meth:`ARImageModel.step` per window that feeds the sampled codes
back. The engine owns guidance, sampling, timing and VQ decoding, so every adapter is measured by
the same loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tsbench.models.layers import KVCache


@dataclass
class Conditioning:
    """Prefill input for all rows: conditional prompts first, then (with CFG) the unconditional rows."""

    mask: torch.Tensor  # [rows, T] bool, False on left padding
    tokens: torch.Tensor | None = None  # [rows, T] unified-vocabulary ids (Token-Shuffle)
    embeddings: torch.Tensor | None = None  # [rows, T, d] precomputed inputs (LlamaGen captions)
    # Prompts cut to the adapter's text budget (``text_budget`` tokens): the runner warns and records the count.
    truncated: int = 0
    text_budget: int | None = None

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        return self.mask.shape[1]


@dataclass
class DecodeState:
    """Everything a decode step needs besides the new codes."""

    cache: KVCache
    grid: tuple[int, int]
    positions: torch.Tensor  # [rows] position id the next fed token gets
    steps_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ARImageModel(nn.Module):
    """Base class of adapters. Subclasses set ``window``, ``codebook_size`` and ``vq`` and implement
    ``condition``, ``start`` and ``step``."""

    window: int
    codebook_size: int
    vq: nn.Module
    weights: str = "random"  # "random" or a checkpoint hash; every output reports it

    def grid(self, resolution: int | tuple[int, int]) -> tuple[int, int]:
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        f = self.vq.config.downsample
        if h % f or w % f:
            raise ValueError(f"resolution {h}x{w} is not a multiple of the VQ downsampling factor {f}")
        return h // f, w // f

    def condition(self, prompts: list[str], cfg: bool) -> Conditioning:
        raise NotImplementedError

    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        """Allocate the cache, run prefill; return the state and logits [rows, s^2, codebook]."""
        raise NotImplementedError

    def step(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        """Feed the window just sampled (codes [rows, s^2]); return the next logits [rows, s^2, codebook]."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Flat facts for result rows (adapter, preset, window, parameter count, weights)."""
        raise NotImplementedError
