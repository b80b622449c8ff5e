"""The benchmark seam: generic code names no benchmark and no scorer, a new benchmark is one module plus
one registry line (and then runs, summarises and reports like the shipped ones), and the quality pipeline
has no import circle with torchrun's runner."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tsbench.benchmarks import BENCHMARKS
from tsbench.cli import main
from tsbench.report.html import build_report
from tsbench.runner.store import RunStore
from tsbench.scoring import SCORERS

REPO = Path(__file__).resolve().parents[1]
GENERIC = ("config", "runner", "report", "measure", "engine")

TOY_MODULE = textwrap.dedent('''
    """A toy benchmark: twelve ShapesBench prompts, its own image layout, GenEval's summary rule."""
    from dataclasses import dataclass
    from pathlib import Path

    from tsbench.benchmarks.geneval import GenEvalRules
    from tsbench.benchmarks.layout import write_png
    from tsbench.benchmarks.prompts import Prompt, PromptSet
    from tsbench.benchmarks.shapes.suite import load_shapes


    @dataclass(frozen=True)
    class ToyShapes(GenEvalRules):
        def load(self, version, data_dir, path):
            prompts = [Prompt(f"toy{i}", p.text, p.tags, p.metadata) for i, p in enumerate(load_shapes().prompts[:12])]
            return PromptSet.create("toy-shapes", "v1", prompts)

        def image_path(self, root, prompt_id, sample):
            return Path(root) / "by-prompt" / prompt_id / f"image-{sample}.png"

        def write_image(self, root, prompt, sample, image):
            return write_png(image, self.image_path(root, prompt.id, sample))


    TOY = ToyShapes(name="toy-shapes", title="ToyShapes", protocol="12 shapes prompts, shapes-oracle")
''')


def test_generic_code_names_no_benchmark_and_no_scorer() -> None:
    names = set(BENCHMARKS.names()) | set(SCORERS.names())
    found = []
    for layer in GENERIC:
        for path in sorted((REPO / "tsbench" / layer).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_a_new_benchmark_is_one_module_and_one_registry_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "toy_shapes.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    BENCHMARKS.register("toy-shapes", "toy_shapes:TOY")  # the one registry line
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({
        "name": "toy", "model": {"preset": "shapes", "window": 4}, "workload": {"resolution": 64, "batch_size": 12},
        "measure": {"flops": False, "latency": False, "memory": False},
        "quality": {"benchmark": "toy-shapes", "images_per_prompt": 2, "scorers": ["shapes-oracle"]},
    }))
    run_dir = tmp_path / "run"
    assert main(["run", str(suite), "--run-dir", str(run_dir), "--no-report", "--no-progress"]) == 0
    (row,) = RunStore(run_dir).load_rows()
    images = run_dir / "cells" / "default" / "images"
    assert sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png")) == sorted(
        f"by-prompt/toy{i}/image-{s}.png" for i in range(12) for s in range(2))
    assert row["quality.shapes-oracle.summary"] == "complete" and row["quality.benchmark_prompts"] == 12
    assert row["quality.shapes-oracle.coverage.overall"] == "12/12" and "quality.shapes-oracle.overall.ci_low" in row
    html = build_report([run_dir], tmp_path / "report").read_text()
    assert "shapes-oracle (geneval) on ToyShapes (12 prompts)" in html
    # a wrong version is caught when the suite loads, by the benchmark's own check
    assert main(["run", str(suite), "--run-dir", str(run_dir), "--set", 'quality.version="v2"']) == 2


def test_quality_pipeline_does_not_import_the_torchrun_runner() -> None:
    code = "import sys, tsbench.runner.quality; print('tsbench.runner.distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
