"""Emu3 text-to-image (Wang et al., arXiv 2409.18869) through transformers' ``Emu3ForConditionalGeneration``.

Emu3 writes an image as text: ``[bos] {prompt} <|image start|>{h}*{w}<|image token|>`` and then ``h`` rows
of ``w`` visual tokens, each row closed by an end-of-line token (``<|extra_200|>``); transformers' image
generation enforces that layout with a prefix constraint (only visual tokens inside a row, the
end-of-line token at its end). tsbench's engine samples the visual tokens; this adapter feeds the
forced end-of-line token together with the last code of each row (one forward over two positions), so
the sequence and the KV cache are Emu3's, and the cost model counts those extra positions
(``row_end_tokens``). Logits are taken over the visual-token block of the LM head only: the prefix
constraint gives every other token probability 0, and guidance is unchanged by that (transformers applies
it to log-softmaxed logits; the normalisers shift a row by a constant).

The unconditional row is ``negative_prompt`` (empty by default) in the same layout, as transformers runs
it with ``negative_prompt_ids``. The VQ decode is the model's own MoVQGAN decoder (it decodes
``temporal_downsample_factor`` frames and keeps the first, as transformers' ``decode`` does).

Presets: ``emu3-gen`` (8B shapes; ``device: meta`` for FLOPs without weights) and ``tiny`` (random, CPU
tests). Window 1 only. Without a checkpoint prompts are byte-tokenized (fine for cost only).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tsbench.config.suite import option
from tsbench.models import hf
from tsbench.models.base import (Adapter, ARImageModel, Conditioning, DecodeState, Geometry, count_parameters,
                                 left_pad, make_options)
from tsbench.models.checkpoint import CheckpointError, files_digest
from tsbench.models.cost import CostModel, Transformer, VQDecode
from tsbench.models.shuffle import check_grid
from tsbench.models.tokenizer import ByteTokenizer, HFTokenizer
from tsbench.models.vq import vq_downsample

DOWNLOAD_HINT = ("the transformers layout, e.g. `huggingface-cli download BAAI/Emu3-Gen-hf --local-dir DIR`; "
                 "BAAI/Emu3-Gen itself is the original remote-code layout")
# the special tokens, as the vocabulary map of a checkpoint names them
SPECIAL = {"boi": "<|image start|>", "eoi": "<|image end|>", "wrapper": "<|image token|>", "eol": "<|extra_200|>",
           "eof": "<|extra_201|>"}


def visual_token(code: int) -> str:
    return f"<|visual token {code:06d}|>"


@dataclass(frozen=True)
class Emu3Preset:
    """The shapes and special ids of one Emu3 configuration."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    bos: int
    eos: int
    pad: int
    special: tuple[tuple[str, int], ...]  # SPECIAL names -> ids
    visual_offset: int  # id of visual token 0; the codebook's tokens follow in order
    codebook: int = 32768
    code_dim: int = 4
    vq_channels: int = 256
    vq_mult: tuple[int, ...] = (1, 2, 2, 4)
    vq_res_blocks: int = 2
    max_positions: int = 9216
    rms_eps: float = 1e-5

    def vocabulary_map(self) -> dict[str, int]:
        return {**{SPECIAL[k]: v for k, v in self.special},
                **{visual_token(c): self.visual_offset + c for c in range(self.codebook)}}


# Emu3-Gen: the 8B Emu3 shapes of BAAI/Emu3-Chat's config.json (4096 wide, 32 layers, 32 heads with 8 KV
# heads, SwiGLU 14336, vocabulary 184622) with Emu3-Gen's image area 518400 (720^2, a 90 x 90 grid) and
# 9216 positions; the MoVQGAN of BAAI/Emu3-VisionTokenizer (32768 codes of width 4, 8x spatial and 4x
# temporal downsampling). Special ids from the same config (bos 151849, eos 151850, pad 151643, image
# start/end/token 151852/151853/151851, end-of-line/frame 151846/151847); the visual tokens are taken as
# the contiguous block after them (only the block's size enters the cost model).
EMU3_PRESETS: dict[str, Emu3Preset] = {
    "emu3-gen": Emu3Preset(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=184622, bos=151849,
                           eos=151850, pad=151643, visual_offset=151854,
                           special=(("eol", 151846), ("eof", 151847), ("wrapper", 151851), ("boi", 151852),
                                    ("eoi", 151853))),
    # bytes 0..255 are text ids; a 4 x 4 token grid at 32^2
    "tiny": Emu3Preset(hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, vocab=330, bos=256, eos=257, pad=258,
                       special=(("eol", 259), ("eof", 260), ("wrapper", 261), ("boi", 262), ("eoi", 263)),
                       visual_offset=265, codebook=64, vq_channels=32, vq_res_blocks=1,
                       max_positions=512),
}


def emu3_config(preset: Emu3Preset) -> Any:
    """transformers' ``Emu3Config`` of a preset (the VQ's attention width is its deepest channel count)."""
    t = hf.transformers_module("emu3")
    vq = dict(codebook_size=preset.codebook, embed_dim=preset.code_dim, latent_channels=preset.code_dim,
              base_channels=preset.vq_channels, channel_multiplier=list(preset.vq_mult),
              num_res_blocks=preset.vq_res_blocks, hidden_size=preset.vq_channels * preset.vq_mult[-1])
    text = dict(vocab_size=preset.vocab, hidden_size=preset.hidden, intermediate_size=preset.ffn,
                num_hidden_layers=preset.layers, num_attention_heads=preset.heads, num_key_value_heads=preset.kv_heads,
                max_position_embeddings=preset.max_positions, rms_norm_eps=preset.rms_eps, bos_token_id=preset.bos,
                eos_token_id=preset.eos, pad_token_id=preset.pad)
    return t.Emu3Config(vq_config=vq, text_config=text, vocabulary_map=preset.vocabulary_map())


@dataclass(frozen=True)
class Emu3Ids:
    bos: int
    pad: int
    boi: int
    wrapper: int
    eol: int


class VisualHead(nn.Module):
    """The LM head restricted to the visual-token rows (a view when they are contiguous). It holds the
    head without registering it, so parameters are not counted twice and counters see the head's matmul
    under this module's name."""

    def __init__(self, lm_head: nn.Linear, visual_ids: torch.Tensor) -> None:
        super().__init__()
        object.__setattr__(self, "lm_head", lm_head)
        lo = int(visual_ids[0])
        self.block = (lo, lo + len(visual_ids)) if torch.equal(visual_ids, torch.arange(lo, lo + len(visual_ids))) \
            else None
        self.register_buffer("visual_ids", visual_ids, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.lm_head.weight
        rows = weight[self.block[0]:self.block[1]] if self.block else weight.index_select(0, self.visual_ids)
        return F.linear(hidden, rows)


class Emu3T2I(ARImageModel):
    """A transformers Emu3 model driven by tsbench's engine (module tree: ``hf`` and ``visual_head``)."""

    window = 1

    def __init__(self, model: nn.Module, ids: Emu3Ids, tokenizer: Any, options: "Emu3Options", preset: str) -> None:
        super().__init__()
        self.hf, self.ids, self.tokenizer, self.options, self.preset = model, ids, tokenizer, options, preset
        self.codebook_size = model.config.vq_config.codebook_size
        img2bpe = model.model.vocabulary_mapping.img2bpe
        missing = [c for c in range(self.codebook_size) if c not in img2bpe]
        if missing:
            raise CheckpointError(f"the vocabulary map has no {visual_token(missing[0])} ({len(missing)} codes missing)")
        self.visual_head = VisualHead(model.lm_head, torch.tensor([img2bpe[c] for c in range(self.codebook_size)]))

    @property
    def lm(self) -> nn.Module:
        return self.hf.model.text_model

    @property
    def downsample(self) -> int:
        return self.hf.model.vqmodel.spatial_scale_factor

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.model.vqmodel.decode(codes)

    def condition(self, prompts: list[str], cfg: bool, grid: tuple[int, int] | None = None) -> Conditioning:
        """``[bos] prompt <|image start|>h*w<|image token|>``; the unconditional rows hold the negative prompt."""
        if grid is None:
            raise ValueError("Emu3's prompt states the image size: condition() needs the token grid")
        ids, size = self.ids, self.tokenizer.encode(f"{grid[0]}*{grid[1]}")

        def row(text: str) -> list[int]:
            return [ids.bos, *self.tokenizer.encode(text), ids.boi, *size, ids.wrapper]

        rows = [row(self.options.prompt_template.format(prompt=p)) for p in prompts]
        if cfg:
            rows += [row(self.options.negative_prompt)] * len(prompts)
        tokens, mask = left_pad(rows, ids.pad, self.hf.lm_head.weight.device)
        return Conditioning(mask=mask, tokens=tokens)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden [rows, q, d] -> float32 logits of the next code [rows, 1, codebook] (last position)."""
        return self.visual_head(hidden[:, -1:]).float()

    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        check_grid(grid, 1)
        state, hidden = hf.prefill(self.lm, self.lm.embed_tokens(cond.tokens), cond.mask, grid)
        return state, self._logits(hidden)

    def step(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        """Feed one code; after the last code of a row also its end-of-line token (two positions)."""
        tokens = self.visual_head.visual_ids[codes]
        if (state.steps_done + 1) % state.grid[1] == 0:
            tokens = torch.cat([tokens, torch.full_like(tokens, self.ids.eol)], dim=1)
        hidden = hf.extend(self.lm, state, self.lm.embed_tokens(tokens))
        state.steps_done += 1
        return self._logits(hidden)

    def describe(self) -> dict[str, Any]:
        return {"adapter": "emu3", "preset": self.preset, "window": 1,
                "params": count_parameters(self, exclude=("hf.model.vqmodel.",)), "weights": self.weights,
                "tokenizer": getattr(self.tokenizer, "name", "bytes"), "negative_prompt": self.options.negative_prompt}

    def cost_model(self) -> CostModel:
        text, vq = self.hf.config.text_config, self.hf.config.vq_config
        d, heads = text.hidden_size, text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or d // heads
        lm = "hf.model.text_model"

        def run_on_meta(grid: tuple[int, int]) -> torch.Tensor:
            t = hf.transformers_module("emu3")
            with torch.device("meta"):
                vqmodel = t.Emu3VQVAE(vq)
            return vqmodel.decode(torch.zeros(1, *grid, dtype=torch.long, device="meta"))

        return CostModel(
            backbone=Transformer(d, text.num_hidden_layers, heads, text.num_key_value_heads, head_dim,
                                 text.intermediate_size),
            vq=VQDecode(key=("emu3", vq.to_json_string()), downsample=self.downsample, run_on_meta=run_on_meta),
            head_flops_per_code=2 * d * self.codebook_size, row_end_tokens=1,
            modules={"attn_proj": (f"{lm}.layers.*.self_attn.*_proj",), "ffn": (f"{lm}.layers.*.mlp",),
                     "lm_head": ("visual_head",), "ignored": (f"{lm}.rotary_emb",)})


@dataclass(frozen=True)
class Emu3Options:
    """Settings of the emu3 adapter beyond the common model axes."""

    prompt_template: str = option("the prompt as the model sees it ({prompt} is the benchmark prompt)",
                                  default="{prompt}")
    negative_prompt: str = option("text of the unconditional (CFG) row; empty: unconditional", default="")


def _checkpoint_ids(model: nn.Module, path: Path) -> Emu3Ids:
    vocab, text = model.config.vocabulary_map or {}, model.config.text_config
    missing = [token for token in (SPECIAL["boi"], SPECIAL["wrapper"], SPECIAL["eol"]) if token not in vocab]
    if missing or text.bos_token_id is None:
        raise CheckpointError(f"{path}: config.json's vocabulary_map lacks {', '.join(missing) or 'bos_token_id'}")
    return Emu3Ids(bos=text.bos_token_id, pad=text.pad_token_id if text.pad_token_id is not None else text.eos_token_id,
                   boi=vocab[SPECIAL["boi"]], wrapper=vocab[SPECIAL["wrapper"]], eol=vocab[SPECIAL["eol"]])


def build_emu3(preset: str | None = None, checkpoint: str | None = None, window: int | None = None,
               device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               options: Emu3Options | dict | None = None, **option_kwargs: Any) -> Emu3T2I:
    """A preset with random weights (``device="meta"``: no storage, for FLOPs), or a local transformers
    checkpoint directory."""
    options = make_options(Emu3Options, options, adapter="emu3", **option_kwargs)
    if window not in (None, 1):
        raise ValueError(f"emu3 runs at window 1 only (its rows end in end-of-line tokens); got window {window}")
    t = hf.transformers_module("emu3")
    if checkpoint is None:
        name = preset or "emu3-gen"
        spec = hf.preset_spec("emu3", name, EMU3_PRESETS)
        model = hf.build_random(t.Emu3ForConditionalGeneration, emu3_config(spec), device)
        special = dict(spec.special)
        ids = Emu3Ids(spec.bos, spec.pad, special["boi"], special["wrapper"], special["eol"])
        tokenizer, weights = ByteTokenizer(), "random"
    else:
        path = Path(checkpoint)
        files = hf.checkpoint_files(path, "emu3", "emu3", DOWNLOAD_HINT)
        model = hf.load_pretrained(t.Emu3ForConditionalGeneration, path, dtype)
        name = hf.checkpoint_preset("emu3", preset, EMU3_PRESETS, model.config.text_config, path)
        ids, tokenizer, weights = _checkpoint_ids(model, path), HFTokenizer(str(path), local_files_only=True), \
            files_digest(files)
    wrapped = Emu3T2I(model.eval(), ids, tokenizer, options, name)
    wrapped.weights = weights
    return wrapped.to(device=device, dtype=dtype).eval()


def emu3_geometry(preset: str | None, checkpoint: str | None, window: int | None, options: Emu3Options) -> Geometry:
    """Window 1 only; the VQ of the preset, or of the checkpoint's config.json."""
    if checkpoint is None:
        mult = hf.preset_spec("emu3", preset or "emu3-gen", EMU3_PRESETS).vq_mult
    else:
        config_class = hf.transformers_module("emu3").Emu3Config
        mult = hf.checkpoint_config(checkpoint, "emu3", "emu3", DOWNLOAD_HINT, config_class).vq_config.channel_multiplier
    return Geometry((1,), window or 1, vq_downsample(mult))


ADAPTER = Adapter(build=build_emu3, presets=lambda: list(EMU3_PRESETS), default_preset="emu3-gen", options=Emu3Options,
                  geometry=emu3_geometry)
