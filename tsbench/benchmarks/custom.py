"""Custom prompt sets: ``txt`` (one prompt a line) and ``jsonl`` (``id``, ``prompt``, optional ``tags``).

They use the defaults of ``Benchmark``: the keyed PNG layout, a mean per tag and the mean over all
prompts. No published number exists for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import Benchmark
from .errors import PromptFileError
from .prompts import PromptSet, load_jsonl, load_txt


@dataclass(frozen=True)
class PromptFile(Benchmark):
    reader: Callable[[str | Path], PromptSet] | None = None

    def load(self, version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        if path is None:
            raise PromptFileError(f"benchmark {self.name!r} needs a prompt file: pass path (--prompts FILE.{self.name})")
        assert self.reader is not None
        return self.reader(path)


TXT = PromptFile(name="txt", title="prompt file", needs_path=True, reader=load_txt,
                 protocol="your prompts, one a line; mean score per prompt")
JSONL = PromptFile(name="jsonl", title="prompt file", needs_path=True, reader=load_jsonl,
                   protocol="your prompts with optional tags; mean per tag and over all prompts")
