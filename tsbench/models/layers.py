"""Transformer pieces shared by every adapter: RMSNorm, SwiGLU, rotary embeddings, a preallocated
KV cache and attention that reads only the filled part of that cache."""
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
        # normalise in float32 as Llama does, then scale in the input dtype; one fused kernel for fp32
        return F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).type_as(x) * self.weight


class SwiGLU(nn.Module):
    """Llama feed-forward: w2(silu(w1 x) * w3 x); key names match Llama and LlamaGen."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rope_tables(head_dim: int, positions: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, T, 1, head_dim // 2] for 1D rotary embeddings, computed once per forward and
    shared by every layer (adjacent-pair rotation, the Llama/LlamaGen layout)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = (positions.float()[..., None] * freqs)[:, :, None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [B, T, H, Dh] by the angles behind cos, sin [B, T, 1, Dh/2]."""
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).type_as(x)


@dataclass
class KVCache:
    """Keys and values for every layer, allocated once for the whole sequence.

    ``filled`` counts the positions written so far; attention reads ``[:filled]`` only, so decode
    cost grows with the real prefix instead of the preallocated length.
    """

    keys: torch.Tensor | None  # [layers, B, kv_heads, max_len, head_dim]; None: a single full pass
    values: torch.Tensor | None
    key_mask: torch.Tensor | None  # [B, max_len] bool, False on left padding; None when no padding
    filled: int = 0

    @classmethod
    def allocate(cls, layers: int, batch: int, kv_heads: int, max_len: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> "KVCache":
        shape = (layers, batch, kv_heads, max_len, head_dim)
        return cls(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype), None)

    @classmethod
    def single_pass(cls) -> "KVCache":
        """No storage: for one full forward (teacher-forced training) whose k, v are used once and must
        stay out of in-place writes, which autograd cannot differentiate through across layers."""
        return cls(None, None, None)

    @property
    def max_len(self) -> int:
        return self.keys.shape[3] if self.keys is not None else 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, kv_heads, t, Dh] at the current position; return the filled prefix."""
        if self.keys is None:
            if self.filled:
                raise RuntimeError("a single-pass KV cache cannot be extended; allocate one to decode")
            return k, v
        start, end = self.filled, self.filled + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} positions > {self.max_len} allocated")
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.filled += n


def attention_mask(cache: KVCache, q_len: int) -> torch.Tensor | None:
    """Boolean mask [B, 1, q_len, filled + q_len] for the new queries, or None when plain causal
    attention (prefill, no padding) or no mask at all (decode, no padding) is exact."""
    start, end = cache.filled, cache.filled + q_len
    if cache.key_mask is None:
        return None
    device = cache.key_mask.device
    keys = cache.key_mask[:, None, None, :end]
    if q_len == 1:
        return keys
    causal = torch.arange(start, end, device=device)[:, None] >= torch.arange(end, device=device)[None, :]
    # a padding query would otherwise see no key at all and turn into NaN, which then leaks through
    # 0 * NaN in later layers; letting every query see itself keeps padded rows finite and unused
    itself = torch.arange(start, end, device=device)[:, None] == torch.arange(end, device=device)[None, :]
    return (keys & causal) | itself


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """SDPA over q [B, H, t, Dh] and the cache prefix k, v [B, Hkv, T, Dh] (grouped-query aware)."""
    gqa = bool(q.shape[1] != k.shape[1])  # a plain bool also under jit tracing (fvcore)
    if mask is None and causal and q.shape[2] > 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
