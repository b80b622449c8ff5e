"""The scorer registry is lazy: importing tsbench's scoring and benchmark layers must not import the
heavy backends (transformers, open_clip, t2v_metrics)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tsbench.config.registry import RegistryError
from tsbench.scoring import SCORERS, Scorer

REPO = Path(__file__).resolve().parents[1]


def test_import_does_not_load_backends():
    code = ("import sys, tsbench.scoring, tsbench.benchmarks, tsbench.benchmarks.layout, tsbench.scoring.aggregate; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'open_clip', 't2v_metrics'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_scorers_follow_the_protocol():
    assert SCORERS.names() == ["clipscore", "geneval", "geneval-official", "shapes-oracle", "vqascore-hf",
                               "vqascore-t2v"]
    expected_metric = {"clipscore": "clipscore", "geneval": "geneval_correct", "geneval-official": "geneval_correct",
                       "shapes-oracle": "geneval_correct", "vqascore-hf": "vqascore", "vqascore-t2v": "vqascore"}
    for name in SCORERS.names():
        cls = SCORERS.get(name)
        assert cls.name == name and cls.metric == expected_metric[name]
        assert callable(getattr(cls, "score"))
    with pytest.raises(RegistryError, match="Did you mean 'clipscore'"):
        SCORERS.get("clip-score")


def test_protocol_is_structural():
    class Mine:
        name, metric, version = "mine", "m", "1"

        def score(self, items):
            return []

    assert isinstance(Mine(), Scorer) and not isinstance(object(), Scorer)
