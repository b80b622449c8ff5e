"""Report: published baselines, aggregation helpers, plots and the HTML page (from real and hand-built runs)."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tsbench.cli import main as cli_main
from tsbench.config.suite import suite_from_dict
from tsbench.report.aggregate import (ID_COLUMNS, compare, export, geomean, load_cells, load_runs, run_labels, tidy,
                                      wide)
from tsbench.report.baselines import COLUMNS, load_baselines
from tsbench.report.html import build_report
from tsbench.report.plots import PlotWarning, grid_specs, make_plots, pareto_front
from tsbench.runner.run import run_suite
from tsbench.runner.store import RunStore

XSS_PROMPT = "<script>alert(1)</script> a red cube"
GENAI_TAGS = {"attribute", "scene", "spatial relation", "action relation", "part relation", "counting",
              "differentiation", "comparison", "negation", "universal", "basic", "advanced", "overall"}
GENEVAL_TAGS = {"single_object", "two_object", "counting", "colors", "position", "color_attr", "overall"}


# ---- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4-cell run of the tiny preset (64/128 px, windows 1/2) whose prompt is an XSS probe.

    Cached on disk so that the browser test module reuses it instead of running it again.
    """
    run_dir = tmp_path_factory.getbasetemp() / "report_real_run"
    if not (run_dir / "results.csv").is_file():
        suite = suite_from_dict({
            "name": "report-test",
            "model": {"preset": "tiny", "device": "cpu"},
            "workload": {"prompts": [XSS_PROMPT], "batch_size": 1, "cfg_scale": 3.0},
            "measure": {"warmup": 0, "min_repeats": 1},
            "sweep": {"grid": {"workload.resolution": [64, 128], "model.window": [1, 2]}},
        })
        outcome = run_suite(suite, run_dir=run_dir, progress=False)
        assert not outcome.failed
    return run_dir


def _row(res: int, window: int, schedule: str, batch: int = 1) -> dict:
    """One plausible result row: cost falls with s, quality falls slightly with s."""
    steps = (res // 16 // window) ** 2
    latency = 0.001 * steps + 0.05
    quality = {t: 0.8 - 0.05 * np.log2(window) - (0.02 if schedule == "constant" else 0) - 0.01 * i
               for i, t in enumerate(["attribute", "scene", "counting", "negation", "basic", "advanced"])}
    quality["overall"] = (quality["basic"] + quality["advanced"]) / 2
    t2v = "quality.vqascore-t2v"
    cell_id = f"resolution={res},window={window},cfg_schedule={schedule},batch_size={batch}"
    return {
        "cell_id": cell_id, "cell_hash": f"h{res}{window}{schedule}{batch}", "status": "ok", "message": "",
        "config.model.adapter": "token-shuffle", "config.model.preset": "small", "config.model.window": window,
        "config.model.dtype": "float32", "config.model.device": "cpu", "config.model.checkpoint": "w.safetensors",
        "config.workload.resolution": res, "config.workload.batch_size": batch, "config.workload.cfg_scale": 7.5,
        "config.workload.cfg_schedule": schedule, "model.weights": "abc123", "workload.ar_steps": steps,
        "workload.visual_tokens": (res // 16) ** 2,
        "flops.total": 1e9 * steps + 5e9, "flops.by_phase.prefill": 1e8, "flops.by_phase.decode": 1e9 * steps - 1e8,
        "flops.by_phase.vq_decode": 5e9,
        "latency.prefill_s": 0.01, "latency.decode_step_s": 0.001, "latency.vq_decode_s": 0.04,
        "latency.end_to_end_s": latency * batch, "latency.per_image_s": latency, "latency.end_to_end_s.raw": [latency],
        "throughput.images_per_s": batch / (latency * batch) * (1 + 0.3 * np.log2(batch)),
        "memory.peak_rss_mib": 500 + res, "memory.kv_cache_mib": steps / 64,
        "quality.benchmark": "genai-bench", "quality.version": "527", "quality.text_used": "original",
        "quality.prompts": 527, "quality.benchmark_prompts": 527,
        f"{t2v}.status": "scored", f"{t2v}.metric": "vqascore", f"{t2v}.model": "clip-flant5-xxl",
        f"{t2v}.version": "t2v_metrics 3.0; clip-flant5-xxl", f"{t2v}.aggregation": "official",
        f"{t2v}.summary": "complete", f"{t2v}.direction": "higher",
        **{f"{t2v}.{t}": v for t, v in quality.items()},
        **{f"{t2v}.{t}.ci_low": v - 0.03 for t, v in quality.items()},
        **{f"{t2v}.{t}.ci_high": v + 0.03 for t, v in quality.items()},
        "quality.clipscore.mean": 0.3 - 0.01 * window, "quality.clipscore.status": "scored",
        "quality.clipscore.metric": "clipscore", "quality.clipscore.aggregation": "mean",
        "quality.clipscore.summary": "complete", "quality.clipscore.model": "ViT-L-14/openai; torchmetrics",
        "quality.geneval.status": "not scored: detector missing <mmdet>",
        "samples.prompts": ["<b>bold</b> & $x^2$ cat", "a dog"], "samples.seeds": [0, 1],
        "samples.paths": [f"cells/{cell_id}/samples/{i:02d}.png" for i in range(2)],
    }


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke suite's quality on the shipped ShapesBench models: windows 1/2 x constant/half-linear,
    120 prompts; no timing (cost is not what these tests check)."""
    run_dir = tmp_path_factory.getbasetemp() / "report_smoke_run"
    if not (run_dir / "results.csv").is_file():
        assert cli_main(["run", str(Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"), "--run-dir",
                         str(run_dir), "--no-report", "--no-progress", "--set", "sweep.grid.model.window=[1,2]",
                         "--set", "measure.latency=false", "--set", "measure.memory=false",
                         "--set", "measure.flops=false"]) == 0
    return run_dir


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """A hand-written run directory with every column kind, quality scores, a batch sweep and a failed cell."""
    run_dir = tmp_path / "synthetic"
    store = RunStore(run_dir)
    rows = [_row(r, w, s) for r in (256, 512) for w in (1, 2, 4) for s in ("constant", "half-linear")]
    rows += [_row(256, 2, "half-linear", 4)]
    for row in rows:
        for i, path in enumerate(row["samples.paths"]):
            (run_dir / path).parent.mkdir(parents=True, exist_ok=True)
            shade = 40 * i + 10 * row["config.model.window"]
            Image.fromarray(np.full((16, 16, 3), shade, np.uint8)).save(run_dir / path)
        store.append(row)
    store.append({"cell_id": "resolution=1024,window=1", "cell_hash": "x", "status": "oom",
                  "message": "CUDA out of memory <tried 80 GiB>", "config.model.window": 1,
                  "config.workload.resolution": 1024, "config.model.checkpoint": "w.safetensors"})
    store.write_manifest({"name": "synthetic <suite>", "description": "hand-built & checked"}, [],
                         {"device_name": "test device", "torch": "0"})
    return run_dir


@pytest.fixture
def tidy_frame() -> pd.DataFrame:
    """Hand-built tidy rows: two resolutions x windows 1/2/4, one schedule, latency and throughput."""
    rows = []
    for res, base in ((256, 1.0), (512, 8.0)):
        for window, factor in ((1, 1), (2, 4), (4, 8)):
            ids = {"run": "r", "suite": "s", "cell_id": f"{res}-{window}", "status": "ok", "adapter": "ts",
                   "preset": "small", "window": window, "resolution": res, "cfg_schedule": "constant",
                   "cfg_scale": 7.5, "batch_size": 1, "dtype": "float32", "device": "cpu", "compile": False,
                   "weights": "random"}
            rows.append({**ids, "metric": "latency.per_image_s", "value": base / factor})
            rows.append({**ids, "metric": "throughput.images_per_s", "value": factor / base})
    return pd.DataFrame(rows)


# ---- baselines -------------------------------------------------------------------------------------
def test_baselines_are_valid() -> None:
    frame = load_baselines()
    assert list(frame.columns) == COLUMNS
    assert len(frame) > 400
    assert frame["source"].str.strip().ne("").all()
    assert frame["model"].str.strip().ne("").all()
    assert set(frame["benchmark"]) == {"genai-bench", "geneval"}
    assert frame["value"].between(0, 1).all()
    genai = frame[frame["benchmark"] == "genai-bench"]
    assert set(genai["tag"]) <= GENAI_TAGS
    assert set(frame.loc[frame["benchmark"] == "geneval", "tag"]) <= GENEVAL_TAGS
    assert not frame.duplicated(["model", "benchmark", "metric", "tag", "prompt_rewriting", "source"]).any()


def test_baselines_hold_token_shuffle_tables() -> None:
    frame = load_baselines()
    table1 = frame[frame["source"] == "Token-Shuffle arXiv 2504.17789 Table 1"]
    assert len(table1) == 11 * 12
    ts = table1[table1["model"] == "Token-Shuffle"].set_index(["prompt_rewriting", "tag"])["value"]
    assert ts[(False, "advanced")] == 0.67 and ts[(True, "advanced")] == 0.77
    assert ts[(True, "negation")] == 0.68 and ts[(False, "basic")] == 0.78
    table2 = frame[frame["source"] == "Token-Shuffle arXiv 2504.17789 Table 2"]
    assert set(table2["model"]) >= {"LlamaGen", "Janus", "Emu3-Gen", "Token-Shuffle", "Transfusion"}
    assert table2.loc[(table2["model"] == "Token-Shuffle") & (table2["tag"] == "overall"), "value"].item() == 0.62
    table4 = frame[frame["source"].str.contains("Table 4") & frame["source"].str.startswith("Token-Shuffle")]
    assert set(table4["model"]) == {"Token-Shuffle D16", "Token-Shuffle D8+TS"}


def test_load_baselines_without_folder_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="no baseline CSV"):
        frame = load_baselines(tmp_path / "nowhere")
    assert frame.empty and list(frame.columns) == COLUMNS


# ---- aggregation -----------------------------------------------------------------------------------
def test_compare_gives_speedup_over_window_one(tidy_frame: pd.DataFrame) -> None:
    latency = compare(tidy_frame, by="window", metric="latency.per_image_s", baseline=1)
    speedup = latency.set_index(["resolution", "window"])["speedup"]
    assert speedup[(256, 1)] == 1 and speedup[(256, 2)] == 4 and speedup[(512, 4)] == 8
    assert latency.set_index(["resolution", "window"])["baseline_value"][(512, 2)] == 8.0
    throughput = compare(tidy_frame, by="window", metric="throughput.images_per_s")  # higher is better
    assert throughput.set_index(["resolution", "window"])["speedup"][(512, 2)] == pytest.approx(4)


def test_compare_pairs_windows_of_a_trained_preset(tidy_frame: pd.DataFrame) -> None:
    """A trained preset ships one checkpoint per window, so the weights hash follows the window; the
    windows still pair up (but two different checkpoints at one window do not share a baseline)."""
    frame = tidy_frame.assign(weights=[f"ckpt-s{w}" for w in tidy_frame["window"]])
    speedup = compare(frame, by="window", metric="latency.per_image_s").set_index(["resolution", "window"])["speedup"]
    assert speedup[(256, 2)] == 4 and speedup[(512, 4)] == 8
    by_resolution = compare(frame, by="resolution", metric="latency.per_image_s", baseline=256)
    assert set(by_resolution["weights"]) == {"ckpt-s1", "ckpt-s2", "ckpt-s4"} and len(by_resolution) == 6


def test_compare_drops_cells_without_partner(tidy_frame: pd.DataFrame) -> None:
    frame = tidy_frame[~((tidy_frame["resolution"] == 512) & (tidy_frame["window"] == 1))]
    result = compare(frame, by="window", metric="latency.per_image_s")
    assert set(result["resolution"]) == {256}
    assert compare(frame, by="window", metric="no.such.metric").empty


def test_wide_pivots_back_to_one_row_per_cell(tidy_frame: pd.DataFrame) -> None:
    table = wide(tidy_frame)
    assert len(table) == 6
    assert list(table.columns) == ID_COLUMNS + ["latency.per_image_s", "throughput.images_per_s"]
    only = wide(tidy_frame, metrics=["throughput.images_per_s"])
    assert only.columns[-1] == "throughput.images_per_s" and len(only.columns) == len(ID_COLUMNS) + 1


def test_geomean_and_labels() -> None:
    assert geomean([2.0, 0.5]) == pytest.approx(1.0)
    assert np.isnan(geomean([]))
    assert run_labels(["/a/x/run", "/b/y/run", "/c/other"]) == ["x/run", "y/run", "other"]


def test_tidy_keeps_numeric_metrics_only(synthetic_run: Path) -> None:
    cells = load_cells([synthetic_run])
    assert len(cells) == 14
    assert cells.loc[cells["status"] == "oom", "weights"].item() == "w.safetensors"  # never loaded: from config
    frame = tidy(cells)
    assert list(frame.columns) == ID_COLUMNS + ["metric", "value"]
    metrics = set(frame["metric"])
    assert {"latency.per_image_s", "flops.total", "quality.vqascore-t2v.overall", "memory.peak_rss_mib"} <= metrics
    assert {"quality.vqascore-t2v.overall.ci_low", "quality.vqascore-t2v.basic.ci_high"} <= metrics
    assert not any(m.endswith(".raw") or m.startswith(("config.", "env.", "samples.")) for m in metrics)
    assert "quality.vqascore-t2v.status" not in metrics and "quality.prompts" not in metrics
    assert "quality.benchmark_prompts" not in metrics
    assert frame["value"].notna().all()
    assert frame["window"].dtype == "Int64" and frame["suite"].iloc[0] == "synthetic <suite>"


def test_load_runs_tolerates_minimal_rows(tmp_path: Path) -> None:
    RunStore(tmp_path / "bare").append({"cell_id": "c", "cell_hash": "h", "status": "error", "message": "boom"})
    cells = load_cells([tmp_path / "bare"])
    assert cells["status"].tolist() == ["error"] and pd.isna(cells["window"].iloc[0])
    assert pd.isna(cells["weights"].iloc[0])
    assert load_runs([tmp_path / "bare"]).empty
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_cells([tmp_path / "nothing"])


def test_export_roundtrips(tidy_frame: pd.DataFrame, tmp_path: Path) -> None:
    csv_path, parquet_path = export(tidy_frame, tmp_path)
    assert len(pd.read_csv(csv_path)) == len(tidy_frame)
    assert pd.read_parquet(parquet_path)["value"].tolist() == tidy_frame["value"].tolist()
    assert not list(tmp_path.glob(".*.tmp"))


def test_pareto_front() -> None:
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "gain": [0.5, 0.4, 0.7, 0.6]})
    assert pareto_front(points, "cost", "gain")["cost"].tolist() == [1, 3]


# ---- plots -----------------------------------------------------------------------------------------
def test_make_plots_draws_every_figure(synthetic_run: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlotWarning)
        paths = make_plots(load_cells([synthetic_run]), load_baselines(), tmp_path / "images")
    names = {p.name for p in paths}
    assert {"flops_vs_resolution.png", "latency_breakdown.png", "memory_vs_resolution.png",
            "throughput_vs_batch.png", "quality_vs_window.png", "quality_per_schedule.png",
            "pareto_quality_latency.png", "cfg_schedules.png", "skills_vqascore-t2v.png"} <= names
    assert any(n.startswith("grid_window_") for n in names) and any(n.startswith("grid_cfg_schedule_") for n in names)
    for path in paths:
        assert path.is_file() and 0 < path.stat().st_size < 400_000
        with Image.open(path) as image:
            assert max(image.size) < 2500


def test_make_plots_skips_absent_data(tmp_path: Path) -> None:
    RunStore(tmp_path / "bare").append({"cell_id": "c", "cell_hash": "h", "status": "error", "message": "boom"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlotWarning)
        assert make_plots(load_cells([tmp_path / "bare"]), load_baselines(), tmp_path / "images") == []


def test_grid_specs_keep_cells_with_the_same_samples(synthetic_run: Path) -> None:
    specs = grid_specs(load_cells([synthetic_run]))
    windows = [s for s in specs if s.vary == "window"]
    assert windows and [windows[0].column_label(c) for c in windows[0].columns] == ["s = 1", "s = 2", "s = 4"]
    assert windows[0].fixed["resolution"] == 512  # largest images first
    assert windows[0].samples == [("<b>bold</b> & $x^2$ cat", 0), ("a dog", 1)]
    assert all(p is not None and p.is_file() for c in windows[0].columns for p in windows[0].images(c))


# ---- HTML ------------------------------------------------------------------------------------------
def _image_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', html) + re.findall(r'<a href="([^"#]+)"', html)


def check_page(index: Path) -> str:
    """Assertions every report must pass; returns the page."""
    html = index.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    sources = _image_sources(html)
    assert sources
    for src in sources:
        assert not src.startswith(("/", "file:")), src
        assert (index.parent / src).is_file(), src
    assert "|safe" not in (Path(__file__).parents[1] / "tsbench/report/templates/report.html").read_text()
    return html


def test_report_from_real_run(real_run: Path, tmp_path: Path) -> None:
    index = build_report([real_run], tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    html = check_page(index)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a red cube" in html
    assert "weights: random" in html and "cost only" in html
    assert "Window speedup over s = 1" in html and "window s = 2" in html
    assert html.count("<script>") == 1  # the page's own sorting script only
    assert (tmp_path / "report" / "tidy.csv").is_file() and (tmp_path / "report" / "tidy.parquet").is_file()
    assert len(list((tmp_path / "report" / "images" / "samples").glob("*.png"))) >= 2
    assert "published" in html  # reference tables even without quality numbers
    tidy_csv = pd.read_csv(tmp_path / "report" / "tidy.csv")
    assert set(tidy_csv["window"]) == {1, 2} and "flops.total" in set(tidy_csv["metric"])


def test_report_from_synthetic_run(synthetic_run: Path, tmp_path: Path) -> None:
    html = check_page(build_report([synthetic_run], tmp_path / "report"))
    assert "weights: random" not in html.split('id="summary"')[0]  # the banner; real weights here
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; $x^2$ cat" in html and "<b>bold</b>" not in html
    assert "synthetic &lt;suite&gt;" in html and "hand-built &amp; checked" in html
    assert "CUDA out of memory &lt;tried 80 GiB&gt;" in html
    assert 'class="badge">published</span> Token-Shuffle†</td><td data-sort="">yes</td>' in html
    assert 'class="badge">published</span> Token-Shuffle</td><td data-sort="">no</td><td data-sort="0.78">' in html
    assert "images/skills_vqascore-t2v.png" in html and "images/pareto_quality_latency.png" in html
    # t2v_metrics' clip-flant5-xxl, every prompt scored: the published GenAI-Bench rows stand beside the cells
    section = html.split("vqascore-t2v (vqascore) on GenAI-Bench 527 (527 prompts)")[1].split("<h3")[0]
    assert "0.80 [0.77, 0.83]" in section.split("</table>")[0]  # s = 1, half-linear attribute, with its interval
    assert "not comparable" not in section
    assert "geneval: not scored: detector missing &lt;mmdet&gt; (13 cells)" in html
    assert "<th title=\"click to sort\">clipscore mean</th>" in html  # a metric without 'overall'
    assert "images/skills_clipscore.png" not in html  # one number, no skills


def test_report_of_two_runs(real_run: Path, synthetic_run: Path, tmp_path: Path) -> None:
    html = check_page(build_report([real_run, synthetic_run], tmp_path / "report"))
    assert "weights: random" in html and "report_real_run" in html and "synthetic" in html


def test_cli_report(real_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(real_run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().out
    manifest = json.loads((real_run / "manifest.json").read_text())
    assert manifest["suite"]["workload"]["prompts"] == [XSS_PROMPT]


# ---- comparability, partial runs, intervals ----------------------------------------------------------
def _rewrite_scorer(run_dir: Path, rename: str | None = None, **changes: object) -> None:
    """Rewrite the synthetic run's vqascore-t2v columns: under another scorer name, and with ``changes``
    (None deletes a column and its sub-columns)."""
    store = RunStore(run_dir)
    rows = store.load_rows()
    store.results_path.unlink()
    for row in rows:
        if rename:
            row = {k.replace("quality.vqascore-t2v.", f"quality.{rename}.", 1): v for k, v in row.items()}
        for key, value in changes.items():
            for column in [c for c in row if value is None and (c == key or c.startswith(key + "."))]:
                del row[column]
            if value is not None:
                row[key] = value
        store.append(row)


def test_vqascore_hf_cells_never_stand_beside_clip_flant5_rows(synthetic_run: Path, tmp_path: Path) -> None:
    _rewrite_scorer(synthetic_run, rename="vqascore-hf", **{"quality.vqascore-hf.model": "hf:llava-tiny"})
    html = check_page(build_report([synthetic_run], tmp_path / "report"))
    section = html.split("vqascore-hf (vqascore) on GenAI-Bench 527 (527 prompts)")[1].split("<h3")[0]
    assert "not comparable: scored with hf:llava-tiny; the published vqascore rows were scored with " \
           "clip-flant5-xxl, gpt-4o" in section
    assert 'class="published"' not in section and "Token-Shuffle" not in section
    # the published rows are still in the report, apart, saying how they were measured
    assert "GenAI-Bench: vqascore, scored with clip-flant5-xxl" in html
    assert "images/skills_vqascore-hf.png" in html  # drawn without published bars (checked by the title)


def test_partial_cells_are_marked_and_kept_apart(synthetic_run: Path, tmp_path: Path) -> None:
    _rewrite_scorer(synthetic_run, **{"quality.vqascore-t2v.summary": "partial",
                                      "quality.vqascore-t2v.overall": None,
                                      "quality.vqascore-t2v.coverage.overall": "8/527",
                                      "quality.vqascore-t2v.coverage.basic": "8/214"})
    html = check_page(build_report([synthetic_run], tmp_path / "report"))
    section = html.split("vqascore-t2v (vqascore) on GenAI-Bench 527 (527 prompts)")[1].split("<h3")[0]
    assert "not comparable: partial run: 8 of 527 prompts scored" in section
    assert "partial: coverage basic 8/214" in section and 'class="published"' not in section
    assert "<th title=\"click to sort\">vqascore-t2v overall</th>" not in html  # no overall column at all


def test_smoke_run_carries_intervals_and_paired_comparisons(smoke_run: Path, tmp_path: Path) -> None:
    rows = RunStore(smoke_run).load_rows()
    assert len(rows) == 4
    for row in rows:
        assert row["quality.shapes-oracle.summary"] == "complete" and row["quality.shapes-oracle.model"] == "shapes-oracle"
        for tag in ("single_object", "position", "overall"):
            low, value, high = (row[f"quality.shapes-oracle.{tag}{s}"] for s in (".ci_low", "", ".ci_high"))
            assert low <= value <= high and high - low < 0.6
    html = check_page(build_report([smoke_run], tmp_path / "report"))
    number = r"[+−]\d\.\d\d"
    for label in ("half-linear vs constant at s = 1", "half-linear vs constant at s = 2",
                  "s = 2 vs s = 1 at constant", "s = 2 vs s = 1 at half-linear"):
        assert re.search(rf"{label}: <strong>{number} \[{number}, {number}\]</strong> \(overall\)", html), label
    assert "images/quality_vs_window.png" in html and "ShapesBench test (120 prompts)" in html
    tidy_csv = pd.read_csv(tmp_path / "report" / "tidy.csv")
    assert {"quality.shapes-oracle.overall.ci_low", "quality.shapes-oracle.overall.ci_high"} <= set(tidy_csv["metric"])


def test_cost_only_rows_never_show_quality_and_rows_carry_the_real_window(tmp_path: Path) -> None:
    """A partial-random row (trained backbone, new shuffle modules) keeps its cost but no quality, so no
    table or plot sets it beside trained models; a null config window reads as the window the model ran."""
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    trained = _row(256, 1, "constant")
    shuffled = {**_row(256, 2, "constant"), "model.weights": "partial-random", "config.model.window": None,
                "model.window": 2}
    for row in (trained, shuffled):
        store.append(row)
    cells = load_cells([run_dir]).set_index("cell_id")
    assert cells.loc[shuffled["cell_id"], "window"] == 2
    assert pd.isna(cells.loc[shuffled["cell_id"], "quality.vqascore-t2v.overall"])
    assert cells.loc[trained["cell_id"], "quality.vqascore-t2v.overall"] == trained["quality.vqascore-t2v.overall"]
    frame = tidy(load_cells([run_dir]))
    quality = frame[frame["metric"].str.startswith("quality.")]
    assert set(quality["weights"]) == {"abc123"}
    assert "flops.total" in set(frame.loc[frame["weights"] == "partial-random", "metric"])
