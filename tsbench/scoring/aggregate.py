"""Benchmark summaries computed exactly as the official scripts do.

GenAI-Bench (t2v_metrics ``genai_bench/evaluate.py``): per-prompt score = mean over its images; each
skill tag = mean over the prompts listed under it in ``genai_skills.json`` (``basic`` and
``advanced`` use their own lists, not the mean of the sub-skills); ``overall`` (the script's
``all``) = mean over the union of prompts carrying any tag. Joined by prompt id, not position.

GenEval (``evaluation/summary_scores.py``): each tag = fraction of correct *images*; ``overall`` =
unweighted mean of the tag scores.

A missing score is an error by default: silently skipping images changes the denominator and makes
the number incomparable (HPSv2's evaluator does that). Pass ``require_all=False`` for partial runs.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from ..benchmarks import genai_bench, geneval
from ..benchmarks.data import resolve_data_dir
from ..benchmarks.prompts import PromptSet
from ..benchmarks.shapes.suite import load_shapes
from .base import ScoringInputError

ROW_KEYS = ("prompt_id", "sample", "metric", "score")


def read_score_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``scores.jsonl``; each line needs prompt_id, sample, metric and a score that is a finite
    number or null (not scored). Any other line is an error at ``file:line``."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise ScoringInputError(f"score file {str(path)!r} does not exist") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise ScoringInputError(f"{path}:{n}: not UTF-8 text; expected one JSON object per line") from None
        except json.JSONDecodeError as e:
            raise ScoringInputError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ScoringInputError(f"{path}:{n}: score row lacks {missing}")
        score = row["score"]
        if score is not None and (type(score) not in (int, float) or not math.isfinite(score)):
            raise ScoringInputError(f"{path}:{n}: score must be a number (or null), got {score!r}")
        rows.append(row)
    return rows


def summarize(
    benchmark: str,
    rows: Iterable[dict[str, Any]],
    *,
    version: str | int | None = None,
    data_dir: str | Path | None = None,
    metric: str | None = None,
    require_all: bool = True,
) -> dict[str, float]:
    """Official summary of one metric's rows: GenAI-Bench -> each skill tag as spelled in
    genai_skills.json (incl. ``basic``, ``advanced``) + ``overall``; GenEval -> each tag +
    ``overall``. ``metric`` picks the rows (default: the only metric present; ``geneval_correct``
    for GenEval)."""
    if benchmark == "genai-bench":
        per_prompt = _per_prompt(rows, metric)
        return _summarize_genai(per_prompt, genai_bench.normalise_version(version), data_dir, require_all)
    if benchmark == "geneval":
        return _summarize_by_tag(geneval.load_geneval(data_dir=data_dir), geneval.TAGS, rows,
                                 metric or "geneval_correct", require_all)
    if benchmark == "shapes":  # ShapesBench keeps GenEval's tags and rules, so its summary too
        return _summarize_by_tag(load_shapes(None if version is None else str(version)), geneval.TAGS, rows,
                                 metric or "geneval_correct", require_all)
    raise ScoringInputError(f"no official summary for benchmark {benchmark!r}; supported: genai-bench, geneval, "
                            "shapes")


def _select(rows: Iterable[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    rows = [r for r in rows if r.get("score") is not None]
    metrics = sorted({r["metric"] for r in rows})
    if metric is None:
        if len(metrics) > 1:
            raise ScoringInputError(f"rows hold several metrics {metrics}; pass metric=... to pick one")
        return rows
    return [r for r in rows if r["metric"] == metric]


def _prompt_key(row: dict[str, Any]) -> int:
    try:
        return int(row["prompt_id"])
    except (TypeError, ValueError):
        raise ScoringInputError(f"prompt_id {row['prompt_id']!r} is not a benchmark prompt index") from None


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def _per_prompt(rows: Iterable[dict[str, Any]], metric: str | None) -> dict[int, float]:
    scores: dict[int, list[float]] = defaultdict(list)
    for r in _select(rows, metric):
        scores[_prompt_key(r)].append(float(r["score"]))
    return {k: _mean(v) for k, v in scores.items()}


def _check_coverage(name: str, expected: set[int], scored: set[int], require_all: bool) -> None:
    unknown = sorted(scored - expected)
    if unknown:
        raise ScoringInputError(f"{len(unknown)} scored prompt id(s) are not in {name}, e.g. {unknown[:3]}")
    missing = sorted(expected - scored)
    if missing and require_all:
        raise ScoringInputError(
            f"{len(missing)} of {len(expected)} {name} prompts have no score, e.g. {missing[:3]}; "
            "score them, or summarise a partial run explicitly (require_all=False)"
        )
    if not scored:
        raise ScoringInputError(f"no scores to summarise for {name}")


def _summarize_genai(per_prompt: dict[int, float], version: str, data_dir: Any, require_all: bool) -> dict[str, float]:
    images, skills = genai_bench.read_files(resolve_data_dir(f"genai-bench-{version}", data_dir))
    tagged = {i for ids in skills.values() for i in ids}
    _check_coverage(f"GenAI-Bench-{version}", {int(k) for k in images}, set(per_prompt), require_all)
    if not require_all:
        tagged &= set(per_prompt)
    order = [t for group in genai_bench.TAG_GROUPS.values() for t in group if t in skills]
    order += [t for t in skills if t not in order]
    out = {}
    for tag in order:
        ids = [i for i in skills[tag] if i in per_prompt]
        if ids:
            out[tag] = _mean(per_prompt[i] for i in ids)
    out["overall"] = _mean(per_prompt[i] for i in sorted(tagged))
    return out


def _summarize_by_tag(prompts: PromptSet, tags: tuple[str, ...], rows: Iterable[dict[str, Any]], metric: str,
                      require_all: bool) -> dict[str, float]:
    """GenEval's ``summary_scores.py`` on any prompt set with one GenEval tag per prompt."""
    name = "GenEval" if prompts.name == "geneval" else f"{prompts.name} ({prompts.version})"
    tag_of = {int(p.id): p.tags[0] for p in prompts}
    by_tag: dict[str, list[float]] = defaultdict(list)
    scored = set()
    for r in _select(rows, metric):
        key = _prompt_key(r)
        if key not in tag_of:
            raise ScoringInputError(f"scored prompt id {r['prompt_id']!r} is not a {name} prompt (0..{len(tag_of) - 1})")
        if float(r["score"]) not in (0.0, 1.0):
            raise ScoringInputError(f"{name} row for prompt {r['prompt_id']!r} has score {r['score']!r}; expected 0 or 1")
        by_tag[tag_of[key]].append(float(r["score"]))
        scored.add(key)
    _check_coverage(name, set(tag_of), scored, require_all)
    out = {tag: _mean(by_tag[tag]) for tag in tags if by_tag[tag]}
    out["overall"] = _mean(out.values())  # over the tags present, as summary_scores.py does
    return out
