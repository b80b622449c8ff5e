"""GenAI-Bench: prompts (1,600 by default, 527 optional) from the official ``genai_image.json`` +
``genai_skills.json``, the official image files and t2v_metrics' aggregation.

Prompts keep the official key (e.g. ``"00001"``) as id, and tags are joined **by id, never by
position** (the official evaluator's positional lookup is off by one on the 1-based 527 file; see
protocols.md §1.4). Tag lists are those of t2v_metrics ``genai_bench/evaluate.py`` (``tag_groups``).

Version: the official scripts and the current leaderboard use 1,600 prompts; the VQAScore paper used
527. Token-Shuffle's Table 1 does not say which, so neither version is "its" protocol, and scores of
the two versions are not comparable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsbench.io import file_sha256

from .base import Aggregate, Benchmark, PublishedMetric, SummaryRule, members, tags_in_order
from .data import resolve_data_dir
from .errors import PromptFileError
from .layout import keyed_image_path, write_jpeg
from .prompts import Prompt, PromptSet

if TYPE_CHECKING:
    from PIL import Image

BASIC_SKILLS = ("attribute", "scene", "spatial relation", "action relation", "part relation")
ADVANCED_SKILLS = ("counting", "comparison", "differentiation", "negation", "universal")
# as printed by the official script; "all" is reported by tsbench as "overall"
TAG_GROUPS = {
    "basic": [*BASIC_SKILLS, "basic"],
    "advanced": [*ADVANCED_SKILLS, "advanced"],
    "overall": ["basic", "advanced", "all"],
}
VERSIONS = ("527", "1600")
DEFAULT_VERSION = "1600"  # the official scripts' default (--num_prompts 1600) and the leaderboard's
IMAGE_FORMAT = "jpeg"  # generate.py saves <key>.jpeg and evaluate.py reads exactly those files


def normalise_version(version: str | int | None) -> str:
    v = DEFAULT_VERSION if version is None else str(version).strip()
    if v not in VERSIONS:
        raise PromptFileError(f"GenAI-Bench version {version!r} does not exist; choose one of {', '.join(VERSIONS)}")
    return v


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PromptFileError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); re-download it") from None


def read_files(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """(prompts by key, skill -> prompt ids as ints), validated so that every tagged id exists."""
    image_path, skills_path = folder / "genai_image.json", folder / "genai_skills.json"
    images, skills = _load_json(image_path), _load_json(skills_path)
    if not isinstance(images, dict) or not images:
        raise PromptFileError(f"{image_path}: expected a non-empty object keyed by prompt id")
    for key, entry in images.items():
        if not key.isdigit():
            raise PromptFileError(f"{image_path}: key {key!r} is not a numeric prompt id")
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise PromptFileError(f"{image_path}: entry {key!r} has no string field 'prompt'")
    if not isinstance(skills, dict):
        raise PromptFileError(f"{skills_path}: expected an object {{skill: [prompt index, ...]}}")
    known = {int(k) for k in images}
    for tag, ids in skills.items():
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise PromptFileError(f"{skills_path}: skill {tag!r} must list integer prompt indices")
        missing = sorted(set(ids) - known)
        if missing:
            raise PromptFileError(
                f"{skills_path}: skill {tag!r} lists prompt ids {missing[:5]} that are not keys of {image_path}; "
                "the two files are from different versions, re-download both"
            )
    return images, skills


def load_genai_bench(version: str | int | None = None, data_dir: str | Path | None = None) -> PromptSet:
    version = normalise_version(version)
    folder = resolve_data_dir(f"genai-bench-{version}", data_dir)
    images, skills = read_files(folder)
    tags_of: dict[int, list[str]] = {}
    for tag, ids in skills.items():
        for i in ids:
            tags_of.setdefault(i, []).append(tag)
    prompts = [
        Prompt(
            id=key,
            text=entry["prompt"],
            tags=tuple(tags_of.get(int(key), ())),
            metadata={k: v for k, v in entry.items() if k != "prompt"},
        )
        for key, entry in images.items()
    ]
    sources = {n: file_sha256(folder / n) for n in ("genai_image.json", "genai_skills.json")}
    return PromptSet.create("genai-bench", version, prompts, sources)


@dataclass(frozen=True)
class GenAIBench(Benchmark):
    def load(self, version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        if path is not None:
            raise PromptFileError("genai-bench reads the official files; use data_dir (--data-dir), not a prompt file")
        return load_genai_bench(version, data_dir)

    def dataset(self, version: str | None) -> str:
        return f"genai-bench-{normalise_version(version)}"

    def summary_rule(self, prompts: PromptSet, metric: str) -> SummaryRule:
        """Each skill and ``basic``/``advanced`` over their own lists; overall over the union of tagged prompts."""
        tags = [Aggregate(tag, (members(prompts, tag),)) for tag in tags_in_order(prompts, self.tags)]
        tagged = tuple(p.id for p in prompts if p.tags)
        return SummaryRule((*tags, Aggregate("overall", (tagged,), complete_only=True)), unit="prompt")

    def image_path(self, root: str | Path, prompt_id: str, sample: int) -> Path:
        """``<key>.jpeg`` as the official generate.py writes and evaluate.py reads (``--gen_model`` = the
        images folder); extra samples ``<key>_<n>.jpeg``, which the official script does not read."""
        return keyed_image_path(root, prompt_id, sample, ext=IMAGE_FORMAT)

    def write_image(self, root: str | Path, prompt: Prompt, sample: int, image: "Image.Image") -> Path:
        return write_jpeg(image, self.image_path(root, prompt.id, sample))


GENAI_BENCH = GenAIBench(
    name="genai-bench", title="GenAI-Bench", versions=VERSIONS, default_version=DEFAULT_VERSION,
    tags=tuple(t for group in ("basic", "advanced") for t in TAG_GROUPS[group]),
    protocol="1,600 prompts (527 optional), 1 image per prompt, VQAScore with clip-flant5-xxl (vqascore-t2v)",
    # t2v_metrics' table and Token-Shuffle Tables 1 and 4 use clip-flant5-xxl (protocols.md §2.5); the GPT-4o
    # rows of t2v_metrics' table are VQAScore read from GPT-4o
    published={"vqascore": PublishedMetric("vqascore", "clip-flant5-xxl"),
               "vqascore_gpt4o": PublishedMetric("vqascore", "gpt-4o")},
)
