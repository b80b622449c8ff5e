"""tsbench's eager and compiled decode engines against LlamaGen's reference ``generate()``, in one run.

Same model for all three: LlamaGen GPT-B t2i (12 layers, 12 heads, d = 768, 120 caption positions),
random weights drawn once by tsbench and loaded into LlamaGen's own ``Transformer`` (the state-dict
layouts are identical), the same random caption features, CFG 7.5 (constant), top-k 1000, batch 1,
token generation only (prefill + every decode step; no VQ decode). The engines take turns within each
repeat so that they share the machine's state, and the median repeat is reported.

Before timing, every engine generates one image greedily (top-k 1) from the same inputs: LlamaGen's
tokens and tsbench's must agree, or the comparison is not between the same computations.

LlamaGen's code is imported from a checkout you give (its public repository,
https://github.com/FoundationVision/LlamaGen); it is never copied into tsbench.

    python benchmarks/engine_vs_llamagen.py --llamagen-repo ../LlamaGen \\
        [--resolutions 256 512] [--repeats 3] [--remeasure] [--out benchmarks/results/engine_vs_llamagen_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

import tsbench
from tsbench.engine.generate import GuidanceConfig, generate_tokens
from tsbench.engine.sampling import SamplingConfig
from tsbench.io import atomic_write_text
from tsbench.measure.env import environment
from tsbench.measure.flops import analytic_flops
from tsbench.measure.roofline import machine_limits, roofline_columns
from tsbench.models.compiled import compile_now
from tsbench.models.llamagen import LlamaGenT2I

PROMPT = "a photo of a corgi wearing sunglasses on a beach at sunset"
CFG_SCALE, TOP_K = 7.5, 1000


def import_llamagen(repo: Path) -> tuple[Any, Callable]:
    """LlamaGen's ``GPT_models`` and ``generate`` from a checkout (its modules import each other from
    the repository root, so that goes on sys.path)."""
    if not (repo / "autoregressive" / "models" / "generate.py").is_file():
        sys.exit(f"--llamagen-repo {repo}: no autoregressive/models/generate.py there; give a checkout of "
                 "https://github.com/FoundationVision/LlamaGen")
    sys.path.insert(0, str(repo.resolve()))
    from autoregressive.models.generate import generate
    from autoregressive.models.gpt import GPT_models

    return GPT_models, generate


def llamagen_reference(gpt_models: Any, ours: LlamaGenT2I, grid: int) -> torch.nn.Module:
    """LlamaGen's GPT-B t2i for a grid x grid image, holding exactly our weights."""
    model = gpt_models["GPT-B"](block_size=grid * grid, cls_token_num=ours.config.cls_token_num, model_type="t2i",
                                vocab_size=ours.config.vocab_size, caption_dim=ours.config.caption_dim)
    model.load_state_dict(ours.state_dict(), strict=True)
    return model.to(next(ours.parameters()).device).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llamagen-repo", type=Path, required=True, help="a checkout of LlamaGen's repository")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3, help="timed images per engine and resolution")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/engine_vs_llamagen_cpu.json")
    parser.add_argument("--remeasure", action="store_true", help="measure bandwidth and peak FLOP/s again")
    args = parser.parse_args()
    gpt_models, llamagen_generate = import_llamagen(args.llamagen_repo)
    device = torch.device(args.device)
    torch.manual_seed(0)
    eager = tsbench.load_model("llamagen", preset="GPT-B", device=device)
    compiled = tsbench.load_model("llamagen", preset="GPT-B", device=device, compile=True)
    compiled.load_state_dict(eager.state_dict())
    limits = machine_limits(device, torch.float32, refresh=args.remeasure)
    print(f"read bandwidth {limits['env.read_bandwidth_bytes_s'] / 1e9:.1f} GB/s, "
          f"peak fp32 matmul {limits['env.peak_matmul_flop_s'] / 1e9:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    guidance, sampling = GuidanceConfig(CFG_SCALE, "constant"), SamplingConfig(top_k=TOP_K)
    rows = []
    for resolution in args.resolutions:
        grid = eager.grid(resolution)
        reference = llamagen_reference(gpt_models, eager, grid[0])
        features, mask = eager.captions.encode([PROMPT])  # the caption features both sides see
        features, mask = features.to(device), mask.to(device)
        compile_s = compile_now(compiled, compiled.condition([PROMPT], cfg=True, grid=grid), grid)
        steps: dict[str, list[float]] = {"tsbench eager": [], "tsbench compiled": []}

        def ours(model: LlamaGenT2I, name: str, sampler: SamplingConfig = sampling) -> torch.Tensor:
            marks: list[float] = []
            codes = generate_tokens(model, [PROMPT], grid, guidance, sampler, [0],
                                    on_step=lambda i, t: marks.append(t))
            steps[name] += [b - a for a, b in zip(marks, marks[1:])]
            return codes.flatten(1).long()

        def theirs(top_k: int = TOP_K) -> torch.Tensor:
            return llamagen_generate(reference, features, grid[0] * grid[1], mask.long(), cfg_scale=CFG_SCALE,
                                     temperature=1.0, top_k=top_k, top_p=1.0, sample_logits=True).long()

        engines: dict[str, Callable[[], Any]] = {"llamagen generate()": theirs,
                                                 "tsbench eager": lambda: ours(eager, "tsbench eager"),
                                                 "tsbench compiled": lambda: ours(compiled, "tsbench compiled")}
        with torch.inference_mode():
            greedy = {"llamagen generate()": theirs(top_k=1).cpu(),
                      "tsbench eager": ours(eager, "tsbench eager", SamplingConfig(top_k=1)).cpu(),
                      "tsbench compiled": ours(compiled, "tsbench compiled", SamplingConfig(top_k=1)).cpu()}
            parity = {name: bool(torch.equal(codes, greedy["llamagen generate()"])) for name, codes in greedy.items()}
            for samples in steps.values():  # the greedy images were warm-ups, not samples
                samples.clear()
            seconds: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.repeats):
                for name, run in engines.items():
                    synchronize(device)
                    t0 = time.perf_counter()
                    run()
                    synchronize(device)
                    seconds[name].append(time.perf_counter() - t0)
        tokens = grid[0] * grid[1]
        base = tokens / statistics.median(seconds["llamagen generate()"])
        cond = eager.condition([PROMPT], cfg=True, grid=grid)
        flops = analytic_flops(eager, resolution, cfg=True)
        for name, samples in seconds.items():
            row = {"engine": name, "resolution": resolution, "batch": 1, "cfg_scale": CFG_SCALE, "top_k": TOP_K,
                   "dtype": "float32", "seconds_per_image": statistics.median(samples), "seconds_raw": samples,
                   "visual_tokens_per_s": tokens / statistics.median(samples),
                   "greedy_tokens_equal_llamagen": parity[name]}
            row["speedup_vs_llamagen"] = row["visual_tokens_per_s"] / base
            if name in steps:
                model = compiled if name == "tsbench compiled" else eager
                step_s = statistics.median(steps[name])
                row.update({"decode_step_s": step_s, "compile_s": compile_s if model is compiled else 0.0})
                row.update(roofline_columns(model, cond.rows, cond.length, grid,
                                            flops.by_phase["decode"] / (tokens - 1), step_s, limits))
            rows.append(row)
            fraction = f", {100 * row['roofline.decode_fraction']:.0f} % of the decode roofline" if name in steps else ""
            print(f"{resolution}px {name:20s} {row['visual_tokens_per_s']:6.1f} visual tokens/s "
                  f"({row['speedup_vs_llamagen']:.2f}x LlamaGen){fraction}; greedy tokens equal: {parity[name]}")
    out = Path(args.out)
    atomic_write_text(out, json.dumps({
        "benchmark": "engine_vs_llamagen", "model": "LlamaGen GPT-B t2i, random weights (tsbench's, loaded into both)",
        "prompt": PROMPT, "llamagen_repo": str(args.llamagen_repo), "environment": environment(device), **limits,
        "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
