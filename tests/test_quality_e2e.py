"""The quality path end to end and offline: ``tsbench run`` on the real GenAI-Bench and GenEval suites
(tiny random generator at 64 px on CPU, official prompt files from shared/data) generates the images in
the official layouts, scores them with tiny randomly initialised scorer models saved to disk (a LLaVA-style
VLM for VQAScore; Mask2Former + open_clip for GenEval; a stand-in for GenEval's official evaluator), writes
``scores.jsonl`` and the ``quality.<scorer>.<tag>`` columns (with intervals and coverage), which must equal
the benchmark's summary of the saved rows, and ``tsbench summarize`` must print the same numbers. A
``--limit`` run is ``partial``: no overall. Also: a scorer that cannot run offline leaves the images and a
``not scored`` status that ``tsbench score`` fills later, a forced rerun reuses the images already on disk,
and a quality key swept through ``zip`` runs quality.

``--limit 8`` covers GenAI-Bench-527 prompts 1-8, which are all "basic" prompts (the first "advanced" one is
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
from tsbench.report.html import build_report  # noqa: E402
from tsbench.runner.store import RunStore  # noqa: E402
from tsbench.scoring.aggregate import read_score_rows, summarize  # noqa: E402
from test_scoring_geneval_backends import STAND_IN  # noqa: E402
from tiny_models import tiny_llava, tiny_mask2former, tiny_open_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENAI_SUITE, GENEVAL_SUITE = REPO / "suites" / "genai_bench.yaml", REPO / "suites" / "geneval.yaml"
TINY_GENERATOR = ["--set", "model.preset=tiny", "--set", "model.window=1", "--device", "cpu",
                  "--set", "model.dtype=float32", "--set", "workload.resolution=64"]
VQA_HF = "vqascore-hf"
ROW_KEYS = {"prompt_id", "sample", "metric", "score", "scorer", "scorer_version", "model"}
V527 = ["--set", 'quality.version="527"']  # the 1,600-prompt files are not in shared/data


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


def summary_columns(row: dict, scorer: str) -> dict:
    """The columns a summary writes (values, intervals, coverage, summary); not the scorer's description."""
    prefix = f"quality.{scorer}."
    described = ("status", "metric", "model", "version", "aggregation", "direction", "caveat")
    return {k: v for k, v in row.items() if k.startswith(prefix) and k.removeprefix(prefix) not in described}


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
    args = [*V527, "--set", f"quality.scorers=[{VQA_HF}]", "--set", f"quality.scorer_options={options}"]
    assert run(GENAI_SUITE, run_dir, shared_data, 8, *args) == 0
    row = the_row(run_dir)
    cell = run_dir / "cells" / row["cell_id"]
    images = cell / "images"

    # official GenAI-Bench files: one <prompt key>.jpeg per prompt (what evaluate.py reads), plus the sidecar
    assert sorted(p.name for p in images.iterdir() if p.suffix == ".jpeg") == [f"{i:05d}.jpeg" for i in range(1, 9)]
    records = list(read_records(images))
    assert [(r.prompt_id, r.sample, r.path) for r in records] == [(f"{i:05d}", 0, f"{i:05d}.jpeg") for i in range(1, 9)]
    assert len({r.config_hash for r in records}) == 1 and {r.text_used for r in records} == {"original"}
    assert row["quality.benchmark"] == "genai-bench" and row["quality.version"] == "527"
    assert row["quality.prompts"] == 8 and row["quality.benchmark_prompts"] == 527
    assert row["quality.images_per_prompt"] == 1

    # one score row per image, probabilities of "Yes" from the tiny VLM
    saved = read_score_rows(cell / "scores.jsonl")
    assert len(saved) == 8 and all(set(r) == ROW_KEYS for r in saved)
    assert sorted((r["prompt_id"], r["sample"]) for r in saved) == [(f"{i:05d}", 0) for i in range(1, 9)]
    assert {(r["metric"], r["scorer"]) for r in saved} == {("vqascore", VQA_HF)}
    assert all(0.0 < r["score"] < 1.0 for r in saved)
    assert all(str(llava_dir) in r["scorer_version"] for r in saved)

    # the row's columns are the benchmark's summary of exactly these rows: 8 of 527 prompts, so partial
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data, metric="vqascore")
    assert summary_columns(row, VQA_HF) == expected.columns(VQA_HF)
    assert expected.summary == "partial" and "overall" not in expected.numbers and "advanced" not in expected.numbers
    assert {"basic", "attribute", "scene", "spatial relation", "action relation"} <= set(expected.numbers)
    assert row[f"quality.{VQA_HF}.summary"] == "partial" and f"quality.{VQA_HF}.overall" not in row
    assert row[f"quality.{VQA_HF}.coverage.overall"] == "8/527" and row[f"quality.{VQA_HF}.coverage.basic"] == "8/214"
    assert row[f"quality.{VQA_HF}.basic.ci_low"] < row[f"quality.{VQA_HF}.basic"] < row[f"quality.{VQA_HF}.basic.ci_high"]
    assert row[f"quality.{VQA_HF}.status"] == "scored" and row[f"quality.{VQA_HF}.metric"] == "vqascore"
    assert row[f"quality.{VQA_HF}.model"] == f"hf:{llava_dir}" and str(llava_dir) in row[f"quality.{VQA_HF}.version"]
    assert "quality.vqascore.basic" not in row  # each scorer has its own namespace

    # `tsbench summarize` recomputes the same table from the saved file, partial without being asked
    base = ["--benchmark", "genai-bench", "--version", "527", "--data-dir", str(shared_data),
            "--scores", str(cell / "scores.jsonl")]
    code, out, _ = summarize_cli(capsys, *base, "--json")
    assert code == 0 and json.loads(out) == json.loads(json.dumps(expected.to_dict()))

    # --force reruns the cell, but images resume per image (same cell hash) and scores are reused
    mtimes = {p: p.stat().st_mtime_ns for p in images.glob("*.jpeg")}
    sidecar, scores = (images / "images.jsonl").read_bytes(), (cell / "scores.jsonl").read_bytes()
    assert run(GENAI_SUITE, run_dir, shared_data, 8, *args, "--force") == 0
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 2  # the cell did run again
    assert (images / "images.jsonl").read_bytes() == sidecar  # still 8 records: nothing regenerated
    assert {p: p.stat().st_mtime_ns for p in images.glob("*.jpeg")} == mtimes
    assert (cell / "scores.jsonl").read_bytes() == scores
    rerun = the_row(run_dir)
    assert rerun["cell_hash"] == row["cell_hash"] and summary_columns(rerun, VQA_HF) == expected.columns(VQA_HF)


def test_genai_bench_advanced_skill_columns(shared_data, llava_dir, tmp_path):
    run_dir = tmp_path / "run"
    options = json.dumps({VQA_HF: vqa_hf_options(llava_dir)})
    assert run(GENAI_SUITE, run_dir, shared_data, 110, *V527, "--set", f"quality.scorers=[{VQA_HF}]",
               "--set", f"quality.scorer_options={options}") == 0
    row = the_row(run_dir)
    saved = read_score_rows(run_dir / "cells" / row["cell_id"] / "scores.jsonl")
    assert len(saved) == 110
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data)
    assert summary_columns(row, VQA_HF) == expected.columns(VQA_HF)
    basic = {"attribute", "scene", "spatial relation", "action relation", "part relation", "basic"}
    advanced = {"counting", "comparison", "differentiation", "advanced"}  # negation starts at 00169
    assert set(expected.numbers) == basic | advanced  # partial: no overall


def test_geneval_with_tiny_detector_and_clip(shared_data, tmp_path, capsys):
    detector = tiny_mask2former(tmp_path / "mask2former")
    clip = tiny_open_clip(tmp_path / "clip", "tsbench-e2e-tiny-clip").parent
    # local-dir: the folder's open_clip_config.json + weights, loadable in any process
    options = {"detector": "mask2former", "detector_model": str(detector), "clip_model": f"local-dir:{clip}",
               "clip_pretrained": None, "device": "cpu"}
    run_dir = tmp_path / "run"
    assert run(GENEVAL_SUITE, run_dir, shared_data, 4, "--set", "quality.images_per_prompt=2",
               "--set", "quality.scorers=[geneval]",  # the transformers path instead of the suite's official one
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
    assert {(r["metric"], r["scorer"]) for r in saved} == {("geneval", "geneval")}
    assert all(r["score"] in (0.0, 1.0) for r in saved)
    assert all(ROW_KEYS | {"details"} == set(r) and r["details"]["tag"] == "single_object" for r in saved)
    assert all(str(detector) in r["scorer_version"] and "local-dir:" in r["scorer_version"] for r in saved)

    expected = summarize("geneval", saved, data_dir=shared_data)
    assert summary_columns(row, "geneval") == expected.columns("geneval")
    assert set(expected.numbers) == {"single_object"} and expected.summary == "partial"
    assert row["quality.geneval.status"] == "scored" and row["quality.prompts"] == 4
    assert row["quality.geneval.caveat"] == "GenEval rules, transformers detector: not the official numbers"

    # one tag's prompts: `tsbench summarize` says partial, gives the coverage, and no overall
    code, out, _ = summarize_cli(capsys, "--benchmark", "geneval", "--data-dir", str(shared_data),
                                 "--scores", str(cell / "scores.jsonl"))
    lines = out.splitlines()
    assert code == 0 and "GenEval (553 prompts), geneval (official): partial (no overall" in lines[0]
    assert any(line.startswith("single_object") and line.endswith("4/80") for line in lines)
    assert not any(line.startswith("overall") for line in lines) and "overall 4/553" in lines[-1]
    code, out, _ = summarize_cli(capsys, "--benchmark", "geneval", "--data-dir", str(shared_data),
                                 "--scores", str(cell / "scores.jsonl"), "--json")
    assert code == 0 and json.loads(out) == json.loads(json.dumps(expected.to_dict()))


def test_complete_geneval_official_run_stands_beside_the_published_geneval_rows(shared_data, tmp_path):
    """All 553 prompts through the official evaluator's command line (a stand-in that judges even samples
    correct): the report sets the published GenEval rows beside the run's row; the same run with a
    changed evaluator option is shown apart, not comparable."""
    repo = tmp_path / "geneval"
    (repo / "evaluation").mkdir(parents=True)
    (repo / "evaluation" / "evaluate_images.py").write_text(STAND_IN)
    official = {"repo": str(repo), "model_path": str(tmp_path / "weights")}
    run_dir = tmp_path / "run"
    assert main(["run", str(GENEVAL_SUITE), *TINY_GENERATOR, "--data-dir", str(shared_data), "--run-dir",
                 str(run_dir), "--no-report", "--no-progress", "--scorer-python", sys.executable,
                 "--set", "quality.images_per_prompt=2", "--set", "workload.batch_size=32",
                 "--set", f"quality.scorer_options.geneval-official={json.dumps(official)}"]) == 0
    row = the_row(run_dir)
    assert row["quality.geneval-official.summary"] == "complete"
    assert row["quality.geneval-official.overall"] == pytest.approx(0.5)  # sample 0 correct, sample 1 not
    assert row["quality.geneval-official.model"] == "geneval-official"
    html = build_report([run_dir], tmp_path / "report").read_text()
    section = html.split("geneval-official (geneval) on GenEval (553 prompts)")[1].split("<h3")[0]
    first_table = section.split("</table>")[0]
    assert row["cell_id"] in first_table and "Token-Shuffle†" in first_table and "Janus-Pro-7B" in first_table
    assert "not comparable" not in section

    # the same images judged with a changed threshold: a different protocol, never beside published rows
    changed = {**official, "options": {"threshold": 0.5}}
    assert main(["score", str(run_dir), "--scorer", "geneval-official", "--scorer-python", sys.executable,
                 "--set", f"quality.scorer_options.geneval-official={json.dumps(changed)}"]) == 0
    html = build_report([run_dir], tmp_path / "report2").read_text()
    section = html.split("on GenEval (553 prompts)")[1].split("<h3")[0]
    assert "not comparable: scored with geneval-official (threshold=0.5); the published geneval rows were " \
           "scored with geneval-official" in section
    assert "Token-Shuffle†" not in section
    # the changed option was scored again (rows of other options are never reused), not relabelled
    saved = read_score_rows(run_dir / "cells" / row["cell_id"] / "scores.jsonl")
    assert len(saved) == 553 * 2 and {r["model"] for r in saved} == {"geneval-official (threshold=0.5)"}
    assert all("threshold" in r["scorer_version"] for r in saved)


def test_unavailable_scorer_keeps_images_and_tsbench_score_fills_columns(shared_data, llava_dir, tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "t2v_metrics", None)  # as offline without t2v-metrics: import fails
    run_dir = tmp_path / "run"
    assert run(GENAI_SUITE, run_dir, shared_data, 4, *V527) == 0  # the suite's default scorer, vqascore-t2v
    row = the_row(run_dir)
    cell = run_dir / "cells" / row["cell_id"]
    assert sorted(p.name for p in (cell / "images").glob("*.jpeg")) == [f"{i:05d}.jpeg" for i in range(1, 5)]
    assert row["quality.vqascore-t2v.status"].startswith("not scored: t2v_metrics is not importable")
    assert not any(k.startswith("quality.vqascore-t2v.") and k != "quality.vqascore-t2v.status" for k in row)
    assert not (cell / "scores.jsonl").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in (cell / "images").glob("*.jpeg")}

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
    expected = summarize("genai-bench", saved, version="527", data_dir=shared_data)
    assert summary_columns(scored, VQA_HF) == expected.columns(VQA_HF) and "basic" in expected.numbers
    assert scored[f"quality.{VQA_HF}.status"] == "scored"
    assert scored["quality.vqascore-t2v.status"] == row["quality.vqascore-t2v.status"]  # still recorded
    assert scored["cell_hash"] == row["cell_hash"]
    assert f"quality.{VQA_HF}.basic" in (run_dir / "results.csv").read_text().splitlines()[0]
    # scoring read the saved images; it generated nothing
    assert {p: p.stat().st_mtime_ns for p in (cell / "images").glob("*.jpeg")} == mtimes
    assert len(list(read_records(cell / "images"))) == 4


def test_quality_swept_through_zip_runs(tmp_path) -> None:
    """No benchmark in the base config, one only in the zipped cells: quality is decided from the cells."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({
        "name": "zipped", "model": {"preset": "shapes"}, "workload": {"resolution": 64, "prompts": ["a red circle"]},
        "measure": {"flops": False, "latency": False, "memory": False},
        "quality": {"limit": 6, "scorers": ["shapes-oracle"]},
        "sweep": {"zip": {"model.window": [2, 4], "quality.benchmark": ["shapes", "shapes"]}},
    }))
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "run"), "--no-report", "--no-progress"]) == 0
    rows = RunStore(tmp_path / "run").load_rows()
    assert len(rows) == 2 and all(r["quality.shapes-oracle.status"] == "scored" for r in rows)
    assert all(r["quality.shapes-oracle.coverage.overall"] == "6/120" for r in rows)


def test_generation_hash_ignores_scorers_and_limit() -> None:
    from tsbench.config.suite import suite_from_dict
    from tsbench.runner.quality import generation_hash

    base = {"name": "g", "quality": {"benchmark": "geneval", "scorers": ["geneval"]}}
    other_scoring = {"name": "g", "quality": {"benchmark": "geneval", "scorers": ["clipscore"], "limit": 3}}
    other_seed = {"name": "g", "workload": {"seed": 1}, "quality": {"benchmark": "geneval"}}
    assert generation_hash(suite_from_dict(base)) == generation_hash(suite_from_dict(other_scoring))
    assert generation_hash(suite_from_dict(base)) != generation_hash(suite_from_dict(other_seed))
