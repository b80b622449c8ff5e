"""Prompt records, prompt sets and loaders for user-supplied prompt files.

A ``PromptSet`` carries a SHA-256 over its content (ids, texts, tags, rewrites) so that results can
record exactly which prompts were used and prompt drift between runs is detectable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..io import SAFE_NAME_RULE, file_sha256, is_safe_name
from .errors import PromptFileError


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    rewritten: str | None = None

    @property
    def text_used(self) -> str:
        """Which text the generator gets: ``"rewritten"`` or ``"original"``."""
        return "original" if self.rewritten is None else "rewritten"

    @property
    def generation_text(self) -> str:
        """The text to condition the image generator on (the rewrite when there is one)."""
        return self.text if self.rewritten is None else self.rewritten

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "rewritten": self.rewritten,
            "text_used": self.text_used,
        }


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: str
    prompts: tuple[Prompt, ...]
    sha256: str
    sources: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256 of the file read

    @classmethod
    def create(
        cls, name: str, version: str, prompts: Iterable[Prompt], sources: Mapping[str, str] | None = None
    ) -> "PromptSet":
        prompts = tuple(prompts)
        _check_unique_ids(prompts, name)
        return cls(name, str(version), prompts, content_sha256(prompts), dict(sources or {}))

    def replace_prompts(self, prompts: Iterable[Prompt]) -> "PromptSet":
        """Same set identity with other prompts; the content hash is recomputed."""
        prompts = tuple(prompts)
        return dataclasses.replace(self, prompts=prompts, sha256=content_sha256(prompts))

    @property
    def rewritten(self) -> bool:
        return any(p.rewritten is not None for p in self.prompts)

    def by_id(self) -> dict[str, Prompt]:
        return {p.id: p for p in self.prompts}

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)


def content_sha256(prompts: Iterable[Prompt]) -> str:
    """SHA-256 of a canonical JSON of everything that changes what is generated or how it is scored."""
    h = hashlib.sha256()
    for p in prompts:
        row = [p.id, p.text, list(p.tags), p.metadata, p.rewritten]
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def check_prompt_id(prompt_id: str, where: str) -> str:
    if not is_safe_name(prompt_id):  # ids become file names (``<id>.png``)
        raise PromptFileError(f"{where}: prompt id {prompt_id!r} cannot be used as a file name; {SAFE_NAME_RULE}")
    return prompt_id


def _check_unique_ids(prompts: tuple[Prompt, ...], where: str) -> None:
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise PromptFileError(f"{where}: prompt id {p.id!r} occurs more than once; ids must be unique")
        seen.add(p.id)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"prompt file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as e:
        raise PromptFileError(f"{path}: not UTF-8 text ({e}); save the file as UTF-8") from None


def load_txt(path: str | Path, *, name: str | None = None) -> PromptSet:
    """One prompt per line; id = 0-based line number zero-padded to 5 digits; blank lines are skipped
    (their numbers are not reused, so ids stay tied to file lines)."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    width = max(5, len(str(len(lines) - 1)))
    prompts = [
        Prompt(id=f"{i:0{width}d}", text=line.strip())
        for i, line in enumerate(lines)
        if line.strip()
    ]
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found (expected one prompt per line)")
    return PromptSet.create(name or path.stem, "custom", prompts, {path.name: file_sha256(path)})


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line; malformed lines name file and line."""
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise PromptFileError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def load_jsonl(path: str | Path, *, name: str | None = None) -> PromptSet:
    """One JSON object per line: ``id`` (str or int), ``prompt`` (str), optional ``tags`` (list of str
    or one str); all other fields are kept as metadata."""
    path = Path(path)
    prompts = []
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        for key in ("id", "prompt"):
            if key not in obj:
                raise PromptFileError(f"{where}: missing field {key!r} (each line needs 'id' and 'prompt')")
        pid, text, tags = obj.pop("id"), obj.pop("prompt"), obj.pop("tags", [])
        if not isinstance(pid, (str, int)) or isinstance(pid, bool):
            raise PromptFileError(f"{where}: field 'id' must be a string or integer, got {pid!r}")
        if not isinstance(text, str) or not text.strip():
            raise PromptFileError(f"{where}: field 'prompt' must be a non-empty string, got {text!r}")
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise PromptFileError(f"{where}: field 'tags' must be a list of strings, got {tags!r}")
        prompts.append(Prompt(check_prompt_id(str(pid), where), text, tuple(tags), obj))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found (expected one JSON object per line)")
    return PromptSet.create(name or path.stem, "custom", prompts, {path.name: file_sha256(path)})


def read_rewrites(path: str | Path) -> dict[str, str]:
    """Mapping prompt id -> rewritten prompt, from a JSON object or JSONL lines ``{"id", "rewritten"}``
    (``"prompt"`` is accepted in place of ``"rewritten"``)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        mapping: dict[str, str] = {}
        for n, obj in iter_jsonl(path):
            text = obj.get("rewritten", obj.get("prompt"))
            if "id" not in obj or text is None:
                raise PromptFileError(f"{path}:{n}: each line needs 'id' and 'rewritten' (or 'prompt')")
            if str(obj["id"]) in mapping:
                raise PromptFileError(f"{path}:{n}: id {obj['id']!r} is rewritten twice")
            mapping[str(obj["id"])] = text
    else:
        try:
            mapping = json.loads(_read_text(path))
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); expected an object "
                                  "{prompt id: rewritten prompt} or a .jsonl file") from None
        if not isinstance(mapping, dict):
            raise PromptFileError(f"{path}: expected a JSON object {{prompt id: rewritten prompt}}")
        mapping = {str(k): v for k, v in mapping.items()}
    for pid, text in mapping.items():
        if not isinstance(text, str) or not text.strip():
            raise PromptFileError(f"{path}: rewrite of prompt {pid!r} must be a non-empty string, got {text!r}")
    return mapping


def apply_rewrites(prompt_set: PromptSet, mapping_file: str | Path, *, partial: bool = False) -> PromptSet:
    """Attach rewritten texts; every prompt then reports ``text_used``.

    Ids not in the set are always an error (usually an id-scheme mismatch, e.g. ``1`` vs ``00001``);
    prompts without a rewrite are an error unless ``partial`` is true, because silently mixing
    original and rewritten prompts makes the score incomparable with both protocols.
    """
    mapping = read_rewrites(mapping_file)
    ids = prompt_set.by_id()
    unknown = sorted(set(mapping) - set(ids))
    if unknown:
        raise PromptFileError(
            f"{mapping_file}: {len(unknown)} id(s) not in prompt set {prompt_set.name!r}, e.g. {unknown[:3]}; "
            f"ids of this set look like {list(ids)[:2]}"
        )
    missing = [pid for pid in ids if pid not in mapping]
    if missing and not partial:
        raise PromptFileError(
            f"{mapping_file}: no rewrite for {len(missing)} of {len(ids)} prompts, e.g. {missing[:3]}; "
            "add them or allow a partial rewrite"
        )
    return prompt_set.replace_prompts(
        dataclasses.replace(p, rewritten=mapping.get(p.id)) for p in prompt_set.prompts
    )
