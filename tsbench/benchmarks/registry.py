"""The benchmark registry and the single entry point ``load_prompts``.

Each entry is a ``Benchmark`` object (``base.py``) registered by ``"module:attr"`` string, so naming a
benchmark never imports another one's code and plugins can add their own. Adding a benchmark is one
module plus one line here.
"""
from __future__ import annotations

from pathlib import Path

from ..config.registry import Registry
from .base import Benchmark
from .errors import PromptFileError
from .prompts import PromptSet, apply_rewrites

BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
BENCHMARKS.register("genai-bench", "tsbench.benchmarks.genai_bench:GENAI_BENCH")
BENCHMARKS.register("geneval", "tsbench.benchmarks.geneval:GENEVAL")
BENCHMARKS.register("shapes", "tsbench.benchmarks.shapes.suite:SHAPES")
BENCHMARKS.register("txt", "tsbench.benchmarks.custom:TXT")
BENCHMARKS.register("jsonl", "tsbench.benchmarks.custom:JSONL")


def load_prompts(
    benchmark: str,
    *,
    version: str | int | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
    rewrites: str | Path | None = None,
) -> PromptSet:
    """Load a benchmark's prompts, attach rewrites (validated against the full set), then keep the first
    ``limit`` prompts. The returned set's ``sha256`` describes exactly the prompts returned."""
    prompt_set = BENCHMARKS.get(benchmark).load(None if version is None else str(version), data_dir, path)
    if rewrites is not None:
        prompt_set = apply_rewrites(prompt_set, rewrites)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise PromptFileError(f"limit must be a positive integer, got {limit!r}")
        prompt_set = prompt_set.replace_prompts(prompt_set.prompts[:limit])
    return prompt_set
