"""What an adapter tells the cost measurements about itself: the shapes of every phase of its pipeline.

An adapter describes its pipeline once, as a :class:`CostModel`: the decoder-only backbone, the FLOPs of
its image-token input path and output head per code, the Token-Shuffle modules, any separate text
encoder, extra tokens the sequence carries (Emu3's end-of-line tokens), how to run its VQ decoder on the
meta device, and which of its modules belong to which FLOP component. ``tsbench.measure.flops`` turns
that into FLOPs per phase and component, and the KV-cache size follows from it, without either knowing
any adapter by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping

from tsbench.models.shuffle import ar_steps, check_grid


@dataclass(frozen=True)
class Transformer:
    """A stack of pre-norm attention + MLP layers (the AR backbone, or a text encoder)."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    ffn_matrices: int = 3  # SwiGLU / gated GELU: three dim x ffn_hidden matrices; a plain MLP has two

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def layer_parameters(self) -> dict[str, int]:
        """Weights of one layer's matrices: ``attn_proj`` (Q, K, V and output projections) and ``ffn``."""
        return {"attn_proj": 2 * self.dim * self.q_dim + 2 * self.dim * self.kv_dim,
                "ffn": self.ffn_matrices * self.dim * self.ffn_hidden}


@dataclass(frozen=True)
class TextEncoder:
    """A separate encoder run over the prompt before the AR model (LlamaGen's FLAN-T5-XL): its own phase."""

    name: str
    tokens: int  # sequence length of one pass (padded)
    layers: Transformer  # bidirectional: every query sees all ``tokens`` keys
    per_cfg_row: bool = False  # True when the unconditional row is encoded too (not a stored null embedding)
    executed: bool = True  # False: this run feeds precomputed or random features; the pass is the pipeline's cost


@dataclass(frozen=True)
class Shuffle:
    """The Token-Shuffle modules (``tsbench.models.shuffle``) around the backbone's image-token input/output."""

    dim: int
    window: int
    n_blocks: int
    hidden: int

    @property
    def parameters(self) -> int:
        """Weights of both modules: compress d -> d/s^2, expand d/s^2 -> d, and two d x hidden matrices
        per residual block on each side."""
        return 2 * self.dim * (self.dim // self.window**2) + 2 * self.n_blocks * 2 * self.dim * self.hidden


@dataclass(frozen=True)
class VQDecode:
    """The VQ decoder: counted, not derived (convolutions), once per (``key``, grid) on the meta device."""

    key: Hashable  # identifies the decoder's shape, e.g. its config
    downsample: int  # pixels per token side
    run_on_meta: Callable[[tuple[int, int]], Any] = field(compare=False)  # build on meta, decode one grid


@dataclass(frozen=True)
class CostModel:
    """Everything the analytic FLOP model needs, per image.

    ``head_flops_per_code``: the output head for one code (2*d*V for a plain LM head). ``input_flops_per_code``:
    projecting one fed-back code into the backbone (Janus's generation aligner), before any shuffle.
    ``input_flops_per_prompt_token``: a projection of each prefill position (LlamaGen's caption MLP).
    ``row_end_tokens``: tokens fed after the last window of every row of windows (Emu3's end-of-line).
    ``modules`` maps a FLOP component to the glob patterns of the model's module names that compute it,
    so FLOP counters can split a counted call; ``"ignored"`` names modules whose matmuls the convention
    counts as 0 (rotary tables). Attention is found by operator, not by module.
    """

    backbone: Transformer
    vq: VQDecode
    head_flops_per_code: int
    window: int = 1
    input_flops_per_code: int = 0
    input_flops_per_prompt_token: int = 0
    shuffle: Shuffle | None = None
    prompt_tokens: int | None = None  # a fixed prefill length (LlamaGen pads captions); None: from the prompt
    row_end_tokens: int = 0
    text_encoder: TextEncoder | None = None
    modules: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def grid(self, resolution: int | tuple[int, int]) -> tuple[int, int]:
        return token_grid(resolution, self.vq.downsample)


def token_grid(resolution: int | tuple[int, int], downsample: int) -> tuple[int, int]:
    """The VQ token grid of an image: (rows, columns) of codes; a non-positive side or one the decoder
    cannot make is a ValueError, never a negative or truncated grid."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h < 1 or w < 1:
        raise ValueError(f"resolution {h}x{w} must be positive")
    if h % downsample or w % downsample:
        raise ValueError(f"resolution {h}x{w} is not a multiple of the VQ downsampling factor {downsample}")
    return h // downsample, w // downsample


def decode_feed(cost: CostModel, grid: tuple[int, int]) -> list[int]:
    """Positions each decode step feeds: one fused window, plus ``row_end_tokens`` after the last window
    of a row. Every window but the last is fed back (the last is sampled and never fed)."""
    check_grid(grid, cost.window)
    per_row = grid[1] // cost.window
    return [1 + (cost.row_end_tokens if (k + 1) % per_row == 0 else 0) for k in range(ar_steps(grid, cost.window) - 1)]


def kv_bytes_per_position(cost: CostModel, rows: int, element_size: int) -> int:
    """Keys and values that one sequence position holds, all layers, ``rows`` sequences."""
    return 2 * cost.backbone.n_layers * rows * cost.backbone.kv_dim * element_size


def kv_cache_bytes(cost: CostModel, rows: int, prompt_tokens: int, grid: tuple[int, int], element_size: int) -> int:
    """Keys and values of every layer once the whole image is in the cache: the prompt plus every fed
    position, ``rows`` sequences (CFG doubles them)."""
    positions = prompt_tokens + sum(decode_feed(cost, grid))
    return kv_bytes_per_position(cost, rows, element_size) * positions


def decode_weights(cost: CostModel) -> int:
    """Weights one decode step multiplies with, each read once however many rows the batch has: every
    backbone layer's matrices, the image-token input path and the output head (one multiply-add, 2
    FLOPs, per weight and code) and the shuffle modules. Left out: embedding tables (a step reads a
    few rows), norms, and what only the prefill runs (text encoder, prompt projection)."""
    layers = cost.backbone.n_layers * sum(cost.backbone.layer_parameters.values())
    shuffle = cost.shuffle.parameters if cost.shuffle is not None else 0
    return layers + (cost.head_flops_per_code + cost.input_flops_per_code) // 2 + shuffle
