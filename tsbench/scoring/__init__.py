"""Quality scorers (VQAScore, CLIPScore, GenEval) and official aggregation.

Backends are registered by ``"module:attr"`` string, so importing this package does not import
torch, transformers or open_clip; ``SCORERS.get(name)(**options)`` builds one.
"""
from ..config.registry import Registry
from .base import ScoreItem, ScoreRow, Scorer, ScorerUnavailable, ScoringInputError

SCORERS: Registry[type] = Registry("scorer")
SCORERS.register("vqascore-hf", "tsbench.scoring.vqascore_hf:HFVQAScorer")
SCORERS.register("vqascore-t2v", "tsbench.scoring.vqascore_t2v:T2VMetricsScorer")
SCORERS.register("clipscore", "tsbench.scoring.clipscore:CLIPScorer")
SCORERS.register("geneval", "tsbench.scoring.geneval_scorer:GenEvalScorer")
SCORERS.register("geneval-official", "tsbench.scoring.geneval_official:OfficialGenEvalScorer")
SCORERS.register("shapes-oracle", "tsbench.scoring.shapes_oracle:ShapesOracleScorer")

__all__ = ["SCORERS", "ScoreItem", "ScoreRow", "Scorer", "ScorerUnavailable", "ScoringInputError"]
