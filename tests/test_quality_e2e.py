"""The quality path end to end and offline: ``tsbench run`` on the real GenAI-Bench and GenEval suites
(tiny random generator at 64 px on CPU, official prompt files from shared/data) generates the images in
the official layouts, scores them with tiny randomly initialised scorer models saved to disk (a LLaVA-style
VLM for VQAScore; Mask2Former + open_clip for GenEval), writes ``scores.jsonl`` and the
``quality.<metric>.<tag>`` columns, which must equal the official aggregation of the saved rows, and
``tsbench summarize`` must print the same numbers. Also: a scorer that cannot run offline leaves the
images and a ``not scored`` status that ``tsbench score`` fills later, and a forced rerun reuses the
images already on disk.

``--limit 8`` covers GenAI-Bench prompts 1-8, which are all "basic" prompts (the first "advanced" one is
00103), so a separate run with ``--limit 110`` checks the ``advanced`` columns.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tsbench.benchmarks.layout import read_records  # noqa: E402
from tsbench.cli import main  # noqa: E402
from tsbench.runner.store import RunStore  # noqa: E402
from tsbench.scoring.aggregate import read_score_rows, summarize  # noqa: E402
from tiny_models import tiny_llava, tiny_mask2former, tiny_open_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENAI_SUITE, GENEVAL_SUITE = REPO / "suites" / "genai_bench.yaml", REPO / "suites" / "geneval.yaml"
TINY_GENERATOR = ["--set", "model.preset=tiny", "--set", "model.window=1", "--device", "cpu",
                  "--set", "model.dtype=float32", "--set", "workload.resolution=64"]
VQA_HF = "vqascore-hf"
ROW_KEYS = {"prompt_id", "sample", "metric", "score", "scorer", "scorer_version"}


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def vqa_hf_options(model: Path) -> dict:
    return {"model": str(model), "device": "cpu", "local_files_only": True}


def run(suite: Path, run_dir: Path, data_dir: Path, limit: int, *extra: str) -> int:
    return main(["run", str(suite), *TINY_GENERATOR, "--limit", str(limit), "--data-dir", str(data_dir),
                 "--run-dir", str(run_dir), "--no-report", "--no-progress", *extra])


def the_row(run_dir: Path) -> dict:
    rows = RunStore(run_dir).load_rows()
    assert len(rows) == 1 and rows[0]["status"] == "ok", rows
    return rows[0]


def metric_columns(row: dict, metric: str) -> dict:
    prefix = f"quality.{metric}."
    return {k.removeprefix(prefix): v for k, v in row.items()
            if k.startswith(prefix) and k not in (prefix + "status", prefix + "scorer")}


def summarize_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["summarize", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def png_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def test_genai_bench_with_tiny_vlm_scores_summarizes_and_resumes(shared_data, llava_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    options = json.dumps({VQA_HF: vqa_hf_options(llava_dir)})
    args = ["--set", f"quality.scorers=[{VQA_HF}]", "--set", f"quality.scorer_options={options}"]
    assert run(GENAI_SUITE, run_dir, shared_data, 8, *args) == 0
    row = the_row(run_dir)
    cell = run_dir / "cells" / row["cell_id"]
    images = cell / "images"

    # official GenAI-Bench layout: one <prompt key>.png per prompt, plus the resume sidecar
    assert png_files(images) == [f"{i:05d}.png" for i in range(1, 9)]
    records = list(read_records(images))
    assert [(r.prompt_id, r.sample, r.path) for r in records] == [(f"{i:05d}", 0, f"{i:05d}.png") for i in range(1, 9)]
    assert len({r.config_hash for r in records}) == 1 and {r.text_used for r in records} == {"original"}
    assert row["quality.benchmark"] == "genai-bench" and row["quality.version"] == "527"
    assert row["quality.prompts"] == 8 and row["quality.images_per_prompt"] == 1

    # one score row per image, probabilities of "Yes" from the tiny VLM
    saved = read_score_rows(cell / "scores.jsonl")
    assert len(saved) == 8 and all(set(r) == ROW_KEYS for r in saved)
    assert sorted((r["prompt_id"], r["sample"]) for r in saved) == [(f"{i:05d}", 0) for i in range(1, 9)]
    assert {(r["metric"], r["scorer"]) for r in saved} == {("vqascore", VQA_HF)}
    assert all(0.0 < r["score"] < 1.0 for r in saved)
    assert all(str(llava_dir) in r["scorer_version"] for r in saved)

    # the result row's columns are the official aggregation of exactly these rows
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data, metric="vqascore",
                         require_all=False)
    assert metric_columns(row, "vqascore") == expected
    assert {"overall", "basic", "attribute", "scene", "spatial relation", "action relation"} <= set(expected)
    assert "advanced" not in expected  # prompts 1-8 are all basic: see the next test
    assert row["quality.vqascore.status"] == "scored" and row["quality.vqascore.scorer"].startswith(VQA_HF)
    assert row["quality.overall"] == expected["overall"]

    # `tsbench summarize` recomputes the same table from the saved file
    base = ["--benchmark", "genai-bench", "--version", "527", "--data-dir", str(shared_data),
            "--scores", str(cell / "scores.jsonl")]
    code, out, _ = summarize_cli(capsys, *base, "--partial", "--json")
    assert code == 0 and json.loads(out) == expected
    code, _, err = summarize_cli(capsys, *base, "--json")  # a partial run must be asked for explicitly
    assert code == 2 and "519 of 527 GenAI-Bench-527 prompts have no score" in err

    # --force reruns the cell, but images resume per image (same cell hash) and scores are reused
    mtimes = {p: p.stat().st_mtime_ns for p in images.glob("*.png")}
    sidecar, scores = (images / "images.jsonl").read_bytes(), (cell / "scores.jsonl").read_bytes()
    assert run(GENAI_SUITE, run_dir, shared_data, 8, *args, "--force") == 0
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 2  # the cell did run again
    assert (images / "images.jsonl").read_bytes() == sidecar  # still 8 records: nothing regenerated
    assert {p: p.stat().st_mtime_ns for p in images.glob("*.png")} == mtimes
    assert (cell / "scores.jsonl").read_bytes() == scores
    rerun = the_row(run_dir)
    assert rerun["cell_hash"] == row["cell_hash"] and metric_columns(rerun, "vqascore") == expected


def test_genai_bench_advanced_skill_columns(shared_data, llava_dir, tmp_path):
    run_dir = tmp_path / "run"
    options = json.dumps({VQA_HF: vqa_hf_options(llava_dir)})
    assert run(GENAI_SUITE, run_dir, shared_data, 110, "--set", f"quality.scorers=[{VQA_HF}]",
               "--set", f"quality.scorer_options={options}") == 0
    row = the_row(run_dir)
    saved = read_score_rows(run_dir / "cells" / row["cell_id"] / "scores.jsonl")
    assert len(saved) == 110
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data, require_all=False)
    assert metric_columns(row, "vqascore") == expected
    basic = {"attribute", "scene", "spatial relation", "action relation", "part relation", "basic"}
    advanced = {"counting", "comparison", "differentiation", "advanced"}  # negation starts at 00169
    assert set(expected) == basic | advanced | {"overall"}


def test_geneval_with_tiny_detector_and_clip(shared_data, tmp_path, capsys):
    detector = tiny_mask2former(tmp_path / "mask2former")
    clip = tiny_open_clip(tmp_path / "clip", "tsbench-e2e-tiny-clip").parent
    # local-dir: the folder's open_clip_config.json + weights, loadable in any process
    options = {"detector": "mask2former", "detector_model": str(detector), "clip_model": f"local-dir:{clip}",
               "clip_pretrained": None, "device": "cpu"}
    run_dir = tmp_path / "run"
    assert run(GENEVAL_SUITE, run_dir, shared_data, 4, "--set", "quality.images_per_prompt=2",
               "--set", f"quality.scorer_options.geneval={json.dumps(options)}") == 0
    row = the_row(run_dir)
    cell = run_dir / "cells" / row["cell_id"]
    images = cell / "images"

    # GenEval's layout: <index:05d>/samples/<n:04d>.png + <index:05d>/metadata.jsonl (the official line)
    assert png_files(images) == [f"{i:05d}/samples/{n:04d}.png" for i in range(4) for n in range(2)]
    official = (shared_data / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
    for i in range(4):
        assert json.loads((images / f"{i:05d}" / "metadata.jsonl").read_text()) == json.loads(official[i])
    assert len(list(read_records(images))) == 8

    saved = read_score_rows(cell / "scores.jsonl")
    assert sorted((r["prompt_id"], r["sample"]) for r in saved) == [(f"{i:05d}", n) for i in range(4) for n in range(2)]
    assert {(r["metric"], r["scorer"]) for r in saved} == {("geneval_correct", "geneval")}
    assert all(r["score"] in (0.0, 1.0) for r in saved)
    assert all(ROW_KEYS | {"details"} == set(r) and r["details"]["tag"] == "single_object" for r in saved)
    assert all(str(detector) in r["scorer_version"] and "local-dir:" in r["scorer_version"] for r in saved)

    expected = summarize("geneval", saved, data_dir=shared_data, require_all=False)
    assert metric_columns(row, "geneval_correct") == expected and set(expected) == {"single_object", "overall"}
    assert row["quality.geneval_correct.status"] == "scored" and row["quality.prompts"] == 4

    code, out, _ = summarize_cli(capsys, "--benchmark", "geneval", "--data-dir", str(shared_data),
                                 "--scores", str(cell / "scores.jsonl"), "--partial", "--json")
    assert code == 0 and json.loads(out) == expected


def test_unavailable_scorer_keeps_images_and_tsbench_score_fills_columns(shared_data, llava_dir, tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "t2v_metrics", None)  # as offline without t2v-metrics: import fails
    run_dir = tmp_path / "run"
    assert run(GENAI_SUITE, run_dir, shared_data, 4) == 0  # the suite's default scorer, vqascore-t2v
    row = the_row(run_dir)
    cell = run_dir / "cells" / row["cell_id"]
    assert png_files(cell / "images") == [f"{i:05d}.png" for i in range(1, 5)]
    assert row["quality.vqascore-t2v.status"].startswith("not scored: t2v_metrics is not importable")
    assert "quality.vqascore.overall" not in row and "quality.overall" not in row
    assert not (cell / "scores.jsonl").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in (cell / "images").glob("*.png")}

    # without options for the hf model the scorer is reported, not crashed
    assert main(["score", str(run_dir), "--scorer", VQA_HF]) == 0
    assert the_row(run_dir)[f"quality.{VQA_HF}.status"].startswith(
        f"not scored: scorer '{VQA_HF}' needs options under quality.scorer_options.{VQA_HF}")
    # only scorer options may be given to `tsbench score`; the rest is fixed by the run
    capsys.readouterr()
    assert main(["score", str(run_dir), "--scorer", VQA_HF, "--set", "model.window=2"]) == 2
    assert "only takes quality.scorer_options" in capsys.readouterr().err

    options = json.dumps(vqa_hf_options(llava_dir))
    assert main(["score", str(run_dir), "--scorer", VQA_HF, "--set", f"quality.scorer_options.{VQA_HF}={options}"]) == 0
    scored = the_row(run_dir)
    saved = read_score_rows(cell / "scores.jsonl")
    assert len(saved) == 4 and {(r["metric"], r["scorer"]) for r in saved} == {("vqascore", VQA_HF)}
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data, require_all=False)
    assert metric_columns(scored, "vqascore") == expected and "overall" in expected
    assert scored["quality.vqascore.status"] == "scored" and scored["quality.overall"] == expected["overall"]
    assert scored["quality.vqascore-t2v.status"] == row["quality.vqascore-t2v.status"]  # still recorded
    assert scored["cell_hash"] == row["cell_hash"]
    assert "quality.vqascore.overall" in (run_dir / "results.csv").read_text().splitlines()[0]
    # scoring read the saved images; it generated nothing
    assert {p: p.stat().st_mtime_ns for p in (cell / "images").glob("*.png")} == mtimes
    assert len(list(read_records(cell / "images"))) == 4


def test_generation_hash_ignores_scorers_and_limit() -> None:
    from tsbench.config.suite import suite_from_dict
    from tsbench.runner.quality import generation_hash

    base = {"name": "g", "quality": {"benchmark": "geneval", "scorers": ["geneval"]}}
    other_scoring = {"name": "g", "quality": {"benchmark": "geneval", "scorers": ["clipscore"], "limit": 3}}
    other_seed = {"name": "g", "workload": {"seed": 1}, "quality": {"benchmark": "geneval"}}
    assert generation_hash(suite_from_dict(base)) == generation_hash(suite_from_dict(other_scoring))
    assert generation_hash(suite_from_dict(base)) != generation_hash(suite_from_dict(other_seed))
