"""Janus-Pro through transformers: tsbench's engine reproduces transformers' own image generation token
for token, the cost model matches FlopCounterMode, and checkpoints are checked before they load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import tsbench  # noqa: E402
from tsbench.measure.flops import analytic_flops, counted_flops, flops_report  # noqa: E402
from tsbench.models.checkpoint import CheckpointError  # noqa: E402

PROMPTS = ["a red cat", "two green dogs on a long sofa"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tiny_models import tiny_janus

    return tiny_janus(tmp_path_factory.mktemp("janus"))


@pytest.fixture(scope="module")
def reference(checkpoint: Path):
    return transformers.JanusForConditionalGeneration.from_pretrained(checkpoint).eval()


def test_tokens_equal_transformers_image_generation(checkpoint: Path, reference) -> None:
    """Top-k 1 and constant CFG: the same image tokens as ``generate(generation_mode="image")``, which
    builds its own unconditional rows from the prompt, so the rows tsbench builds are Janus's too. Two
    prompts of different lengths also check left padding and positions."""
    model = tsbench.load_model("janus", checkpoint=str(checkpoint))
    ours = tsbench.generate(model, PROMPTS, 64, cfg_scale=3.0, cfg_schedule="constant", top_k=1).tokens
    cond = model.condition(PROMPTS, cfg=False)
    theirs = reference.generate(cond.tokens, attention_mask=cond.mask.long(), generation_mode="image",
                                do_sample=False, guidance_scale=3.0)
    assert ours.shape == (2, 4, 4)
    assert torch.equal(ours.flatten(1), theirs)
    assert len(set(ours.flatten().tolist())) > 3  # a real sequence, not one repeated code


def test_prompt_and_unconditional_rows(checkpoint: Path) -> None:
    model = tsbench.load_model("janus", checkpoint=str(checkpoint))
    cond = model.condition(["a cat"], cfg=True)
    text = model.tokenizer.encode("<|User|>: a cat\n\n<|Assistant|>:")
    ids = model.ids
    assert cond.tokens.tolist() == [[ids.bos, *text, ids.boi], [ids.bos, *[ids.pad] * len(text), ids.boi]]
    assert bool(cond.mask.all())


def test_vq_decode_is_the_models_own(checkpoint: Path, reference) -> None:
    model = tsbench.load_model("janus", checkpoint=str(checkpoint))
    codes = torch.randint(0, model.codebook_size, (2, 4, 4))
    with torch.no_grad():
        theirs = reference.decode_image_tokens(codes.flatten(1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(model.decode_codes(codes), theirs)
        assert model.decode_codes(torch.zeros(1, 8, 8, dtype=torch.long)).shape == (1, 3, 128, 128)  # any grid


@pytest.mark.parametrize("window", [1, 2])
def test_counted_flops_match_the_cost_model(window: int) -> None:
    model = tsbench.load_model("janus", preset="tiny", window=window)
    counted = counted_flops(model, 64 * window)
    analytic = analytic_flops(model, 64 * window, causal=False, prompt_tokens=counted.meta["prompt_tokens"])
    for phase, row in analytic.by_phase_component.items():
        for component, want in row.items():
            assert counted.by_phase_component[phase][component] == pytest.approx(want, rel=0.01), (phase, component)
    for component in ("attention", "attn_proj", "ffn", "lm_head"):
        assert counted.by_phase_component["prefill"][component] > 0
    assert counted.by_component["input_proj"] > 0 and (counted.by_component["shuffle"] > 0) == (window > 1)


def test_kv_cache_bytes_are_what_the_cache_holds_at_the_end() -> None:
    model = tsbench.load_model("janus", preset="tiny")
    grid = model.grid(64)
    cond = model.condition(PROMPTS, cfg=True)
    state, _ = model.start(cond, grid)
    for _ in range(grid[0] * grid[1] - 1):
        model.step(state, torch.zeros(cond.rows, 1, dtype=torch.long))
    held = sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
               for layer in state.cache.layers)
    assert model.kv_cache_bytes(cond.rows, cond.length, grid) == held


def test_meta_presets_give_flops_without_weights() -> None:
    data = json.loads(flops_report("janus", "janus-pro-7b", 384, window=1, as_json=True))
    assert data["meta"]["grid"] == [24, 24] and data["meta"]["ar_steps"] == 576
    assert data["by_phase_component"]["decode"]["attention"] > 0 and data["by_component"]["vq_decoder"] > 0
    s2 = json.loads(flops_report("janus", "janus-pro-7b", 384, window=2, as_json=True))
    assert s2["meta"]["ar_steps"] == 144 and s2["by_component"]["shuffle"] > 0
    assert s2["by_component"]["lm_head"] == data["by_component"]["lm_head"]  # every code is still scored
    params = tsbench.load_model("janus", preset="janus-pro-7b", device="meta").describe()["params"]
    assert 6.5e9 < params < 7.2e9


def test_checkpoint_errors_name_what_is_missing(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        tsbench.load_model("janus", checkpoint=str(tmp_path / "nope"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"missing model\.safetensors .*tokenizer\.json or tokenizer_config"):
        tsbench.load_model("janus", checkpoint=str(partial))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for f in checkpoint.iterdir():
        (wrong / f.name).write_bytes(f.read_bytes())
    (wrong / "config.json").write_text(json.dumps({"model_type": "multi_modality"}))
    with pytest.raises(CheckpointError, match="model_type 'multi_modality'"):
        tsbench.load_model("janus", checkpoint=str(wrong))
    with pytest.raises(CheckpointError, match="not preset 'janus-pro-1b'"):
        tsbench.load_model("janus", preset="janus-pro-1b", checkpoint=str(checkpoint))


def test_importing_tsbench_and_listing_adapters_imports_no_transformers() -> None:
    """transformers stays an extra: the adapter modules import it only when a model is built."""
    import subprocess
    import sys

    code = ("import sys, tsbench; tsbench.list_presets(); from tsbench.config.suite import load_suite; "
            "assert 'transformers' not in sys.modules, sorted(m for m in sys.modules if 'transformers' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_geometry_is_read_from_the_checkpoint_config(checkpoint: Path) -> None:
    from tsbench.models import ADAPTERS, adapter_options

    geometry = ADAPTERS.get("janus").geometry(None, str(checkpoint), None, adapter_options("janus"))
    model = tsbench.load_model("janus", checkpoint=str(checkpoint))
    assert (geometry.window, geometry.downsample) == (model.window, model.downsample)
