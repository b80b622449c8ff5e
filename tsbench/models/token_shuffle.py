"""The reference Token-Shuffle model: a Llama-style decoder over one text+image sequence.

Sequence: ``[bos] text... [soi] window_0 window_1 ...``. Each visual window of s x s VQ codes enters
as one fused token (:class:`ShuffleIn`) and each AR step predicts the s^2 codes of the next window
(:class:`ShuffleOut` + the shared LM head). s = 1 builds no shuffle modules: a plain AR model.
Unified vocabulary: text ids [0, text_vocab), then <soi>, <eoi>, then the image codebook.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tsbench.config.registry import suggest
from tsbench.config.suite import option
from tsbench.models.base import (Adapter, ARImageModel, Conditioning, DecodeState, Geometry, count_parameters,
                                 left_pad, make_options)
from tsbench.models.checkpoint import (CheckpointError, check_tensor_file, file_digest, load_strict, read_tensors,
                                      unwrap_state_dict)
from tsbench.models.cost import CostModel, Shuffle, Transformer
from tsbench.models.layers import KVCache, RMSNorm, SwiGLU, apply_rope, attention_mask, rope_rotation
from tsbench.models.shuffle import WINDOWS, ShuffleIn, ShuffleOut, ar_steps, check_grid, check_window
from tsbench.models.tokenizer import get_tokenizer
from tsbench.models.vq import VQModel, VQOptions, decode_cost, get_vq_config


@dataclass(frozen=True)
class TokenShuffleConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    text_vocab_size: int
    codebook_size: int = 16384
    vq: str = "vq16"
    window: int = 1
    n_mlp_blocks: int = 2
    shuffle_hidden: int | None = None  # residual MLP width; None = dim (unpublished in the paper)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_text_tokens: int = 128
    tokenizer: str = "bytes"
    vocabulary: tuple[str, ...] = ()  # the closed word list of tokenizer "words"; empty otherwise

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def soi_id(self) -> int:
        return self.text_vocab_size

    @property
    def image_offset(self) -> int:
        return self.text_vocab_size + 2

    @property
    def vocab_size(self) -> int:
        return self.image_offset + self.codebook_size


# One table of presets. ts-2.7b: width 3072 and 20 layers are the secondary sources' shape; 24 heads
# give head_dim 128, the Llama standard at this width. The ffn width is Llama's 8/3 d rounded to 256.
TS_PRESETS: dict[str, TokenShuffleConfig] = {
    "tiny": TokenShuffleConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=128,
                               text_vocab_size=257, codebook_size=1024, vq="vq16-tiny", max_text_tokens=64),
    "small": TokenShuffleConfig(dim=384, n_layers=8, n_heads=6, n_kv_heads=6, ffn_hidden=1024,
                                text_vocab_size=257, codebook_size=16384, vq="vq16-tiny"),
    "ts-2.7b": TokenShuffleConfig(dim=3072, n_layers=20, n_heads=24, n_kv_heads=24, ffn_hidden=8192,
                                  text_vocab_size=32000, codebook_size=16384, vq="vq16"),
    "ts-7b": TokenShuffleConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_hidden=11008,
                                text_vocab_size=32000, codebook_size=16384, vq="vq16"),
}


# Presets with trained weights shipped in the package (``tsbench shapes train`` made them): a directory
# ``trained/<name>-s<window>/`` per model, so ``preset=shapes`` follows a swept window.
TRAINED_DIR = Path(__file__).with_name("trained")


def trained_checkpoint(preset: str, window: int) -> Path | None:
    """The shipped checkpoint for ``preset`` (``shapes``: at ``window``; ``shapes-s2``: that one)."""
    for name in (f"{preset}-s{window}", preset):
        if (TRAINED_DIR / name / "config.json").is_file():
            return TRAINED_DIR / name
    return None


def trained_presets() -> list[str]:
    dirs = sorted(p.name for p in TRAINED_DIR.glob("*-s*") if (p / "config.json").is_file())
    return sorted({d.rsplit("-s", 1)[0] for d in dirs}) + dirs


class Attention(nn.Module):
    def __init__(self, cfg: TokenShuffleConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        # one fused projection (rows: Q, then K, then V), as LlamaGen stores it: a decode step streams
        # the weights in one matrix-vector product instead of three
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache, layer: int,
                mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        heads = self.wqkv(x).view(b, t, -1, self.head_dim)
        qk = apply_rope(heads[:, :, :self.n_heads + self.n_kv_heads], rope)  # Q and K heads in one rotation
        q, k = qk.split((self.n_heads, self.n_kv_heads), dim=2)
        v = heads[:, :, self.n_heads + self.n_kv_heads:]
        out = cache.attend(layer, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, cfg: TokenShuffleConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = SwiGLU(cfg.dim, cfg.ffn_hidden)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache, layer: int,
                mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope, cache, layer, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class TokenShuffleLM(ARImageModel):
    def __init__(self, cfg: TokenShuffleConfig, preset: str | None = None) -> None:
        super().__init__()
        check_window(cfg.window)
        self.config, self.preset = cfg, preset
        self.window, self.codebook_size = cfg.window, cfg.codebook_size
        self.tokenizer = get_tokenizer(cfg.tokenizer, cfg.vocabulary)
        if self.tokenizer.vocab_size > cfg.text_vocab_size:
            raise ValueError(f"tokenizer {cfg.tokenizer!r} has {self.tokenizer.vocab_size} ids but the model's "
                             f"text vocabulary has {cfg.text_vocab_size}")
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.window > 1:
            hidden = cfg.shuffle_hidden or cfg.dim
            self.shuffle_in = ShuffleIn(cfg.dim, cfg.window, cfg.n_mlp_blocks, hidden)
            self.shuffle_out = ShuffleOut(cfg.dim, cfg.window, cfg.n_mlp_blocks, hidden)
        self.vq = VQModel(get_vq_config(cfg.vq))
        self.vq_weights = "random"
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    # ---- conditioning -------------------------------------------------------------------------
    def condition(self, prompts: list[str], cfg: bool, grid: tuple[int, int] | None = None) -> Conditioning:
        """``[bos] text [soi]`` per prompt; the unconditional rows drop the text: ``[bos] [soi]``."""
        bos, soi, budget = self.tokenizer.bos_id, self.config.soi_id, self.config.max_text_tokens
        texts = [self.tokenizer.encode(p) for p in prompts]
        rows = [[bos, *text[:budget], soi] for text in texts]
        if cfg:
            rows += [[bos, soi]] * len(prompts)
        tokens, mask = left_pad(rows, 0, self.tok_embeddings.weight.device)
        return Conditioning(mask=mask, tokens=tokens, truncated=sum(len(text) > budget for text in texts),
                            text_budget=budget)

    # ---- decoding -----------------------------------------------------------------------------
    def _rotations(self, positions: torch.Tensor) -> torch.Tensor:
        """Rotary embeddings [B, T, 1, head_dim/2] of ``positions`` [B, T]."""
        return rope_rotation(self.config.head_dim, positions, self.config.rope_theta)

    def _transformer(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The blocks over x [rows, t, d] with rotations ``rope`` [rows, t, 1, head_dim/2]; writes the cache,
        never advances it."""
        mask = attention_mask(cache, x.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, cache, i, mask)
        return self.norm(x)

    def _window_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [rows, n, d] -> float32 logits [rows, n, s^2, codebook] of the next windows."""
        h = self.shuffle_out(hidden) if self.window > 1 else hidden[:, :, None]
        return self.output(h)[..., self.config.image_offset:].float()

    def _embed_windows(self, codes: torch.Tensor) -> torch.Tensor:
        """Window codes [rows, n, s^2] -> transformer inputs [rows, n, d]."""
        emb = self.tok_embeddings(codes + self.config.image_offset)
        return self.shuffle_in(emb) if self.window > 1 else emb[:, :, 0]

    def _prefix(self, cond: Conditioning, image_positions: int, store: bool = True) -> tuple[KVCache, torch.Tensor]:
        """A cache sized for the prompt plus ``image_positions`` fed windows (or a storage-free one for a
        single full pass), and the prompt positions."""
        cfg, param = self.config, self.tok_embeddings.weight
        cache = KVCache.allocate(cfg.n_layers, cond.rows, cfg.n_kv_heads, cond.length + image_positions,
                                 cfg.head_dim, param.device, param.dtype) if store else KVCache.single_pass()
        has_padding = cond.mask.device.type != "meta" and not bool(cond.mask.all())
        if has_padding:  # left padding: keys of padded slots stay masked for the whole image
            pad = torch.ones(cond.rows, image_positions, dtype=torch.bool, device=cond.mask.device)
            cache.key_mask = torch.cat([cond.mask, pad], dim=1)
        return cache, (cond.mask.long().cumsum(1) - 1).clamp(min=0)

    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        check_grid(grid, self.window)
        steps = ar_steps(grid, self.window)
        cache, positions = self._prefix(cond, steps - 1)  # the last window is never fed back
        hidden = self._transformer(self.tok_embeddings(cond.tokens), self._rotations(positions), cache)
        cache.advance(cond.length)
        # the rotations of every position a decode step can reach, once per image; a step looks its rows' up
        rope = self._rotations(torch.arange(cond.length + steps, device=positions.device)[None])[0]
        state = DecodeState(cache=cache, grid=grid, positions=positions[:, -1] + 1, extra={"rope": rope})
        return state, self._window_logits(hidden[:, -1:])[:, 0]

    def decode(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        rope = state.extra["rope"][state.positions][:, None]
        hidden = self._transformer(self._embed_windows(codes[:, None]), rope, state.cache)
        return self._window_logits(hidden)[:, 0]

    def forward(self, cond: Conditioning, windows: torch.Tensor) -> torch.Tensor:
        """Teacher forcing in one pass, no incremental cache: logits [rows, n + 1, s^2, codebook] for
        windows 0..n given the prompt and the n windows ``windows`` [rows, n, s^2] (training, tests)."""
        n = windows.shape[1]
        cache, positions = self._prefix(cond, n, store=False)
        image_positions = positions[:, -1:] + 1 + torch.arange(n, device=positions.device)
        x = torch.cat([self.tok_embeddings(cond.tokens), self._embed_windows(windows)], dim=1)
        hidden = self._transformer(x, self._rotations(torch.cat([positions, image_positions], dim=1)), cache)
        return self._window_logits(hidden[:, cond.length - 1:])

    def describe(self) -> dict[str, Any]:
        return {"adapter": "token-shuffle", "preset": self.preset, "window": self.window,
                "params": count_parameters(self, exclude=("vq.",)), "weights": self.weights,
                "vq": self.config.vq, "vq_weights": self.vq_weights, "tokenizer": self.config.tokenizer}

    def cost_model(self) -> CostModel:
        return cost_model(self.config)


def cost_model(cfg: TokenShuffleConfig) -> CostModel:
    """The analytic shapes of a config: logits over the whole unified vocabulary (the code slice is taken
    after the head), shuffle modules only at s > 1."""
    shuffle = Shuffle(cfg.dim, cfg.window, cfg.n_mlp_blocks, cfg.shuffle_hidden or cfg.dim) if cfg.window > 1 else None
    return CostModel(
        backbone=Transformer(cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_hidden),
        vq=decode_cost(get_vq_config(cfg.vq)), head_flops_per_code=2 * cfg.dim * cfg.vocab_size,
        window=cfg.window, shuffle=shuffle,
        modules={"attn_proj": ("layers.*.attention.wqkv", "layers.*.attention.wo"), "ffn": ("layers.*.feed_forward",),
                 "shuffle": ("shuffle_in", "shuffle_out"), "lm_head": ("output",)})


def preset_names() -> list[str]:
    """Random-weight presets, then the trained ones shipped in the package."""
    return [*TS_PRESETS, *trained_presets()]


# ---- checkpoints ------------------------------------------------------------------------------
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def save_checkpoint(model: TokenShuffleLM, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """A checkpoint is a directory: ``config.json`` + ``model.safetensors`` (VQ weights included), with
    floating-point tensors cast to ``dtype`` when given (fp16 keeps shipped weights small)."""
    from safetensors.torch import save

    from tsbench.io import atomic_write_bytes, atomic_write_text

    directory = Path(directory)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
    meta = {"adapter": "token-shuffle", "preset": model.preset, "config": asdict(model.config)}
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2))
    return directory


CHECKPOINT_LAYOUT = (f"a checkpoint directory holding {CONFIG_FILE} ({{\"adapter\": ..., \"preset\": ..., \"config\": "
                     f"{{TokenShuffleConfig fields}}}}) and {WEIGHTS_FILE} (or model.pt / model.bin), as "
                     "save_checkpoint and `tsbench shapes train` write it; or a single weights file")


def _read_config(path: Path) -> tuple[TokenShuffleConfig, str | None]:
    """``config.json`` -> (config, preset); a file that is not a JSON object or holds a missing, unknown or
    mistyped field is a CheckpointError naming the file, the field and CHECKPOINT_LAYOUT."""
    from tsbench.config.suite import ConfigError, build_dataclass

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); expected {CHECKPOINT_LAYOUT}", path) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("preset"), (str, type(None))):
        raise CheckpointError(f"{path}: expected a JSON object with a string 'preset'; expected {CHECKPOINT_LAYOUT}",
                              path)
    try:
        return build_dataclass(TokenShuffleConfig, meta.get("config"), str(path), path="config"), meta.get("preset")
    except ConfigError as err:
        raise CheckpointError(f"{err}; expected {CHECKPOINT_LAYOUT}", path) from None


def _checkpoint_files(path: Path) -> tuple[tuple[TokenShuffleConfig, str | None] | None, Path]:
    if path.is_dir():
        config = _read_config(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else None
        for name in (WEIGHTS_FILE, "model.pt", "model.bin", "pytorch_model.bin"):
            if (path / name).is_file():  # its header is probed too: an empty or damaged file fails at once
                return config, check_tensor_file(path / name, CHECKPOINT_LAYOUT)
        raise CheckpointError(f"{path}: no {WEIGHTS_FILE} (or model.pt / model.bin); expected {CHECKPOINT_LAYOUT}",
                              path)
    return None, path


@dataclass(frozen=True)
class TokenShuffleOptions(VQOptions):
    """Settings of the token-shuffle adapter beyond the common model axes."""

    tokenizer: str | None = option("text tokenizer: 'bytes' (default) or a Hugging Face tokenizer name or path",
                                   default=None)


def _resolve(preset: str | None, checkpoint: str | None, window: int | None,
             options: TokenShuffleOptions) -> tuple[TokenShuffleConfig, str, Path | None]:
    """The config a build uses (a checkpoint's config.json wins over the preset), the preset name and the
    weights file to load; reads config files only, never weights."""
    preset = preset or "small"
    if checkpoint is None and preset not in TS_PRESETS:
        checkpoint = trained_checkpoint(preset, window or 1)
    meta, weights_path = _checkpoint_files(Path(checkpoint)) if checkpoint else (None, None)
    if meta is not None:
        cfg, preset = meta[0], meta[1] or preset
        if window is not None and window != cfg.window:
            raise CheckpointError(f"{checkpoint}: trained with window {cfg.window}, asked for window {window}; "
                                  f"leave model.window unset to run the checkpoint's own", checkpoint)
    else:
        if preset not in TS_PRESETS:
            known = [*TS_PRESETS, *trained_presets()]
            raise ValueError(f"unknown token-shuffle preset {preset!r} at window {window or 1}."
                             f"{suggest(str(preset), known)} Known: {', '.join(known)}")
        cfg = replace(TS_PRESETS[preset], window=window or 1)
    cfg = replace(cfg, **{k: v for k, v in {"vq": options.vq, "tokenizer": options.tokenizer}.items() if v})
    return cfg, preset, weights_path


def build_token_shuffle(preset: str | None = "tiny", checkpoint: str | None = None, window: int | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        options: TokenShuffleOptions | dict | None = None, **option_kwargs: Any) -> TokenShuffleLM:
    """Build from a preset (random weights) or a checkpoint; the checkpoint's config wins over the preset.

    ``window`` None is the model's own: the checkpoint's, else 1. A window that contradicts the
    checkpoint is an error, so a row never reports a window the model does not run at.
    """
    options = make_options(TokenShuffleOptions, options, adapter="token-shuffle", **option_kwargs)
    cfg, preset, weights_path = _resolve(preset, checkpoint, window, options)
    meta_device = torch.device(device).type == "meta"
    with torch.device("meta" if meta_device else "cpu"):
        model = TokenShuffleLM(cfg, preset)
    if weights_path is not None:
        load_strict(model, unwrap_state_dict(read_tensors(weights_path, expected=CHECKPOINT_LAYOUT)), str(weights_path))
        model.weights = file_digest(weights_path)
        model.vq_weights = model.weights
    if options.vq_checkpoint:
        from tsbench.models.vq import load_vq_state_dict

        load_vq_state_dict(model.vq, options.vq_checkpoint, allow_pickled_args=options.allow_pickled_args)
        model.vq_weights = file_digest(options.vq_checkpoint)
    return model.to(device=device, dtype=dtype).eval()


def token_shuffle_geometry(preset: str | None, checkpoint: str | None, window: int | None,
                           options: TokenShuffleOptions) -> Geometry:
    """A random preset or a bare weights file runs at any shuffle window; a checkpoint directory at its
    config's; a trained preset at the windows it was trained at (``shapes``: one checkpoint per window)."""
    if checkpoint is None and (preset or "small") not in TS_PRESETS:
        trained = [path for w in WINDOWS if (path := trained_checkpoint(str(preset), w)) is not None]
        windows = tuple(sorted({_resolve(preset, str(path), None, options)[0].window for path in trained}))
    elif checkpoint is not None and _checkpoint_files(Path(checkpoint))[0] is not None:
        windows = (_resolve(preset, checkpoint, None, options)[0].window,)
    else:
        windows = WINDOWS
    cfg = _resolve(preset, checkpoint, window if window in windows else None, options)[0]
    return Geometry(windows, window or cfg.window, get_vq_config(cfg.vq).downsample)


ADAPTER = Adapter(build=build_token_shuffle, presets=preset_names, default_preset="small", options=TokenShuffleOptions,
                  geometry=token_shuffle_geometry, compiles=True)
