"""GenEval prompts from the official ``evaluation_metadata.jsonl`` (553 lines).

Prompt id = the 0-based line number as ``f"{index:05d}"`` (the official image folder name); the
whole metadata line is kept, because the official evaluator reads it back from
``<index>/metadata.jsonl`` and the decision rules need ``include``/``exclude``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .data import resolve_data_dir
from .errors import PromptFileError
from .prompts import Prompt, PromptSet, file_sha256

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
VERSION = "553"


def load_geneval(version: str | None = None, data_dir: str | Path | None = None) -> PromptSet:
    if version not in (None, VERSION):
        raise PromptFileError(f"GenEval has one prompt set, version {VERSION!r}; got {version!r}")
    folder = resolve_data_dir("geneval", data_dir)
    path = folder / "evaluation_metadata.jsonl"
    prompts = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        where = f"{path}:{index + 1}"
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{where}: invalid JSON ({e.msg}); re-download the file") from None
        if meta.get("tag") not in TAGS or not isinstance(meta.get("prompt"), str):
            raise PromptFileError(f"{where}: needs 'prompt' and 'tag' in {TAGS}, got tag {meta.get('tag')!r}")
        if not isinstance(meta.get("include"), list):
            raise PromptFileError(f"{where}: field 'include' must be a list of clauses")
        prompts.append(Prompt(id=f"{index:05d}", text=meta["prompt"], tags=(meta["tag"],), metadata=meta))
    return PromptSet.create("geneval", VERSION, prompts, {path.name: file_sha256(path)})


def load_object_names(data_dir: str | Path | None = None) -> list[str]:
    """The 80 COCO class names in detector order (GenEval spelling, e.g. ``computer mouse``)."""
    path = resolve_data_dir("geneval", data_dir) / "object_names.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_suite(version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
    if path is not None:
        raise PromptFileError("geneval reads the official files; use data_dir (--data-dir), not a prompt file")
    return load_geneval(version, data_dir)
