"""ShapesBench's exact judge as a scorer: palette segmentation + geometry + GenEval's rules.

Rows match the GenEval scorers' (metric ``geneval``, score 1.0/0.0, tag and reason in details), so
ShapesBench runs summarise, report and compare exactly like GenEval runs.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..benchmarks.geneval import METRIC
from ..benchmarks.shapes.oracle import TOLERANCE, judge_image
from .base import ScoreItem, ScoreRow, ScoringInputError, load_image, option_text
from .geneval_rules import RuleOptions


class ShapesOracleScorer:
    name = "shapes-oracle"
    metric = METRIC
    aggregation = "official"
    higher_is_better = True
    needs: tuple[str, ...] = ()
    caveat = ""

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        return f"shapes-oracle{option_text(options.get('options') or {})}"

    def __init__(self, *, options: Mapping[str, Any] | None = None) -> None:
        """``options``: GenEval's ``--options`` keys (position_threshold, counting_threshold, ...)."""
        self.options = RuleOptions.from_strings(options or {})
        self.version = f"palette oracle (tolerance {TOLERANCE}); rules geneval@af4902f {self.options}"

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        rows = []
        for it in items:
            if "include" not in it.metadata or "tag" not in it.metadata:
                raise ScoringInputError(f"prompt {it.prompt_id}: the shapes oracle needs GenEval-schema metadata "
                                        "('tag', 'include'); load prompts with load_prompts('shapes')")
            correct, reason = judge_image(np.asarray(load_image(it.image_path)), it.metadata, self.options)
            rows.append(ScoreRow(it.prompt_id, it.sample, self.metric, float(correct), self.name, self.version,
                                 {"tag": it.metadata["tag"], "reason": reason}))
        return rows
