"""Transformer pieces shared by every adapter: RMSNorm, SwiGLU, rotary embeddings, a preallocated
KV cache and attention over it.

The cache has two modes. Eager decode writes at a Python position and attends over the filled prefix
only, so a step reads just the keys that exist. Static decode (``KVCache.slot`` set, see
``tsbench.models.compiled``) writes at a position held in a tensor, so every step has the same shapes
and one compiled graph serves the whole image. It still reads only the prefix, through
:func:`prefix_attention`, an operator opaque to the compiler that looks the length up at run time;
inside a CUDA graph, which cannot look anything up, it attends over the whole buffer with a mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one kernel; a decode step runs 2 per layer, so dispatch counts
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # Llama's order for low precision: normalise in float32, round to the input dtype, then scale
        return F.rms_norm(x.float(), self.weight.shape, eps=self.eps).type_as(x) * self.weight


class SwiGLU(nn.Module):
    """Llama feed-forward: w2(silu(w1 x) * w3 x); key names match Llama and LlamaGen."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rope_rotation(head_dim: int, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Unit complex numbers [B, T, 1, head_dim // 2] that rotate each channel pair of a token at
    ``positions`` [B, T] (1D rotary embeddings, Llama's frequencies), computed once per forward and
    shared by every layer."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = (positions.float()[..., None] * freqs)[:, :, None, :]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [B, T, H, Dh] (the Llama/LlamaGen layout) by ``rotation``
    [B or 1, T, 1, Dh/2], in float32. One complex multiply: one compute kernel where the real form
    (two products per output, a subtraction, an addition, a stack) ran seven."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


@dataclass
class KVCache:
    """Keys and values for every layer, allocated once for the whole sequence.

    ``filled`` counts the positions written so far. Eager decode reads ``[:filled]`` only, so its cost
    grows with the real prefix instead of the preallocated length. ``slot`` (static decode) is
    ``filled`` as a [1] tensor, the only per-step input a compiled step may depend on.
    """

    keys: list[torch.Tensor] | None  # per layer [B, kv_heads, max_len, head_dim]; None: a single full pass
    values: list[torch.Tensor] | None
    key_mask: torch.Tensor | None  # [B, max_len] bool, False on left padding; None when no padding
    filled: int = 0
    slot: torch.Tensor | None = None  # [1] long == filled; set: static decode
    whole_buffer: bool = False  # static decode attends over every slot with a mask (CUDA graphs)

    @classmethod
    def allocate(cls, layers: int, batch: int, kv_heads: int, max_len: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> "KVCache":
        """One buffer per layer, so that a compiled step updates each in place (a view into one
        all-layer tensor made inductor copy the whole cache at every step). Zero-filled: static decode
        multiplies the unwritten slots by attention weight 0, which must not meet a NaN left in
        uninitialised memory."""
        shape = (batch, kv_heads, max_len, head_dim)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)], None)

    @classmethod
    def single_pass(cls) -> "KVCache":
        """No storage: for one full forward (teacher-forced training) whose k, v are used once and must
        stay out of in-place writes, which autograd cannot differentiate through across layers."""
        return cls(None, None, None)

    @property
    def max_len(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def start_static(self, whole_buffer: bool = False) -> None:
        """Switch to static decode from the current position on (after an eager prefill)."""
        self.slot = torch.tensor([self.filled], device=self.keys[0].device)
        self.whole_buffer = whole_buffer

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """Store k, v [B, kv_heads, t, Dh] at the current position, then attend q [B, H, t, Dh] over
        every position written so far (``mask``: from :func:`attention_mask`)."""
        if self.keys is None:
            if self.filled:
                raise RuntimeError("a single-pass KV cache cannot be extended; allocate one to decode")
            return attend(q, k, v, mask)
        keys, values = self.keys[layer], self.values[layer]
        if self.slot is not None:
            keys.index_copy_(2, self.slot, k)
            values.index_copy_(2, self.slot, v)
            if self.whole_buffer:
                return attend(q, keys, values, mask)
            return prefix_attention(q, keys, values, self.slot, self.key_mask)
        start, end = self.filled, self.filled + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} positions > {self.max_len} allocated")
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return attend(q, keys[:, :, :end], values[:, :, :end], mask)

    def advance(self, n: int) -> None:
        self.filled += n
        if self.slot is not None:
            self.slot += n


def attention_mask(cache: KVCache, q_len: int) -> torch.Tensor | None:
    """Boolean mask [B, 1, q_len, keys] for the new queries, or None when plain causal attention
    (prefill from an empty cache) or no mask at all (eager decode, no padding) is exact."""
    if cache.slot is not None:  # static decode: one query
        if q_len != 1:
            raise ValueError(f"static decode feeds one position per step, got {q_len}")
        if not cache.whole_buffer:
            return None  # prefix_attention applies the key mask itself
        visible = torch.arange(cache.max_len, device=cache.slot.device) <= cache.slot  # unwritten slots hidden
        if cache.key_mask is not None:
            visible = visible & cache.key_mask
        return visible.expand(cache.keys[0].shape[0], -1)[:, None, None, :]
    start, end = cache.filled, cache.filled + q_len
    if cache.key_mask is None and (start == 0 or q_len == 1):
        return None
    device = cache.keys[0].device if cache.key_mask is None else cache.key_mask.device
    keys = (cache.key_mask[:, None, None, :end] if cache.key_mask is not None
            else torch.ones(1, 1, 1, end, dtype=torch.bool, device=device))
    if q_len == 1:
        return keys
    causal = torch.arange(start, end, device=device)[:, None] >= torch.arange(end, device=device)[None, :]
    # a padding query would otherwise see no key at all and turn into NaN, which then leaks through
    # 0 * NaN in later layers; letting every query see itself keeps padded rows finite and unused
    itself = torch.arange(start, end, device=device)[:, None] == torch.arange(end, device=device)[None, :]
    return (keys & causal) | itself


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA over q [B, H, t, Dh] and the keys k, v [B, Hkv, T, Dh] (grouped-query aware). Without a
    mask, several queries attend causally (a prefill from an empty cache) and one query sees every key."""
    gqa = bool(q.shape[1] != k.shape[1])  # a plain bool also under jit tracing (fvcore)
    if mask is None and q.shape[2] > 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


@torch.library.custom_op("tsbench::prefix_attention", mutates_args=())
def prefix_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor,
                     key_mask: torch.Tensor | None) -> torch.Tensor:
    """One query per row over cache positions ``[0, slot]`` of the whole buffers keys, values
    [B, Hkv, max_len, Dh]. A compiled graph sees fixed shapes; reading the length from ``slot`` at run
    time (a host read, free on CPU) keeps each step's reads to the prefix; a mask over the whole
    buffer reads twice the keys on average over an image."""
    end = int(slot) + 1
    mask = key_mask[:, None, None, :end] if key_mask is not None else None
    return attend(q, keys[:, :, :end], values[:, :, :end], mask)


@prefix_attention.register_fake
def _(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor,
      key_mask: torch.Tensor | None) -> torch.Tensor:
    return q.new_empty(*q.shape[:-1], values.shape[-1])
