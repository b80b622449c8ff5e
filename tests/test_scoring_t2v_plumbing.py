"""Plumbing of the t2v_metrics backend, tested with a FAKE ``t2v_metrics`` module (deterministic
scores from a hash of image path and text). This checks the request/response protocol, the
subprocess worker and the in-process path; it says nothing about real VQAScore values."""
from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable, ScoringInputError
from tsbench.scoring.vqascore_t2v import WORKER, T2VMetricsScorer

FAKE = textwrap.dedent('''
    """Fake t2v_metrics for plumbing tests."""
    import hashlib, os
    __version__ = "0.0-fake"
    CALLS = []

    class VQAScore:
        def __init__(self, model, device="cuda", cache_dir=None):
            if model == "broken":
                raise RuntimeError("no such model")
            self.model = model

        def batch_forward(self, dataset, batch_size=16, **kwargs):
            CALLS.append(len(dataset))
            out = []
            for d in dataset:
                assert os.path.isfile(d["images"][0]), d
                h = hashlib.sha256((d["images"][0] + "|" + d["texts"][0] + "|" + self.model).encode()).digest()
                out.append([[h[0] / 255.0]])
            return out
''')


def expected(path, text, model="clip-flant5-xxl"):
    return hashlib.sha256(f"{path}|{text}|{model}".encode()).digest()[0] / 255.0


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkgs"
    pkg.mkdir()
    (pkg / "t2v_metrics.py").write_text(FAKE)
    monkeypatch.setenv("PYTHONPATH", str(pkg))  # seen by the worker subprocess
    return pkg


@pytest.fixture
def items(tmp_path):
    out = []
    for i in range(5):
        p = tmp_path / f"{i:05d}.png"
        Image.new("RGB", (4, 4), (i, 0, 0)).save(p)
        out.append(ScoreItem(f"{i:05d}", 0, p, f"prompt {i}"))
    return out


def test_subprocess_worker_scores_in_order(fake_env, items):
    scorer = T2VMetricsScorer(python=sys.executable, batch_size=2)
    assert scorer.version == "t2v_metrics 0.0-fake; clip-flant5-xxl"
    rows = scorer.score(items)
    assert [(r.prompt_id, r.sample, r.metric, r.scorer) for r in rows] == [
        (it.prompt_id, 0, "vqascore", "vqascore-t2v") for it in items]
    assert [r.score for r in rows] == [expected(str(it.image_path.resolve()), it.prompt) for it in items]


def test_worker_protocol_over_stdin_without_tsbench(fake_env, tmp_path, items):
    requests = "".join(json.dumps({"id": it.prompt_id, "image": str(it.image_path), "text": it.prompt}) + "\n"
                       for it in items[:3])
    out = tmp_path / "scores.jsonl"
    # run the file by path in an interpreter where importing tsbench fails
    launcher = ("import sys, runpy; sys.modules['tsbench'] = None; sys.argv[0] = sys.argv[1]; del sys.argv[1]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", launcher, str(WORKER), "--out", str(out), "--batch-size", "2"],
                          input=requests, text=True, capture_output=True, env={"PYTHONPATH": str(fake_env)})
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["meta"]["t2v_metrics_version"] == "0.0-fake" and lines[0]["meta"]["model"] == "clip-flant5-xxl"
    assert lines[1:] == [{"id": it.prompt_id, "score": expected(str(it.image_path), it.prompt)} for it in items[:3]]


def test_in_process_when_importable(fake_env, items, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_env))
    monkeypatch.delitem(sys.modules, "t2v_metrics", raising=False)
    monkeypatch.setitem(sys.modules, "t2v_metrics", importlib.import_module("t2v_metrics"))  # removed after
    scorer = SCORERS.get("vqascore-t2v")(batch_size=3)
    rows = scorer.score(items)
    assert [r.score for r in rows] == [expected(str(it.image_path.resolve()), it.prompt) for it in items]
    assert sys.modules["t2v_metrics"].CALLS == [3, 2]  # batched as asked


def test_unavailable_without_t2v_metrics(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "t2v_metrics", None)  # makes the import fail
    with pytest.raises(ScorerUnavailable, match="--scorer-python"):
        T2VMetricsScorer()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # worker python without t2v_metrics
    with pytest.raises(ScorerUnavailable, match="cannot import t2v_metrics"):
        T2VMetricsScorer(python=sys.executable)
    with pytest.raises(ScorerUnavailable, match="cannot run scorer python"):
        T2VMetricsScorer(python=str(tmp_path / "no-python"))


def test_model_build_failure_and_missing_image(fake_env, items, tmp_path):
    scorer = T2VMetricsScorer(model="broken", python=sys.executable)  # the probe only imports
    with pytest.raises(ScorerUnavailable, match="no such model"):
        scorer.score(items[:1])
    ok = T2VMetricsScorer(python=sys.executable)
    with pytest.raises(ScoringInputError, match="does not exist"):
        ok.score([ScoreItem("x", 0, tmp_path / "gone.png", "p")])
