"""Benchmark prompt suites, official data files and image layouts (stdlib + Pillow only)."""
from .errors import BenchmarkInputError, DataFetchError, DataNotFoundError, PromptFileError
from .prompts import Prompt, PromptSet, apply_rewrites, load_jsonl, load_txt
from .suites import PROMPT_SUITES, load_prompts

__all__ = [
    "BenchmarkInputError", "DataFetchError", "DataNotFoundError", "PromptFileError",
    "Prompt", "PromptSet", "apply_rewrites", "load_jsonl", "load_txt",
    "PROMPT_SUITES", "load_prompts",
]
