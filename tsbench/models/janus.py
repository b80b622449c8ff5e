"""Janus-Pro text-to-image (Chen et al., arXiv 2501.17811) through transformers' ``JanusForConditionalGeneration``.

tsbench's engine drives the model one step at a time, so every CFG schedule, ``cfg_interval``, top-k/top-p
and the seeded per-image sampling apply to Janus as to any adapter. What comes from Janus's own design:

* the prompt: ``[bos] <|User|>: {prompt}\\n\\n<|Assistant|>: <begin_of_image>`` (DeepSeek's SFT format with an
  empty system prompt, then the image-start tag; ``generation_inference.py`` in deepseek-ai/Janus);
* the unconditional rows: the same tokens with every one but BOS and BOI replaced by the pad token, so
  they keep the prompt's length (``generation_inference.py``; transformers' ``generate(generation_mode="image")``);
* the image-token path: generation embedding (one 8-wide vector per VQ code) -> generation aligner (MLP to
  the LM width) -> language model -> generation head (MLP to the 16384 codes); the text LM head is unused;
* the VQ decode with the model's own VQ-16 decoder (L2-normalised codebook entries), at any token grid.

With ``window`` s > 1 the reference Token-Shuffle modules (:mod:`tsbench.models.shuffle`) sit between the
aligner and the LM (s^2 codes fused into one token) and between the LM and the head (one hidden state split
back into s^2). They are new: with a checkpoint the row says ``weights: partial-random`` and measures cost.

Presets: ``janus-pro-1b`` and ``janus-pro-7b`` (shapes of the released configs; build them on ``device:
meta`` for FLOPs with no weights) and ``tiny`` (random weights, CPU tests). Without a checkpoint there is
no tokenizer: prompts are byte-tokenized (one position per UTF-8 byte), fine for cost, meaningless for
quality.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tsbench.config.suite import option
from tsbench.models import hf
from tsbench.models.base import (PARTIAL_RANDOM, Adapter, ARImageModel, Conditioning, DecodeState, Geometry,
                                 count_parameters, left_pad, make_options)
from tsbench.models.checkpoint import CheckpointError, files_digest
from tsbench.models.cost import CostModel, Shuffle, Transformer, VQDecode
from tsbench.models.shuffle import WINDOWS, ShuffleIn, ShuffleOut, check_grid, check_window
from tsbench.models.tokenizer import ByteTokenizer, HFTokenizer
from tsbench.models.vq import vq_downsample

DOWNLOAD_HINT = ("the transformers layout, e.g. `huggingface-cli download deepseek-community/Janus-Pro-7B "
                 "--local-dir DIR`; deepseek-ai/Janus-Pro-7B itself is the original multi_modality layout")


@dataclass(frozen=True)
class JanusPreset:
    """The shapes and special ids of one Janus configuration."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    bos: int
    eos: int
    pad: int
    boi: int
    image_token: int
    image_size: int = 384  # native resolution: the token grid is image_size / 16 on a side
    patch_size: int = 16
    codebook: int = 16384
    code_dim: int = 8
    vq_channels: int = 128
    vq_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    vq_res_blocks: int = 2
    vq_latent: int = 256
    vision_hidden: int = 1024  # the understanding encoder (SigLIP-L/16), unused for generation
    vision_layers: int = 24
    vision_heads: int = 16
    max_positions: int = 16384
    rms_eps: float = 1e-6


# Shapes of the released configs (deepseek-ai/Janus-Pro-{1B,7B} config.json, language_config; as carried by
# transformers' deepseek-community conversions): Llama backbones without GQA, head_dim 128, vocabulary
# 102400, VQ-16 with 16384 codes of width 8, 576 image tokens at 384^2. Special ids from the tokenizer and
# generation_config (bos 100000, eos 100001, pad 100015, <begin_of_image> 100016, image token 100581).
_RELEASED = dict(vocab=102400, bos=100000, eos=100001, pad=100015, boi=100016, image_token=100581)
JANUS_PRESETS: dict[str, JanusPreset] = {
    "janus-pro-1b": JanusPreset(hidden=2048, layers=24, heads=16, kv_heads=16, head_dim=128, ffn=5632, **_RELEASED),
    "janus-pro-7b": JanusPreset(hidden=4096, layers=30, heads=32, kv_heads=32, head_dim=128, ffn=11008, **_RELEASED),
    # bytes 0..255 are text ids; a 4 x 4 token grid at 64^2
    "tiny": JanusPreset(hidden=32, layers=2, heads=4, kv_heads=4, head_dim=8, ffn=64, vocab=272, bos=256, eos=257,
                        pad=258, boi=259, image_token=260, image_size=64, codebook=64, vq_channels=32, vq_res_blocks=1,
                        vq_latent=32, vision_hidden=16, vision_layers=1, vision_heads=2, max_positions=512),
}


def janus_config(preset: JanusPreset) -> Any:
    """transformers' ``JanusConfig`` of a preset. The generation aligner's and head's width
    (``vq_config.projection_dim``) is the LM width, and ``image_size / patch_size`` is the token grid side."""
    t = hf.transformers_module("janus")
    text = t.LlamaConfig(hidden_size=preset.hidden, intermediate_size=preset.ffn, num_hidden_layers=preset.layers,
                         num_attention_heads=preset.heads, num_key_value_heads=preset.kv_heads,
                         head_dim=preset.head_dim, vocab_size=preset.vocab, max_position_embeddings=preset.max_positions,
                         rms_norm_eps=preset.rms_eps, bos_token_id=preset.bos, eos_token_id=preset.eos,
                         pad_token_id=preset.pad)
    side = preset.image_size // preset.patch_size
    vision = t.JanusVisionConfig(hidden_size=preset.vision_hidden, num_hidden_layers=preset.vision_layers,
                                 num_attention_heads=preset.vision_heads, image_size=preset.image_size,
                                 patch_size=preset.patch_size, projection_dim=preset.hidden, num_image_tokens=side * side)
    vq = t.JanusVQVAEConfig(embed_dim=preset.code_dim, num_embeddings=preset.codebook, base_channels=preset.vq_channels,
                            channel_multiplier=list(preset.vq_mult), num_res_blocks=preset.vq_res_blocks,
                            latent_channels=preset.vq_latent, projection_dim=preset.hidden,
                            image_token_embed_dim=preset.hidden)
    return t.JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=preset.image_token)


def generation_config(preset: JanusPreset) -> Any:
    """The generation config transformers' image generation reads (it needs ``boi_token_id``)."""
    return hf.transformers_module("janus").GenerationConfig(
        bos_token_id=preset.bos, eos_token_id=preset.eos, pad_token_id=preset.pad,
        generation_kwargs={"boi_token_id": preset.boi}, guidance_scale=5.0)


@dataclass(frozen=True)
class JanusIds:
    bos: int
    pad: int
    boi: int


def _decode(vqmodel: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """Codes [B, h, w] -> images [B, 3, 16h, 16w] in [-1, 1]: ``JanusVQVAE.decode`` at any grid (it fixes
    the grid to the config's ``num_patches``)."""
    z = F.normalize(vqmodel.quantize.embedding(codes), p=2, dim=-1).permute(0, 3, 1, 2).contiguous()
    return vqmodel.decoder(vqmodel.post_quant_conv(z))


def _vq_cost(vq_config: Any) -> VQDecode:
    def run_on_meta(grid: tuple[int, int]) -> torch.Tensor:
        t = hf.transformers_module("janus")
        with torch.device("meta"):
            vqmodel = t.JanusVQVAE(vq_config)
        return _decode(vqmodel, torch.zeros(1, *grid, dtype=torch.long, device="meta"))

    return VQDecode(key=("janus", vq_config.to_json_string()), downsample=vq_downsample(vq_config.channel_multiplier),
                    run_on_meta=run_on_meta)


class JanusT2I(ARImageModel):
    """A transformers Janus model driven by tsbench's engine (module tree: ``hf``, plus the shuffle modules)."""

    def __init__(self, model: nn.Module, ids: JanusIds, tokenizer: Any, window: int, options: "JanusOptions",
                 preset: str) -> None:
        super().__init__()
        check_window(window)
        self.hf, self.ids, self.tokenizer, self.window, self.preset = model, ids, tokenizer, window, preset
        self.options = options
        text, vq = model.config.text_config, model.config.vq_config
        self.codebook_size = vq.num_embeddings
        self.backbone_weights: str | None = None
        if window > 1:
            hidden = options.shuffle_hidden or text.hidden_size
            self.shuffle_in = ShuffleIn(text.hidden_size, window, options.shuffle_blocks, hidden)
            self.shuffle_out = ShuffleOut(text.hidden_size, window, options.shuffle_blocks, hidden)

    @property
    def lm(self) -> nn.Module:
        return self.hf.model.language_model

    @property
    def downsample(self) -> int:
        return vq_downsample(self.hf.config.vq_config.channel_multiplier)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return _decode(self.hf.model.vqmodel, codes)

    # ---- conditioning -------------------------------------------------------------------------
    def condition(self, prompts: list[str], cfg: bool, grid: tuple[int, int] | None = None) -> Conditioning:
        """Janus's prompt rows; with CFG the unconditional rows pad out everything but BOS and BOI."""
        ids = self.ids
        rows = [[ids.bos, *self.tokenizer.encode(self.options.prompt_template.format(prompt=p)), ids.boi]
                for p in prompts]
        if cfg:
            rows += [[ids.bos, *[ids.pad] * (len(row) - 2), ids.boi] for row in rows]
        tokens, mask = left_pad(rows, ids.pad, self.hf.get_input_embeddings().weight.device)
        return Conditioning(mask=mask, tokens=tokens)

    # ---- decoding -----------------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM hidden states [rows, 1, d] -> float32 logits [rows, s^2, codebook] via the generation head."""
        h = self.shuffle_out(hidden) if self.window > 1 else hidden[:, :, None]
        return self.hf.model.generation_head(h)[:, 0].float()

    def _embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Window codes [rows, 1, s^2] -> LM inputs [rows, 1, d]: generation embedding and aligner per code."""
        x = self.hf.prepare_embeddings_for_image_generation(codes)
        return self.shuffle_in(x) if self.window > 1 else x[:, :, 0]

    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        check_grid(grid, self.window)
        state, hidden = hf.prefill(self.lm, self.hf.get_input_embeddings()(cond.tokens), cond.mask, grid)
        return state, self._logits(hidden[:, -1:])

    def step(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        hidden = hf.extend(self.lm, state, self._embed(codes[:, None]))
        state.steps_done += 1
        return self._logits(hidden)

    # ---- facts --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """``params`` counts the generation path (LM, generation embedding, aligner and head, shuffle
        modules), not the understanding encoder, its aligner or the VQ model."""
        facts = {"adapter": "janus", "preset": self.preset, "window": self.window,
                 "params": count_parameters(self, exclude=("hf.model.vision_model.", "hf.model.aligner.",
                                                           "hf.model.vqmodel.", "hf.lm_head.")),
                 "weights": self.weights, "tokenizer": getattr(self.tokenizer, "name", "bytes"),
                 "native_resolution": self.hf.config.vision_config.image_size}
        if self.backbone_weights is not None:
            facts["backbone_weights"] = self.backbone_weights
        return facts

    def cost_model(self) -> CostModel:
        text, vq = self.hf.config.text_config, self.hf.config.vq_config
        p = vq.projection_dim
        aligner = 2 * (vq.embed_dim * p + (vq.num_hidden_layers - 1) * p * p)
        head = 2 * (vq.image_token_embed_dim * p + p * vq.num_embeddings)
        d = text.hidden_size
        shuffle = None
        if self.window > 1:
            shuffle = Shuffle(d, self.window, self.options.shuffle_blocks, self.options.shuffle_hidden or d)
        lm = "hf.model.language_model"
        return CostModel(
            backbone=Transformer(d, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
                                 text.head_dim, text.intermediate_size),
            vq=_vq_cost(vq), head_flops_per_code=head, window=self.window, input_flops_per_code=aligner,
            shuffle=shuffle,
            modules={"attn_proj": (f"{lm}.layers.*.self_attn.*_proj",), "ffn": (f"{lm}.layers.*.mlp",),
                     "input_proj": ("hf.model.generation_aligner",), "lm_head": ("hf.model.generation_head",),
                     "shuffle": ("shuffle_in", "shuffle_out"), "ignored": (f"{lm}.rotary_emb",)})


@dataclass(frozen=True)
class JanusOptions:
    """Settings of the janus adapter beyond the common model axes."""

    prompt_template: str = option("the prompt as the model sees it ({prompt} is the benchmark prompt); "
                                  "default: DeepSeek's SFT format, empty system prompt",
                                  default="<|User|>: {prompt}\n\n<|Assistant|>:")
    shuffle_blocks: int = option("residual MLP blocks of each Token-Shuffle module (window > 1)", default=2)
    shuffle_hidden: int | None = option("their hidden width; null means the LM width", default=None)


def _checkpoint_ids(path: Path) -> JanusIds:
    """BOS, pad and <begin_of_image> as the checkpoint's generation_config.json names them."""
    config_file = path / "generation_config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: incomplete janus checkpoint, missing generation_config.json (it names "
                              f"the pad and <begin_of_image> tokens; {DOWNLOAD_HINT})")
    gen = json.loads(config_file.read_text())
    boi = (gen.get("generation_kwargs") or {}).get("boi_token_id")
    missing = [k for k, v in (("bos_token_id", gen.get("bos_token_id")), ("pad_token_id", gen.get("pad_token_id")),
                              ("generation_kwargs.boi_token_id", boi)) if v is None]
    if missing:
        raise CheckpointError(f"{config_file}: missing {', '.join(missing)}")
    return JanusIds(bos=gen["bos_token_id"], pad=gen["pad_token_id"], boi=boi)


def build_janus(preset: str | None = None, checkpoint: str | None = None, window: int | None = None,
                device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                options: JanusOptions | dict | None = None, **option_kwargs: Any) -> JanusT2I:
    """A preset with random weights (``device="meta"``: no storage, for FLOPs), or a local transformers
    checkpoint directory. The released models have no window of their own (s = 1); a window > 1 adds
    new Token-Shuffle modules."""
    options = make_options(JanusOptions, options, adapter="janus", **option_kwargs)
    t = hf.transformers_module("janus")
    window = window or 1
    if checkpoint is None:
        name = preset or "janus-pro-7b"
        spec = hf.preset_spec("janus", name, JANUS_PRESETS)
        model = hf.build_random(t.JanusForConditionalGeneration, janus_config(spec), device)
        ids, tokenizer, weights = JanusIds(spec.bos, spec.pad, spec.boi), ByteTokenizer(), "random"
    else:
        path = Path(checkpoint)
        files = hf.checkpoint_files(path, "janus", "janus", DOWNLOAD_HINT)
        ids = _checkpoint_ids(path)
        model = hf.load_pretrained(t.JanusForConditionalGeneration, path, dtype)
        name = hf.checkpoint_preset("janus", preset, JANUS_PRESETS, model.config.text_config, path)
        tokenizer, weights = HFTokenizer(str(path), local_files_only=True), files_digest(files)
    model.eval()
    with torch.device("meta" if torch.device(device).type == "meta" else "cpu"):
        wrapped = JanusT2I(model, ids, tokenizer, window, options, name)
    if checkpoint is not None and window > 1:
        wrapped.weights, wrapped.backbone_weights = PARTIAL_RANDOM, weights
    else:
        wrapped.weights = weights
    return wrapped.to(device=device, dtype=dtype).eval()


def janus_geometry(preset: str | None, checkpoint: str | None, window: int | None, options: JanusOptions) -> Geometry:
    """Any shuffle window (above 1 with new Token-Shuffle modules); the VQ of the preset, or of the
    checkpoint's config.json."""
    if checkpoint is None:
        mult = hf.preset_spec("janus", preset or "janus-pro-7b", JANUS_PRESETS).vq_mult
    else:
        config_class = hf.transformers_module("janus").JanusConfig
        mult = hf.checkpoint_config(checkpoint, "janus", "janus", DOWNLOAD_HINT, config_class).vq_config.channel_multiplier
    return Geometry(WINDOWS, window or 1, vq_downsample(mult))


ADAPTER = Adapter(build=build_janus, presets=lambda: list(JANUS_PRESETS), default_preset="janus-pro-7b",
                  options=JanusOptions, geometry=janus_geometry)
