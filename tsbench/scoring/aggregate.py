"""Benchmark summaries with the official rules, a 95 % bootstrap interval on every number, and paired
differences between cells.

The rule is the benchmark's (``Benchmark.summary_rule``): GenAI-Bench averages prompts (each prompt =
the mean of its images) over each skill's own list and over the union of tagged prompts (t2v_metrics
``genai_bench/evaluate.py``); GenEval takes each tag's fraction of correct images and the mean of the
six tags (``evaluation/summary_scores.py``). Joined by prompt id, never by position.

Coverage: a summary counts, per number, the prompts scored out of the prompts of the whole benchmark.
When any is missing (``--limit``, a run cut short) the summary is ``partial``: its tags are still given
with their coverage, but no ``overall``, which over some tags would be a different number under the
same name.

Intervals: prompts are resampled with their images kept together (``tsbench.stats.bootstrap_ci``);
a number over several groups (GenEval's overall) resamples within each group. A paired difference of
two cells resamples the prompts they share, once for both.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..benchmarks.base import Aggregate, Benchmark, SummaryRule
from ..benchmarks.registry import BENCHMARKS
from ..stats import CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci
from .base import AGGREGATIONS, ScoringInputError

ROW_KEYS = ("prompt_id", "sample", "metric", "score")
COMPLETE, PARTIAL = "complete", "partial"
# quality.<scorer>.<key> columns that describe a scorer's numbers rather than hold one
META_KEYS = ("status", "metric", "model", "version", "aggregation", "summary", "direction", "caveat")
CI_KEYS = ("ci_low", "ci_high")


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


# ---- per-prompt scores ------------------------------------------------------------------------------
def prompt_key(prompt_id: Any) -> str:
    """Ids compare as numbers when they are numbers: the official evaluator writes prompt 00012 as 12."""
    text = str(prompt_id)
    return str(int(text)) if text.isdigit() else text


@dataclass(frozen=True)
class PromptScores:
    """One metric's score rows per prompt: the sum of its image scores and how many images it has."""

    sums: dict[str, float]
    counts: dict[str, int]

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]], metric: str, binary: bool = False) -> "PromptScores":
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            if r.get("score") is None or r["metric"] != metric:
                continue
            score = float(r["score"])
            if binary and score not in (0.0, 1.0):
                raise ScoringInputError(f"row for prompt {r['prompt_id']!r} has score {r['score']!r}; this "
                                        "benchmark's metric is per-image correctness, expected 0 or 1")
            sums[prompt_key(r["prompt_id"])] += score
            counts[prompt_key(r["prompt_id"])] += 1
        return cls(dict(sums), dict(counts))

    def arrays(self, ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = list(ids)
        return (np.array([self.sums[i] for i in ids], dtype=np.float64),
                np.array([self.counts[i] for i in ids], dtype=np.float64))


class _Value:
    """One aggregate on the scored prompts of its groups: the point value, and the same on index resamples."""

    def __init__(self, aggregate: Aggregate, unit: str, scores: list[PromptScores]) -> None:
        self.unit = unit
        scored = set.intersection(*(set(s.counts) for s in scores))
        self.groups = [[prompt_key(pid) for pid in group if prompt_key(pid) in scored] for group in aggregate.groups]
        self.groups = [group for group in self.groups if group]
        self.arrays = [[s.arrays(group) for group in self.groups] for s in scores]  # per cell, per group

    def __call__(self, cell: int, indices: list[np.ndarray] | None = None) -> np.ndarray:
        """Value for cell ``cell``; with ``indices`` (one (batch, n) array per group) one value per resample."""
        values = []
        for g, (sums, counts) in enumerate(self.arrays[cell]):
            if indices is not None:
                sums, counts = sums[indices[g]], counts[indices[g]]
            if self.unit == "image":
                values.append(sums.sum(-1) / counts.sum(-1))
            else:
                values.append((sums / counts).mean(-1))
        return np.mean(values, axis=0)

    @property
    def sizes(self) -> list[int]:
        return [len(group) for group in self.groups]


# ---- summaries --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    """One number of a summary, its 95 % interval and the prompts behind it (scored / in the benchmark)."""

    value: float
    ci_low: float
    ci_high: float
    prompts: int
    of: int

    @property
    def coverage(self) -> str:
        return f"{self.prompts}/{self.of}"


@dataclass(frozen=True)
class Summary:
    benchmark: str  # e.g. "GenAI-Bench 527 (527 prompts)"
    metric: str
    aggregation: str
    summary: str  # COMPLETE or PARTIAL
    numbers: dict[str, Number]
    coverage: dict[str, str]  # every aggregate of the rule, also those a partial summary leaves out
    resamples: int
    confidence: float = CONFIDENCE

    def values(self) -> dict[str, float]:
        return {name: n.value for name, n in self.numbers.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: an interval that could not be computed is null."""
        out = asdict(self)
        for number in out["numbers"].values():
            number.update({k: None for k in CI_KEYS if math.isnan(number[k])})
        return out

    def columns(self, scorer: str) -> dict[str, Any]:
        """``quality.<scorer>.<tag>`` (+ ``.ci_low``/``.ci_high``), ``.coverage.<tag>`` and ``.summary``."""
        out: dict[str, Any] = {column(scorer, "summary"): self.summary}
        for name, n in self.numbers.items():
            out[column(scorer, name)] = n.value
            if not math.isnan(n.ci_low):
                out[column(scorer, name, "ci_low")], out[column(scorer, name, "ci_high")] = n.ci_low, n.ci_high
        out.update({column(scorer, "coverage", name): text for name, text in self.coverage.items()})
        return out

    def table(self) -> str:
        """The terminal table of ``tsbench summarize``."""
        level = f"{self.confidence:.0%}"
        head = f"{self.benchmark}, {self.metric} ({self.aggregation}): {self.summary}"
        if self.summary == PARTIAL:
            head += " (no overall; coverage = prompts scored / prompts in the benchmark)"
        lines = [head, f"{'':28s} {'score':>8s}  {level + ' CI':>18s}  prompts"]
        for name, n in self.numbers.items():
            ci = "" if math.isnan(n.ci_low) else f"[{n.ci_low:.4f}, {n.ci_high:.4f}]"
            lines.append(f"{name:28s} {n.value:8.4f}  {ci:>18s}  {n.coverage}")
        left_out = [f"{name} {text}" for name, text in self.coverage.items() if name not in self.numbers]
        if left_out:
            lines.append("left out (partial): " + ", ".join(left_out))
        return "\n".join(lines)


def mean_rule(prompts: Any) -> SummaryRule:
    """The ``mean`` aggregation: the mean over all images, whatever the benchmark."""
    return SummaryRule((Aggregate("mean", (tuple(p.id for p in prompts),)),), unit="image")


def rule_for(benchmark: Benchmark, prompts: Any, metric: str, aggregation: str) -> SummaryRule:
    if aggregation not in AGGREGATIONS:
        raise ScoringInputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    return benchmark.summary_rule(prompts, metric) if aggregation == "official" else mean_rule(prompts)


def _benchmark_prompts(benchmark: str | Benchmark, version: Any, data_dir: Any, path: Any) -> tuple[Benchmark, Any]:
    """The benchmark and its whole prompt set (coverage is counted against all of it, never a --limit)."""
    bench = BENCHMARKS.get(benchmark) if isinstance(benchmark, str) else benchmark
    return bench, bench.load(bench.version(version), data_dir, path)


def summarize(
    benchmark: str | Benchmark,
    rows: Iterable[dict[str, Any]],
    *,
    version: str | int | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    metric: str | None = None,
    aggregation: str = "official",
    resamples: int = DEFAULT_RESAMPLES,
) -> Summary:
    """The benchmark's table of one metric's rows, with intervals and coverage. ``metric``: which rows
    (default: the only metric present)."""
    rows = list(rows)
    bench, prompts = _benchmark_prompts(benchmark, version, data_dir, path)
    metric = metric or _only_metric(rows)
    rule = rule_for(bench, prompts, metric, aggregation)
    scores = PromptScores.of(rows, metric, binary=rule.binary)
    label = bench.label(prompts.version, len(prompts))
    _check_ids(label, {prompt_key(p.id) for p in prompts}, set(scores.counts))
    numbers, coverage, complete = {}, {}, True
    for aggregate in rule.aggregates:
        value = _Value(aggregate, rule.unit, [scores])
        scored, of = sum(value.sizes), len(aggregate.members)
        coverage[aggregate.name] = f"{scored}/{of}"
        complete &= scored == of
        if scored:
            low, high = bootstrap_ci(lambda *idx: value(0, list(idx)), value.sizes, resamples=resamples)
            numbers[aggregate.name] = Number(float(value(0)), low, high, scored, of)
    if not complete:
        left_out = {a.name for a in rule.aggregates if a.complete_only}
        numbers = {name: n for name, n in numbers.items() if name not in left_out}
    return Summary(label, metric, aggregation, COMPLETE if complete else PARTIAL, numbers, coverage, resamples)


def _only_metric(rows: list[dict[str, Any]]) -> str:
    metrics = sorted({r["metric"] for r in rows})
    if len(metrics) != 1:
        raise ScoringInputError(f"rows hold several metrics {metrics}; pass metric=... to pick one" if metrics
                                else "no score rows to summarise")
    return metrics[0]


def _check_ids(label: str, expected: set[str], scored: set[str]) -> None:
    unknown = sorted(scored - expected)
    if unknown:
        raise ScoringInputError(f"{len(unknown)} scored prompt id(s) are not prompts of {label}, e.g. {unknown[:3]}; "
                                "check the benchmark and --version")
    if not scored:
        raise ScoringInputError(f"no scores to summarise for {label}")


@dataclass(frozen=True)
class Difference:
    """``a − b`` of one aggregate over the prompts both cells scored, with its paired 95 % interval."""

    value: float
    ci_low: float
    ci_high: float
    prompts: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval excludes 0: the difference is more than resampling noise."""
        return not math.isnan(self.ci_low) and (self.ci_low > 0 or self.ci_high < 0)


def paired_difference(
    benchmark: str | Benchmark,
    rows_a: Iterable[dict[str, Any]],
    rows_b: Iterable[dict[str, Any]],
    *,
    version: str | int | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    metric: str,
    aggregation: str = "official",
    resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Difference]:
    """Per aggregate of the rule, the difference of cell a minus cell b (same prompts and seeds), each
    resample drawing the same prompts for both. Aggregates that need every prompt are left out unless
    both cells scored all of them."""
    bench, prompts = _benchmark_prompts(benchmark, version, data_dir, path)
    rule = rule_for(bench, prompts, metric, aggregation)
    a, b = PromptScores.of(rows_a, metric, rule.binary), PromptScores.of(rows_b, metric, rule.binary)
    out = {}
    for aggregate in rule.aggregates:
        value = _Value(aggregate, rule.unit, [a, b])
        shared = sum(value.sizes)
        if not shared or (aggregate.complete_only and shared < len(aggregate.members)):
            continue
        low, high = bootstrap_ci(lambda *idx: value(0, list(idx)) - value(1, list(idx)), value.sizes,
                                 resamples=resamples)
        out[aggregate.name] = Difference(float(value(0) - value(1)), low, high, shared)
    return out


# ---- result columns ---------------------------------------------------------------------------------
def column(scorer: str, key: str, sub: str | None = None) -> str:
    """``quality.<scorer>.<key>[.<sub>]``: every quality column of a result row is named here."""
    return f"quality.{scorer}.{key}" + (f".{sub}" if sub else "")


def scorers_in(columns: Iterable[str]) -> list[str]:
    """The scorers that have a status column among ``columns`` (scored or not), in first-seen order."""
    return list(dict.fromkeys(name.split(".")[1] for name in columns
                              if name.startswith("quality.") and name.endswith(".status")))


def parse_column(name: str) -> tuple[str, str, str | None] | None:
    """(scorer, tag, None | 'ci_low' | 'ci_high') of a number column; None for anything else
    (meta and coverage columns, the run-level ``quality.benchmark`` ...)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "quality":
        return None
    scorer, rest = parts[1], parts[2:]
    if rest[0] in META_KEYS or rest[0] == "coverage":
        return None
    if len(rest) > 1 and rest[-1] in CI_KEYS:
        return scorer, ".".join(rest[:-1]), rest[-1]
    return scorer, ".".join(rest), None
