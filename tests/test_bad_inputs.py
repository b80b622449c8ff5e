"""Bad inputs through the CLI (issue 15): each is one clear line naming the file, key or value, exit code 2
(1 for a failed cell, recorded in its row), never a traceback, and results already on disk stay as they were."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tsbench.cli import main
from tsbench.runner.store import RunStore

REPO = Path(__file__).resolve().parents[1]
FAST = {"flops": False, "latency": True, "memory": False, "warmup": 0, "min_repeats": 1}


def write_suite(path: Path, **sections) -> Path:
    suite = {"name": "t", "model": {"preset": "tiny"}, "workload": {"prompts": ["a red circle"], "resolution": 64},
             "measure": FAST, **sections}
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``tsbench ARGS`` (argparse's own usage errors included)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as done:
        code = done.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def cli_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """For inputs that used to hang or fill the memory: a separate process with a time limit."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tsbench", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stdout + done.stderr
    return done


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A run directory with one finished cell, to copy."""
    root = tmp_path_factory.mktemp("finished")
    suite = write_suite(root / "suite.yaml")
    assert main(["run", str(suite), "--run-dir", str(root / "run"), "--no-report", "--no-progress"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from tsbench.models.token_shuffle import build_token_shuffle, save_checkpoint

    return save_checkpoint(build_token_shuffle("tiny"), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default output_dir ('runs') would land here, never in the repository


# ---- YAML ------------------------------------------------------------------------------------------


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['name: t', 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9^10 values expanded
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\n")
    done = cli_subprocess("run", "laughs.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "laughs.yaml:" in done.stderr and "expands to more than 100,000 values" in done.stderr


@pytest.mark.parametrize("text, where, what", [
    ("name: t\nmodel: &o {preset: *o}\n", "suite.yaml:2: model.preset", "recursive alias"),
    ("name: t\nquality:\n  scorer_options: &o {x: [*o]}\n", "suite.yaml:3: quality.scorer_options.x[0]",
     "recursive alias"),
    ("name: t\nworkload:\n  prompts: " + "[" * 80 + "]" * 80 + "\n", "suite.yaml:3: workload.prompts[0]",
     "nested more than 64 levels deep"),
    ("name: t\nworkload:\n  prompts: " + "[" * 900 + "]" * 900 + "\n", "suite.yaml", "nested too deeply"),
])
def test_recursive_or_deep_yaml_is_one_line(tmp_path: Path, capsys, text: str, where: str, what: str) -> None:
    (tmp_path / "suite.yaml").write_text(text)
    code, _, err = cli(capsys, "run", tmp_path / "suite.yaml")
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path}/{where}" in err and what in err


def test_recursive_alias_in_a_set_value(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--set", "quality.scorer_options={a: &o [*o]}")
    assert code == 2 and "--set quality.scorer_options={a: &o [*o]}" in err and "recursive alias" in err


def test_huge_grid_is_refused_before_any_cell_exists(tmp_path: Path) -> None:
    values = list(range(10_000))
    write_suite(tmp_path / "grid.yaml", sweep={"grid": {"workload.seed": values, "measure.min_repeats": values}})
    done = cli_subprocess("run", "grid.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "grid.yaml:" in done.stderr and "sweep: 100,000,000 cells" in done.stderr
    assert "--max-cells 100000000" in done.stderr and not (tmp_path / "runs").exists()


def test_max_cells_flag_raises_the_limit(tmp_path: Path, capsys) -> None:
    # 12 cells, one of them with a misspelt schedule: refused by the cell count first, and once the
    # limit allows 12 the load-time checks run (nothing is generated either way)
    suite = write_suite(tmp_path / "s.yaml", sweep={"grid": {"workload.seed": list(range(6)),
                                                              "workload.cfg_schedule": ["linear", "cosin"]}})
    code, _, err = cli(capsys, "run", suite, "--max-cells", "10")
    assert code == 2 and "12 cells (6 workload.seed x 2 workload.cfg_schedule)" in err and "limit of 10" in err
    code, out, err = cli(capsys, "run", suite, "--max-cells", "12", "--run-dir", tmp_path / "run")
    assert code == 2 and "12 cell(s)" in out
    line = suite.read_text().splitlines().index("    - cosin") + 1
    assert (f"{suite}:{line} (sweep.grid.workload.cfg_schedule[1]): workload.cfg_schedule: "
            "unknown CFG schedule 'cosin'. Did you mean 'cosine'") in err
    assert err.count("tsbench: error") == 1 and not (tmp_path / "run").exists()  # one problem, listed once


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", ".hidden"])
def test_suite_name_cannot_leave_output_dir(tmp_path: Path, capsys, name: str) -> None:
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--set", f"name={name}")
    assert code == 2 and f"--set name={name}: name: {name!r} cannot name the run directory" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


# ---- devices, checked before any cell runs ----------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--device", "cuda", "--run-dir", tmp_path / "run")
    assert code == 2 and "--device cuda: model.device: 'cuda' is not available on this machine" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device, message", [("cdua", "'cdua' is not a torch device"),
                                             ("cuda:99", "'cuda:99'"), ("meta", "'meta' cannot run a benchmark")])
def test_malformed_or_absent_device_is_a_file_line_error(tmp_path: Path, capsys, device: str, message: str) -> None:
    suite = write_suite(tmp_path / "s.yaml", model={"preset": "tiny", "device": device})
    code, _, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run")
    assert code == 2 and f"{suite}:4: model.device: {message}" in err
    assert not (tmp_path / "run").exists()


# ---- names, windows and resolutions, checked before any cell runs -----------------------------------


def line_of(path: Path, marker: str) -> int:
    """The 1-based line of ``path`` holding ``marker`` (written by write_suite, so found by plain text)."""
    (line,) = [n for n, text in enumerate(path.read_text().splitlines(), start=1) if marker in text]
    return line


@pytest.mark.parametrize("sections, marker, key, message", [
    ({"model": {"adapter": "token-shufle"}}, "adapter: token-shufle", "model.adapter",
     "unknown adapter 'token-shufle'. Did you mean 'token-shuffle'?"),
    ({"model": {"preset": "tinyy"}}, "preset: tinyy", "model.preset",
     "unknown token-shuffle preset 'tinyy'. Did you mean 'tiny'?"),
    ({"model": {"adapter": "llamagen", "preset": "GPT-X"}}, "preset: GPT-X", "model.preset",
     "unknown llamagen preset 'GPT-X'. Did you mean 'GPT-XL'"),
    ({"model": {"adapter": "emu3", "preset": "tiny", "compile": True}}, "compile: true", "model.compile",
     "adapter 'emu3' has no static-shape decode step (it decodes through its own cache), so it cannot be compiled"),
    ({"model": {"preset": "shapes", "window": 8}}, "window: 8", "model.window",  # trained at 1, 2 and 4
     "window 8 is not supported by adapter 'token-shuffle', preset 'shapes'; use one of 1, 2, 4, or leave "
     "model.window unset"),
    ({"model": {"adapter": "emu3", "preset": "tiny", "window": 2}}, "window: 2", "model.window",
     "window 2 is not supported by adapter 'emu3', preset 'tiny'; use window 1"),
    ({"model": {"preset": "tiny", "window": 2}, "workload": {"prompts": ["a"], "resolution": 72}}, "resolution: 72",
     "workload.resolution", "72 is not a multiple of 32 (VQ downsampling 16 x window 2 of adapter 'token-shuffle', "
                            "preset 'tiny'); use 64 or 96"),
    ({"model": {"adapter": "llamagen-ts", "preset": "GPT-tiny"}, "workload": {"prompts": ["a"], "resolution": 48}},
     "resolution: 48", "workload.resolution", "48 is not a multiple of 32 (VQ downsampling 16 x window 2"),
    ({"model": {"preset": "tiny", "options": {"vq": "vq16-tinny"}}}, "vq: vq16-tinny", "model.options.vq",
     "unknown VQ preset 'vq16-tinny'. Did you mean 'vq16-tiny'"),
    ({"quality": {"benchmark": "genevall"}}, "benchmark: genevall", "quality.benchmark",
     "unknown benchmark 'genevall'. Did you mean 'geneval'?"),
    ({"quality": {"benchmark": "shapes", "scorers": ["shapes-oracel"]}}, "- shapes-oracel", "quality.scorers[0]",
     "unknown scorer 'shapes-oracel'. Did you mean 'shapes-oracle'?"),
])
def test_bad_name_window_or_resolution_is_a_file_line_error(tmp_path: Path, capsys, finished_run: Path,
                                                            sections: dict, marker: str, key: str,
                                                            message: str) -> None:
    suite = write_suite(tmp_path / "s.yaml", **sections)
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    code, _, err = cli(capsys, "run", suite, "--run-dir", run)
    assert code == 2 and f"{suite}:{line_of(suite, marker)}: {key}: {message}" in err
    assert snapshot(run) == before  # no image generated or timed, no row written, not even the manifest


@pytest.mark.parametrize("suite", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_load_time_checks_refuse_no_shipped_suite(suite: Path) -> None:
    from tsbench.config.suite import load_suite
    from tsbench.runner.sweep import expand_cells
    from tsbench.runner.validate import CELL_CHECKS, check_device, validate_cells

    validate_cells(expand_cells(load_suite(suite)), [c for c in CELL_CHECKS if c is not check_device])  # GPU suites


def test_unsupported_window_in_a_sweep_fails_before_the_good_cells_run(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", sweep={"grid": {"model.window": [1, 2, 3]}})
    code, out, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run")
    assert code == 2 and "3 cell(s)" in out
    assert (f"{suite}:{line_of(suite, '- 3')} (sweep.grid.model.window[2]): model.window: window 3 is not "
            "supported by adapter 'token-shuffle', preset 'tiny'; use one of 1, 2, 4, 8") in err
    assert err.count("tsbench: error") == 1 and not (tmp_path / "run").exists()


def test_window_that_contradicts_the_checkpoint(tmp_path: Path, capsys, tiny_checkpoint: Path) -> None:
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--checkpoint", tiny_checkpoint,
                       "--set", "model.window=2", "--run-dir", tmp_path / "run")
    assert code == 2 and (f"--set model.window=2: model.window: window 2 is not supported by adapter "
                          f"'token-shuffle', preset 'tiny', checkpoint {tiny_checkpoint}; use window 1") in err
    assert not (tmp_path / "run").exists()


def test_incomplete_hugging_face_checkpoint_is_refused_before_any_cell(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "Janus-Pro-7B"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "janus"}))
    suite = write_suite(tmp_path / "s.yaml", model={"adapter": "janus", "checkpoint": str(ckpt)})
    code, _, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run")
    assert code == 2 and f"{suite}:4: model.checkpoint: {ckpt}: incomplete janus checkpoint, missing model.safetensors" in err
    assert not (tmp_path / "run").exists()


# ---- checkpoints -----------------------------------------------------------------------------------


def broken_copy(source: Path, target: Path, **files: bytes | str) -> Path:
    shutil.copytree(source, target)
    for name, data in files.items():
        (target / name.replace("_", ".", 1)).write_bytes(data.encode() if isinstance(data, str) else data)
    return target


@pytest.mark.parametrize("files, message", [
    ({"model_safetensors": b""}, "model.safetensors: not a readable safetensors file (Error while deserializing "
                                 "header: header too small)"),
    ({"model_safetensors": b"\x00garbage" * 64}, "model.safetensors: not a readable safetensors file"),
    ({"config_json": "{}"}, "config.json: config.dim: missing required key"),
    ({"config_json": "{not json"}, "config.json: not valid JSON"),
    ({"config_json": json.dumps({"config": {"dim": 64, "n_layerz": 2}})}, "config.json: config.n_layerz: unknown key"),
])
def test_broken_checkpoint_directory_is_refused_before_any_cell(
        tmp_path: Path, capsys, tiny_checkpoint: Path, finished_run: Path, files: dict, message: str) -> None:
    ckpt = broken_copy(tiny_checkpoint, tmp_path / "ckpt", **files)
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--checkpoint", ckpt, "--run-dir", run)
    assert code == 2 and f"--checkpoint {ckpt}: model.checkpoint: {ckpt}/" in err
    assert message in err and "expected a checkpoint directory holding config.json" in err
    assert snapshot(run) == before


def test_broken_checkpoint_named_in_the_suite_points_at_its_line(tmp_path: Path, capsys, tiny_checkpoint) -> None:
    ckpt = broken_copy(tiny_checkpoint, tmp_path / "ckpt", model_safetensors=b"")
    suite = write_suite(tmp_path / "s.yaml", model={"preset": "tiny", "checkpoint": str(ckpt)})
    code, _, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run")
    assert code == 2 and f"{suite}:4: model.checkpoint: {ckpt}/model.safetensors" in err
    assert not (tmp_path / "run").exists()


def test_checkpoint_that_does_not_fit_the_model_fails_its_cell(tmp_path: Path, capsys, tiny_checkpoint) -> None:
    # a readable weights file is only found not to fit when the cell loads it: that cell fails (exit 1) and
    # its row names the option, the file and the mismatched keys
    weights = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_checkpoint / "model.safetensors", weights)
    suite = write_suite(tmp_path / "s.yaml", model={"preset": "small"})
    code, _, err = cli(capsys, "run", suite, "--checkpoint", weights, "--run-dir", tmp_path / "run",
                       "--no-report", "--no-progress")
    assert code == 1 and "1 cell(s) failed: default" in err
    row = RunStore(tmp_path / "run").load_rows()[0]
    assert row["status"] == "error"
    assert row["message"].startswith(f"CheckpointError: --checkpoint {weights}: model.checkpoint: {weights}: "
                                     "checkpoint does not match the model; missing keys: layers.2.")
    assert "shape mismatches: layers.0.attention.wo.weight: checkpoint (64, 64) vs model (384, 384)" in row["message"]


def test_missing_checkpoint_is_refused_before_any_cell(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--checkpoint", tmp_path / "nowhere",
                       "--run-dir", tmp_path / "run")
    assert code == 2 and f"--checkpoint {tmp_path / 'nowhere'}: model.checkpoint: {tmp_path / 'nowhere'}: not found" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, data, message", [("vq.safetensors", b"", "not a readable safetensors file"),
                                                 ("vq.pt", b"", "not a torch checkpoint (an empty file)"),
                                                 ("vq.pt", b"garbage" * 9, "not a torch checkpoint (neither a torch.save zip archive")])
def test_broken_weights_file_is_refused_before_any_cell(tmp_path: Path, capsys, name: str, data: bytes,
                                                        message: str) -> None:
    (tmp_path / name).write_bytes(data)
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--vq-checkpoint", tmp_path / name,
                       "--run-dir", tmp_path / "run")
    assert code == 2 and f"--vq-checkpoint {tmp_path / name}: model.options.vq_checkpoint: {tmp_path / name}: {message}" in err
    assert "expected a .safetensors file, or a torch file" in err and not (tmp_path / "run").exists()


# ---- files and directories -------------------------------------------------------------------------


def test_run_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    target = tmp_path / "taken"
    target.write_text("mine")
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--run-dir", target, "--no-report")
    assert code == 2 and f"tsbench: error: cannot write {target}: it exists and is not a directory" in err
    assert target.read_text() == "mine"


@pytest.fixture
def read_only(tmp_path: Path):
    """Make a directory unwritable, also for root (chattr +i); skips where neither works."""
    locked: list[Path] = []

    def lock(directory: Path) -> Path:
        if os.geteuid() != 0:
            directory.chmod(0o555)
        elif subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr: cannot make a directory read-only")
        locked.append(directory)
        return directory

    yield lock
    for directory in locked:
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
        directory.chmod(0o755)


def test_read_only_run_directory(tmp_path: Path, capsys, finished_run: Path, read_only) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    read_only(run)
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--run-dir", run, "--force", "--no-progress")
    assert code == 2 and f"tsbench: error: cannot write {run}/manifest.json: " in err
    assert snapshot(run) == before


def test_report_out_that_is_a_file(tmp_path: Path, capsys, finished_run: Path) -> None:
    (tmp_path / "out").write_text("mine")
    code, _, err = cli(capsys, "report", finished_run, "--out", tmp_path / "out")
    assert code == 2 and f"cannot write {tmp_path / 'out'}: it exists and is not a directory" in err
    assert (tmp_path / "out").read_text() == "mine"


def test_plot_under_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("mine")
    code, out, err = cli(capsys, "cfg-schedules", "--plot", tmp_path / "file" / "plot.png")
    assert code == 2 and f"cannot write {tmp_path / 'file'}: it exists and is not a directory" in err
    assert "half-linear" in out  # the table was printed before


@pytest.mark.parametrize("make", ["missing", "file"])
def test_score_needs_a_run_directory(tmp_path: Path, capsys, make: str) -> None:
    target = tmp_path / "runs" / "typo"
    if make == "file":
        target.parent.mkdir()
        target.write_text("mine")
    code, _, err = cli(capsys, "score", target, "--scorer", "clipscore")
    assert code == 2 and f"{target} is not a run directory (no results.jsonl)" in err
    assert target.exists() == (make == "file") and (make == "missing" or target.read_text() == "mine")


def test_result_row_without_status(tmp_path: Path, capsys, finished_run: Path) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    row = RunStore(run).load_rows()[0]
    del row["status"]
    with open(run / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    before = snapshot(run)
    code, _, err = cli(capsys, "report", run, "--out", tmp_path / "report")
    assert code == 2 and f"{run}/results.jsonl:2: result row lacks status" in err
    code, _, err = cli(capsys, "run", write_suite(tmp_path / "s.yaml"), "--run-dir", run, "--no-progress")
    assert code == 2 and f"{run}/results.jsonl:2: result row lacks status" in err
    assert snapshot(run) == before  # not even the manifest was rewritten


# ---- numbers and text ------------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    (bytes(range(128, 256)) * 4, ":1: not UTF-8 text"),
    (b'{"prompt_id": "0", "sample": 0, "metric": "m", "score": 1}\n'
     b'{"prompt_id": "1", "sample": 0, "metric": "m", "score": "high"}\n', ":2: score must be a number"),
    (b'{"prompt_id": "0", "sample": 0, "metric": "m", "score": NaN}\n', ":1: score must be a number"),
])
def test_summarize_bad_scores(tmp_path: Path, capsys, data: bytes, message: str) -> None:
    (tmp_path / "scores.jsonl").write_bytes(data)
    code, _, err = cli(capsys, "summarize", "--benchmark", "shapes", "--scores", tmp_path / "scores.jsonl")
    assert code == 2 and f"{tmp_path / 'scores.jsonl'}{message}" in err


@pytest.mark.parametrize("args, message", [
    (["--resolution", "0"], "argument --resolution: must be between 1 and 65536, got 0"),
    (["--resolution", "-16"], "argument --resolution: must be between 1 and 65536, got -16"),
    (["--resolution", "100000000"], "argument --resolution: must be between 1 and 65536, got 100000000"),
    (["--resolution", "big"], "argument --resolution: expected an integer, got 'big'"),
    (["--prompt-tokens", "-5"], "argument --prompt-tokens: must be at least 1, got -5"),
    (["--resolution", "1000"], "resolution 1000x1000 is not a multiple of the VQ downsampling factor 16"),
])
def test_flops_bad_numbers_are_usage_errors(capsys, args: list[str], message: str) -> None:
    code, out, err = cli(capsys, "flops", *args)
    assert code == 2 and message in err and "FLOP" not in out


def test_long_prompt_is_cut_with_a_warning_and_counted(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", workload={"prompts": ["a red circle " * 800, "short"], "batch_size": 2,
                                                       "resolution": 64})
    code, out, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert code == 0 and "suite 't': 1 cell(s)" in out
    assert "1 of 2 prompt(s) are longer than the model's text budget (64 tokens) and were cut" in err
    assert RunStore(tmp_path / "run").load_rows()[0]["workload.truncated_prompts"] == 1


def test_llamagen_t5_cuts_long_prompts_and_the_row_counts_them(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    from tiny_models import tiny_t5

    t5 = tiny_t5(tmp_path / "t5", width=32)  # GPT-tiny has 8 caption slots: 'a red cat' x 3 + EOS is 10 tokens
    suite = write_suite(tmp_path / "s.yaml", model={"adapter": "llamagen", "preset": "GPT-tiny",
                                                    "options": {"text_encoder": str(t5)}},
                        workload={"prompts": ["a red cat " * 3, "a red cat"], "batch_size": 2, "resolution": 64})
    code, _, err = cli(capsys, "run", suite, "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert code == 0
    assert "1 of 2 prompt(s) are longer than the model's text budget (8 tokens) and were cut" in err
    assert RunStore(tmp_path / "run").load_rows()[0]["workload.truncated_prompts"] == 1
