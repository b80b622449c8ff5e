"""Decode speed of a GPT-B-shaped Token-Shuffle model against the machine's roofline, per dtype and engine.

A decode step at batch 1 reads every weight once plus the KV cache that attention reads, so

    steps/s <= min(read bandwidth / bytes per step, peak matmul FLOP/s / FLOPs per step)

and visual tokens/s = steps/s * s^2. The bytes, FLOPs and machine limits come from
``tsbench.measure.roofline``, the code behind every runner cell's ``roofline.*`` columns; the step
times from the runner's own timing loop (warm-up at the measured shapes, median step). Engines: eager,
and compiled (``model.compile``; its one-off compilation is reported as ``compile_s``, never timed).
Comparing dtypes answers which one decodes faster on this machine, shape by shape.

    python benchmarks/decode_roofline.py [--dtypes float32 bfloat16] [--engines eager compiled]
        [--windows 1 2 4] [--resolutions 256 512] [--remeasure] [--out benchmarks/results/decode_roofline_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from tsbench.engine.generate import GuidanceConfig
from tsbench.engine.sampling import SamplingConfig
from tsbench.io import atomic_write_text
from tsbench.measure.env import cpu_has_bf16_matrix_units, environment
from tsbench.measure.latency import time_generation
from tsbench.measure.roofline import cell_roofline, machine_limits
from tsbench.models.compiled import compile_decode, compile_now
from tsbench.models.token_shuffle import TS_PRESETS, TokenShuffleLM

# GPT-B shape (LlamaGen): 12 layers, 12 heads, width 768, SwiGLU 2048
GPT_B = replace(TS_PRESETS["small"], dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_hidden=2048)
PROMPT = "a photo of a cat"
GUIDANCE, SAMPLING = GuidanceConfig(7.5, "constant"), SamplingConfig(top_k=1000)


def build(window: int, dtype: torch.dtype, engine: str) -> TokenShuffleLM:
    torch.manual_seed(0)
    model = TokenShuffleLM(replace(GPT_B, window=window)).to(dtype).eval()
    return compile_decode(model) if engine == "compiled" else model


def measure(model: TokenShuffleLM, resolution: int, repeats: int) -> dict:
    """One row: compile time, median decode step, and the roofline columns of that step."""
    grid = model.grid(resolution)
    compile_s = compile_now(model, model.condition([PROMPT], cfg=True, grid=grid), grid)
    timing = time_generation(model, [PROMPT], resolution, GUIDANCE, SAMPLING, seeds=[0], warmup=1,
                             min_repeats=repeats)
    step = statistics.median(timing.decode_steps)
    roofline = cell_roofline(model, [PROMPT], resolution, cfg=True, step_seconds=step)
    s2 = model.window**2
    return {"window": model.window, "resolution": resolution, "batch": 1, "cfg": True, "compile_s": compile_s,
            "decode_step_ms": step * 1e3, "visual_tokens_per_s": s2 / step,
            "roofline_tokens_per_s": roofline["roofline.bound_steps_per_s"] * s2, **roofline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/decode_roofline_cpu.json")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--engines", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument("--repeats", type=int, default=3, help="timed images per row (after one warm-up)")
    parser.add_argument("--remeasure", action="store_true", help="measure bandwidth and peak FLOP/s again")
    args = parser.parse_args()
    rows = []
    for name in args.dtypes:
        dtype = getattr(torch, name)
        limits = machine_limits("cpu", dtype, refresh=args.remeasure)
        print(f"{name}: read bandwidth {limits['env.read_bandwidth_bytes_s'] / 1e9:.1f} GB/s, "
              f"peak matmul {limits['env.peak_matmul_flop_s'] / 1e9:.0f} GFLOP/s")
        for window in args.windows:
            for engine in args.engines:
                model = build(window, dtype, engine)
                for resolution in args.resolutions:
                    row = {"dtype": name, "engine": engine, **measure(model, resolution, args.repeats)}
                    rows.append(row)
                    print(f"{name} {engine:8s} s={window} {resolution}px: {row['decode_step_ms']:.2f} ms/step, "
                          f"{row['visual_tokens_per_s']:.0f} tok/s vs roofline {row['roofline_tokens_per_s']:.0f} "
                          f"({100 * row['roofline.decode_fraction']:.0f} %), compile {row['compile_s']:.0f} s")
    out = Path(args.out)
    atomic_write_text(out, json.dumps({
        "benchmark": "decode_roofline", "model": "Token-Shuffle, GPT-B shape (12 layers, 12 heads, d=768)",
        "cpu_has_bf16_matrix_units": cpu_has_bf16_matrix_units(), "environment": environment("cpu"),
        "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
