"""Emu3 through transformers: tsbench's engine, feeding the end-of-line tokens itself, reproduces
transformers' own constrained generation token for token, and the cost model counts those tokens."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import tsbench  # noqa: E402
from tsbench.measure.flops import analytic_flops, counted_flops, flops_report  # noqa: E402

PROMPTS = ["a red cat", "two green dogs on a long sofa"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tiny_models import tiny_emu3

    return tiny_emu3(tmp_path_factory.mktemp("emu3"))


def constrained_generate(reference, cond, uncond, grid: tuple[int, int], scale: float) -> torch.Tensor:
    """transformers' Emu3 image generation as its documentation runs it: a prefix constraint (visual
    tokens inside a row, end-of-line at its end, then end of frame, image and text) and the negative
    prompt through ``negative_prompt_ids``; returns the visual codes [B, h, w]."""
    mapping = reference.model.vocabulary_mapping
    vocab = reference.config.vocabulary_map
    h, w = grid
    wrapper, visual = vocab["<|image token|>"], mapping.image_tokens
    tail = [vocab["<|extra_201|>"], vocab["<|image end|>"], reference.config.text_config.eos_token_id]

    def allowed(batch_id: int, input_ids: torch.Tensor):
        offset = input_ids.shape[0] - int(torch.nonzero(input_ids == wrapper)[0, 0])
        if offset % (w + 1) == 0:
            return (mapping.eol_token_id,)
        if offset > (w + 1) * h:
            return (tail[min(offset - (w + 1) * h - 1, 2)],)
        return visual

    out = reference.generate(cond.tokens, attention_mask=cond.mask.long(), max_new_tokens=h * (w + 1),
                             prefix_allowed_tokens_fn=allowed, negative_prompt_ids=uncond.tokens,
                             negative_prompt_attention_mask=uncond.mask.long(), guidance_scale=scale, do_sample=False)
    sequences = out[:, cond.tokens.shape[1]:].view(-1, h, w + 1)
    assert bool((sequences[..., -1] == mapping.eol_token_id).all())
    return mapping.convert_bpe2img(sequences).long()


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS])
def test_tokens_equal_transformers_constrained_generate(checkpoint: Path, prompts: list[str]) -> None:
    model = tsbench.load_model("emu3", checkpoint=str(checkpoint), negative_prompt="blurry")
    reference = transformers.Emu3ForConditionalGeneration.from_pretrained(checkpoint).eval()
    grid = model.grid(32)
    ours = tsbench.generate(model, prompts, 32, cfg_scale=3.0, cfg_schedule="constant", top_k=1).tokens
    both = model.condition(prompts, cfg=True, grid=grid)
    n = len(prompts)
    cond = model.condition(prompts, cfg=False, grid=grid)
    uncond = type(cond)(mask=both.mask[n:], tokens=both.tokens[n:])
    assert torch.equal(ours, constrained_generate(reference, cond, uncond, grid, 3.0))
    assert len(set(ours.flatten().tolist())) > 3


def test_prompt_states_the_size(checkpoint: Path) -> None:
    model = tsbench.load_model("emu3", checkpoint=str(checkpoint))
    cond = model.condition(["a cat"], cfg=True, grid=(4, 6))
    ids, enc = model.ids, model.tokenizer.encode
    assert cond.tokens[0].tolist() == [ids.bos, *enc("a cat"), ids.boi, *enc("4*6"), ids.wrapper]
    assert cond.tokens[1, cond.mask[1]].tolist() == [ids.bos, ids.boi, *enc("4*6"), ids.wrapper]
    with pytest.raises(ValueError, match="needs the token grid"):
        model.condition(["a cat"], cfg=False)


def test_end_of_line_tokens_are_in_the_cache_and_the_cost_model() -> None:
    model = tsbench.load_model("emu3", preset="tiny")
    grid = model.grid(32)
    cond = model.condition(PROMPTS, cfg=True, grid=grid)
    state, _ = model.start(cond, grid)
    for _ in range(grid[0] * grid[1] - 1):
        model.step(state, torch.zeros(cond.rows, 1, dtype=torch.long))
    layer = state.cache.layers[0]
    assert layer.keys.shape[2] == cond.length + grid[0] * grid[1] - 1 + grid[0] - 1  # codes + end-of-lines
    held = sum(2 * x.keys.numel() * x.keys.element_size() for x in state.cache.layers)
    assert model.kv_cache_bytes(cond.rows, cond.length, grid) == held


def test_counted_flops_match_the_cost_model() -> None:
    model = tsbench.load_model("emu3", preset="tiny")
    counted = counted_flops(model, 32)
    analytic = analytic_flops(model, 32, causal=False, prompt_tokens=counted.meta["prompt_tokens"])
    for phase, row in analytic.by_phase_component.items():
        for component, want in row.items():
            assert counted.by_phase_component[phase][component] == pytest.approx(want, rel=0.01), (phase, component)
    assert counted.by_phase_component["decode"]["attention"] > 0
    assert analytic.meta["decode_positions"] == 16 - 1 + 4 - 1


def test_meta_preset_counts_every_end_of_line_token() -> None:
    data = json.loads(flops_report("emu3", "emu3-gen", 720, as_json=True))
    assert data["meta"]["grid"] == [90, 90] and data["meta"]["ar_steps"] == 8100
    assert data["meta"]["decode_positions"] == 8099 + 89
    assert data["by_phase_component"]["decode"]["attention"] > 0 and data["by_component"]["vq_decoder"] > 0
    params = tsbench.load_model("emu3", preset="emu3-gen", device="meta").describe()["params"]
    assert 8.0e9 < params < 8.6e9
    with pytest.raises(ValueError, match="window 1 only"):
        tsbench.load_model("emu3", preset="tiny", window=2)


def test_geometry_is_read_from_the_checkpoint_config(checkpoint: Path) -> None:
    from tsbench.models import ADAPTERS, adapter_options

    geometry = ADAPTERS.get("emu3").geometry(None, str(checkpoint), None, adapter_options("emu3"))
    model = tsbench.load_model("emu3", checkpoint=str(checkpoint))
    assert (geometry.window, geometry.downsample) == (model.window, model.downsample)
