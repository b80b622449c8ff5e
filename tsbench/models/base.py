"""The interface every adapter gives the generation engine and the cost measurements.

An adapter turns prompts into a :class:`Conditioning`, runs one prefill that yields the logits of
the first window, and then one :meth:`ARImageModel.step` per window that feeds the sampled codes
back. The engine owns guidance, sampling, timing and VQ decoding, so every adapter is measured by
the same loop. For the cost side an adapter describes its pipeline as a
:class:`~tsbench.models.cost.CostModel`; FLOPs and the KV-cache size come from it.

An adapter is registered as an :class:`Adapter`: its builder, its options dataclass (the suite's
``model.options``, validated when the suite loads) and its presets.

An adapter on tsbench's :class:`~tsbench.models.layers.KVCache` implements the math of a step in
:meth:`ARImageModel.decode`, reading only tensors from the state, and the shared
:meth:`ARImageModel.step` does the bookkeeping. That split is what lets ``tsbench.models.compiled``
run ``decode`` under ``torch.compile`` with one graph for the whole image. An adapter with a cache of
its own (transformers') overrides ``step`` instead and decodes eagerly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from tsbench.config.registry import suggest
from tsbench.models.cost import CostModel, kv_cache_bytes, token_grid

# The ``weights`` of a model whose backbone came from a checkpoint but whose Token-Shuffle modules are new:
# such rows measure cost; the report never sets their quality beside trained models'.
PARTIAL_RANDOM = "partial-random"


@dataclass
class Conditioning:
    """Prefill input for all rows: conditional prompts first, then (with CFG) the unconditional rows."""

    mask: torch.Tensor  # [rows, T] bool, False on left padding
    tokens: torch.Tensor | None = None  # [rows, T] vocabulary ids (Token-Shuffle, Janus, Emu3)
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


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> ids [rows, T] and mask [rows, T], left-padded so that every row ends together."""
    length = max(map(len, rows))
    tokens = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, length - len(row):] = True
    return tokens.to(device), mask.to(device)


@dataclass
class DecodeState:
    """Everything a decode step needs besides the new codes."""

    cache: Any  # the adapter's KV cache (tsbench's KVCache, or a transformers Cache)
    grid: tuple[int, int]
    positions: torch.Tensor  # [rows] position id the next fed token gets
    steps_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def advance(self) -> None:
        """One window was fed into tsbench's KVCache: move the cache and the next position on."""
        self.cache.advance(1)
        self.positions += 1
        self.steps_done += 1


class ARImageModel(nn.Module):
    """Base class of adapters. Subclasses set ``window``, ``codebook_size`` and ``vq`` (or override
    ``downsample`` and ``decode_codes``) and implement ``condition``, ``start``, ``decode`` (or ``step``
    itself, without compile support), ``describe`` and ``cost_model``."""

    window: int
    codebook_size: int
    vq: nn.Module
    weights: str = "random"  # "random", PARTIAL_RANDOM or a checkpoint hash; every output reports it
    compiled_decode: Callable[[DecodeState, torch.Tensor], torch.Tensor] | None = None  # set by compile_decode

    @property
    def downsample(self) -> int:
        """Pixels per token side."""
        return self.vq.config.downsample

    def grid(self, resolution: int | tuple[int, int]) -> tuple[int, int]:
        return token_grid(resolution, self.downsample)

    def condition(self, prompts: list[str], cfg: bool, grid: tuple[int, int] | None = None) -> Conditioning:
        """Prefill rows for ``prompts``; ``grid`` is the token grid for models whose prompt states the image
        size (Emu3). With ``cfg`` the unconditional rows follow the conditional ones."""
        raise NotImplementedError

    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        """Set up the cache, run prefill; return the state and logits [rows, s^2, codebook]."""
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

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """VQ codes [B, h, w] -> images [B, 3, H, W] in [-1, 1], with the model's own decoder."""
        return self.vq.decode_codes(codes)

    def describe(self) -> dict[str, Any]:
        """Flat facts for result rows (adapter, preset, window, parameter count, weights)."""
        raise NotImplementedError

    def cost_model(self) -> CostModel:
        """The shapes of every phase, for the analytic FLOP model and the KV-cache size."""
        raise NotImplementedError

    def kv_cache_bytes(self, rows: int, prompt_tokens: int, grid: tuple[int, int]) -> int:
        """Bytes of keys and values this model caches for one image batch once every position is in."""
        element_size = next(self.parameters()).dtype.itemsize
        return kv_cache_bytes(self.cost_model(), rows, prompt_tokens, grid, element_size)


def count_parameters(model: nn.Module, exclude: tuple[str, ...] = ()) -> int:
    """Parameters whose names do not start with ``exclude`` (tied weights once)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(exclude))


# ---- adapter registry entries ---------------------------------------------------------------------
@dataclass(frozen=True)
class NoOptions:
    """An adapter without options of its own."""


@dataclass(frozen=True)
class Geometry:
    """What the load-time checks need to know of a model before any cell builds it, found without reading
    weights (from a preset's config or a checkpoint's config file): the Token-Shuffle windows it can run
    at, the window it runs at (the one asked for, else its own) and its VQ downsampling factor there. A
    cell's resolution must be a multiple of ``downsample * window``."""

    windows: tuple[int, ...]
    window: int
    downsample: int  # pixels per token side; for a window outside ``windows``, the model's own window's


@dataclass(frozen=True)
class Adapter:
    """One registry entry: ``build(preset=, checkpoint=, window=, device=, dtype=, options=)`` makes the
    model, ``options`` is the dataclass of its own settings, ``presets()`` lists the preset names and
    ``geometry(preset, checkpoint, window, options)`` says which windows and resolutions a cell may ask
    for, cheaply (no weights read), so a sweep fails before its first cell rather than in the middle.
    ``compiles``: the model implements ``decode`` (tsbench's KV cache), so ``model.compile`` can run it."""

    build: Callable[..., ARImageModel]
    presets: Callable[[], list[str]]
    default_preset: str
    options: type = NoOptions
    geometry: Callable[[str | None, str | None, int | None, Any], Geometry] = field(kw_only=True)
    compiles: bool = field(default=False, kw_only=True)


def make_options(options_class: type, given: Any = None, adapter: str = "this adapter", **kwargs: Any) -> Any:
    """An adapter's options from an instance of its class, a mapping or keyword arguments; an unknown
    name is an error that suggests the closest option, never silently dropped."""
    if isinstance(given, options_class) and not kwargs:
        return given
    values = dataclasses.asdict(given) if dataclasses.is_dataclass(given) else dict(given or {})
    values.update(kwargs)
    known = [f.name for f in dataclasses.fields(options_class)]
    for name in values:
        if name not in known:
            hint = suggest(name, known) or (f" Its options: {', '.join(known)}." if known else " It has none.")
            raise ValueError(f"unknown option {name!r} of adapter {adapter!r}.{hint}")
    return options_class(**values)
