"""The runner end to end on the tiny preset: isolation of failing cells, resume after a kill, CLI exits."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tsbench.cli import main
from tsbench.models.token_shuffle import TokenShuffleLM
from tsbench.runner.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def write_suite(tmp_path: Path, windows: list, resolutions: list = (64,), **measure) -> Path:
    suite = {
        "name": "t",
        "model": {"preset": "tiny"},
        "workload": {"prompts": ["a red circle"], "cfg_schedule": "linear"},
        "measure": {"flops": False, "warmup": 0, "min_repeats": 1, **measure},
        "sweep": {"grid": {"model.window": windows, "workload.resolution": list(resolutions)}},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys, monkeypatch) -> None:
    # every cell passes the load-time checks; the window-2 cell then runs out of memory in its first decode
    # step, as a cell too big for the device does, and only that cell fails
    step = TokenShuffleLM.step

    def out_of_memory_at_window_2(self, state, codes):
        if self.window == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return step(self, state, codes)

    monkeypatch.setattr(TokenShuffleLM, "step", out_of_memory_at_window_2)
    suite = write_suite(tmp_path, [1, 2])
    code = main(["run", str(suite), "--run-dir", str(tmp_path / "run"), "--no-report", "--no-progress"])
    assert code == 1  # a cell failed
    rows = {r["cell_id"]: r for r in RunStore(tmp_path / "run").load_rows()}
    assert rows["window=1,resolution=64"]["status"] == "ok"
    bad = rows["window=2,resolution=64"]
    assert bad["status"] == "oom" and "CUDA out of memory" in bad["message"]
    ok = rows["window=1,resolution=64"]
    assert ok["model.weights"] == "random"
    assert ok["latency.per_image_s"] > 0 and ok["memory.peak_rss_mib"] > 0
    assert (tmp_path / "run" / ok["samples.paths"][0]).is_file()  # relative to the run directory
    assert (tmp_path / "run" / "results.csv").is_file() and (tmp_path / "run" / "results.parquet").is_file()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["cells"]) == 2 and manifest["environment"]["env.torch"]
    assert "window=1,resolution=64" in capsys.readouterr().out  # the summary table


def test_rerun_skips_done_cells_and_force_redoes_them(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [1, 2])
    args = ["run", str(suite), "--run-dir", str(tmp_path / "run"), "--no-report", "--no-progress"]
    assert main(args) == 0
    first = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert main(args) == 0
    assert (tmp_path / "run" / "results.jsonl").read_text().splitlines() == first
    assert main(args + ["--force"]) == 0
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 4
    assert len(RunStore(tmp_path / "run").load_rows()) == 2


def test_kill_halfway_then_rerun_gives_one_row_per_cell(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [1, 2, 4], resolutions=[64, 128], min_repeats=2)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "tsbench", "run", str(suite), "--run-dir", str(run_dir), "--no-report", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    results = run_dir / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or not results.read_text().count("\n")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {r["cell_id"] for r in RunStore(run_dir).load_rows()}
    assert 1 <= len(done_before) < 6
    assert subprocess.run(cmd, cwd=REPO, capture_output=True).returncode == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    ids = [row["cell_id"] for row in lines]
    assert len(ids) == len(set(ids)) == 6  # finished rows kept, nothing redone, nothing missing
    assert done_before <= set(ids)


def test_config_error_is_exit_2_with_suggestion_and_no_traceback(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path, [1])
    code = main(["run", str(suite), "--set", "model.widow=2", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Did you mean 'model.window'" in err and "Traceback" not in err


def test_version_and_list(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "tsbench 0.1.0" in capsys.readouterr().out
    assert main(["list", "schedules"]) == 0
    assert "half-linear" in capsys.readouterr().out


def test_max_batch_search_reports_a_fitting_batch(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [2], memory=False, latency=False, max_batch_search=True)
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "run"), "--no-report", "--no-progress",
                 "--set", "workload.batch_size=2"]) == 0
    row = RunStore(tmp_path / "run").load_rows()[0]
    assert row["throughput.max_batch"] >= 2 and row["throughput.max_batch"] & (row["throughput.max_batch"] - 1) == 0
    assert row["throughput.max_batch_visual_tokens_per_s"] > 0
