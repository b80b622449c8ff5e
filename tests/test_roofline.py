"""Decode roofline: bytes per step from the model's own sizes, machine limits measured once and cached,
the columns' arithmetic, the runner's columns and the report's plot."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import tsbench
from tsbench.measure import roofline
from tsbench.measure.roofline import decode_bytes, machine_limits, roofline_columns
from tsbench.models.compiled import compile_decode
from tsbench.models.cost import decode_weights, kv_bytes_per_position
from tsbench.report.plots import plot_roofline

PROMPTS = ["a red circle", "two blue squares on a long grey road"]


CASES = [("token-shuffle", "tiny", 1), ("token-shuffle", "tiny", 2), ("llamagen", "GPT-tiny", 1),
         ("llamagen-ts", "GPT-tiny", 2)]


@pytest.mark.parametrize("adapter, preset, window", CASES)
def test_cost_model_sizes_match_the_modules(adapter: str, preset: str, window: int) -> None:
    """The weights a step streams are the matrices of the layers, the head and the shuffle modules
    (not the embedding tables, the caption projection or the VQ); the KV bytes those allocated."""
    model = tsbench.load_model(adapter, preset=preset, window=window)
    cost = model.cost_model()
    streamed = ("layers.", "output.", "shuffle_in.", "shuffle_out.")
    matrices = sum(p.numel() for n, p in model.named_parameters() if n.startswith(streamed) and p.dim() == 2)
    assert decode_weights(cost) == matrices
    with torch.inference_mode():
        cond = model.condition(PROMPTS, cfg=True, grid=(8, 8))
        state, _ = model.start(cond, (8, 8))
    allocated = sum(t.numel() * t.element_size() for t in (*state.cache.keys, *state.cache.values))
    assert kv_bytes_per_position(cost, cond.rows, 4) * state.cache.max_len == allocated


def test_decode_reads_the_prefix_or_the_whole_buffer() -> None:
    model = tsbench.load_model("token-shuffle", preset="tiny")
    per_position = kv_bytes_per_position(model.cost_model(), 2, 4)
    # prompt 10, a 4 x 4 grid: decode step k has fed k + 1 of 15 positions; on average 10 + 8 are read
    assert decode_bytes(model, 2, 10, (4, 4), whole_buffer=False)["kv_cache"] == per_position * 18
    assert decode_bytes(model, 2, 10, (4, 4), whole_buffer=True)["kv_cache"] == per_position * 25
    assert decode_bytes(model, 2, 10, (4, 4), whole_buffer=False)["weights"] == decode_weights(model.cost_model()) * 4


def test_columns_by_hand() -> None:
    model = tsbench.load_model("token-shuffle", preset="tiny")
    limits = {"env.read_bandwidth_bytes_s": 1e9, "env.peak_matmul_flop_s": 1e12}
    row = roofline_columns(model, rows=2, prompt_tokens=10, grid=(4, 4), flops_per_step=2e6, step_seconds=0.01,
                           limits=limits)
    total = 4 * decode_weights(model.cost_model()) + kv_bytes_per_position(model.cost_model(), 2, 4) * 18
    assert row["roofline.bytes_per_step"] == total and row["roofline.bound"] == "memory"
    assert row["roofline.bound_steps_per_s"] == pytest.approx(1e9 / total)
    assert row["roofline.decode_fraction"] == pytest.approx(100 / (1e9 / total))
    assert row["roofline.arithmetic_intensity"] == pytest.approx(2e6 / total)
    assert row["roofline.achieved_flop_s"] == pytest.approx(2e8)
    compute = roofline_columns(model, 2, 10, (4, 4), flops_per_step=1e12, step_seconds=None, limits=limits)
    assert compute["roofline.bound"] == "compute" and compute["roofline.bound_steps_per_s"] == pytest.approx(1.0)
    assert "roofline.decode_fraction" not in compute
    compiled = compile_decode(tsbench.load_model("token-shuffle", preset="tiny"))  # on CPU: prefix reads too
    assert roofline_columns(compiled, 2, 10, (4, 4), 2e6, 0.01, limits) == row


def test_machine_limits_are_measured_once_and_keyed_on_dtype(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TSBENCH_CACHE_DIR", str(tmp_path))
    first = machine_limits("cpu", torch.float32)  # measured
    assert first["env.read_bandwidth_bytes_s"] > 1e8 and first["env.peak_matmul_flop_s"] > 1e8
    stored = json.loads((tmp_path / "machine_limits.json").read_text())
    assert sorted(stored.values()) == sorted(first.values())

    def fail(*args):
        raise AssertionError("measured again")

    monkeypatch.setattr(roofline, "measure_read_bandwidth", fail)
    monkeypatch.setattr(roofline, "measure_peak_matmul", fail)
    assert machine_limits("cpu", torch.float32) == first
    monkeypatch.setattr(roofline, "measure_peak_matmul", lambda device, dtype: 123.0)
    bf16 = machine_limits("cpu", torch.bfloat16)  # a new dtype measures its peak, reuses the bandwidth
    assert bf16 == {"env.read_bandwidth_bytes_s": first["env.read_bandwidth_bytes_s"], "env.peak_matmul_flop_s": 123.0}


def test_runner_rows_carry_roofline_and_machine_columns(tmp_path: Path) -> None:
    from test_runner import write_suite
    from tsbench.cli import main
    from tsbench.runner.store import RunStore

    suite = write_suite(tmp_path, [1, 2], flops=True)
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "run"), "--no-report", "--no-progress"]) == 0
    for row in RunStore(tmp_path / "run").load_rows():
        assert row["env.read_bandwidth_bytes_s"] > 0 and row["env.peak_matmul_flop_s"] > 0
        assert row["roofline.bytes_per_step"] > row["roofline.weight_bytes_per_step"] > 0
        steps = row["workload.ar_steps"] - 1
        assert row["roofline.flops_per_step"] == pytest.approx(row["flops.by_phase.decode"] / steps)
        assert row["roofline.decode_fraction"] == pytest.approx(
            1 / row["latency.decode_step_s"] / row["roofline.bound_steps_per_s"])


def test_roofline_plot(tmp_path: Path) -> None:
    cells = pd.DataFrame({
        "status": ["ok"] * 4, "window": [1, 2, 1, 2], "compile": [False, False, True, True], "dtype": "float32",
        "roofline.arithmetic_intensity": [0.5, 2.0, 0.5, 2.0], "roofline.achieved_flop_s": [4e9, 12e9, 5e9, 15e9],
        "env.read_bandwidth_bytes_s": 20e9, "env.peak_matmul_flop_s": 100e9})
    assert plot_roofline(cells, tmp_path / "roofline.png").stat().st_size > 0
    assert plot_roofline(cells.drop(columns="roofline.achieved_flop_s"), tmp_path / "none.png") is None
