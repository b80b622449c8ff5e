"""VQAScore through t2v_metrics (the reference implementation, default ``clip-flant5-xxl``).

t2v_metrics 3.0 pins old torch/transformers, so it usually lives in its own environment: pass
``python=/path/to/that/python`` and tsbench runs the standalone ``t2v_worker.py`` there (by file
path, so tsbench need not be installed in that environment). Without ``python`` it is used
in-process when importable.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

from . import t2v_worker
from .base import ScoreItem, ScoreRow, ScorerUnavailable, ScoringInputError

WORKER = Path(t2v_worker.__file__).resolve()
DEFAULT_MODEL = "clip-flant5-xxl"


class T2VMetricsScorer:
    name = "vqascore-t2v"
    metric = "vqascore"
    aggregation = "official"
    higher_is_better = True
    needs = ("python",)  # t2v_metrics 3.0 pins old torch: it usually lives in its own environment
    caveat = ""

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        """The t2v_metrics model name, as published tables name it (``clip-flant5-xxl``)."""
        return str(options.get("model", DEFAULT_MODEL))

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        python: str | Path | None = None,
        device: str = "cuda",
        batch_size: int = 16,
        cache_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> None:
        self.model, self.device, self.batch_size, self.timeout = model, device, batch_size, timeout
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.python = None if python is None else str(python)
        if self.python is None:
            self._score_fn, version = self._in_process()
        else:
            self._score_fn = None
            version = self._probe()
        self.version = f"t2v_metrics {version}; {model}"

    def _in_process(self) -> tuple[Any, str]:
        try:
            import t2v_metrics
        except Exception as e:  # ImportError, or RuntimeError when ffmpeg is missing (t2v_metrics 3.0)
            raise ScorerUnavailable(
                f"t2v_metrics is not importable here ({type(e).__name__}: {e}); install t2v-metrics==3.0 in a "
                "separate environment and pass its interpreter with --scorer-python"
            ) from None
        kwargs = {"cache_dir": self.cache_dir} if self.cache_dir else {}
        try:
            score_fn = t2v_metrics.VQAScore(model=self.model, device=self.device, **kwargs)
        except Exception as e:
            raise ScorerUnavailable(f"t2v_metrics.VQAScore(model={self.model!r}) failed: {type(e).__name__}: {e}") from None
        return score_fn, t2v_worker.t2v_version(t2v_metrics)

    def _worker(self, out: Path, *extra: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.python, str(WORKER), "--model", self.model, "--device", self.device,
               "--batch-size", str(self.batch_size), "--out", str(out), *extra]
        if self.cache_dir:
            cmd += ["--cache-dir", self.cache_dir]
        try:
            return subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, timeout=self.timeout)
        except OSError as e:
            raise ScorerUnavailable(f"cannot run scorer python {self.python!r}: {e}") from None
        except subprocess.TimeoutExpired:
            raise ScorerUnavailable(f"t2v worker did not finish within {self.timeout} s") from None

    def _check(self, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode == 0:
            return
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        if proc.returncode == t2v_worker.EXIT_UNAVAILABLE:
            raise ScorerUnavailable(tail)
        raise RuntimeError(f"t2v worker ({self.python} {WORKER}) failed with status {proc.returncode}: {tail}")

    def _probe(self) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "probe.jsonl"
            self._check(self._worker(out, "--probe", stdin=subprocess.DEVNULL))
            return json.loads(out.read_text().splitlines()[0])["meta"]["t2v_metrics_version"]

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        for it in items:
            if not os.path.isfile(it.image_path):
                raise ScoringInputError(f"image {str(it.image_path)!r} does not exist; generate it first")
        requests = [{"id": str(i), "image": str(Path(it.image_path).resolve()), "text": it.prompt}
                    for i, it in enumerate(items)]
        if self._score_fn is not None:
            scores = dict(s for batch in t2v_worker.score_requests(self._score_fn, requests, self.batch_size) for s in batch)
        else:
            scores = self._score_in_worker(requests)
        missing = [r["id"] for r in requests if r["id"] not in scores]
        if missing:
            raise RuntimeError(f"t2v worker returned no score for {len(missing)} of {len(requests)} images")
        return [ScoreRow(it.prompt_id, it.sample, self.metric, scores[str(i)], self.name, self.version)
                for i, it in enumerate(items)]

    def _score_in_worker(self, requests: list[dict[str, Any]]) -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            req, out = Path(tmp) / "requests.jsonl", Path(tmp) / "scores.jsonl"
            req.write_text("".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8")
            self._check(self._worker(out, "--requests", str(req), stdin=subprocess.DEVNULL))
            lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {d["id"]: float(d["score"]) for d in lines if "id" in d}
