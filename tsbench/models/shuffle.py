"""Token-Shuffle: fold each s x s window of visual tokens into one token, and split it back.

Layout (documented, tested): the visual token at grid (r, c) goes to fused token
(r // s) * (w // s) + (c // s) -- raster order over windows -- at channel slot
k = (r % s) * s + (c % s), i.e. channels [k * d/s^2, (k + 1) * d/s^2) -- raster order inside the window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WINDOWS = (1, 2, 4, 8)


def check_window(window: int) -> None:
    if window not in WINDOWS:
        raise ValueError(f"shuffle window {window} is not supported; use one of {WINDOWS}")


def check_grid(grid: tuple[int, int], window: int) -> None:
    h, w = grid
    check_window(window)
    if h % window or w % window:
        raise ValueError(
            f"token grid {h}x{w} is not divisible by shuffle window {window}: choose a resolution whose "
            f"token grid is a multiple of {window} (resolution = grid x VQ downsampling)"
        )


def ar_steps(grid: tuple[int, int], window: int) -> int:
    """AR steps that generate a token grid: one per s x s window (the grid divisible by s, see check_grid)."""
    return (grid[0] // window) * (grid[1] // window)


def grid_to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, h, w, *C] -> [B, (h/s)(w/s), s*s, *C]: windows in raster order, tokens raster inside."""
    b, h, w, *c = x.shape
    s = window
    x = x.reshape(b, h // s, s, w // s, s, *c).transpose(2, 3)
    return x.reshape(b, (h // s) * (w // s), s * s, *c)


def windows_to_grid(x: torch.Tensor, window: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`grid_to_windows`: [B, M, s*s, *C] -> [B, h, w, *C]."""
    b, _, _, *c = x.shape
    h, w = grid
    s = window
    x = x.reshape(b, h // s, w // s, s, s, *c).transpose(2, 3)
    return x.reshape(b, h, w, *c)


class ResidualMLP(nn.Module):
    """x + W2 gelu(W1 norm(x)): mixes the s^2 sub-tokens of a fused token (paper default: 2 blocks)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class ShuffleIn(nn.Module):
    """Compress each token d -> d/s^2, concatenate the window into one d-wide token, mix it."""

    def __init__(self, dim: int, window: int, n_blocks: int, hidden: int) -> None:
        super().__init__()
        if dim % (window * window):
            raise ValueError(f"model width {dim} is not divisible by window^2 = {window * window}")
        self.compress = nn.Linear(dim, dim // (window * window), bias=False)
        self.blocks = nn.ModuleList(ResidualMLP(dim, hidden) for _ in range(n_blocks))

    def forward(self, window_embeddings: torch.Tensor) -> torch.Tensor:
        """[B, M, s^2, d] -> [B, M, d]."""
        x = self.compress(window_embeddings).flatten(-2)
        for block in self.blocks:
            x = block(x)
        return x


class ShuffleOut(nn.Module):
    """Mix the fused hidden state, split it into s^2 chunks, expand each chunk d/s^2 -> d."""

    def __init__(self, dim: int, window: int, n_blocks: int, hidden: int) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(ResidualMLP(dim, hidden) for _ in range(n_blocks))
        self.expand = nn.Linear(dim // (window * window), dim, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, M, d] -> [B, M, s^2, d]."""
        for block in self.blocks:
            hidden = block(hidden)
        s2 = self.window * self.window
        return self.expand(hidden.unflatten(-1, (s2, hidden.shape[-1] // s2)))
