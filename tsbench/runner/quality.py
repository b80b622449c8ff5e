"""The quality part of a cell: generate the benchmark's images (resuming per image), score them, and
aggregate with the official rules into ``quality.<metric>.<tag>`` columns.

A scorer that cannot run here (no weights offline, package missing) does not fail the cell: its
columns say ``not scored: <reason>`` and ``tsbench score RUN_DIR`` scores the saved images later.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

import tsbench
from tsbench.benchmarks import load_prompts
from tsbench.benchmarks.layout import ImageRecord, append_record, done_images, image_path, read_records, \
    write_geneval_metadata, write_png
from tsbench.config.suite import QualityConfig
from tsbench.runner.cell import QualityHook
from tsbench.runner.store import RunStore, atomic_write_text
from tsbench.runner.sweep import Cell
from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable
from tsbench.scoring.aggregate import read_score_rows, summarize

IMAGES, SCORES = "images", "scores.jsonl"
OFFICIAL_SUMMARY = {"genai-bench", "geneval"}


def generate_benchmark_images(cell: Cell, model: Any, image_root: Path) -> dict[str, Any]:
    """Generate every (prompt, sample) image that is not on disk yet; seeds depend only on the
    prompt's position and the sample index, so reruns, batch sizes and shards give the same images."""
    q, w = cell.config.quality, cell.config.workload
    prompts = load_prompts(q.benchmark, version=q.version, data_dir=q.data_dir, path=q.path, limit=q.limit,
                           rewrites=q.rewrites)
    done = done_images(image_root, cell.hash)
    todo = [(index, prompt, sample) for index, prompt in enumerate(prompts)
            for sample in range(q.images_per_prompt) if (prompt.id, sample) not in done]
    bar = tqdm(total=len(todo), desc="images", unit="img", leave=False, file=sys.stderr, disable=None)
    for lo in range(0, len(todo), w.batch_size):
        batch = todo[lo:lo + w.batch_size]
        seeds = [w.seed + index * q.images_per_prompt + sample for index, _, sample in batch]
        result = tsbench.generate(model, [p.generation_text for _, p, _ in batch], w.resolution,
                                  cfg_schedule=w.cfg_schedule, cfg_scale=w.cfg_scale, temperature=w.temperature,
                                  top_k=w.top_k, top_p=w.top_p, seeds=seeds, batch_size=len(batch),
                                  cfg_interval=tuple(w.cfg_interval) if w.cfg_interval else None)
        for (index, prompt, sample), seed, image in zip(batch, seeds, result.images):
            path = write_png(Image.fromarray(image), image_path(q.benchmark, image_root, prompt.id, sample))
            if q.benchmark == "geneval":
                write_geneval_metadata(image_root, prompt.id, prompt.metadata)
            append_record(image_root, ImageRecord(prompt.id, sample, seed, cell.hash,
                                                  str(path.relative_to(image_root)), prompt.text_used))
        bar.update(len(batch))
    bar.close()
    return {"quality.benchmark": q.benchmark, "quality.version": prompts.version, "quality.prompts": len(prompts),
            "quality.prompts_sha256": prompts.sha256, "quality.images_per_prompt": q.images_per_prompt,
            "quality.text_used": "rewritten" if prompts.rewritten else "original"}


def _build_scorer(name: str, q: QualityConfig, scorer_python: str | None):
    options = dict(q.scorer_options.get(name, {}))
    if scorer_python and name == "vqascore-t2v":
        options.setdefault("python", scorer_python)
    try:
        return SCORERS.get(name)(**options)
    except TypeError as err:
        raise ScorerUnavailable(f"scorer {name!r} needs options under quality.scorer_options.{name}: {err}") from None


def score_images(q: QualityConfig, cell_dir: Path, scorers: list[str], scorer_python: str | None = None) -> dict[str, Any]:
    """Score the cell's saved images with each scorer and aggregate; unavailable scorers are recorded."""
    image_root = cell_dir / IMAGES
    prompts = load_prompts(q.benchmark, version=q.version, data_dir=q.data_dir, path=q.path, limit=q.limit,
                           rewrites=q.rewrites).by_id()
    items = [ScoreItem(r.prompt_id, r.sample, image_root / r.path, prompts[r.prompt_id].text,
                       prompts[r.prompt_id].metadata) for r in read_records(image_root) if r.prompt_id in prompts]
    items = list({(i.prompt_id, i.sample): i for i in items}.values())  # a regenerated image counts once
    scores_path = cell_dir / SCORES
    saved = read_score_rows(scores_path) if scores_path.is_file() else []
    columns: dict[str, Any] = {}
    for name in scorers:
        try:
            scorer = _build_scorer(name, q, scorer_python)
            have = {(r["prompt_id"], r["sample"]) for r in saved if r["scorer"] == name}
            todo = [i for i in items if (i.prompt_id, i.sample) not in have]
            new = [row.to_dict() | {"scorer": name} for row in scorer.score(todo)] if todo else []
            saved += new
            atomic_write_text(scores_path, "".join(json.dumps(r) + "\n" for r in saved))
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


def score_run(run_dir: Path, scorers: list[str], scorer_python: str | None = None) -> str:
    """``tsbench score``: score the saved images of every cell of a run, update its rows and tables."""
    from tsbench.config.suite import suite_from_dict
    from tsbench.runner.sweep import expand_cells

    store = RunStore(run_dir)
    manifest = json.loads(store.manifest_path.read_text())
    cells = {c.id: c for c in expand_cells(suite_from_dict(manifest["suite"], source=str(store.manifest_path)))}
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
