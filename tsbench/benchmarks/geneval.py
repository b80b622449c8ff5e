"""GenEval: prompts from the official ``evaluation_metadata.jsonl`` (553 lines), the official image
folders and ``summary_scores.py``'s aggregation.

Prompt id = the 0-based line number as ``f"{index:05d}"`` (the official image folder name); the
whole metadata line is kept, because the official evaluator reads it back from
``<index>/metadata.jsonl`` and the decision rules need ``include``/``exclude``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tsbench.io import file_sha256

from .base import Aggregate, Benchmark, PublishedMetric, SummaryRule, members
from .data import resolve_data_dir
from .errors import PromptFileError
from .layout import geneval_image_path, write_geneval_metadata, write_png
from .prompts import Prompt, PromptSet

if TYPE_CHECKING:
    from PIL import Image

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
VERSION = "553"
METRIC = "geneval"  # per image: 1.0 if the image is correct, else 0.0


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


@dataclass(frozen=True)
class GenEvalRules(Benchmark):
    """Any prompt set in GenEval's schema (one of the six tags per prompt) summarised as
    ``summary_scores.py`` does: each tag = the fraction of correct images, overall = the mean of the tags."""

    tags: tuple[str, ...] = TAGS

    def summary_rule(self, prompts: PromptSet, metric: str) -> SummaryRule:
        tags = [(tag, members(prompts, tag)) for tag in self.tags]
        tags = [(tag, ids) for tag, ids in tags if ids]
        overall = Aggregate("overall", tuple(ids for _, ids in tags), complete_only=True)
        return SummaryRule((*(Aggregate(tag, (ids,)) for tag, ids in tags), overall), unit="image",
                           binary=metric == METRIC)


@dataclass(frozen=True)
class GenEval(GenEvalRules):
    def load(self, version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        if path is not None:
            raise PromptFileError("geneval reads the official files; use data_dir (--data-dir), not a prompt file")
        return load_geneval(version, data_dir)

    def dataset(self, version: str | None) -> str:
        return "geneval"

    def image_path(self, root: str | Path, prompt_id: str, sample: int) -> Path:
        return geneval_image_path(root, prompt_id, sample)

    def write_image(self, root: str | Path, prompt: Prompt, sample: int, image: "Image.Image") -> Path:
        """The prompt's ``metadata.jsonl`` first, then the PNG: the official evaluator reads both."""
        write_geneval_metadata(root, prompt.id, prompt.metadata)
        return write_png(image, self.image_path(root, prompt.id, sample))


GENEVAL = GenEval(
    name="geneval", title="GenEval", versions=(VERSION,), default_version=VERSION,
    protocol="553 prompts x 4 images, the official evaluator (geneval-official: mmdet Mask2Former Swin-S + CLIP ViT-L-14)",
    published={METRIC: PublishedMetric(METRIC, "geneval-official")},
)
