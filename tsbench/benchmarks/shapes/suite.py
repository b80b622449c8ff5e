"""ShapesBench as a benchmark: a fixed, seeded draw of test-split prompts balanced over the six tags.

Prompt ids are positions (``00000``...), metadata is GenEval's schema, so the oracle scorer and the
GenEval-style summary (per-tag accuracy, overall = mean over tags) apply unchanged. Images use the
keyed PNG layout; there is no official evaluator to feed and no published number.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import PromptFileError
from ..geneval import GenEvalRules
from ..prompts import Prompt, PromptSet
from .prompts import SPLITS, shapes_prompts

PROMPTS_PER_SPLIT = 120  # 20 per tag: enough to separate windows, cheap enough for CPU runs
SEED = 0
DEFAULT_VERSION = "test"


def load_shapes(version: str | None = None) -> PromptSet:
    split = version or DEFAULT_VERSION
    if split not in SPLITS:
        raise PromptFileError(f"ShapesBench version {split!r} is not a split; use one of {SPLITS} (default "
                              f"{DEFAULT_VERSION!r}: prompts no shipped model was trained on)")
    records = shapes_prompts(split, PROMPTS_PER_SPLIT, seed=SEED)
    prompts = [Prompt(id=f"{i:05d}", text=r["prompt"], tags=(r["tag"],), metadata=r) for i, r in enumerate(records)]
    return PromptSet.create("shapes", split, prompts)


@dataclass(frozen=True)
class ShapesBench(GenEvalRules):
    def load(self, version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        if path is not None:
            raise PromptFileError("shapes prompts are generated, not read: drop quality.path (or --prompts)")
        return load_shapes(version)


SHAPES = ShapesBench(
    name="shapes", title="ShapesBench", versions=SPLITS, default_version=DEFAULT_VERSION,
    protocol=f"{PROMPTS_PER_SPLIT} held-out prompts (20 per GenEval tag), judged exactly by shapes-oracle",
)
