"""Small fake run directories for the human-evaluation tests: result rows, a manifest, benchmark images
with their ``images.jsonl`` sidecar and sample images, written with tsbench's own store and layout code.

Each image is a solid colour that encodes its system (red = 40 x window) and prompt (green), so a test
can tell from the served bytes which system was on which side.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tsbench.benchmarks.layout import ImageRecord, append_record, keyed_image_path, write_png
from tsbench.runner.store import RunStore

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a circle"]


def cell_id(window: int) -> str:
    return f"window={window},cfg_schedule=constant"


def colour(window: int, prompt_index: int) -> tuple[int, int, int]:
    return (40 * window, 20 * prompt_index, 200)


def fake_run(run: Path, windows: tuple[int, ...] = (1, 2), prompts: list[str] = PROMPTS, samples: int = 2,
             benchmark: bool = True, missing: dict[int, set[int]] | None = None) -> Path:
    """A run directory of one cell per window; ``missing[window]`` lists prompt indices without an image."""
    run.mkdir(parents=True, exist_ok=True)
    prompt_file = run / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"id": f"p{i}", "prompt": text}) + "\n" for i, text in enumerate(prompts)))
    store, cells = RunStore(run), []
    for window in windows:
        cid = cell_id(window)
        cell_dir = run / "cells" / cid
        paths = []
        for i in range(samples):
            path = write_png(Image.new("RGB", (16, 16), colour(window, 9)), cell_dir / "samples" / f"{i:02d}.png")
            paths.append(str(path.relative_to(run)))
        if benchmark:
            for i, _ in enumerate(prompts):
                if i in (missing or {}).get(window, set()):
                    continue
                path = write_png(Image.new("RGB", (16, 16), colour(window, i)),
                                 keyed_image_path(cell_dir / "images", f"p{i}", 0))
                append_record(cell_dir / "images", ImageRecord(f"p{i}", 0, i, "h", path.name, "original"))
        store.append({"cell_id": cid, "cell_hash": f"h{window}", "status": "ok", "message": "",
                      "config.model.window": window, "config.model.seed": 0, "config.workload.seed": 0,
                      "config.workload.cfg_schedule": "constant", "config.workload.cfg_scale": 3.0,
                      "samples.paths": paths, "samples.prompts": ["a red circle"] * samples,
                      "samples.seeds": list(range(samples))})
        cells.append({"id": cid, "config": {"quality": {"benchmark": "jsonl", "path": str(prompt_file),
                                                        "version": None, "data_dir": None}}})
    store.write_manifest({"name": run.name}, cells, {})
    return run


REPO = Path(__file__).resolve().parents[1]


def start_server(run: Path, db: Path, port: int = 0, compare: tuple[str, ...] = ("window=1", "window=2")
                 ) -> tuple[subprocess.Popen, str]:
    """``tsbench human serve`` in a subprocess (so a test can really kill it); returns it and its URL."""
    command = [sys.executable, "-m", "tsbench", "human", "serve", str(run), "--compare", *compare, "--db", str(db),
               "--port", str(port)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
    deadline, lines = time.time() + 90, []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("rate at "):
            return proc, line.split()[2]
        if time.time() > deadline:
            break
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(lines))
