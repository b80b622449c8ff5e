"""FLOP model: the analytic numbers agree with what FlopCounterMode and fvcore count on real calls, and
scale with the shuffle window, CFG and the prompt the way the formulas say."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import tsbench
from tsbench.measure.flops import (
    COMPONENTS,
    DEFAULT_PROMPT_TOKENS,
    PHASES,
    FlopBreakdown,
    analytic_flops,
    counted_flops,
    flops_report,
    vq_decode_flops,
)
from dataclasses import replace

from tsbench.models.token_shuffle import TS_PRESETS, cost_model
from tsbench.models.vq import VQModel, decode_cost, get_vq_config

TS27 = TS_PRESETS["ts-2.7b"]


def ts27(window: int):
    """The cost model of ts-2.7b at ``window``, from the config alone."""
    return cost_model(replace(TS27, window=window))


@pytest.fixture(scope="module")
def ts_models() -> dict[int, torch.nn.Module]:
    return {s: tsbench.load_model("token-shuffle", preset="tiny", window=s) for s in (1, 2, 4)}


def assert_matches(counted: FlopBreakdown, analytic: FlopBreakdown) -> None:
    """Every phase x component cell within 1 %, and attention actually counted. A text encoder that this
    run does not execute (random or precomputed captions) is the pipeline's cost, not counted here."""
    ran = analytic.meta.get("text_encoder", {}).get("executed", True)
    phases = [p for p in PHASES if ran or p != "text_encoder"]
    for phase in phases:
        for component in COMPONENTS:
            got, want = counted.by_phase_component[phase][component], analytic.by_phase_component[phase][component]
            assert got == pytest.approx(want, rel=0.01), (phase, component)
    total = sum(analytic.by_phase[p] for p in phases)
    assert sum(counted.by_phase[p] for p in phases) == pytest.approx(total, rel=0.01)
    assert counted.by_phase_component["prefill"]["attention"] > 0
    assert counted.by_phase_component["decode"]["attention"] > 0


# Every decode step counted at 128^2; at 256^2 the first steps only, the rest extrapolated.
@pytest.mark.parametrize("resolution,decode_steps", [(128, None), (256, 3)])
@pytest.mark.parametrize("window", [1, 2, 4])
def test_flop_counter_matches_executed_analytic(ts_models, window, resolution, decode_steps) -> None:
    model = ts_models[window]
    counted = counted_flops(model, resolution, counter="flop_counter", decode_steps=decode_steps)
    assert counted.meta["prompt_tokens"] == DEFAULT_PROMPT_TOKENS  # the default prompt is 30 bytes + 2
    analytic = analytic_flops(model, resolution, causal=False, prompt_tokens=counted.meta["prompt_tokens"])
    assert_matches(counted, analytic)


@pytest.mark.parametrize("resolution", [128, 256])
@pytest.mark.parametrize("window", [1, 2, 4])
def test_fvcore_matches_executed_analytic(ts_models, window, resolution) -> None:
    model = ts_models[window]
    counted = counted_flops(model, resolution, counter="fvcore", decode_steps=2)
    analytic = analytic_flops(model, resolution, causal=False, prompt_tokens=counted.meta["prompt_tokens"])
    assert_matches(counted, analytic)


def test_vq_decoder_counts_its_attention_blocks() -> None:
    """The decoder's single-head attention (mid block + each lowest-level res block) is counted: its
    score and value matmuls, 4 * (hw)^2 * C per block, are part of the cached number."""
    config, grid = get_vq_config("vq16-tiny"), (8, 8)
    with torch.device("meta"):
        vq = VQModel(config)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vq.decode_codes(torch.zeros(1, *grid, dtype=torch.long, device="meta"))
    ops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    hw, channels, blocks = grid[0] * grid[1], config.ch * config.ch_mult[-1], 1 + config.num_res_blocks + 1
    assert ops["aten.bmm"] == blocks * 4 * hw * hw * channels
    assert vq_decode_flops(decode_cost(config), grid) == sum(ops.values())


def test_causal_prefill_saves_the_upper_triangle() -> None:
    t, rows, cfg = 40, 2, TS27
    causal = analytic_flops(ts27(2), 1024, prompt_tokens=t)
    executed = analytic_flops(ts27(2), 1024, prompt_tokens=t, causal=False)
    saved = rows * cfg.n_layers * 4 * cfg.n_heads * cfg.head_dim * t * (t - 1) // 2
    assert executed.total - causal.total == saved
    assert executed.by_phase_component["prefill"]["attention"] - causal.by_phase_component["prefill"]["attention"] == saved
    assert executed.by_phase["decode"] == causal.by_phase["decode"]


def test_window_scaling_at_2048() -> None:
    """s = 1 -> 2 cuts decode attention ~16x (s^4; the prompt prefix and the M - 1 steps pull the exact
    ratio to 15.8, hence 2 %), linear layers ~4x (s^2, within 1 %), and leaves the head unchanged."""
    by_window = {s: analytic_flops(ts27(s), 2048) for s in (1, 2, 4)}
    decode = {s: r.by_phase_component["decode"] for s, r in by_window.items()}
    assert decode[1]["attention"] / decode[2]["attention"] == pytest.approx(16, rel=0.02)
    for component in ("attn_proj", "ffn"):
        assert by_window[1].by_component[component] / by_window[2].by_component[component] == pytest.approx(4, rel=0.01)
    assert by_window[1].by_component["lm_head"] == by_window[2].by_component["lm_head"] == by_window[4].by_component["lm_head"]
    assert by_window[1].by_component["shuffle"] == 0 < by_window[4].by_component["shuffle"] < by_window[2].by_component["shuffle"]
    assert len({r.by_phase["vq_decode"] for r in by_window.values()}) == 1


def test_cfg_doubles_the_transformer_not_the_vq_decoder() -> None:
    with_cfg, without = analytic_flops(ts27(2), 1024), analytic_flops(ts27(2), 1024, cfg=False)
    for phase in ("prefill", "decode"):
        assert with_cfg.by_phase[phase] == 2 * without.by_phase[phase]
    assert with_cfg.by_phase["vq_decode"] == without.by_phase["vq_decode"] > 0


def test_breakdown_sums_and_json_keys() -> None:
    data = json.loads(flops_report("token-shuffle", "ts-2.7b", 1024, window=2, cfg=True, as_json=True))
    assert {"total", "by_phase", "by_component", "convention", "causal", "kv_cache_length"} <= data.keys()
    assert set(data["by_phase"]) == set(PHASES) and set(data["by_component"]) == set(COMPONENTS)
    assert data["total"] == sum(data["by_phase"].values()) == sum(data["by_component"].values())
    assert data["convention"] == "2*MAC" and data["kv_cache_length"] == "actual"


def test_text_report_has_units_and_shares() -> None:
    text = flops_report("token-shuffle", "ts-2.7b", 2048, window=4, cfg=True)
    assert "TFLOP" in text and "attention" in text and "100.0 %" in text


# ---- LlamaGen ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("window,counter", [(1, "flop_counter"), (2, "flop_counter"),
                                            (2, "fvcore")])
def test_llamagen_counted_matches_analytic(window, counter) -> None:
    model = tsbench.load_model("llamagen", preset="GPT-tiny", window=window)
    counted = counted_flops(model, 128, counter=counter, decode_steps=3)
    analytic = analytic_flops(model, 128, causal=False)
    assert_matches(counted, analytic)
    assert counted.by_component["input_proj"] > 0
    assert analytic.by_phase["text_encoder"] > 0 and analytic.meta["text_encoder"]["executed"] is False


def test_llamagen_text_encoder_pass_is_its_own_phase(tmp_path) -> None:
    """With a real (tiny) T5 encoder the prompt's encoder pass is counted once per image, not per CFG row
    (the null caption is a stored embedding), and matches the analytic encoder phase."""
    from tiny_models import tiny_t5

    model = tsbench.load_model("llamagen", preset="GPT-tiny", text_encoder=str(tiny_t5(tmp_path, width=32)))
    counted = counted_flops(model, 64, counter="flop_counter")
    analytic = analytic_flops(model, 64, causal=False)
    assert analytic.meta["text_encoder"]["executed"] is True
    assert analytic.by_phase["text_encoder"] > 0
    assert counted.by_phase["text_encoder"] == pytest.approx(analytic.by_phase["text_encoder"], rel=0.01)
    assert_matches(counted, analytic)
    assert analytic_flops(model, 64, cfg=False).by_phase["text_encoder"] == analytic.by_phase["text_encoder"]


def test_llamagen_reproduces_the_official_generate_count() -> None:
    """harness.md 11.4: FlopCounterMode around LlamaGen's own generate() (GPT-XL, T = 120, 256^2, CFG)
    gives 1.16592e12. It differs from tsbench's executed variant only where the official code does other
    work: logits at all T prefill positions, decode attention over the 376-slot preallocated cache, and
    CPU prefill attention that the counter misses."""
    from tsbench.models.llamagen import LLAMAGEN_CONFIGS

    cfg, t, steps, rows = LLAMAGEN_CONFIGS["GPT-XL"], 120, 255, 2
    ours = analytic_flops(tsbench.load_model("llamagen", preset="GPT-XL", device="meta"), 256, causal=False)
    table = ours.by_phase_component
    official = (ours.total - ours.by_phase["vq_decode"] - ours.by_phase["text_encoder"] - table["prefill"]["attention"]
                + rows * 2 * cfg.dim * cfg.vocab_size * (t - 1)
                - table["decode"]["attention"] + rows * cfg.n_layer * 4 * cfg.dim * 376 * steps)
    assert official == pytest.approx(1.16592e12, rel=1e-5)
