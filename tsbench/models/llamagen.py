"""LlamaGen text-to-image (Sun et al., arXiv 2406.06525) and its Token-Shuffle variant.

The module tree and state-dict keys are LlamaGen's own (``autoregressive/models/gpt.py``), so the
released ``t2i_XL_stage1_256.pt`` / ``t2i_XL_stage2_512.pt`` load strictly, and the decode follows
``autoregressive/models/generate.py``. Facts and their sources: ``shared/reference/llamagen.md``.

Sequence layout: positions 0..T-1 hold the T = ``cls_token_num`` (120) projected caption embeddings,
position T + m holds the m-th fed-back window (one image token for ``llamagen``; s x s tokens fused by
:class:`ShuffleIn` for ``llamagen-ts``). Condition positions use LlamaGen's all-zero RoPE rows
(cos = sin = 0), which zero their queries and keys: every query scores 0 against every caption key.

Deliberate deviations from LlamaGen, none of which changes a logit beyond float rounding:

* the KV cache holds exactly T + M - 1 positions and attention reads only its filled prefix, where
  LlamaGen preallocates round8(T + N) positions and attends over all of them with a mask;
* prefill computes logits for the last caption position only (LlamaGen computes all T and keeps one);
* random weights (no checkpoint) draw the LM head like every other Linear, from N(0, 0.02) with a fixed
  seed; LlamaGen zero-initialises it for training, which would make every logit equal;
* captions are cleaned by :func:`clean_caption`, LlamaGen's rules without ftfy and BeautifulSoup.
"""
from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from tsbench.config.registry import unknown_name
from tsbench.config.suite import FieldError, option
from tsbench.models.base import (PARTIAL_RANDOM, Adapter, ARImageModel, Conditioning, DecodeState, Geometry,
                                 make_options)
from tsbench.models.checkpoint import CheckpointError, file_digest, load_strict, read_tensors, unwrap_state_dict
from tsbench.models.cost import CostModel, Shuffle, TextEncoder, Transformer
from tsbench.models.layers import KVCache, RMSNorm, SwiGLU, apply_rope, attend, attention_mask
from tsbench.models.shuffle import WINDOWS, ShuffleIn, ShuffleOut, ar_steps, check_grid, check_window
from tsbench.models.vq import VQOptions, decode_cost, get_vq_config

# sample_t2i.py / sample_t2i_ddp.py command-line defaults, which suites/llamagen.yaml sets as its workload (the
# engine samples with a suite's workload; the adapter never samples)
LLAMAGEN_SAMPLING_DEFAULTS: dict[str, float] = {"cfg_scale": 7.5, "top_k": 1000, "top_p": 1.0, "temperature": 1.0}


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


# The text encoder whose features the released model reads: google/flan-t5-xl's encoder (config.json:
# d_model 2048, 24 layers, 32 heads of d_kv 64, gated-GELU d_ff 5120). Its pass is part of LlamaGen's cost.
FLAN_T5_XL = Transformer(dim=2048, n_layers=24, n_heads=32, n_kv_heads=32, head_dim=64, ffn_hidden=5120)


@dataclass(frozen=True)
class LlamaGenConfig:
    """LlamaGen ``ModelArgs`` fields that shape the t2i model (dropout and training-only fields left out)."""

    n_layer: int
    n_head: int
    dim: int
    vocab_size: int = 16384  # = VQ codebook size
    caption_dim: int = 2048  # flan-t5-xl width
    cls_token_num: int = 120  # caption positions; also the length of the null caption (both 120 in t2i)
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    multiple_of: int = 256
    vq: str = "vq16"  # default tokenizer preset (tsbench.models.vq)
    shuffle_blocks: int = 2  # Token-Shuffle residual MLP blocks per side (paper default)
    shuffle_hidden: int | None = None  # their hidden width, unpublished; None means dim
    text_encoder: Transformer = FLAN_T5_XL  # shape of the encoder that produces the caption features

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def ffn_hidden(self) -> int:
        return find_multiple(int(2 * 4 * self.dim / 3), self.multiple_of)


# gpt.py GPT_models; parameter counts in shared/reference/llamagen.md section 2
LLAMAGEN_CONFIGS: dict[str, LlamaGenConfig] = {
    "GPT-B": LlamaGenConfig(n_layer=12, n_head=12, dim=768),
    "GPT-L": LlamaGenConfig(n_layer=24, n_head=16, dim=1024),
    "GPT-XL": LlamaGenConfig(n_layer=36, n_head=20, dim=1280),  # the released t2i model
    "GPT-XXL": LlamaGenConfig(n_layer=48, n_head=24, dim=1536),
    "GPT-XXXL": LlamaGenConfig(n_layer=48, n_head=40, dim=2560),
    "GPT-1B": LlamaGenConfig(n_layer=22, n_head=32, dim=2048),
    "GPT-3B": LlamaGenConfig(n_layer=24, n_head=32, dim=3200),
    "GPT-7B": LlamaGenConfig(n_layer=32, n_head=32, dim=4096),
    # same key layout at toy size, for CPU tests and smoke runs
    "GPT-tiny": LlamaGenConfig(n_layer=2, n_head=4, dim=64, caption_dim=32, cls_token_num=8, vq="vq16-tiny",
                               text_encoder=Transformer(dim=32, n_layers=1, n_heads=4, n_kv_heads=4, head_dim=8,
                                                        ffn_hidden=64)),
}


def get_llamagen_config(name: str) -> LlamaGenConfig:
    try:
        return LLAMAGEN_CONFIGS[name]
    except KeyError:
        raise ValueError(unknown_name("LlamaGen preset", name, LLAMAGEN_CONFIGS)) from None


# ---------------------------------------------------------------------------------------------
# 2D rotary embedding
# ---------------------------------------------------------------------------------------------


def rope_2d_table(grid: tuple[int, int], head_dim: int, base: float, cond_len: int,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(cos, sin) table [cond_len + h*w, head_dim/2, 2] in fp32, LlamaGen's ``precompute_freqs_cis_2d``.

    Token n sits at (n // w, n % w); the first half of its rotation pairs turns with the row, the second
    half with the column, at frequencies 1 / base^(2k / (head_dim/2)). The ``cond_len`` caption rows
    are all zero (not the identity), as in LlamaGen. Non-square grids use the same rule.
    """
    h, w = grid
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2, device=device)[: half // 2].float() / half))
    n = torch.arange(h * w, device=device)
    angles = torch.cat([(n // w)[:, None] * freqs, (n % w)[:, None] * freqs], dim=-1)
    table = torch.stack([angles.cos(), angles.sin()], dim=-1)
    return torch.cat([table.new_zeros(cond_len, *table.shape[1:]), table])


def apply_rope_2d(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [B, t, H, Dh] by table [t, Dh/2, 2], in fp32 like LlamaGen."""
    return apply_rope(x, torch.view_as_complex(table)[None, :, None])


# ---------------------------------------------------------------------------------------------
# Modules (attribute names are the state-dict keys)
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Caption projection: fc1, GELU(tanh), fc2, no biases."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """T5 features [B, T, caption_dim] -> [B, T, dim]. ``uncond_embedding`` is the learned null caption,
    a persistent buffer in T5 space that CFG rows use instead of a prompt's features."""

    def __init__(self, caption_dim: int, dim: int, token_num: int) -> None:
        super().__init__()
        self.cap_proj = MLP(caption_dim, dim, dim)
        self.register_buffer("uncond_embedding", torch.randn(token_num, caption_dim) / caption_dim**0.5)

    def forward(self, captions: torch.Tensor) -> torch.Tensor:
        return self.cap_proj(captions)


class Attention(nn.Module):
    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.wqkv = nn.Linear(config.dim, 3 * config.dim, bias=False)  # rows: Q, K, V; heads contiguous
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        """``rope``: rotations [B or 1, t, 1, head_dim/2], see :meth:`LlamaGenT2I.rotations`."""
        b, t, _ = x.shape
        heads = self.wqkv(x).view(b, t, 3 * self.n_head, self.head_dim)
        q, k = apply_rope(heads[:, :, :2 * self.n_head], rope).transpose(1, 2).chunk(2, dim=1)  # Q, K in one go
        v = heads[:, :, 2 * self.n_head:].transpose(1, 2)
        out = cache.attend(layer, q, k, v, mask) if cache is not None else attend(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class TransformerBlock(nn.Module):
    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = SwiGLU(config.dim, config.ffn_hidden)
        self.attention_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


# ---------------------------------------------------------------------------------------------
# Caption sources: each returns left-padded T5-space features [B, T, caption_dim] and a mask [B, T]
# ---------------------------------------------------------------------------------------------


class CaptionSource(Protocol):
    name: str  # reported as ``text_encoder`` in describe()
    encoder_shape: Transformer | None  # the encoder this source runs; None when it runs none

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def truncated(self, prompts: list[str]) -> int:
        """How many of ``prompts`` this source cuts to the ``cls_token_num`` caption slots."""
        ...


def move_padding_left(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded T5 output -> LlamaGen's layout: the v valid rows last, in order, padding rows zeroed.

    LlamaGen (``sample_t2i.py``) rotates each caption by its valid count and flips the mask; the
    model was trained on features stored the same way.
    """
    length = mask.shape[1]
    source = (torch.arange(length, device=mask.device) + mask.sum(1, keepdim=True)) % length
    moved = features.gather(1, source[..., None].expand_as(features))
    left_mask = mask.bool().flip(-1)
    return moved * left_mask[..., None], left_mask


# LlamaGen's caption cleaning (language/t5.py ``clean_caption``, PixArt/DeepFloyd rules), applied in
# order. ``ftfy.fix_text`` is skipped and BeautifulSoup's ``.text`` is a tag regex plus html.unescape;
# both only matter for mojibake and unusual markup. Checked equal to the original on all GenEval and
# GenAI-Bench-527 prompts.
_URL = r"\b((?:{0}:(?:\/{{1,3}}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b\/?(?!@)))"
_BAD_PUNCT = r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}"
_DASHES = (r"[\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C\u3030\u30A0"
           r"\uFE31\uFE32\uFE58\uFE63\uFF0D]+")
_HTML_TAG = r"</?[a-zA-Z][^<>]*>"
_URL_RULES: list[tuple[str, str]] = [(r"<person>", "person"), (_URL.format("https?"), ""), (_URL.format("www"), "")]
_RULES_BEFORE_UNESCAPE: list[tuple[str, str]] = [
    (r"@[\w\d]+\b", ""),  # @nickname
    (r"[\u31c0-\u9fff]+", ""),  # CJK strokes, symbols and ideographs
    (_DASHES, "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (r"[\S]+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)", ""),  # file names
    (r"[\"\']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (_BAD_PUNCT, " "),
    (r"\s+\.\s+", " "),
]
_RULES_AFTER_UNESCAPE: list[tuple[str, str]] = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),  # j2d1a2a
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # 1920x1080
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", ""),
    (r"[\'\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
]


def clean_caption(caption: str) -> str:
    """One pass of LlamaGen's prompt cleaning (it runs two): lower-case, strip URLs, markup and noise."""
    caption = urllib.parse.unquote_plus(str(caption)).strip().lower()
    for pattern, replacement in _URL_RULES:
        caption = re.sub(pattern, replacement, caption)
    caption = html.unescape(re.sub(_HTML_TAG, "", caption))  # what BeautifulSoup(...).text does
    for pattern, replacement in _RULES_BEFORE_UNESCAPE:
        caption = re.sub(pattern, replacement, caption)
    if len(re.findall(r"[-_]", caption)) > 3:  # this-is-my-cute-cat
        caption = re.sub(r"[-_]", " ", caption)
    caption = html.unescape(html.unescape(caption)).strip()
    for pattern, replacement in _RULES_AFTER_UNESCAPE:
        caption = re.sub(pattern, replacement, caption)
    return caption.strip()


class T5Captions:
    """FLAN-T5-XL features as LlamaGen extracts them: cleaned twice, padded to ``max_length`` with EOS,
    encoded, then moved to left padding."""

    def __init__(self, name_or_path: str, config: LlamaGenConfig, device: torch.device | str,
                 dtype: torch.dtype) -> None:
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(f"text encoder {name_or_path!r} needs transformers: pip install 'tsbench[hf]'") from err
        self.name = name_or_path
        self.max_length = config.cls_token_num
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.tokenizer.padding_side = "right"  # move_padding_left expects T5's own right padding
        self.encoder = T5EncoderModel.from_pretrained(name_or_path, dtype=dtype).to(device).eval()
        if self.encoder.config.d_model != config.caption_dim:
            raise ValueError(f"text encoder {name_or_path!r} has width {self.encoder.config.d_model}, "
                             f"the model expects caption_dim {config.caption_dim}")
        c = self.encoder.config
        self.encoder_shape = Transformer(dim=c.d_model, n_layers=c.num_layers, n_heads=c.num_heads,
                                         n_kv_heads=c.num_heads, head_dim=c.d_kv, ffn_hidden=c.d_ff,
                                         ffn_matrices=3 if c.is_gated_act else 2)

    def _tokenize(self, prompts: list[str], **kwargs: Any) -> Any:
        return self.tokenizer([clean_caption(clean_caption(p)) for p in prompts], add_special_tokens=True, **kwargs)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self._tokenize(prompts, max_length=self.max_length, padding="max_length", truncation=True,
                               return_tensors="pt")
        device = self.encoder.device
        mask = batch["attention_mask"].to(device)
        features = self.encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        return move_padding_left(features, mask)

    def truncated(self, prompts: list[str]) -> int:
        """Prompts whose tokens (EOS included) overflow the caption slots: LlamaGen cuts them silently."""
        return sum(len(ids) > self.max_length for ids in self._tokenize(prompts)["input_ids"])


TEXT_EMBEDDINGS_FORMAT = """\
--text-embeddings FILE.safetensors: precomputed caption features, e.g. from a machine with flan-t5-xl.
  tensor "embeddings": [N, cls_token_num, caption_dim] float (120 x 2048 for the released model)
  tensor "mask":       [N, cls_token_num] bool (or 0/1 integers)
  metadata "prompts":  JSON list of the N prompt strings; prompts are matched by exact text
Layout: LlamaGen's left padding -- valid rows last, padding rows zero, mask False on padding -- i.e. what
condition() feeds the model. write_text_embeddings() writes this format."""


def write_text_embeddings(path: str | Path, prompts: list[str], embeddings: torch.Tensor, mask: torch.Tensor) -> None:
    """Save left-padded caption features in the ``--text-embeddings`` format (see TEXT_EMBEDDINGS_FORMAT)."""
    from safetensors.torch import save_file

    if not (len(prompts) == embeddings.shape[0] == mask.shape[0]):
        raise ValueError(f"{len(prompts)} prompts, {embeddings.shape[0]} embeddings and {mask.shape[0]} masks differ")
    save_file({"embeddings": embeddings.detach().cpu().contiguous(), "mask": mask.detach().cpu().bool().contiguous()},
              str(path), metadata={"prompts": json.dumps(list(prompts))})


class EmbeddingFileCaptions:
    """Captions read from a ``--text-embeddings`` file (TEXT_EMBEDDINGS_FORMAT), so no T5 runs."""

    encoder_shape = None

    def __init__(self, path: str | Path, config: LlamaGenConfig) -> None:
        from safetensors import safe_open

        self.name = str(path)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if "embeddings" not in f.keys() or "mask" not in f.keys() or "prompts" not in metadata:
                raise ValueError(f"{path}: not a text-embeddings file.\n{TEXT_EMBEDDINGS_FORMAT}")
            self.embeddings, self.mask = f.get_tensor("embeddings"), f.get_tensor("mask").bool()
        prompts = json.loads(metadata["prompts"])
        expected = (len(prompts), config.cls_token_num, config.caption_dim)
        if tuple(self.embeddings.shape) != expected or tuple(self.mask.shape) != expected[:2]:
            raise ValueError(f"{path}: embeddings {tuple(self.embeddings.shape)} and mask {tuple(self.mask.shape)} "
                             f"do not fit {len(prompts)} prompts x {config.cls_token_num} tokens x "
                             f"{config.caption_dim} channels.\n{TEXT_EMBEDDINGS_FORMAT}")
        self.index = {prompt: i for i, prompt in enumerate(prompts)}

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise KeyError(f"{self.name}: no embeddings for {len(missing)} prompt(s), e.g. {missing[:3]}")
        rows = torch.tensor([self.index[p] for p in prompts], dtype=torch.long)
        return self.embeddings[rows], self.mask[rows]

    def truncated(self, prompts: list[str]) -> int:
        return 0  # any cut was made when the file was written, by whatever encoded it


class RandomCaptions:
    """Stand-in features for efficiency runs: N(0, 1/caption_dim), seeded by the prompt text so every
    run sees the same inputs; all slots valid. describe() reports text_encoder="random"."""

    name = "random"
    encoder_shape = None

    def __init__(self, config: LlamaGenConfig) -> None:
        self.shape = (config.cls_token_num, config.caption_dim)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        features = []
        for prompt in prompts:
            seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little")
            generator = torch.Generator().manual_seed(seed)
            features.append(torch.randn(self.shape, generator=generator) / self.shape[1] ** 0.5)
        return torch.stack(features), torch.ones(len(prompts), self.shape[0], dtype=torch.bool)

    def truncated(self, prompts: list[str]) -> int:
        return 0  # the text is never tokenized


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------


class LlamaGenT2I(ARImageModel):
    """LlamaGen t2i transformer; with ``window`` s > 1, Token-Shuffle on the same backbone.

    Only LlamaGen's modules are registered (plus ``shuffle_in``/``shuffle_out`` when s > 1), so
    ``state_dict()`` is the checkpoint layout. The VQ tokenizer and the caption source are plain
    attributes outside the module tree: they never enter the state dict or the parameter count, and
    ``.to(dtype)`` leaves the VQ in fp32 as LlamaGen's sampler does.
    """

    def __init__(self, config: LlamaGenConfig, window: int = 1, preset: str = "custom",
                 adapter: str = "llamagen") -> None:
        super().__init__()
        check_window(window)
        self.config, self.window, self.preset, self.adapter = config, window, preset, adapter
        self.backbone_weights: str | None = None  # the checkpoint's hash when weights is PARTIAL_RANDOM
        self.codebook_size = config.vocab_size
        self.cls_embedding = CaptionEmbedder(config.caption_dim, config.dim, config.cls_token_num)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        hidden = config.shuffle_hidden or config.dim
        self.shuffle_in = ShuffleIn(config.dim, window, config.shuffle_blocks, hidden) if window > 1 else None
        self.shuffle_out = ShuffleOut(config.dim, window, config.shuffle_blocks, hidden) if window > 1 else None
        self.captions: CaptionSource = RandomCaptions(config)
        self.attach_vq(None, config.vq, "random")

    def attach_vq(self, vq: nn.Module | None, name: str, weights: str) -> None:
        """Keep the tokenizer out of the module tree (object.__setattr__ skips nn.Module registration)."""
        object.__setattr__(self, "vq", vq)
        self.vq_name, self.vq_weights = name, weights

    @torch.no_grad()
    def init_random_weights(self, seed: int = 0) -> None:
        """LlamaGen's init (N(0, 0.02) for Linear and Embedding, ones for norms, randn/sqrt(C) for the
        null caption), seeded so random-weight runs are repeatable. The LM head is not zeroed."""
        generator = torch.Generator(device=self.output.weight.device).manual_seed(seed)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, 0.02, generator=generator)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
        uncond = self.cls_embedding.uncond_embedding
        uncond.normal_(generator=generator).div_(uncond.shape[1] ** 0.5)

    # -- pieces shared by the cached decode and the full forward ---------------------------------

    def embed_windows(self, codes: torch.Tensor) -> torch.Tensor:
        """Code ids [B, m, s^2] -> inputs [B, m, dim] (fused by ShuffleIn when s > 1)."""
        x = self.tok_embeddings(codes)
        return self.shuffle_in(x) if self.shuffle_in is not None else x.squeeze(2)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden [B, m, dim] -> fp32 logits [B, m, s^2, V]. With s > 1 the final norm is followed by
        ShuffleOut, whose s^2 vectors share the LM head (the order token_shuffle.py uses too)."""
        x = self.norm(hidden)
        x = self.shuffle_out(x) if self.shuffle_out is not None else x[:, :, None]
        return self.output(x).float()

    def run_layers(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer blocks over x [B, t, dim] with rotations ``rope`` [B or 1, t, 1, head_dim/2]; with
        a cache, write the new keys (never advancing it) and attend with LlamaGen's mask, else use
        ``mask`` (None: causal)."""
        if cache is not None:
            mask = attention_mask(cache, x.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, i)
        return x

    def rotations(self, grid: tuple[int, int], cond_len: int) -> torch.Tensor:
        """The 2D RoPE table of every sequence position as unit complex numbers [cond_len + N, head_dim/2]."""
        s = self.window
        table = rope_2d_table((grid[0] // s, grid[1] // s), self.config.head_dim, self.config.rope_base,
                              cond_len, device=self.output.weight.device)
        return torch.view_as_complex(table)

    @staticmethod
    def key_mask(cond: Conditioning, image_positions: int) -> torch.Tensor | None:
        """Keys every query may see: padded caption slots never, image positions always. None when the
        captions have no padding (plain causal attention is then exact and can use faster kernels)."""
        mask = cond.mask.bool()
        if mask.device.type != "meta" and bool(mask.all()):
            return None
        return torch.cat([mask, mask.new_ones(cond.rows, image_positions)], dim=1)

    def check_condition(self, cond: Conditioning) -> None:
        if cond.embeddings is None or cond.length != self.config.cls_token_num:
            raise ValueError(f"LlamaGen expects caption embeddings of length {self.config.cls_token_num}; "
                             f"got {None if cond.embeddings is None else tuple(cond.embeddings.shape)}")

    # -- ARImageModel ----------------------------------------------------------------------------

    @torch.no_grad()
    def condition(self, prompts: list[str], cfg: bool, grid: tuple[int, int] | None = None) -> Conditioning:
        """Left-padded captions [rows, T, caption_dim] and their mask. CFG rows are the raw null caption
        (projected later, like prompts) with the prompt's own mask, as generate.py does."""
        features, mask = self.captions.encode(prompts)
        weight = self.output.weight
        features, mask = features.to(weight.device, weight.dtype), mask.to(weight.device, torch.bool)
        if cfg:
            null = self.cls_embedding.uncond_embedding.expand_as(features)
            features, mask = torch.cat([features, null]), torch.cat([mask, mask])
        return Conditioning(mask=mask, embeddings=features, truncated=self.captions.truncated(prompts),
                            text_budget=self.config.cls_token_num)

    @torch.no_grad()
    def start(self, cond: Conditioning, grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
        check_grid(grid, self.window)
        self.check_condition(cond)
        rows, cond_len = cond.rows, cond.length
        steps = ar_steps(grid, self.window)
        weight = self.output.weight
        cache = KVCache.allocate(self.config.n_layer, rows, self.config.n_head, cond_len + steps - 1,
                                 self.config.head_dim, weight.device, weight.dtype)
        cache.key_mask = self.key_mask(cond, steps - 1)
        rope = self.rotations(grid, cond_len)
        hidden = self.run_layers(self.cls_embedding(cond.embeddings.to(weight.dtype)), rope[None, :cond_len, None],
                                 cache)
        cache.advance(cond_len)
        positions = torch.full((rows,), cond_len, dtype=torch.long, device=weight.device)
        state = DecodeState(cache=cache, grid=grid, positions=positions, extra={"rope": rope})
        return state, self.logits(hidden[:, -1:])[:, 0]

    @torch.no_grad()
    def decode(self, state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        rope = state.extra["rope"][state.positions][:, None, None]  # every row is at the same position
        return self.logits(self.run_layers(self.embed_windows(codes[:, None]), rope, state.cache))[:, 0]

    def forward(self, cond: Conditioning, windows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Teacher forcing in one pass without a cache (LlamaGen's training forward): logits
        [rows, n + 1, s^2, V] for windows 0..n of a ``grid`` image, given the caption and the n windows
        ``windows`` [rows, n, s^2] (raster order, as the engine feeds them). The cached start/step
        decode must reproduce it."""
        check_grid(grid, self.window)
        self.check_condition(cond)
        if windows.shape[1] >= ar_steps(grid, self.window):
            raise ValueError(f"{windows.shape[1]} windows fed back, but a {grid} grid has fewer to predict")
        weight = self.output.weight
        x = torch.cat([self.cls_embedding(cond.embeddings.to(weight.dtype)), self.embed_windows(windows)], dim=1)
        cond_len, length = cond.length, x.shape[1]
        keys = torch.cat([cond.mask.bool(), cond.mask.new_ones(cond.rows, length - cond_len, dtype=torch.bool)], dim=1)
        pos = torch.arange(length, device=weight.device)
        # generate.py's mask: causal, padded caption keys removed, diagonal forced on
        mask = ((pos[:, None] >= pos[None, :]) & keys[:, None, None, :]) | (pos[:, None] == pos[None, :])
        hidden = self.run_layers(x, self.rotations(grid, cond_len)[None, :length, None], mask=mask)
        return self.logits(hidden[:, cond_len - 1:])

    def describe(self) -> dict[str, Any]:
        facts = {
            "adapter": self.adapter,
            "preset": self.preset,
            "window": self.window,
            "params": sum(p.numel() for p in self.parameters()),  # the null-caption buffer is not a parameter
            "weights": self.weights,
            "text_encoder": self.captions.name,
            "vq": self.vq_name,
            "vq_weights": self.vq_weights,
        }
        if self.backbone_weights is not None:
            facts["backbone_weights"] = self.backbone_weights
        return facts

    def cost_model(self) -> CostModel:
        """LlamaGen's pipeline: one FLAN-T5 pass per prompt (the null caption is a stored embedding), the
        caption MLP over the T caption slots, logits for the last caption position only, a KV cache read
        up to its filled prefix (the official code computes all T prefill logits and attends over
        round8(T + N) keys)."""
        c = self.config
        ran = self.captions.encoder_shape
        encoder = TextEncoder(name=self.captions.name if ran else "flan-t5-xl", tokens=c.cls_token_num,
                              layers=ran or c.text_encoder, executed=ran is not None)
        shuffle = Shuffle(c.dim, self.window, c.shuffle_blocks, c.shuffle_hidden or c.dim) if self.window > 1 else None
        return CostModel(
            backbone=Transformer(c.dim, c.n_layer, c.n_head, c.n_head, c.head_dim, c.ffn_hidden),
            vq=decode_cost(get_vq_config(self.vq_name)), head_flops_per_code=2 * c.dim * c.vocab_size,
            window=self.window, input_flops_per_prompt_token=2 * (c.caption_dim * c.dim + c.dim * c.dim),
            shuffle=shuffle, prompt_tokens=c.cls_token_num, text_encoder=encoder,
            modules={"attn_proj": ("layers.*.attention.wqkv", "layers.*.attention.wo"),
                     "ffn": ("layers.*.feed_forward",), "shuffle": ("shuffle_in", "shuffle_out"),
                     "lm_head": ("output",), "input_proj": ("cls_embedding",)})


# ---------------------------------------------------------------------------------------------
# Checkpoints and builders
# ---------------------------------------------------------------------------------------------


def read_llamagen_state(path: str | Path, *, allow_pickled_args: bool = False) -> dict[str, torch.Tensor]:
    """The GPT weights of a LlamaGen checkpoint: safetensors, or torch files read with ``weights_only=True``.

    They are taken from ``["model"]`` (DDP), ``["module"]`` (DeepSpeed), ``["state_dict"]``, else the top
    level; a stray ``freqs_cis`` (older checkpoints) is dropped. LlamaGen's training script also pickles
    its ``argparse.Namespace`` as ``"args"``; only with ``allow_pickled_args=True`` is that one class
    allowed (with a warning), never anything else.
    """
    state = unwrap_state_dict(read_tensors(path, allow_pickled_args=allow_pickled_args))
    return {k: v for k, v in state.items() if k != "freqs_cis"}


def checkpoint_window(state: dict[str, torch.Tensor], config: LlamaGenConfig) -> int | None:
    """The Token-Shuffle window a state dict was trained at (its compression is dim -> dim / s^2), or None
    when it holds no shuffle modules (a plain LlamaGen backbone)."""
    weight = state.get("shuffle_in.compress.weight")
    if weight is None:
        return None
    ratio = config.dim // weight.shape[0]
    window = math.isqrt(ratio)
    if window * window != ratio or window not in WINDOWS:
        raise CheckpointError(f"shuffle_in.compress.weight {tuple(weight.shape)} fits no window of {WINDOWS}")
    return window


def load_llamagen_checkpoint(model: LlamaGenT2I, path: str | Path, *, allow_pickled_args: bool = False) -> None:
    """Load a LlamaGen checkpoint strictly into ``model`` and set ``model.weights`` to its short sha256;
    any missing or unexpected key is an error (see :func:`read_llamagen_state`)."""
    load_strict(model, read_llamagen_state(path, allow_pickled_args=allow_pickled_args), source=str(path))
    model.weights = file_digest(path)


def build_vq(name: str, checkpoint: str | None, device: torch.device | str,
             allow_pickled_args: bool = False) -> tuple[nn.Module, str]:
    """The VQ tokenizer in fp32 on ``device`` and its weights tag."""
    from tsbench.models.vq import VQModel, get_vq_config, load_vq_state_dict

    with torch.device("cpu" if checkpoint else device):
        vq = VQModel(get_vq_config(name))
    if checkpoint is None:
        return vq.eval(), "random"
    load_vq_state_dict(vq, checkpoint, allow_pickled_args=allow_pickled_args)
    return vq.to(device).eval(), file_digest(checkpoint)


@dataclass(frozen=True)
class LlamaGenOptions(VQOptions):
    """Settings of the llamagen adapters beyond the common model axes."""

    text_encoder: str | None = option("FLAN-T5 encoder name or local path (the released model: flan-t5-xl)",
                                      default=None)
    text_embeddings: str | None = option("precomputed caption features (write_text_embeddings) instead of an "
                                         "encoder", default=None, tensor_file=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.text_encoder and self.text_embeddings:
            raise FieldError("text_embeddings", "give either text_encoder or text_embeddings, not both")


def build_llamagen(preset: str | None = "GPT-XL", checkpoint: str | None = None, window: int | None = None,
                   device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                   options: LlamaGenOptions | dict | None = None, default_window: int = 1,
                   adapter: str = "llamagen", **option_kwargs: Any) -> LlamaGenT2I:
    """LlamaGen t2i (window 1) or LlamaGen + Token-Shuffle (window > 1), ready for the engine.

    Without ``checkpoint`` the weights are random (``weights="random"``); ``device="meta"`` builds a
    model with no storage for FLOP counting. ``window`` None is the checkpoint's own (from its shuffle
    keys), else ``default_window``. A window that contradicts the checkpoint's is an error; a window > 1
    over a plain LlamaGen checkpoint puts new, randomly initialised shuffle modules around the trained
    backbone (``weights="partial-random"``: rows for cost, not quality). Captions come from the
    ``text_encoder`` option (flan-t5-xl name or path), ``text_embeddings`` (TEXT_EMBEDDINGS_FORMAT) or,
    with neither, seeded random features.
    """
    options = make_options(LlamaGenOptions, options, adapter=adapter, **option_kwargs)
    name = preset or "GPT-XL"
    config = get_llamagen_config(name)
    dtype = dtype or torch.float32
    state = read_llamagen_state(checkpoint, allow_pickled_args=options.allow_pickled_args) if checkpoint else None
    trained_window = checkpoint_window(state, config) if state is not None else None
    if window is None:
        window = trained_window or default_window
    elif trained_window is not None and window != trained_window:
        raise CheckpointError(f"{checkpoint}: trained with window {trained_window}, asked for window {window}; "
                              f"leave model.window unset to run the checkpoint's own")
    partial = state is not None and window > 1 and trained_window is None
    with torch.device("meta"):  # no memory or init time spent on weights that are replaced anyway
        model = LlamaGenT2I(config, window=window, preset=name, adapter=adapter)
    if state is not None and not partial:
        load_strict(model, state, source=str(checkpoint))
        model.weights = file_digest(checkpoint)
        model.to(device)
    else:
        model.to_empty(device=device)
        if torch.device(device).type != "meta":
            model.init_random_weights()
        if partial:  # the trained backbone, new shuffle modules
            load_strict(model, state, source=str(checkpoint), missing_ok=("shuffle_in.", "shuffle_out."))
            model.weights, model.backbone_weights = PARTIAL_RANDOM, file_digest(checkpoint)
    model.to(dtype).eval()

    vq_name = options.vq or config.vq
    vq_model, vq_weights = build_vq(vq_name, options.vq_checkpoint, device, options.allow_pickled_args)
    if vq_model.config.codebook_size != config.vocab_size:
        raise ValueError(f"VQ preset {vq_name!r} has {vq_model.config.codebook_size} codes; "
                         f"{name} predicts {config.vocab_size}")
    model.attach_vq(vq_model, vq_name, vq_weights)
    if options.text_embeddings:
        model.captions = EmbeddingFileCaptions(options.text_embeddings, config)
    elif options.text_encoder:
        model.captions = T5Captions(options.text_encoder, config, device, dtype)
    return model


def build_llamagen_ts(preset: str | None = "GPT-XL", checkpoint: str | None = None, window: int | None = None,
                      **kwargs: Any) -> LlamaGenT2I:
    """LlamaGen backbone with Token-Shuffle: the checkpoint's window, else 2; window 1 is plain LlamaGen."""
    return build_llamagen(preset, checkpoint, window, default_window=2, adapter="llamagen-ts", **kwargs)


def llamagen_geometry(preset: str | None, checkpoint: str | None, window: int | None, options: LlamaGenOptions,
                      default_window: int = 1) -> Geometry:
    """Any shuffle window, on random weights or over a checkpoint (a plain one gets new shuffle modules);
    a checkpoint trained at another window is found when its weights are read, when the cell builds."""
    vq = get_vq_config(options.vq or get_llamagen_config(preset or "GPT-XL").vq)
    return Geometry(WINDOWS, window or default_window, vq.downsample)


ADAPTER = Adapter(build=build_llamagen, presets=lambda: list(LLAMAGEN_CONFIGS), default_preset="GPT-XL",
                  options=LlamaGenOptions, geometry=llamagen_geometry, compiles=True)
ADAPTER_TS = Adapter(build=build_llamagen_ts, presets=lambda: list(LLAMAGEN_CONFIGS), default_preset="GPT-XL",
                     options=LlamaGenOptions, geometry=functools.partial(llamagen_geometry, default_window=2),
                     compiles=True)
