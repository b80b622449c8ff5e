"""GenEval through the official evaluator, run in the user's own environment.

The official ``evaluation/evaluate_images.py`` needs mmdet 2.x, mmcv-full 1.7 and CUDA, which do
not install beside tsbench's torch; so tsbench runs it with a user-given Python and repository
checkout, on image folders in the official layout (``benchmarks.layout``), and reads back its
``results.jsonl``.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..benchmarks.geneval import METRIC
from .base import ScoreItem, ScoreRow, ScorerUnavailable, ScoringInputError, option_text

DEFAULT_DETECTOR = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco"


@dataclass(frozen=True)
class OfficialResult:
    filename: str
    prompt_index: int
    sample: int
    tag: str
    correct: bool
    reason: str


def parse_results(path: str | Path) -> list[OfficialResult]:
    """Read the evaluator's ``results.jsonl`` (pandas ``orient="records", lines=True``). Prompt index
    and sample come from the path ``<index>/samples/<sample>.png``."""
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            image = Path(rec["filename"])
            out.append(OfficialResult(
                filename=rec["filename"],
                prompt_index=int(image.parent.parent.name),
                sample=int(image.stem),
                tag=rec["tag"],
                correct=bool(rec["correct"]),
                reason=rec.get("reason") or "",
            ))
        except (json.JSONDecodeError, KeyError, ValueError) as e:
            raise ScoringInputError(f"{path}:{n}: not a GenEval result line ({type(e).__name__}: {e})") from None
    return out


def image_root(image_path: str | Path) -> Path:
    """The folder the official evaluator is pointed at: ``<root>/<index>/samples/<n>.png``."""
    p = Path(image_path)
    if p.parent.name != "samples" or not p.parent.parent.name.isdigit() or p.suffix != ".png":
        raise ScoringInputError(f"{p} is not in GenEval's layout <root>/<index:05d>/samples/<n>.png")
    if not (p.parent.parent / "metadata.jsonl").is_file():
        raise ScoringInputError(f"{p.parent.parent / 'metadata.jsonl'} is missing; write it with "
                                "layout.write_geneval_metadata before scoring")
    return p.parent.parent.parent.resolve()  # absolute: the evaluator runs in its own folder


def _git_head(repo: Path) -> str:
    head = repo / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (repo / ".git" / ref[5:]).read_text().strip()
        return ref[:12]
    except OSError:
        return "unknown"


class OfficialGenEvalScorer:
    name = "geneval-official"
    metric = METRIC
    aggregation = "official"
    higher_is_better = True
    needs = ("python",)  # mmdet 2.x + mmcv-full 1.7 do not install beside tsbench's torch
    caveat = ""

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        """``geneval-official`` with the evaluator's defaults; changed ``--options`` or config are named."""
        changed = dict(options.get("options") or {})
        if options.get("model_config") is not None:
            changed["model_config"] = options["model_config"]
        return f"geneval-official{option_text(changed)}"

    def __init__(
        self,
        *,
        python: str | Path,
        repo: str | Path,
        model_path: str | Path,
        model_config: str | Path | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """``python``: interpreter of the GenEval environment; ``repo``: a djghosh13/geneval checkout;
        ``model_path``: folder with ``<model>.pth``; ``options``: passed as ``--options k=v``."""
        self.python, self.repo, self.model_path = str(python), Path(repo), Path(model_path)
        self.script = self.repo / "evaluation" / "evaluate_images.py"
        if not self.script.is_file():
            raise ScorerUnavailable(f"{self.script} not found; pass the path of a djghosh13/geneval checkout")
        if not Path(self.python).is_file():
            raise ScorerUnavailable(f"GenEval python {self.python!r} does not exist")
        self.model_config, self.timeout = model_config, timeout
        self.options = {k: str(v) for k, v in (options or {}).items()}
        model = self.options.get("model", DEFAULT_DETECTOR)
        self.version = f"geneval@{_git_head(self.repo)} official; {model}; options {sorted(self.options.items())}"

    def command(self, root: Path, outfile: Path) -> list[str]:
        cmd = [self.python, str(self.script), str(root), "--outfile", str(outfile), "--model-path", str(self.model_path)]
        if self.model_config is not None:
            cmd += ["--model-config", str(self.model_config)]
        if self.options:
            cmd += ["--options", *(f"{k}={v}" for k, v in self.options.items())]
        return cmd

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        """Runs the evaluator once per image root (it always scores the whole folder) and keeps
        the rows of the requested images."""
        wanted = {Path(it.image_path).resolve(): it for it in items}
        results: dict[Path, OfficialResult] = {}
        for root in sorted({image_root(it.image_path) for it in items}):
            with tempfile.TemporaryDirectory() as tmp:
                outfile = Path(tmp) / "results.jsonl"
                try:
                    proc = subprocess.run(self.command(root, outfile), capture_output=True, text=True,
                                          timeout=self.timeout, cwd=self.script.parent)
                except (OSError, subprocess.TimeoutExpired) as e:
                    raise ScorerUnavailable(f"cannot run the official GenEval evaluator: {e}") from None
                if proc.returncode != 0:
                    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                    raise RuntimeError(f"official GenEval evaluator failed on {root} (status {proc.returncode}): {tail}")
                for r in parse_results(outfile):
                    results[Path(r.filename).resolve()] = r
        missing = [str(p) for p in wanted if p not in results]
        if missing:
            raise RuntimeError(f"official GenEval evaluator returned no result for {len(missing)} image(s), e.g. {missing[:2]}")
        return [
            ScoreRow(it.prompt_id, it.sample, self.metric, float(results[p].correct), self.name, self.version,
                     {"tag": results[p].tag, "reason": results[p].reason})
            for p, it in wanted.items()
        ]
