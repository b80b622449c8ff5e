"""The scorer registry is lazy: importing tsbench's scoring and benchmark layers must not import the
heavy backends (transformers, open_clip, t2v_metrics)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tsbench.benchmarks import BENCHMARKS
from tsbench.config.registry import RegistryError
from tsbench.scoring import SCORERS, Scorer
from tsbench.scoring.base import AGGREGATIONS, NEEDS

REPO = Path(__file__).resolve().parents[1]


def test_import_does_not_load_backends():
    code = ("import sys, tsbench.scoring, tsbench.benchmarks, tsbench.benchmarks.layout, tsbench.scoring.aggregate; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'open_clip', 't2v_metrics'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_scorers_follow_the_protocol():
    assert SCORERS.names() == ["clipscore", "geneval", "geneval-official", "shapes-oracle", "vqascore-hf",
                               "vqascore-t2v"]
    expected_metric = {"clipscore": "clipscore", "geneval": "geneval", "geneval-official": "geneval",
                       "shapes-oracle": "geneval", "vqascore-hf": "vqascore", "vqascore-t2v": "vqascore"}
    for name in SCORERS.names():
        cls = SCORERS.get(name)
        assert cls.name == name and cls.metric == expected_metric[name]
        assert callable(getattr(cls, "score"))
        # the declarations generic code reads without building the scorer
        assert cls.aggregation in AGGREGATIONS and isinstance(cls.higher_is_better, bool)
        assert set(cls.needs) <= set(NEEDS) and isinstance(cls.caveat, str)
        assert isinstance(cls.measured_with({}), str) and cls.measured_with({}) != ""
    with pytest.raises(RegistryError, match="Did you mean 'clipscore'"):
        SCORERS.get("clip-score")


def test_measured_with_names_the_scoring_model_that_published_rows_name():
    """Only the reference backends, at their defaults, measure what the published rows measured."""
    genai, geneval = BENCHMARKS.get("genai-bench"), BENCHMARKS.get("geneval")
    assert SCORERS.get("vqascore-t2v").measured_with({}) == genai.published["vqascore"].measured_with
    assert SCORERS.get("vqascore-t2v").measured_with({"model": "clip-flant5-xl"}) == "clip-flant5-xl"
    assert SCORERS.get("geneval-official").measured_with({"python": "p", "repo": "r", "model_path": "m"}) \
        == geneval.published["geneval"].measured_with
    # a changed evaluator option, any transformers VLM, and the transformers GenEval path never match
    assert SCORERS.get("geneval-official").measured_with({"options": {"threshold": 0.5}}) != "geneval-official"
    assert SCORERS.get("vqascore-hf").measured_with({"model": "clip-flant5-xxl"}) == "hf:clip-flant5-xxl"
    assert SCORERS.get("geneval").measured_with({}) != "geneval-official"
    assert SCORERS.get("geneval").caveat == "GenEval rules, transformers detector: not the official numbers"
    # CLIPScore's variants carry the defaults of their definitions
    assert SCORERS.get("clipscore").measured_with({}) == "ViT-L-14/openai; torchmetrics"
    assert SCORERS.get("clipscore").measured_with({"variant": "hessel"}) == \
        "ViT-B-32/openai; hessel; prefix 'A photo depicts '"


def test_protocol_is_structural():
    class Mine:
        name, metric, version = "mine", "m", "1"
        aggregation, higher_is_better, needs, caveat = "mean", True, (), ""

        @classmethod
        def measured_with(cls, options):
            return "mine"

        def score(self, items):
            return []

    assert isinstance(Mine(), Scorer) and not isinstance(object(), Scorer)
