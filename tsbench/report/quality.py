"""Quality in a report: which scorer columns the runs hold, which published rows may stand beside them,
and paired differences between cells.

A run's numbers stand beside published rows only when they were measured the same way: same benchmark,
same metric, same scoring model (the benchmark's ``published`` declaration against the scorer's
``measured_with``), the benchmark's own aggregation, and every prompt scored. Any other column is shown
apart, labelled ``not comparable: <why>``. Cells that share a prompt set and seeds are compared with a
paired bootstrap (``scoring.aggregate.paired_difference``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from tsbench.benchmarks import BENCHMARKS, Benchmark
from tsbench.report.aggregate import CONFIG_COLUMNS, VARIES_WITH, key_text
from tsbench.report.baselines import label as baseline_label
from tsbench.report.baselines import rewritten
from tsbench.runner.store import read_manifest
from tsbench.scoring.aggregate import COMPLETE, Difference, column, paired_difference, parse_column, read_score_rows
from tsbench.stats import CONFIDENCE, DEFAULT_RESAMPLES

HEADLINES = ("overall", "mean")  # a scorer's single-number summary, in order of preference
TEXT_USED = {"rewritten": "yes", "original": "no"}  # quality.text_used in the words of the published tables
MISSING = "–"


# ---- what the runs hold -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scored:
    """One scorer's numbers in the cells: its tags in the benchmark's order and its headline tag."""

    scorer: str
    tags: list[str]
    headline: str | None

    @property
    def headline_column(self) -> str | None:
        return column(self.scorer, self.headline) if self.headline else None


def benchmark(name: Any) -> Benchmark | None:
    return BENCHMARKS.get(name) if isinstance(name, str) and name in BENCHMARKS else None


def order_tags(tags: Iterable[str], benchmark_name: Any = None) -> list[str]:
    """Unique tags: the benchmark's official order, then others alphabetically, headlines last."""
    tags = set(tags)
    bench = benchmark(benchmark_name)
    official = [t for t in (bench.tags if bench else ()) if t in tags]
    rest = sorted(tags - set(official) - set(HEADLINES))
    return official + rest + [t for t in HEADLINES if t in tags]


def scored(cells: pd.DataFrame) -> list[Scored]:
    """Every scorer with numbers in a successful cell."""
    ok = cells[cells["status"] == "ok"] if "status" in cells else cells
    found: dict[str, set[str]] = {}
    for name in cells.columns:
        parsed = parse_column(name)
        if parsed and parsed[2] is None and pd.api.types.is_numeric_dtype(cells[name]) and ok[name].notna().any():
            found.setdefault(parsed[0], set()).add(parsed[1])
    out = []
    for scorer, tags in found.items():
        benchmarks = ok.loc[ok[column(scorer, next(iter(tags)))].notna(), "quality.benchmark"] \
            if "quality.benchmark" in ok else pd.Series(dtype=object)
        ordered = order_tags(tags, next(iter(benchmarks.dropna()), None))
        out.append(Scored(scorer, ordered, next((t for t in HEADLINES if t in tags), None)))
    return out


def with_headline(cells: pd.DataFrame) -> list[Scored]:
    return [s for s in scored(cells) if s.headline and cells[s.headline_column].notna().any()]


def prompt_set(row: pd.Series) -> str:
    """'GenAI-Bench 527 (527 prompts)': which prompt set a row's numbers come from, with its size."""
    name, version = row.get("quality.benchmark"), row.get("quality.version")
    bench = benchmark(name)
    total = _int(row.get("quality.benchmark_prompts"))
    if bench is None:
        return f"{name or MISSING} {version or ''}".strip()
    return bench.label(None if _missing(version) else str(version), total)


def prompts_used(row: pd.Series, scorer: str, tag: str) -> str:
    """'8/527': prompts behind a number, out of the benchmark's."""
    return str(row.get(column(scorer, "coverage", tag)) or MISSING)


def interval(value: Any, low: Any = None, high: Any = None, signed: bool = False) -> str:
    """'0.45 [0.38, 0.52]' (or '+0.02 [−0.03, +0.07]' for a difference); two decimals as published."""
    if _missing(value):
        return MISSING
    fmt = (lambda v: f"{v:+.2f}".replace("-", "−")) if signed else (lambda v: f"{v:.2f}")
    return fmt(value) + ("" if _missing(low) else f" [{fmt(low)}, {fmt(high)}]")


def number_cell(row: pd.Series, scorer: str, tag: str) -> dict[str, str]:
    value = row.get(column(scorer, tag))
    text = interval(value, row.get(column(scorer, tag, "ci_low")), row.get(column(scorer, tag, "ci_high")))
    return {"text": text, "sort": "" if _missing(value) else repr(float(value))}


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def _int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _text(value: Any) -> dict[str, str]:
    return {"text": MISSING if _missing(value) else str(value), "sort": ""}


# ---- comparability ----------------------------------------------------------------------------------
def published_metrics(bench: Benchmark | None, metric: Any, model: Any) -> tuple[list[str], list[str]]:
    """(published metrics measured like this column, how the other published rows of its metric were measured)."""
    if bench is None:
        return [], []
    same = [name for name, spec in bench.published.items() if spec.metric == metric and spec.measured_with == model]
    others = [spec.measured_with for spec in bench.published.values() if spec.metric == metric
              and spec.measured_with != model]
    return same, others


def why_not_comparable(row: pd.Series, scorer: str, bench: Benchmark | None) -> str | None:
    """None when the row's column may stand beside published rows of its benchmark, else the reasons."""
    metric, model = row.get(column(scorer, "metric")), row.get(column(scorer, "model"))
    same, others = published_metrics(bench, metric, model)
    reasons = []
    if not same:
        if others:
            reasons.append(f"scored with {model}; the published {metric} rows were scored with {', '.join(others)}")
        else:
            return None if bench is None or not bench.published else f"no published {metric} rows for {bench.title}"
    if row.get(column(scorer, "aggregation")) not in (None, "official"):
        reasons.append(f"aggregated as a {row.get(column(scorer, 'aggregation'))}, not by the benchmark's rule")
    if row.get(column(scorer, "summary")) != COMPLETE:
        covered = prompts_used(row, scorer, "overall")
        reasons.append("partial run" + (f": {covered.replace('/', ' of ')} prompts scored" if covered != MISSING
                                        else ": not every prompt scored"))
    caveat = row.get(column(scorer, "caveat"))
    if not _missing(caveat) and caveat not in " ".join(reasons):
        reasons.append(str(caveat))
    return "; ".join(reasons) or None


# ---- sections ---------------------------------------------------------------------------------------
def sections(cells: pd.DataFrame, baselines: pd.DataFrame) -> list[dict[str, Any]]:
    """Per benchmark x scorer: the cells that may stand beside published rows with those rows, the other
    cells apart by reason, the scorer's version and caveat, and the paired differences."""
    ok = cells[cells["status"] == "ok"]
    several_runs = cells["run"].nunique() > 1
    out = []
    for s in scored(cells):
        numbers = ok[ok[[column(s.scorer, t) for t in s.tags]].notna().any(axis=1)]
        for bench_name, group in numbers.groupby(numbers.get("quality.benchmark", pd.Series("?", numbers.index)),
                                                 dropna=False, sort=False):
            bench = benchmark(bench_name)
            metric = next(iter(group[column(s.scorer, "metric")].dropna()), None) \
                if column(s.scorer, "metric") in group else None
            beside, apart = [], {}
            for _, row in group.iterrows():
                why = why_not_comparable(row, s.scorer, bench)
                if why is None:
                    beside.append(row)
                else:
                    apart.setdefault(why, []).append(row)
            shown = [name for row in beside for name in published_metrics(bench, metric, row.get(column(s.scorer, "model")))[0]]
            published = baselines[(baselines["benchmark"] == bench_name) & baselines["metric"].isin(set(shown))] \
                if bench is not None else baselines.iloc[0:0]
            tags = order_tags([*s.tags, *published["tag"]], bench_name)
            headers = ["model / cell", "rewritten prompts", *tags, "prompt set", "source", "notes"]
            out.append({
                "scorer": s.scorer, "metric": metric, "title": f"{s.scorer} ({metric}) on {prompt_set(group.iloc[0])}",
                "headers": headers,
                "ours": [_our_row(r, s.scorer, tags, several_runs) for r in beside],
                "published": _published_rows(published, tags),
                "apart": [{"why": why, "rows": [_our_row(r, s.scorer, tags, several_runs) for r in rows]}
                          for why, rows in apart.items()],
                "versions": sorted(set(group.get(column(s.scorer, "version"), pd.Series(dtype=str)).dropna())),
                "models": sorted(set(group.get(column(s.scorer, "model"), pd.Series(dtype=str)).dropna())),
                "caveat": next(iter(group.get(column(s.scorer, "caveat"), pd.Series(dtype=str)).dropna()), ""),
                "partial": bool((group.get(column(s.scorer, "summary")) != COMPLETE).any()),
                "paired": paired(group, s.scorer, tags),
                "shown": sorted({(bench_name, name) for name in shown}),
            })
    return out


def _our_row(row: pd.Series, scorer: str, tags: list[str], several_runs: bool) -> list[dict[str, str]]:
    name = f"{row['run']}: {row['cell_id']}" if several_runs else row["cell_id"]
    images = _int(row.get("quality.images_per_prompt"))
    notes = [f"{images} image{'s' if images != 1 else ''} per prompt"] if images else []
    if row.get(column(scorer, "summary")) != COMPLETE:
        notes.append("partial: coverage " + ", ".join(f"{t} {prompts_used(row, scorer, t)}" for t in tags
                                                      if prompts_used(row, scorer, t) != MISSING))
    used = row.get("quality.text_used")
    return [_text(name), _text(TEXT_USED.get(used, used)), *[number_cell(row, scorer, t) for t in tags],
            _text(prompt_set(row)), _text("this run"), _text("; ".join(notes))]


def _published_rows(rows: pd.DataFrame, tags: list[str]) -> list[list[dict[str, str]]]:
    out = []
    for _, group in rows.groupby(["source", "model", "prompt_rewriting", "metric"], dropna=False, sort=False):
        first = group.iloc[0]
        values = group.set_index("tag")["value"]
        rewriting = {True: "yes", False: "no", None: "not stated"}[rewritten(first)]
        out.append([_text(baseline_label(first)), _text(rewriting),
                    *[{"text": interval(values.get(t)), "sort": "" if _missing(values.get(t)) else repr(float(values[t]))}
                      for t in tags],
                    _text(first["version_note"]), _text(first["source"]), _text(first["notes"])])
    return out


def unplaced_published(baselines: pd.DataFrame, placed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Published tables that stand beside none of the runs' columns, each saying how it was measured."""
    shown = {key for section in placed for key in section["shown"]}
    out = []
    for (bench_name, metric), rows in baselines.groupby(["benchmark", "metric"], sort=False):
        if (bench_name, metric) in shown:
            continue
        bench = benchmark(bench_name)
        spec = bench.published.get(metric) if bench else None
        tags = order_tags(rows["tag"], bench_name)
        table = _published_rows(rows, tags)
        out.append({"title": f"{bench.title if bench else bench_name}: {metric}"
                             + (f", scored with {spec.measured_with}" if spec else ""),
                    "count": len(table), "headers": ["model", "rewritten prompts", *tags, "prompt set", "source", "notes"],
                    "published": table})
    return out


# ---- paired differences -----------------------------------------------------------------------------
PAIRING = ("quality.benchmark", "quality.version", "quality.prompts_sha256", "quality.images_per_prompt",
           "config.workload.seed")


def paired(group: pd.DataFrame, scorer: str, tags: list[str]) -> dict[str, Any] | None:
    """Every cell against the cell that differs from it in one setting only, set to its smallest value
    (s = 1; the alphabetically first schedule, 'constant' among the usual ones): a − b per tag with the
    paired 95 % interval over the prompts both scored."""
    keys = [k for k in PAIRING if k in group] + [column(scorer, k) for k in ("version", "metric", "aggregation")]
    lines, rows = [], []
    for _, same in group.groupby([k for k in keys if k in group], dropna=False, sort=False):
        varying = [c for c in CONFIG_COLUMNS if same[c].nunique(dropna=False) > 1]
        implied = {v for k in varying for v in VARIES_WITH.get(k, ())}
        for key in varying:
            if key in implied:
                continue
            others = [c for c in CONFIG_COLUMNS if c != key and c not in VARIES_WITH.get(key, ())]
            for _, sub in same.groupby(others, dropna=False, sort=False):
                values = sorted(sub[key].dropna().unique())
                if len(values) < 2:
                    continue
                reference = sub[sub[key] == values[0]].iloc[0]
                context = [k for k in varying if k != key and k not in implied]
                for value in values[1:]:
                    row = sub[sub[key] == value].iloc[0]
                    diffs = _difference(row, reference, scorer)
                    if not diffs:
                        continue
                    label = f"{key_text(key, value)} vs {key_text(key, values[0])}" + (
                        " at " + ", ".join(key_text(k, row[k]) for k in context) if context else "")
                    headline = next((t for t in HEADLINES if t in diffs), None)
                    if headline:
                        d = diffs[headline]
                        lines.append({"label": label, "tag": headline, "excludes_zero": d.excludes_zero,
                                      "text": interval(d.value, d.ci_low, d.ci_high, signed=True)})
                    rows.append([_text(label), *[_diff_cell(diffs.get(t)) for t in tags],
                                 _text(max((d.prompts for d in diffs.values()), default=0))])
    if not rows:
        return None
    return {"lines": lines, "headers": ["a vs b", *tags, "prompts"], "rows": rows,
            "confidence": f"{CONFIDENCE:.0%}"}


def _diff_cell(d: Difference | None) -> dict[str, str]:
    if d is None:
        return _text(None)
    return {"text": interval(d.value, d.ci_low, d.ci_high, signed=True) + (" *" if d.excludes_zero else ""),
            "sort": repr(d.value)}


def _difference(a: pd.Series, b: pd.Series, scorer: str) -> dict[str, Difference]:
    """Paired differences of two cells from their saved score rows; {} when a cell's files are gone."""
    quality = _quality_config(a)
    rows = [_score_rows(cell, scorer) for cell in (a, b)]
    if not all(rows) or quality is None:
        return {}
    resamples = int(quality.get("bootstrap_resamples", DEFAULT_RESAMPLES))
    return paired_difference(a["quality.benchmark"], rows[0], rows[1], version=a.get("quality.version"),
                             data_dir=quality.get("data_dir"), path=quality.get("path"),
                             metric=a[column(scorer, "metric")], aggregation=a[column(scorer, "aggregation")],
                             resamples=resamples)


def _score_rows(cell: pd.Series, scorer: str) -> list[dict[str, Any]]:
    """The saved rows behind the cell's numbers: its scorer's, with the scoring model of its columns."""
    path = Path(cell["run_dir"]) / "cells" / str(cell["cell_id"]) / "scores.jsonl"
    model = cell.get(column(scorer, "model"))
    return [r for r in read_score_rows(path) if r.get("scorer") == scorer and r.get("model") == model] \
        if path.is_file() else []


def _quality_config(cell: pd.Series) -> dict[str, Any] | None:
    """The cell's quality settings from its run's manifest (where the prompt files are, the resamples)."""
    for entry in read_manifest(cell["run_dir"]).get("cells", []):
        if entry.get("id") == cell["cell_id"]:
            return entry.get("config", {}).get("quality", {})
    return None
