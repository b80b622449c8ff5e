"""Benchmarks: prompt sets, official data files, image layouts and summary rules (stdlib + Pillow only)."""
from .base import Aggregate, Benchmark, PublishedMetric, SummaryRule
from .errors import BenchmarkInputError, DataFetchError, DataNotFoundError, PromptFileError
from .prompts import Prompt, PromptSet, apply_rewrites, load_jsonl, load_txt
from .registry import BENCHMARKS, load_prompts

__all__ = [
    "Aggregate", "Benchmark", "PublishedMetric", "SummaryRule",
    "BenchmarkInputError", "DataFetchError", "DataNotFoundError", "PromptFileError",
    "Prompt", "PromptSet", "apply_rewrites", "load_jsonl", "load_txt",
    "BENCHMARKS", "load_prompts",
]
