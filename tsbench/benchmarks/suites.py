"""The prompt-suite registry and the single entry point ``load_prompts``.

Each suite is a function ``(version, data_dir, path) -> PromptSet``; registering by string keeps
importing tsbench cheap and lets plugins add suites.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config.registry import Registry
from .errors import PromptFileError
from .prompts import PromptSet, apply_rewrites, load_jsonl, load_txt

SuiteLoader = Callable[[str | None, str | Path | None, str | Path | None], PromptSet]

PROMPT_SUITES: Registry[SuiteLoader] = Registry("prompt suite")
PROMPT_SUITES.register("genai-bench", "tsbench.benchmarks.genai_bench:load_suite")
PROMPT_SUITES.register("geneval", "tsbench.benchmarks.geneval:load_suite")
PROMPT_SUITES.register("shapes", "tsbench.benchmarks.shapes.suite:load_suite")


def _file_suite(loader: Callable[[str | Path], PromptSet], kind: str) -> SuiteLoader:
    def load(version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        if path is None:
            raise PromptFileError(f"benchmark {kind!r} needs a prompt file: pass path (--prompts FILE.{kind})")
        return loader(path)

    return load


PROMPT_SUITES.register("txt", _file_suite(load_txt, "txt"))
PROMPT_SUITES.register("jsonl", _file_suite(load_jsonl, "jsonl"))


def load_prompts(
    benchmark: str,
    *,
    version: str | int | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
    rewrites: str | Path | None = None,
) -> PromptSet:
    """Load a prompt suite, attach rewrites (validated against the full set), then keep the first
    ``limit`` prompts. The returned set's ``sha256`` describes exactly the prompts returned."""
    loader = PROMPT_SUITES.get(benchmark)
    prompt_set = loader(None if version is None else str(version), data_dir, path)
    if rewrites is not None:
        prompt_set = apply_rewrites(prompt_set, rewrites)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise PromptFileError(f"limit must be a positive integer, got {limit!r}")
        prompt_set = prompt_set.replace_prompts(prompt_set.prompts[:limit])
    return prompt_set
