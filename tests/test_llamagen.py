"""LlamaGen t2i adapter: exact key layout, 2D RoPE, conditioning, checkpoint safety and a cached
decode that matches both a full recomputation and LlamaGen's own preallocated-cache decode."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tsbench.models.base import Conditioning
from tsbench.models.checkpoint import file_digest
from tsbench.models.llamagen import (
    LLAMAGEN_CONFIGS,
    LLAMAGEN_SAMPLING_DEFAULTS,
    LlamaGenT2I,
    apply_rope_2d,
    build_llamagen,
    build_llamagen_ts,
    clean_caption,
    get_llamagen_config,
    load_llamagen_checkpoint,
    move_padding_left,
    rope_2d_table,
    write_text_embeddings,
)
from tsbench.models.shuffle import grid_to_windows

TINY = LLAMAGEN_CONFIGS["GPT-tiny"]
PROMPTS = ["a red cube", "two dogs on a sofa"]
VALID = [3, TINY.cls_token_num]  # caption slots used by each prompt: one padded, one full


def gpt_xl_expected_keys() -> dict[str, tuple[int, ...]]:
    """shared/reference/llamagen.md section 3, in registration order (D 1280, H 3584, V 16384)."""
    d, h, v = 1280, 3584, 16384
    keys = {
        "cls_embedding.uncond_embedding": (120, 2048),
        "cls_embedding.cap_proj.fc1.weight": (d, 2048),
        "cls_embedding.cap_proj.fc2.weight": (d, d),
        "tok_embeddings.weight": (v, d),
    }
    for i in range(36):
        keys.update({
            f"layers.{i}.attention.wqkv.weight": (3 * d, d),
            f"layers.{i}.attention.wo.weight": (d, d),
            f"layers.{i}.feed_forward.w1.weight": (h, d),
            f"layers.{i}.feed_forward.w3.weight": (h, d),
            f"layers.{i}.feed_forward.w2.weight": (d, h),
            f"layers.{i}.attention_norm.weight": (d,),
            f"layers.{i}.ffn_norm.weight": (d,),
        })
    keys.update({"norm.weight": (d,), "output.weight": (v, d)})
    return keys


@pytest.fixture(scope="module")
def gpt_xl_meta() -> LlamaGenT2I:
    return build_llamagen("GPT-XL", device="meta")


@pytest.fixture
def captions_file(tmp_path: Path) -> Path:
    """Left-padded caption features for PROMPTS (valid rows last, zeros before them)."""
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(len(PROMPTS), TINY.cls_token_num, TINY.caption_dim, generator=gen)
    mask = torch.arange(TINY.cls_token_num)[None, :] >= TINY.cls_token_num - torch.tensor(VALID)[:, None]
    path = tmp_path / "captions.safetensors"
    write_text_embeddings(path, PROMPTS, features * mask[..., None], mask)
    return path


def tiny_model(window: int = 1, **kwargs) -> LlamaGenT2I:
    """GPT-tiny with weights large enough that attention is far from uniform."""
    model = build_llamagen("GPT-tiny", window=window, **kwargs)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


# ---- architecture -----------------------------------------------------------------------------


def test_gpt_xl_parameter_count_on_meta(gpt_xl_meta: LlamaGenT2I) -> None:
    assert gpt_xl_meta.describe()["params"] == 777_678_080
    assert all(p.is_meta for p in gpt_xl_meta.parameters())


def test_gpt_xl_state_dict_matches_reference(gpt_xl_meta: LlamaGenT2I) -> None:
    expected = gpt_xl_expected_keys()
    got = {k: tuple(v.shape) for k, v in gpt_xl_meta.state_dict().items()}
    assert len(got) == 258
    assert list(got) == list(expected)
    assert got == expected
    assert "cls_embedding.uncond_embedding" not in dict(gpt_xl_meta.named_parameters())  # a buffer


def test_ffn_widths_and_presets() -> None:
    widths = {name: cfg.ffn_hidden for name, cfg in LLAMAGEN_CONFIGS.items() if name != "GPT-tiny"}
    assert widths == {"GPT-B": 2048, "GPT-L": 2816, "GPT-XL": 3584, "GPT-XXL": 4096, "GPT-XXXL": 6912,
                      "GPT-1B": 5632, "GPT-3B": 8704, "GPT-7B": 11008}
    with pytest.raises(ValueError, match="Known: GPT-B, GPT-L, GPT-XL"):
        get_llamagen_config("GPT-XLL")
    assert LLAMAGEN_SAMPLING_DEFAULTS == {"cfg_scale": 7.5, "top_k": 1000, "top_p": 1.0, "temperature": 1.0}


def test_token_shuffle_variant_adds_only_shuffle_keys() -> None:
    plain = set(build_llamagen("GPT-tiny", device="meta").state_dict())
    assert set(build_llamagen_ts("GPT-tiny", window=1, device="meta").state_dict()) == plain
    ts = build_llamagen_ts("GPT-tiny", device="meta")
    extra = set(ts.state_dict()) - plain
    assert plain <= set(ts.state_dict())
    assert extra and all(k.startswith(("shuffle_in.", "shuffle_out.")) for k in extra)
    assert ts.describe()["adapter"] == "llamagen-ts" and ts.window == 2


@pytest.mark.parametrize("window", [1, 2])
def test_runs_on_meta_device(window: int) -> None:
    model = build_llamagen("GPT-XL", window=window, device="meta")
    cond = model.condition(PROMPTS, cfg=True)
    state, logits = model.start(cond, (16, 16))
    assert logits.shape == (4, window * window, 16384) and logits.is_meta
    codes = torch.zeros(4, window * window, dtype=torch.long, device="meta")
    assert model.step(state, codes).shape == (4, window * window, 16384)


def test_describe_and_bf16_logits_are_fp32() -> None:
    model = build_llamagen("GPT-tiny", dtype=torch.bfloat16)
    assert model.describe() == {"adapter": "llamagen", "preset": "GPT-tiny", "window": 1,
                                "params": sum(p.numel() for p in model.parameters()), "weights": "random",
                                "text_encoder": "random", "vq": "vq16-tiny", "vq_weights": "random"}
    assert model.vq.encoder.conv_in.weight.dtype == torch.float32  # the VQ stays outside .to(dtype)
    _, logits = model.start(model.condition(PROMPTS, cfg=False), (4, 4))
    assert logits.dtype == torch.float32


# ---- 2D RoPE ----------------------------------------------------------------------------------


def test_rope_2d_by_hand() -> None:
    # head_dim 8: two frequencies 1 and 10000**-0.5 = 0.01; angles (row, row*.01, col, col*.01)
    table = rope_2d_table((2, 3), head_dim=8, base=10000.0, cond_len=2)
    assert table.shape == (2 + 6, 4, 2)
    assert torch.equal(table[:2], torch.zeros(2, 4, 2))  # caption positions: cos = sin = 0
    row, col = 1, 2  # image token 5 = (5 // 3, 5 % 3), at sequence position 2 + 5
    angles = [row * 1.0, row * 0.01, col * 1.0, col * 0.01]
    expected = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    torch.testing.assert_close(table[7], expected)

    x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8)  # pairs (1,2) (3,4) (5,6) (7,8)
    rotated = [(a * math.cos(t) - b * math.sin(t), b * math.cos(t) + a * math.sin(t))
               for (a, b), t in zip([(1, 2), (3, 4), (5, 6), (7, 8)], angles)]
    torch.testing.assert_close(apply_rope_2d(x, table[7:8]).flatten(), torch.tensor(rotated).flatten())
    assert torch.equal(apply_rope_2d(x, table[0:1]), torch.zeros_like(x))


def llamagen_freqs_cis_2d(grid_size: int, head_dim: int, base: float, cls_token_num: int) -> torch.Tensor:
    """gpt.py precompute_freqs_cis_2d, rebuilt from its description (square grid, expand + concat)."""
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    freqs = torch.outer(torch.arange(grid_size), freqs)
    grid = torch.cat([freqs[:, None, :].expand(-1, grid_size, -1), freqs[None, :, :].expand(grid_size, -1, -1)], -1)
    cache = torch.stack([grid.cos(), grid.sin()], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, half, 2), cache])


def test_rope_table_equals_llamagen_construction() -> None:
    for head_dim in (64, 100, 128):  # XL, 3B, 7B
        ours = rope_2d_table((32, 32), head_dim, 10000.0, 120)
        assert torch.equal(ours, llamagen_freqs_cis_2d(32, head_dim, 10000.0, 120))


# ---- conditioning -----------------------------------------------------------------------------


def test_move_padding_left_by_hand() -> None:
    features = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    out, mask = move_padding_left(features, torch.tensor([[1, 1, 1, 0]]))
    assert out.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert mask.tolist() == [[False, True, True, True]]


@pytest.mark.parametrize("raw, cleaned", [
    ("A Photo of a CAT,sitting", "a photo of a cat, sitting"),
    ('A "quoted" sign (red) -- & more', 'a "quoted" sign red - more'),
    ("see https://x.com/a <b>bold</b> text #12 @joe", "see bold text"),
    ("Tom &amp; Jerry &lt;3", "tom jerry <3"),
    ("end with comma,", "end with comma"),
])
def test_clean_caption_matches_llamagen(raw: str, cleaned: str) -> None:
    # expected values produced by LlamaGen's language/t5.py clean_caption (applied twice)
    assert clean_caption(clean_caption(raw)) == cleaned


def test_cfg_rows_use_null_caption_with_prompt_mask(captions_file: Path) -> None:
    model = tiny_model(text_embeddings=str(captions_file))
    cond = model.condition(PROMPTS, cfg=True)
    null = model.cls_embedding.uncond_embedding
    assert cond.rows == 4 and cond.embeddings.shape == (4, TINY.cls_token_num, TINY.caption_dim)
    assert torch.equal(cond.embeddings[2], null) and torch.equal(cond.embeddings[3], null)
    assert torch.equal(cond.mask[2:], cond.mask[:2])
    assert cond.mask.sum(1).tolist() == VALID * 2
    assert model.describe()["text_encoder"] == str(captions_file)
    _, logits = model.start(cond, (4, 4))
    assert not torch.allclose(logits[0], logits[2])


def test_padded_caption_slots_are_invisible(captions_file: Path) -> None:
    model = tiny_model(text_embeddings=str(captions_file))
    cond = model.condition(PROMPTS, cfg=False)
    noisy = cond.embeddings.clone()
    noisy[~cond.mask] = 100.0
    _, clean = model.start(cond, (4, 4))
    _, dirty = model.start(Conditioning(mask=cond.mask, embeddings=noisy), (4, 4))
    torch.testing.assert_close(clean, dirty)


def test_embedding_file_errors(captions_file: Path, tmp_path: Path) -> None:
    model = build_llamagen("GPT-tiny", text_embeddings=str(captions_file))
    with pytest.raises(KeyError, match="a blue cube"):
        model.condition(["a blue cube"], cfg=False)
    wrong = tmp_path / "wrong.safetensors"
    write_text_embeddings(wrong, ["x"], torch.zeros(1, 5, TINY.caption_dim), torch.ones(1, 5))
    with pytest.raises(ValueError, match="do not fit"):
        build_llamagen("GPT-tiny", text_embeddings=str(wrong))


def test_random_captions_are_seeded_by_prompt() -> None:
    model = build_llamagen("GPT-tiny")
    a, b = model.condition(PROMPTS, cfg=False), model.condition(PROMPTS[::-1], cfg=False)
    assert torch.equal(a.embeddings[0], b.embeddings[1]) and not torch.equal(a.embeddings[0], a.embeddings[1])
    assert bool(a.mask.all())


def test_t5_encoder_path(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from tiny_models import tiny_t5

    tiny_t5(tmp_path, width=TINY.caption_dim)
    encoder = transformers.T5EncoderModel.from_pretrained(tmp_path).eval()
    model = build_llamagen("GPT-tiny", text_encoder=str(tmp_path))
    cond = model.condition(["A Red CAT"], cfg=False)  # cleaned to "a red cat", then EOS: 4 of 8 slots
    ids = torch.tensor([[3, 4, 5, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        raw = encoder(input_ids=ids, attention_mask=(ids > 0).long()).last_hidden_state
    assert cond.mask.tolist() == [[False] * 4 + [True] * 4]
    torch.testing.assert_close(cond.embeddings[0, 4:], raw[0, :4])
    assert torch.equal(cond.embeddings[0, :4], torch.zeros(4, TINY.caption_dim))
    assert model.describe()["text_encoder"] == str(tmp_path)


# ---- decoding ---------------------------------------------------------------------------------


def cached_decode(model: LlamaGenT2I, cond: Conditioning, windows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    state, first = model.start(cond, grid)
    logits = [first] + [model.step(state, windows[:, m]) for m in range(windows.shape[1])]
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("window, grid", [(1, (4, 4)), (2, (4, 6)), (4, (8, 8))])
def test_cached_decode_equals_full_recomputation(captions_file: Path, window: int, grid: tuple[int, int]) -> None:
    model = tiny_model(window, text_embeddings=str(captions_file))
    cond = model.condition(PROMPTS, cfg=True)
    codes = torch.randint(0, TINY.vocab_size, (cond.rows, *grid))
    windows = grid_to_windows(codes, window)[:, :-1]  # the last window is never fed back
    full = model(cond, windows, grid)
    assert full.shape == (cond.rows, windows.shape[1] + 1, window * window, TINY.vocab_size)
    torch.testing.assert_close(cached_decode(model, cond, windows, grid), full, rtol=1e-4, atol=1e-4)


def llamagen_generate_logits(model: LlamaGenT2I, cond: Conditioning, codes: torch.Tensor,
                             grid_size: int) -> torch.Tensor:
    """generate.py's decode, rebuilt from its description: a zero-filled cache of round8(T + N)
    positions, a [B, L, L] causal mask whose caption columns are multiplied by the prompt mask with the
    diagonal forced on, and attention over the whole cache at every step."""
    cfg, rows, t = model.config, cond.rows, cond.length
    n = grid_size * grid_size
    max_len = (t + n + 7) // 8 * 8
    freqs_cis = llamagen_freqs_cis_2d(grid_size, cfg.head_dim, cfg.rope_base, t)
    causal = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))[None].repeat(rows, 1, 1)
    causal[:, :, :t] = causal[:, :, :t] * cond.mask[:, None, :]
    causal = (causal | torch.eye(max_len, dtype=torch.bool)).bool()
    shape = (rows, cfg.n_head, max_len, cfg.head_dim)
    caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in model.layers]

    def forward(x: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        fc = freqs_cis[input_pos]
        for layer, (k_cache, v_cache) in zip(model.layers, caches):
            b, s, _ = x.shape
            q, k, v = layer.attention.wqkv(layer.attention_norm(x)).split(cfg.dim, dim=-1)
            q, k, v = (z.view(b, s, cfg.n_head, cfg.head_dim) for z in (q, k, v))
            q, k = apply_rope_2d(q, fc), apply_rope_2d(k, fc)
            k_cache[:, :, input_pos], v_cache[:, :, input_pos] = k.transpose(1, 2), v.transpose(1, 2)
            mask = causal[:, None, input_pos]  # full-length rows: unfilled slots are masked, not skipped
            att = F.scaled_dot_product_attention(q.transpose(1, 2), k_cache, v_cache, attn_mask=mask)
            h = x + layer.attention.wo(att.transpose(1, 2).reshape(b, s, cfg.dim))
            x = h + layer.feed_forward(layer.ffn_norm(h))
        return model.output(model.norm(x)).float()[:, -1]

    with torch.no_grad():
        logits = [forward(model.cls_embedding.cap_proj(cond.embeddings), torch.arange(t))]
        for i in range(n - 1):
            logits.append(forward(model.tok_embeddings(codes[:, i:i + 1]), torch.tensor([t + i])))
    return torch.stack(logits, dim=1)


def test_cached_decode_equals_llamagen_generate(captions_file: Path) -> None:
    model = tiny_model(text_embeddings=str(captions_file))
    cond = model.condition(PROMPTS, cfg=True)
    codes = torch.randint(0, TINY.vocab_size, (cond.rows, 16))
    ours = cached_decode(model, cond, codes[:, :-1, None], (4, 4))[:, :, 0]
    torch.testing.assert_close(ours, llamagen_generate_logits(model, cond, codes, 4), rtol=1e-4, atol=1e-4)


def test_step_past_the_last_window_fails() -> None:
    model = build_llamagen("GPT-tiny")
    state, _ = model.start(model.condition(["x"], cfg=False), (1, 2))
    model.step(state, torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(RuntimeError, match="already returned"):
        model.step(state, torch.zeros(1, 1, dtype=torch.long))


# ---- checkpoints ------------------------------------------------------------------------------


class WritesMarker:
    """Unpickling this would create a file: the stand-in for arbitrary code in a hostile checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def tiny_state() -> dict[str, torch.Tensor]:
    return {k: torch.randn(v.shape) for k, v in build_llamagen("GPT-tiny", device="meta").state_dict().items()}


@pytest.mark.parametrize("layout", ["model", "module", "state_dict", "bare", "safetensors"])
def test_checkpoint_loads_strictly(tmp_path: Path, tiny_state: dict, layout: str) -> None:
    if layout == "safetensors":
        path = tmp_path / "gpt.safetensors"
        save_file(tiny_state, str(path))
    else:
        path = tmp_path / "gpt.pt"
        torch.save(tiny_state if layout == "bare" else {layout: tiny_state, "steps": 10}, path)
    model = build_llamagen("GPT-tiny", checkpoint=str(path))
    loaded = model.state_dict()
    assert loaded.keys() == tiny_state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in tiny_state.items())
    assert model.weights == file_digest(path) and model.describe()["weights"] == model.weights


def test_checkpoint_key_errors_name_keys_and_file(tmp_path: Path, tiny_state: dict) -> None:
    tiny_state["layers.0.attention.qkv.weight"] = tiny_state.pop("layers.0.attention.wqkv.weight")
    path = tmp_path / "renamed.pt"
    torch.save({"model": tiny_state}, path)
    with pytest.raises(ValueError) as err:
        build_llamagen("GPT-tiny", checkpoint=str(path))
    assert str(path) in str(err.value)
    assert "layers.0.attention.wqkv.weight" in str(err.value) and "layers.0.attention.qkv.weight" in str(err.value)


def test_stray_freqs_cis_is_ignored(tmp_path: Path, tiny_state: dict) -> None:
    tiny_state["freqs_cis"] = rope_2d_table((4, 4), TINY.head_dim, TINY.rope_base, TINY.cls_token_num)
    path = tmp_path / "old.pt"
    torch.save({"model": tiny_state}, path)
    assert build_llamagen("GPT-tiny", checkpoint=str(path)).weights == file_digest(path)


def test_pickled_args_need_opt_in(tmp_path: Path, tiny_state: dict) -> None:
    path = tmp_path / "train.pt"
    torch.save({"model": tiny_state, "args": argparse.Namespace(gpt_model="GPT-tiny", lr=1e-4)}, path)
    with pytest.raises(ValueError, match="allow_pickled_args=True"):
        build_llamagen("GPT-tiny", checkpoint=str(path))
    with pytest.warns(UserWarning, match="argparse.Namespace"):
        model = build_llamagen("GPT-tiny", checkpoint=str(path), allow_pickled_args=True)
    assert torch.equal(model.output.weight, tiny_state["output.weight"])


@pytest.mark.parametrize("where", ["inside_args", "top_level"])
def test_hostile_pickle_refused_even_with_opt_in(tmp_path: Path, tiny_state: dict, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = WritesMarker(marker)
    extra = {"args": argparse.Namespace(hook=payload)} if where == "inside_args" else {"hook": payload}
    path = tmp_path / "hostile.pt"
    torch.save({"model": tiny_state, **extra}, path)
    model = build_llamagen("GPT-tiny", device="meta")
    for allow in (False, True):
        with pytest.raises(ValueError, match="refused"):
            load_llamagen_checkpoint(model, path, allow_pickled_args=allow)
    assert not marker.exists()
