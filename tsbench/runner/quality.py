"""The quality part of a cell, as one pipeline for one process and for torchrun's ranks alike:

1. ``generate_shard``: make the benchmark's images that are not on disk yet (one shard of the prompts);
2. ``score_shard``: score one shard of the images each scorer has not scored yet;
3. ``merge_scores``: save every shard's score rows and summarise each scorer with the benchmark's rules
   into ``quality.<scorer>.*`` columns (values, 95 % intervals, coverage, scorer, model and version).

A single process runs the three steps with the one shard ``Shard()``; ``runner/distributed.py`` runs
steps 1 and 2 on every rank and step 3 on rank 0. A scorer that cannot run here (no weights offline,
package missing) does not fail the cell: its status says ``not scored: <reason>`` and
``tsbench score RUN_DIR`` scores the saved images later. Nothing here names a benchmark or a scorer:
both are registry objects that declare what the pipeline needs.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar

from PIL import Image
from tqdm import tqdm

import tsbench
from tsbench.benchmarks import BENCHMARKS, PromptSet, load_prompts
from tsbench.benchmarks.layout import done_images, read_records, save_image, sidecar_lock
from tsbench.config.suite import QualityConfig, SuiteConfig, config_hash
from tsbench.io import atomic_write_text
from tsbench.runner.cell import QualityHook, sampling_options
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import Cell
from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable
from tsbench.scoring.aggregate import column, read_score_rows, summarize

IMAGES, SCORES = "images", "scores.jsonl"
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share ``rank`` of ``size``: the prompts at positions rank mod size, or every size-th item."""

    rank: int = 0
    size: int = 1

    def owns(self, position: int) -> bool:
        return position % self.size == self.rank

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank::self.size])


def generation_hash(config: SuiteConfig) -> str:
    """What decides a benchmark image: the model, the sampling workload and the prompt texts. Scorers,
    measurement settings and ``limit`` are left out, so adding a scorer or more prompts reuses every image."""
    q, workload = config.quality, dataclasses.asdict(config.workload)
    workload.pop("prompts")  # the efficiency prompts; benchmark prompts come from the suite files
    return config_hash({"model": dataclasses.asdict(config.model), "workload": workload,
                        "prompts": [q.benchmark, q.version, q.path, q.rewrites, q.images_per_prompt]})


def cell_prompts(q: QualityConfig) -> PromptSet:
    return load_prompts(q.benchmark, version=q.version, data_dir=q.data_dir, path=q.path, limit=q.limit,
                        rewrites=q.rewrites)


# ---- 1. generate ------------------------------------------------------------------------------------
def generate_shard(cell: Cell, model: Any, cell_dir: Path, shard: Shard = Shard()) -> dict[str, Any]:
    """Generate every (prompt, sample) image of the shard that is not on disk yet; seeds depend only on
    the prompt's position and the sample index, so reruns, batch sizes and shards give the same images.
    The sidecar lock lets the ranks of a torchrun append to one ``images.jsonl``."""
    q, w = cell.config.quality, cell.config.workload
    benchmark, image_root = BENCHMARKS.get(q.benchmark), cell_dir / IMAGES
    image_hash = generation_hash(cell.config)
    prompts = cell_prompts(q)
    with sidecar_lock(image_root):
        done = done_images(image_root, image_hash)
    todo = [(index, prompt, sample) for index, prompt in enumerate(prompts) if shard.owns(index)
            for sample in range(q.images_per_prompt) if (prompt.id, sample) not in done]
    bar = tqdm(total=len(todo), desc="images", unit="img", leave=False, file=sys.stderr, disable=None)
    for lo in range(0, len(todo), w.batch_size):
        batch = todo[lo:lo + w.batch_size]
        seeds = [w.seed + index * q.images_per_prompt + sample for index, _, sample in batch]
        result = tsbench.generate(model, [p.generation_text for _, p, _ in batch], w.resolution, seeds=seeds,
                                  batch_size=len(batch), **sampling_options(w))
        with sidecar_lock(image_root):
            for (_, prompt, sample), seed, image in zip(batch, seeds, result.images):
                save_image(image_root, benchmark, prompt, sample, seed, image_hash, Image.fromarray(image))
        bar.update(len(batch))
    bar.close()
    everything = benchmark.load(benchmark.version(q.version), q.data_dir, q.path)  # without the limit
    return {"quality.benchmark": q.benchmark, "quality.version": prompts.version, "quality.prompts": len(prompts),
            "quality.benchmark_prompts": len(everything), "quality.prompts_sha256": prompts.sha256,
            "quality.images_per_prompt": q.images_per_prompt,
            "quality.text_used": "rewritten" if prompts.rewritten else "original"}


# ---- 2. score ---------------------------------------------------------------------------------------
@dataclass
class ScoredShard:
    """One shard's new score rows, and the scorers that could not run there (name -> reason)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def scorer_options(name: str, q: QualityConfig, scorer_python: str | None) -> dict[str, Any]:
    """The suite's options for ``name``, plus what the scorer declares it needs and the run can give."""
    options = dict(q.scorer_options.get(name, {}))
    needs = SCORERS.get(name).needs
    if "python" in needs and scorer_python:
        options.setdefault("python", scorer_python)
    if "data_dir" in needs and q.data_dir:
        options.setdefault("data_dir", q.data_dir)  # e.g. GenEval's object_names.txt lives beside the prompts
    return options


def build_scorer(name: str, q: QualityConfig, scorer_python: str | None) -> Any:
    try:
        return SCORERS.get(name)(**scorer_options(name, q, scorer_python))
    except TypeError as err:
        raise ScorerUnavailable(f"scorer {name!r} needs options under quality.scorer_options.{name}: {err}") from None


def score_items(q: QualityConfig, cell_dir: Path) -> list[ScoreItem]:
    """The cell's recorded images as scorer inputs, one per (prompt, sample)."""
    image_root = cell_dir / IMAGES
    prompts = cell_prompts(q).by_id()
    items = [ScoreItem(r.prompt_id, r.sample, image_root / r.path, prompts[r.prompt_id].text,
                       prompts[r.prompt_id].metadata) for r in read_records(image_root) if r.prompt_id in prompts]
    return list({(i.prompt_id, i.sample): i for i in items}.values())  # a regenerated image counts once


def read_scores(cell_dir: Path) -> list[dict[str, Any]]:
    path = cell_dir / SCORES
    return read_score_rows(path) if path.is_file() else []


def scoring_model(name: str, q: QualityConfig) -> str:
    """What the suite's options make scorer ``name`` measure with; saved rows are reused only when equal."""
    return SCORERS.get(name).measured_with(q.scorer_options.get(name, {}))


def of_scorer(rows: list[dict[str, Any]], name: str, model: str) -> list[dict[str, Any]]:
    """The rows scorer ``name`` made with scoring model ``model`` (rows of other options do not count)."""
    return [r for r in rows if r["scorer"] == name and r.get("model") == model]


def unscored(items: list[ScoreItem], saved: list[dict[str, Any]], scorer: str, model: str) -> list[ScoreItem]:
    """The items without a saved row of ``scorer`` measured with ``model``: resume scores only these."""
    have = {(r["prompt_id"], r["sample"]) for r in of_scorer(saved, scorer, model)}
    return [i for i in items if (i.prompt_id, i.sample) not in have]


def score_shard(q: QualityConfig, cell_dir: Path, shard: Shard = Shard(),
                scorer_python: str | None = None) -> ScoredShard:
    """Rows for this shard's share of the images each scorer has not scored yet; a scorer is built only
    when its share is not empty."""
    items, saved = score_items(q, cell_dir), read_scores(cell_dir)
    out = ScoredShard()
    for name in q.scorers:
        model = scoring_model(name, q)
        share = shard.take(unscored(items, saved, name, model))
        if not share:
            continue
        try:
            scorer = build_scorer(name, q, scorer_python)
            out.rows += [row.to_dict() | {"scorer": name, "model": model} for row in scorer.score(share)]
        except ScorerUnavailable as err:
            out.unavailable[name] = err.reason
    return out


# ---- 3. merge ---------------------------------------------------------------------------------------
def write_scores(cell_dir: Path, rows: list[dict[str, Any]]) -> None:
    """All rows, one per (scorer, prompt, sample): a later row (e.g. of other scorer options) replaces an
    earlier one."""
    latest = {(r["scorer"], r["prompt_id"], r["sample"]): r for r in rows}
    atomic_write_text(cell_dir / SCORES, "".join(json.dumps(r) + "\n" for r in latest.values()))


def merge_scores(q: QualityConfig, cell_dir: Path, shards: Sequence[ScoredShard]) -> dict[str, Any]:
    """Save the shards' rows, then summarise each scorer over the cell's current images."""
    new = [row for shard in shards for row in shard.rows]
    if new:
        write_scores(cell_dir, read_scores(cell_dir) + new)
    unavailable = {name: reason for shard in shards for name, reason in shard.unavailable.items()}
    wanted = {(i.prompt_id, i.sample) for i in score_items(q, cell_dir)}
    saved = read_scores(cell_dir)
    columns: dict[str, Any] = {}
    for name in q.scorers:
        rows = [r for r in of_scorer(saved, name, scoring_model(name, q)) if (r["prompt_id"], r["sample"]) in wanted]
        if name in unavailable or not rows:
            columns[column(name, "status")] = f"not scored: {unavailable.get(name, 'no images to score')}"
            continue
        columns.update(scorer_columns(name, q, rows))
    return columns


def scorer_columns(name: str, q: QualityConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything a report needs to place one scorer's numbers: values, intervals, coverage, and how they
    were measured (metric, scoring model, version, aggregation, direction, caveat)."""
    spec = SCORERS.get(name)
    summary = summarize(q.benchmark, rows, version=q.version, data_dir=q.data_dir, path=q.path, metric=spec.metric,
                        aggregation=spec.aggregation, resamples=q.bootstrap_resamples)
    versions = sorted({str(r.get("scorer_version")) for r in rows})
    columns = {column(name, "status"): "scored", column(name, "metric"): spec.metric,
               column(name, "model"): scoring_model(name, q),
               column(name, "version"): versions[0] if len(versions) == 1 else "mixed: " + " | ".join(versions),
               column(name, "aggregation"): spec.aggregation,
               column(name, "direction"): "higher" if spec.higher_is_better else "lower",
               **summary.columns(name)}
    if spec.caveat:
        columns[column(name, "caveat")] = spec.caveat
    return columns


# ---- the whole pipeline in one process ----------------------------------------------------------------
def run_quality(cell: Cell, model: Any, cell_dir: Path, scorer_python: str | None = None) -> dict[str, Any]:
    q = cell.config.quality
    columns = generate_shard(cell, model, cell_dir)
    return columns | merge_scores(q, cell_dir, [score_shard(q, cell_dir, Shard(), scorer_python)])


def make_quality_hook(scorer_python: str | None = None) -> QualityHook:
    def hook(cell: Cell, model: Any, cell_dir: Path) -> dict[str, Any]:
        return run_quality(cell, model, cell_dir, scorer_python)
    return hook


def score_run(run_dir: Path, scorers: list[str], scorer_python: str | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> str:
    """``tsbench score``: score the saved images of every cell of a run, update its rows and tables.

    Scorer options come from the run's suite (``quality.scorer_options`` in its manifest);
    ``overrides`` (``--set quality.scorer_options.<scorer>={...}``) add or replace them, e.g. for a
    scorer the run did not use. Other keys are fixed by the run that made the images."""
    from tsbench.config.suite import ConfigError, parse_override, suite_from_dict
    from tsbench.runner.sweep import expand_cells

    for expr in overrides:
        key, _ = parse_override(expr)
        if key.split(".")[:2] != ["quality", "scorer_options"]:
            raise ConfigError(f"--set {expr}: tsbench score only takes quality.scorer_options[.<scorer>]=...; "
                              "the other settings are fixed by the run that made the images")
    store = RunStore.existing(run_dir)  # never creates the directory of a mistyped path
    manifest = json.loads(store.manifest_path.read_text())
    suite = suite_from_dict(manifest["suite"], source=str(store.manifest_path), overrides=overrides)
    cells = {c.id: c for c in expand_cells(suite)}
    lines = []
    for row in store.load_rows():
        cell = cells.get(row["cell_id"])
        if cell is None or row["status"] != "ok" or not cell.config.quality.benchmark:
            continue
        q = dataclasses.replace(cell.config.quality, scorers=scorers)
        cell_dir = run_dir / "cells" / cell.id
        columns = merge_scores(q, cell_dir, [score_shard(q, cell_dir, Shard(), scorer_python)])
        kept = {k: v for k, v in row.items() if not k.startswith(tuple(column(name, "") for name in scorers))}
        store.append(kept | columns)
        lines.append(f"{cell.id}: " + ", ".join(f"{k}={v}" for k, v in columns.items()
                                                if k.endswith((".overall", ".mean", ".status", ".summary"))))
    store.export()
    return "\n".join(lines) or "no cell with benchmark images to score"
