"""Guidance and sampling on logits; one seeded generator per image so batching never changes it."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def guide(logits: torch.Tensor, batch: int, weight: float) -> torch.Tensor:
    """Rows [cond..., uncond...] -> l_u + w (l_c - l_u); a batch without uncond rows passes through."""
    if logits.shape[0] == batch:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + weight * (cond - uncond)


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on the last axis."""
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        # the k-th largest value by selection (the (V - k + 1)-th smallest): the same threshold as topk's
        # last value, without ordering the k winners
        kth = torch.kthvalue(logits, logits.shape[-1] - cfg.top_k + 1, dim=-1, keepdim=True).values
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs > cfg.top_p  # keep the token that crosses p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One code per row of probs [n, V] by inverse transform sampling: one uniform number u in [0, 1)
    per row against the cumulative distribution; the code is the first whose running sum exceeds
    u * total. A code of probability 0 adds nothing to the sum, so it is never the first to exceed it,
    and u * total stays below total in floating point (u <= 1 - 2^-24 and products round to nearest).
    ``torch.multinomial`` draws one exponential number per code of the vocabulary instead, the largest
    cost of sampling in a profile of the CPU decode step."""
    cumulative = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=probs.dtype)
    return torch.searchsorted(cumulative, u * cumulative[:, -1:], right=True)[:, 0]


def sample(logits: torch.Tensor, cfg: SamplingConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """logits [B, n, V] -> codes [B, n]; row b draws from ``generators[b]`` only."""
    probs = filter_logits(logits, cfg).softmax(-1)
    return torch.stack([draw(probs[b], g) for b, g in enumerate(generators)])
