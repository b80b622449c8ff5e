"""Decode speed of a GPT-B-shaped Token-Shuffle model against the machine's weight-read roofline.

A decode step at batch 1 is bound by reading every weight once, so the roofline is
    steps/s <= memory bandwidth / bytes of weights read per step,
and visual tokens/s = steps/s * s^2. Bandwidth is measured here (large fp32 reduction), not assumed.

    python benchmarks/decode_roofline.py [--out benchmarks/results/decode_roofline_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from tsbench.engine.generate import GuidanceConfig
from tsbench.engine.sampling import SamplingConfig
from tsbench.measure.env import environment
from tsbench.measure.latency import time_generation
from tsbench.models.token_shuffle import TS_PRESETS, TokenShuffleLM

# GPT-B shape (LlamaGen): 12 layers, 12 heads, width 768, SwiGLU 2048
GPT_B = replace(TS_PRESETS["small"], dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_hidden=2048)


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes/s of a streaming fp32 reduction over a buffer far larger than the caches (best of repeats)."""
    x = torch.ones(int(gib * 2**30) // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best


def weight_bytes_per_step(model: TokenShuffleLM) -> int:
    """Every parameter a decode step reads: all but the VQ decoder and the embedding table (one row read)."""
    skip = ("vq.", "tok_embeddings.")
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters() if not n.startswith(skip))


def decode_step_seconds(model: TokenShuffleLM, resolution: int, repeats: int = 3) -> list[float]:
    """Raw per-step decode times from the same timing loop the runner uses (warm-up at these shapes)."""
    timing = time_generation(model, ["a photo of a cat"], resolution, GuidanceConfig(7.5, "constant"),
                             SamplingConfig(top_k=1000), seeds=[0], warmup=1, min_repeats=repeats)
    return timing.decode_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/decode_roofline_cpu.json")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    torch.manual_seed(0)
    bandwidth = read_bandwidth()
    print(f"measured read bandwidth: {bandwidth / 1e9:.1f} GB/s")
    rows = []
    for window in args.windows:
        with torch.device("cpu"):
            model = TokenShuffleLM(replace(GPT_B, window=window)).eval()
        per_step = weight_bytes_per_step(model) * 1  # batch 1 with CFG: 2 rows share each weight read
        roofline_steps = bandwidth / per_step
        for resolution in args.resolutions:
            median = statistics.median(decode_step_seconds(model, resolution))
            row = {"window": window, "resolution": resolution, "batch": 1, "cfg": True, "dtype": "float32",
                   "decode_step_ms": median * 1e3, "visual_tokens_per_s": window**2 / median,
                   "roofline_tokens_per_s": roofline_steps * window**2, "weight_mib_per_step": per_step / 2**20,
                   "fraction_of_roofline": (1 / median) / roofline_steps}
            rows.append(row)
            print(f"s={window} {resolution}px: {row['decode_step_ms']:.2f} ms/step, "
                  f"{row['visual_tokens_per_s']:.0f} tok/s vs roofline {row['roofline_tokens_per_s']:.0f} tok/s "
                  f"({100 * row['fraction_of_roofline']:.0f} %)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "decode_roofline", "model": "GPT-B shape (12 layers, 12 heads, d=768)",
                               "bandwidth_gb_s": bandwidth / 1e9, "environment": environment("cpu"),
                               "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
