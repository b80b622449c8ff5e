"""suites/ar_baselines.yaml end to end on the tiny presets: every adapter of the suite generates images
offline through ``tsbench run``, and every row names the window the model ran at."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from tsbench.cli import main  # noqa: E402
from tsbench.runner.store import RunStore  # noqa: E402

SUITE = Path(__file__).resolve().parents[1] / "suites" / "ar_baselines.yaml"
TINY = ["--device", "cpu", "--set", "model.dtype=float32",
        "--set", "sweep.zip.model.preset=[GPT-tiny, tiny, tiny, tiny, tiny, tiny]",
        "--set", "sweep.zip.workload.resolution=[64, 64, 128, 64, 64, 32]",
        "--set", "measure.warmup=0", "--set", "measure.min_repeats=1", "--no-progress", "--no-report"]


def test_ar_baselines_generate_offline_on_tiny_presets(tmp_path: Path) -> None:
    assert main(["run", str(SUITE), "--run-dir", str(tmp_path / "run"), *TINY]) == 0
    rows = RunStore(tmp_path / "run").load_rows()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert sorted(r["model.adapter"] for r in rows) == ["emu3", "janus", "janus", "janus", "janus", "llamagen"]
    assert sorted(r["model.window"] for r in rows if r["model.adapter"] == "janus") == [1, 1, 2, 4]
    for row in rows:
        assert row["model.weights"] == "random" and row["flops.by_phase_component.prefill.attention"] > 0
        assert all((tmp_path / "run" / p).is_file() for p in row["samples.paths"])
    emu3 = next(r for r in rows if r["model.adapter"] == "emu3")
    assert emu3["config.model.options.negative_prompt"].startswith("lowres")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["suite"]["name"] == "ar_baselines"
