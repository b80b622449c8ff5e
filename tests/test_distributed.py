"""``torchrun --nproc-per-node 2 -m tsbench run`` on CPU (gloo) against one plain process, on the tiny
preset at 64 px: the ranks share out the prompts of quality cells and the efficiency cells, and must
produce the same images (byte-equal PNGs), image records, samples and scores as one process. A rank
that died mid-cell leaves work that a rerun completes without redoing or duplicating any image.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from tsbench.benchmarks.layout import SIDECAR, read_records
from tsbench.config.suite import suite_from_dict
from tsbench.runner.distributed import World, process_group, torchrun_world
from tsbench.runner.store import RunStore
from tsbench.runner.sweep import expand_cells
from tsbench.scoring.aggregate import read_score_rows

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle", "a blue square", "two cats on a sofa", "a green tree", "a yellow car", "a small house"]
CELLS = ["window=1", "window=2"]
SMOKE_OVERRIDES = ["--set", "model.preset=tiny", "--set", "sweep.grid.workload.resolution=[64]",
                   "--set", "sweep.grid.model.window=[1,2,4]", "--set", "sweep.grid.workload.cfg_schedule=[constant]",
                   "--set", "quality.limit=4", "--set", "workload.batch_size=1"]


def tsbench_run(suite: Path, run_dir: Path, *args: str, ranks: int = 1) -> None:
    """``tsbench run`` in a fresh process, or under torchrun with ``ranks`` processes (free port)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    cmd = [sys.executable, *launcher, "-m", "tsbench", "run", str(suite), "--run-dir", str(run_dir), "--no-report",
           "--no-progress", *args]
    # one thread everywhere: the reference process then does the same arithmetic as each rank
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def records(image_root: Path) -> list[dict]:
    return sorted((asdict(r) for r in read_records(image_root)), key=lambda r: (r["prompt_id"], r["sample"]))


def scores(cell_dir: Path) -> dict[tuple[str, int], float]:
    rows = read_score_rows(cell_dir / "scores.jsonl")
    keyed = {(r["prompt_id"], r["sample"]): r["score"] for r in rows}
    assert len(keyed) == len(rows)  # every image scored once
    return keyed


def result_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """Two quality cells (windows 1 and 2), 6 prompts x 2 images, CLIPScore from a tiny local open_clip."""
    pytest.importorskip("open_clip")
    from tiny_models import tiny_open_clip

    folder = tmp_path_factory.mktemp("distributed")
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    weights = tiny_open_clip(folder / "clip", "tiny-clip")
    clip = {"model": f"local-dir:{folder / 'clip'}", "pretrained": str(weights), "device": "cpu", "batch_size": 4}
    config = {
        "name": "distributed",
        "model": {"preset": "tiny"},
        "workload": {"resolution": 64, "prompts": ["a red circle"]},
        "measure": {"flops": False, "warmup": 0, "min_repeats": 1},
        "quality": {"benchmark": "txt", "path": str(folder / "prompts.txt"), "images_per_prompt": 2,
                    "scorers": ["clipscore"], "scorer_options": {"clipscore": clip}},
        "sweep": {"grid": {"model.window": [1, 2]}},
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def single(suite: Path) -> Path:
    tsbench_run(suite, suite.parent / "single")
    return suite.parent / "single"


@pytest.fixture(scope="module")
def pair(suite: Path) -> Path:
    tsbench_run(suite, suite.parent / "pair", ranks=2)
    return suite.parent / "pair"


def test_two_ranks_make_the_images_records_and_scores_of_one_process(single: Path, pair: Path) -> None:
    for cell in CELLS:
        one, two = single / "cells" / cell, pair / "cells" / cell
        assert len(pngs(one / "images")) == len(PROMPTS) * 2
        assert pngs(two) == pngs(one)  # benchmark images and efficiency samples, byte for byte
        assert records(two / "images") == records(one / "images")  # prompt id, sample, seed, hash, path
        assert scores(two) == pytest.approx(scores(one), rel=1e-5)
    rows = result_lines(pair)
    assert sorted(r["cell_id"] for r in rows) == CELLS and all(r["status"] == "ok" for r in rows)
    assert sorted(r["env.rank"] for r in rows) == [0, 1]  # one efficiency cell measured on each rank
    reference = {r["cell_id"]: r for r in result_lines(single)}
    for row in rows:
        ref = reference[row["cell_id"]]
        for stat in ("", ".ci_low", ".ci_high"):  # the same rows give the same mean and interval
            assert row[f"quality.clipscore.mean{stat}"] == pytest.approx(ref[f"quality.clipscore.mean{stat}"], rel=1e-5)
        assert row["quality.clipscore.summary"] == "complete"
        assert row["quality.prompts"] == len(PROMPTS) and row["samples.seeds"] == ref["samples.seeds"]
    assert {"manifest.json", "results.csv", "results.parquet"} <= {p.name for p in pair.iterdir()}


@pytest.mark.filterwarnings("ignore:.*incomplete line")  # the torn line stays, skipped
def test_a_rerun_after_a_dead_rank_makes_only_the_missing_images(single: Path, pair: Path, suite: Path,
                                                                   tmp_path: Path) -> None:
    """The state rank 1 leaves when it dies while generating the images of the first quality cell: rows
    of quality cells are written only once the cell is scored, so there are none yet; of its prompts
    (positions 1, 3, 5) 00001 is done, 00003 not started, 00005 sample 0 has a PNG but no record
    (killed in between) and a torn last sidecar line; the second cell has no images yet."""
    run_dir = tmp_path / "run"
    shutil.copytree(pair, run_dir)
    (run_dir / "results.jsonl").unlink()
    first, second = run_dir / "cells" / CELLS[0], run_dir / "cells" / CELLS[1]
    shutil.rmtree(second / "images")
    for cell in (first, second):
        (cell / "scores.jsonl").unlink()
    sidecar = first / "images" / SIDECAR
    lost = {("00003", 0), ("00003", 1), ("00005", 0), ("00005", 1)}
    kept = [line for line in sidecar.read_text().splitlines()
            if (json.loads(line)["prompt_id"], json.loads(line)["sample"]) not in lost]
    sidecar.write_text("\n".join(kept) + '\n{"prompt_id": "00005", "sam')
    for name in ("00003.png", "00003_1.png", "00005_1.png"):
        (first / "images" / name).unlink()
    survivors = {p.name: p.stat().st_mtime_ns for p in (first / "images").glob("*.png") if p.name != "00005.png"}

    tsbench_run(suite, run_dir, ranks=2)

    for cell in CELLS:
        done = records(run_dir / "cells" / cell / "images")
        assert [(r["prompt_id"], r["sample"]) for r in done] == [(f"{i:05d}", s) for i in range(6) for s in (0, 1)]
        assert pngs(run_dir / "cells" / cell / "images") == pngs(single / "cells" / cell / "images")
        assert scores(run_dir / "cells" / cell) == pytest.approx(scores(single / "cells" / cell), rel=1e-5)
    assert {p.name: p.stat().st_mtime_ns for p in (first / "images").glob("*.png") if p.name in survivors} \
        == survivors  # finished images were not made again
    rows = result_lines(run_dir)
    assert sorted(r["cell_id"] for r in rows) == CELLS and all(r["status"] == "ok" for r in rows)


def test_smoke_suite_on_two_ranks_matches_one_process(tmp_path: Path) -> None:
    suite = REPO / "suites" / "smoke.yaml"
    tsbench_run(suite, tmp_path / "single", *SMOKE_OVERRIDES)
    tsbench_run(suite, tmp_path / "pair", *SMOKE_OVERRIDES, ranks=2)
    assert pngs(tmp_path / "pair" / "cells") == pngs(tmp_path / "single" / "cells")
    reference = {r["cell_id"]: r for r in RunStore(tmp_path / "single").load_rows()}
    rows = RunStore(tmp_path / "pair").load_rows()
    assert len(result_lines(tmp_path / "pair")) == len(rows) == len(reference) == 3
    for row in rows:
        ref = reference[row["cell_id"]]
        assert row["status"] == "ok" and row["flops.total"] == ref["flops.total"]
        assert [row[k] for k in ("samples.paths", "samples.prompts", "samples.seeds")] == \
            [ref[k] for k in ("samples.paths", "samples.prompts", "samples.seeds")]
    assert sorted(r["env.rank"] for r in rows) == [0, 0, 1]  # cell i on rank i mod 2


def test_world_follows_torchrun_environment_and_gpu_is_the_local_rank(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "9")
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = torchrun_world()
    assert world == World(rank=9, size=16, local_rank=1) and not world.is_main
    assert world.shard.take(list(range(40))) == [9, 25] and world.owns(25) and not world.owns(24)
    gpu, cpu = (expand_cells(suite_from_dict({"name": "t", "model": {"preset": "tiny", "device": device}}))[0]
                for device in ("cuda", "cpu"))
    placed = world.place(gpu)
    assert placed.config.model.device == "cuda:1" and (placed.id, placed.hash) == (gpu.id, gpu.hash)
    assert world.place(cpu) is cpu


def test_a_lone_process_joins_no_process_group(monkeypatch) -> None:
    import torch.distributed as td

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with process_group("cpu") as world:
        assert world == World() and world.is_main and not td.is_initialized()
