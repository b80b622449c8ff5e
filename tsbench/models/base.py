"""The interface every adapter gives the generation engine.

An adapter turns prompts into a :class:`Conditioning`, runs one prefill that yields the logits of
the first window, and then one :meth:`ARImageModel.step` per window that feeds the sampled codes
back. The engine owns guidance, sampling, timing and VQ decoding, so every adapter is measured by
the same loop.

An adapter implements the math of a step in :meth:`ARImageModel.decode`, reading only tensors from
the state; :meth:`ARImageModel.step` does the bookkeeping. That split is what lets
``tsbench.models.compiled`` run ``decode`` under ``torch.compile`` with one graph for the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from tsbench.models.layers import KVCache


@dataclass
class Conditioning:
    """Prefill input for all rows: conditional prompts first, then (with CFG) the unconditional rows."""

    mask: torch.Tensor  # [rows, T] bool, False on left padding
    tokens: torch.Tensor | None = None  # [rows, T] unified-vocabulary ids (Token-Shuffle)
    embeddings: torch.Tensor | None = None  # [rows, T, d] precomputed inputs (LlamaGen captions)

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

    def advance(self) -> None:
        """One window was fed: move the cache and the next position on."""
        self.cache.advance(1)
        self.positions += 1
        self.steps_done += 1


class ARImageModel(nn.Module):
    """Base class of adapters. Subclasses set ``window``, ``codebook_size`` and ``vq`` and implement
    ``condition``, ``start`` and ``decode`` (or, without compile support, ``step`` itself)."""

    window: int
    codebook_size: int
    vq: nn.Module
    weights: str = "random"  # "random" or a checkpoint hash; every output reports it
    compiled_decode: Callable[[DecodeState, torch.Tensor], torch.Tensor] | None = None  # set by compile_decode

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

    def decode(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        """The math of one step: feed codes [rows, s^2], return the next logits [rows, s^2, codebook].

        Reads only tensors from ``state`` (positions, the cache's buffers and ``slot``) and writes only
        the cache, never a Python number that changes from step to step: compiled, such a number
        would be baked into the graph."""
        raise NotImplementedError(f"adapter {type(self).__name__} implements no decode()")

    def step(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        """Feed the window just sampled (codes [rows, s^2]); return the next logits [rows, s^2, codebook]."""
        if state.cache.filled >= state.cache.max_len:
            raise RuntimeError(f"all {state.steps_done + 1} windows of the {state.grid} grid were already returned")
        logits = self.compiled_decode(state, codes) if self.compiled_decode is not None else self.decode(state, codes)
        state.advance()
        return logits

    def describe(self) -> dict[str, Any]:
        """Flat facts for result rows (adapter, preset, window, parameter count, weights)."""
        raise NotImplementedError

    # ---- sizes for the decode roofline (tsbench.measure.roofline) ------------------------------------
    decode_skips: tuple[str, ...] = ()  # parameter-name prefixes a decode step does not stream

    def decode_weight_bytes(self) -> int:
        """Bytes of weights each decode step reads once, whatever the batch: every parameter but the
        ``decode_skips`` (embedding tables, of which a step reads a few rows; prefill-only parts)."""
        return sum(p.numel() * p.element_size() for name, p in self.named_parameters()
                   if not name.startswith(self.decode_skips))

    def kv_bytes_per_position(self, rows: int) -> int:
        """Bytes of keys and values that one sequence position holds in the cache, all layers, ``rows`` rows."""
        raise NotImplementedError(f"adapter {type(self).__name__} does not report its KV cache size")
