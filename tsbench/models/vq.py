"""VQ image tokenizer with LlamaGen's exact architecture and state-dict key names.

LlamaGen's ``tokenizer/tokenizer_image/vq_model.py`` (a taming-transformers style conv autoencoder with an
L2-normalised codebook) is re-implemented here so that the released ``vq_ds16_t2i.pt`` loads strictly:
every module keeps its LlamaGen attribute name and registration order. Only inference is covered
(encode to codes, decode codes to pixels); the training losses, discriminator and LPIPS are left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tsbench.config.registry import unknown_name
from tsbench.config.suite import FieldError, option
from tsbench.models.checkpoint import load_strict, read_tensors, unwrap_state_dict
from tsbench.models.cost import VQDecode

# LlamaGen keeps a rolling window of the last 65536 code ids as a persistent buffer for training
# statistics; it is useless for inference but is in the checkpoint, so a strict load needs it.
CODEBOOK_USAGE_WINDOW = 65536


def vq_downsample(channel_multiplier: tuple[int, ...] | list[int]) -> int:
    """Pixels per token side of a VQ whose encoder halves the image between consecutive channel levels
    (LlamaGen's, Janus's and Emu3's alike)."""
    return 2 ** (len(channel_multiplier) - 1)


@dataclass(frozen=True)
class VQConfig:
    """Shape of a VQ tokenizer. ``num_res_blocks`` counts encoder blocks per level; the decoder has one
    more per level, as in LlamaGen. ``norm_groups`` stays 32 (LlamaGen) except in the tiny test presets,
    whose 16-channel levels cannot be split into 32 groups; it changes no state-dict key."""

    codebook_size: int
    codebook_embed_dim: int
    z_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    dropout: float = 0.0
    norm_groups: int = 32

    @property
    def downsample(self) -> int:
        """Pixels per token side: one stride-2 step between consecutive levels."""
        return vq_downsample(self.ch_mult)


VQ_PRESETS: dict[str, VQConfig] = {
    # LlamaGen VQ-16 (vq_ds16_t2i.pt, vq_ds16_c2i.pt): 344 keys, 71.9M parameters
    "vq16": VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=256, ch=128,
                     ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2),
    # LlamaGen VQ-8 (vq_ds8_c2i.pt), used for the paper's 8x-downsampling comparison. The Token-Shuffle
    # paper's own 8x tokenizer has 8192 codes; its weights are not public, so LlamaGen's 16384 is kept.
    "vq8": VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=256, ch=128,
                    ch_mult=(1, 2, 2, 4), num_res_blocks=2),
    # Same key layout as above at a fraction of the cost, for CPU tests and smoke runs.
    "vq16-tiny": VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=32, ch=16,
                          ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1, norm_groups=8),
    "vq8-tiny": VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=32, ch=16,
                         ch_mult=(1, 2, 2, 4), num_res_blocks=1, norm_groups=8),
    # ShapesBench's tokenizer (trained by ``tsbench shapes train``): 64x64 flat-colour scenes -> 8x8 codes.
    "vq8-shapes": VQConfig(codebook_size=512, codebook_embed_dim=8, z_channels=64, ch=16,
                           ch_mult=(1, 2, 4, 4), num_res_blocks=1, norm_groups=8),
}


def get_vq_config(name: str) -> VQConfig:
    """Look up a preset by name, listing the known ones when the name is wrong."""
    try:
        return VQ_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown VQ preset {name!r}; known presets: {', '.join(sorted(VQ_PRESETS))}") from None


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block; a 1x1 ``nin_shortcut`` appears only where the width changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with 1x1-conv projections (LlamaGen names)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        # [B, C, H, W] -> [B, 1, HW, C]: one head of width C, default 1/sqrt(C) scale as in LlamaGen
        q, k, v = (proj(normed).reshape(b, 1, c, h * w).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding only right and bottom, which PyTorch's conv padding cannot express."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder: ``res`` blocks, ``attn`` blocks (lowest resolution
    only, one after each res block) and an optional ``downsample``/``upsample``, named as in LlamaGen."""

    def __init__(self, res: list[ResnetBlock], attn: list[AttnBlock]) -> None:
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h


def middle(channels: int, cfg: VQConfig) -> nn.ModuleList:
    """ResNet, attention, ResNet at the lowest resolution (``mid.{0,1,2}``)."""
    return nn.ModuleList([
        ResnetBlock(channels, channels, cfg.dropout, cfg.norm_groups),
        AttnBlock(channels, cfg.norm_groups),
        ResnetBlock(channels, channels, cfg.dropout, cfg.norm_groups),
    ])


class Encoder(nn.Module):
    """Pixels [B, 3, H, W] -> latents [B, z_channels, H/ds, W/ds]; ``conv_blocks.0`` is full resolution."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        last = len(cfg.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, kernel_size=3, padding=1)
        self.conv_blocks = nn.ModuleList()
        width = cfg.ch
        for level, mult in enumerate(cfg.ch_mult):
            out = cfg.ch * mult
            res = [ResnetBlock(width if i == 0 else out, out, cfg.dropout, cfg.norm_groups)
                   for i in range(cfg.num_res_blocks)]
            attn = [AttnBlock(out, cfg.norm_groups) for _ in res] if level == last else []
            block = Level(res, attn)
            if level != last:
                block.downsample = Downsample(out)
            self.conv_blocks.append(block)
            width = out
        self.mid = middle(width, cfg)
        self.norm_out = group_norm(width, cfg.norm_groups)
        self.conv_out = nn.Conv2d(width, cfg.z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.conv_blocks:
            h = block(h)
            if hasattr(block, "downsample"):
                h = block.downsample(h)
        for layer in self.mid:
            h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents -> pixels; built from the lowest resolution up, so ``conv_blocks.0`` is the coarsest level
    (the reverse of the encoder's numbering), with one more res block per level than the encoder."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        width = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, width, kernel_size=3, padding=1)
        self.mid = middle(width, cfg)
        self.conv_blocks = nn.ModuleList()
        for level in reversed(range(len(cfg.ch_mult))):
            out = cfg.ch * cfg.ch_mult[level]
            res = [ResnetBlock(width if i == 0 else out, out, cfg.dropout, cfg.norm_groups)
                   for i in range(cfg.num_res_blocks + 1)]
            attn = [AttnBlock(out, cfg.norm_groups) for _ in res] if level == len(cfg.ch_mult) - 1 else []
            block = Level(res, attn)
            if level != 0:
                block.upsample = Upsample(out)
            self.conv_blocks.append(block)
            width = out
        self.norm_out = group_norm(width, cfg.norm_groups)
        self.conv_out = nn.Conv2d(width, 3, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for layer in self.mid:
            h = layer(h)
        for block in self.conv_blocks:
            h = block(h)
            if hasattr(block, "upsample"):
                h = block.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Codebook with cosine-distance lookup: latents and codes are both L2-normalised before use, so the
    raw embedding scale in a checkpoint never matters."""

    def __init__(self, codebook_size: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, embed_dim)
        self.register_buffer("codebook_used", torch.zeros(CODEBOOK_USAGE_WINDOW))

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Code ids [B, h, w] of latents z [B, C, h, w], by squared L2 distance as LlamaGen computes it."""
        b, c, h, w = z.shape
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, c), p=2, dim=-1)
        codes = self.codebook()
        dist = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        return dist.argmin(dim=1).reshape(b, h, w)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Normalised codes [B, C, h, w] for ids [B, h, w] (raster order)."""
        return self.codebook()[ids].permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    """LlamaGen VQ tokenizer: images in [-1, 1] <-> code ids on a (H/ds, W/ds) grid."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.codebook_embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, kernel_size=1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> code ids [B, H/ds, W/ds] (int64)."""
        return self.quantize.nearest(self.quant_conv(self.encoder(images)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code ids [B, h, w] -> images [B, 3, h*ds, w*ds], roughly in [-1, 1] (not clamped)."""
        return self.decoder(self.post_quant_conv(self.quantize.lookup(codes)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the codebook, i.e. what the tokenizer preserves of an image."""
        return self.decode_codes(self.encode(images))


@dataclass(frozen=True)
class VQOptions:
    """Options of the adapters that use this tokenizer (token-shuffle, llamagen); theirs extend these."""

    vq: str | None = option("VQ tokenizer preset overriding the model's (tsbench.models.vq)", default=None)
    vq_checkpoint: str | None = option("VQ tokenizer weights, e.g. LlamaGen's vq_ds16_t2i.pt; null keeps the "
                                       "checkpoint's own or random ones", default=None, tensor_file=True)
    allow_pickled_args: bool = option("accept checkpoints that also pickle argparse args (LlamaGen training "
                                      "files; only argparse.Namespace is allowed; warns)", default=False)

    def __post_init__(self) -> None:
        if self.vq is not None and self.vq not in VQ_PRESETS:  # a typo fails when the suite loads
            raise FieldError("vq", unknown_name("VQ preset", self.vq, VQ_PRESETS))


def decode_cost(config: VQConfig) -> VQDecode:
    """The decoder's entry in an adapter's cost model: built and run on the meta device when counted."""

    def run_on_meta(grid: tuple[int, int]) -> torch.Tensor:
        with torch.device("meta"):
            vq = VQModel(config)
        return vq.decode_codes(torch.zeros(1, *grid, dtype=torch.long, device="meta"))

    return VQDecode(key=config, downsample=config.downsample, run_on_meta=run_on_meta)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], with the official sampler's rounding
    (``clamp(127.5 * x + 128, 0, 255)`` then truncation, ``sample_t2i_ddp.py``)."""
    pixels = torch.clamp(127.5 * images.detach().float() + 128.0, 0, 255)
    return pixels.permute(0, 2, 3, 1).to("cpu", dtype=torch.uint8).numpy()


def load_vq_state_dict(model: VQModel, path: str | Path, *, allow_pickled_args: bool = False) -> None:
    """Load strictly, naming every missing, unexpected or mis-shaped key. The weights come from
    ``"model"`` (what the official samplers load), else ``"ema"``, else the top level."""
    state = unwrap_state_dict(read_tensors(path, allow_pickled_args=allow_pickled_args), keys=("model", "ema"))
    load_strict(model, state, source=str(path))
