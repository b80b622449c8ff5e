"""The quality part of a cell: generate the benchmark's images (resuming per image), score them, and
aggregate with the official rules into ``quality.<metric>.<tag>`` columns.

A scorer that cannot run here (no weights offline, package missing) does not fail the cell: its
columns say ``not scored: <reason>`` and ``tsbench score RUN_DIR`` scores the saved images later.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

import tsbench
from tsbench.benchmarks import load_prompts
from tsbench.benchmarks.layout import done_images, read_records, save_image
from tsbench.config.suite import QualityConfig, SuiteConfig, config_hash
from tsbench.runner.cell import QualityHook
from tsbench.runner.distributed import sidecar_lock
from tsbench.io import atomic_write_text
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import Cell
from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable
from tsbench.scoring.aggregate import read_score_rows, summarize

IMAGES, SCORES = "images", "scores.jsonl"
OFFICIAL_SUMMARY = {"genai-bench", "geneval", "shapes"}


def generation_hash(config: SuiteConfig) -> str:
    """What decides a benchmark image: the model, the sampling workload and the prompt texts. Scorers,
    measurement settings and ``limit`` are left out, so adding a scorer or more prompts reuses every image."""
    q, workload = config.quality, dataclasses.asdict(config.workload)
    workload.pop("prompts")  # the efficiency prompts; benchmark prompts come from the suite files
    return config_hash({"model": dataclasses.asdict(config.model), "workload": workload,
                        "prompts": [q.benchmark, q.version, q.path, q.rewrites, q.images_per_prompt]})


def generate_benchmark_images(cell: Cell, model: Any, image_root: Path,
                              shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Generate every (prompt, sample) image that is not on disk yet; seeds depend only on the
    prompt's position and the sample index, so reruns, batch sizes and shards give the same images.

    ``shard=(rank, world)`` keeps the prompts at positions ``rank`` mod ``world`` (torchrun ranks
    share a cell); the sidecar lock lets the ranks append to one ``images.jsonl``."""
    q, w = cell.config.quality, cell.config.workload
    rank, world = shard
    image_hash = generation_hash(cell.config)
    prompts = load_prompts(q.benchmark, version=q.version, data_dir=q.data_dir, path=q.path, limit=q.limit,
                           rewrites=q.rewrites)
    with sidecar_lock(image_root):
        done = done_images(image_root, image_hash)
    todo = [(index, prompt, sample) for index, prompt in enumerate(prompts) if index % world == rank
            for sample in range(q.images_per_prompt) if (prompt.id, sample) not in done]
    bar = tqdm(total=len(todo), desc="images", unit="img", leave=False, file=sys.stderr, disable=None)
    for lo in range(0, len(todo), w.batch_size):
        batch = todo[lo:lo + w.batch_size]
        seeds = [w.seed + index * q.images_per_prompt + sample for index, _, sample in batch]
        result = tsbench.generate(model, [p.generation_text for _, p, _ in batch], w.resolution,
                                  cfg_schedule=w.cfg_schedule, cfg_scale=w.cfg_scale, temperature=w.temperature,
                                  top_k=w.top_k, top_p=w.top_p, seeds=seeds, batch_size=len(batch),
                                  cfg_interval=tuple(w.cfg_interval) if w.cfg_interval else None)
        with sidecar_lock(image_root):
            for (_, prompt, sample), seed, image in zip(batch, seeds, result.images):
                save_image(image_root, q.benchmark, prompt, sample, seed, image_hash, Image.fromarray(image))
        bar.update(len(batch))
    bar.close()
    return {"quality.benchmark": q.benchmark, "quality.version": prompts.version, "quality.prompts": len(prompts),
            "quality.prompts_sha256": prompts.sha256, "quality.images_per_prompt": q.images_per_prompt,
            "quality.text_used": "rewritten" if prompts.rewritten else "original"}


def _build_scorer(name: str, q: QualityConfig, scorer_python: str | None):
    options = dict(q.scorer_options.get(name, {}))
    if scorer_python and name == "vqascore-t2v":
        options.setdefault("python", scorer_python)
    cls = SCORERS.get(name)
    if q.data_dir and "data_dir" in inspect.signature(cls).parameters:
        options.setdefault("data_dir", q.data_dir)  # e.g. GenEval's object_names.txt lives beside the prompts
    try:
        return cls(**options)
    except TypeError as err:
        raise ScorerUnavailable(f"scorer {name!r} needs options under quality.scorer_options.{name}: {err}") from None


def score_items(q: QualityConfig, cell_dir: Path) -> list[ScoreItem]:
    """The cell's recorded images as scorer inputs, one per (prompt, sample)."""
    image_root = cell_dir / IMAGES
    prompts = load_prompts(q.benchmark, version=q.version, data_dir=q.data_dir, path=q.path, limit=q.limit,
                           rewrites=q.rewrites).by_id()
    items = [ScoreItem(r.prompt_id, r.sample, image_root / r.path, prompts[r.prompt_id].text,
                       prompts[r.prompt_id].metadata) for r in read_records(image_root) if r.prompt_id in prompts]
    return list({(i.prompt_id, i.sample): i for i in items}.values())  # a regenerated image counts once


def read_scores(cell_dir: Path) -> list[dict[str, Any]]:
    path = cell_dir / SCORES
    return read_score_rows(path) if path.is_file() else []


def write_scores(cell_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(cell_dir / SCORES, "".join(json.dumps(r) + "\n" for r in rows))


def unscored(items: list[ScoreItem], saved: list[dict[str, Any]], scorer: str) -> list[ScoreItem]:
    """The items without a saved row of ``scorer``: resume scores only these."""
    have = {(r["prompt_id"], r["sample"]) for r in saved if r["scorer"] == scorer}
    return [i for i in items if (i.prompt_id, i.sample) not in have]


def score_rows(scorer: Any, name: str, items: list[ScoreItem]) -> list[dict[str, Any]]:
    """Score rows tagged with the scorer's registry name, the key of resume and aggregation."""
    return [row.to_dict() | {"scorer": name} for row in scorer.score(items)] if items else []


def score_images(q: QualityConfig, cell_dir: Path, scorers: list[str], scorer_python: str | None = None) -> dict[str, Any]:
    """Score the cell's saved images with each scorer and aggregate; unavailable scorers are recorded."""
    items = score_items(q, cell_dir)
    saved = read_scores(cell_dir)
    columns: dict[str, Any] = {}
    for name in scorers:
        try:
            scorer = _build_scorer(name, q, scorer_python)
            saved += score_rows(scorer, name, unscored(items, saved, name))
            write_scores(cell_dir, saved)
            rows = [r for r in saved if r["scorer"] == name]
            metric = rows[0]["metric"]
            table = (summarize(q.benchmark, rows, version=q.version, data_dir=q.data_dir, metric=metric,
                               require_all=False)
                     if q.benchmark in OFFICIAL_SUMMARY and metric != "clipscore"
                     else {"overall": sum(r["score"] for r in rows) / len(rows)})
            columns.update({f"quality.{metric}.{tag}": value for tag, value in table.items()})
            columns[f"quality.{metric}.status"] = "scored"
            columns[f"quality.{metric}.scorer"] = f"{name} {scorer.version}"
            columns.setdefault("quality.overall", table["overall"])
        except ScorerUnavailable as err:
            columns[f"quality.{name}.status"] = f"not scored: {err.reason}"
    return columns


def make_quality_hook(scorer_python: str | None = None) -> QualityHook:
    def hook(cell: Cell, model: Any, cell_dir: Path) -> dict[str, Any]:
        columns = generate_benchmark_images(cell, model, cell_dir / IMAGES)
        return columns | score_images(cell.config.quality, cell_dir, cell.config.quality.scorers, scorer_python)
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
        columns = score_images(cell.config.quality, run_dir / "cells" / cell.id, scorers, scorer_python)
        store.append(row | columns)
        lines.append(f"{cell.id}: " + ", ".join(f"{k}={v}" for k, v in columns.items() if k.endswith(("overall", "status"))))
    store.export()
    return "\n".join(lines) or "no cell with benchmark images to score"
