"""Which images a human rates: the compared cells, named by id or by a config selector, and their images
paired by prompt and seed.

A cell has benchmark images (``cells/<id>/images/`` with the ``images.jsonl`` sidecar) and sample images
(``cells/<id>/samples/NN.png``, prompts and seeds in its result row). A study uses benchmark images when
every compared cell has them (many prompts: the bootstrap over prompts means something), else samples.
Only images that every compared cell has for the same prompt and seed are rated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from tsbench.benchmarks import load_prompts
from tsbench.benchmarks.layout import read_records
from tsbench.config.registry import suggest
from tsbench.runner.store import RunStore, read_manifest, run_labels

BENCHMARK, SAMPLES = "benchmark", "samples"


class HumanEvalError(ValueError):
    """Bad input to the human evaluation (cells, run directories, database): the message says what to do."""


@dataclass(frozen=True)
class CellRef:
    """One successful cell of a run directory."""

    run_dir: Path
    run_name: str
    cell_id: str
    row: dict[str, Any]
    quality: dict[str, Any]  # the cell's quality config from the manifest ({} if unknown)

    @property
    def label(self) -> str:
        return f"{self.run_name}:{self.cell_id}"

    @property
    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.row.items() if k.startswith("config.")}


@dataclass(frozen=True)
class RatedImage:
    """One image to rate. ``unit`` groups votes for the bootstrap: the prompt id, or the prompt text of
    sample images (which have no id)."""

    unit: str
    prompt: str
    seed: int
    sample: int
    path: Path

    @property
    def key(self) -> tuple[str, int]:
        return (self.unit, self.seed)


@dataclass
class Study:
    """The compared systems and, per system, its image for every shared (unit, seed) key."""

    systems: list[CellRef]
    names: list[str]
    kind: str
    images: list[dict[tuple[str, int], RatedImage]]
    keys: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_cells(run_dirs: Iterable[str | Path]) -> list[CellRef]:
    """Every cell whose latest row is ok, from every run directory."""
    run_dirs = [Path(d) for d in run_dirs]
    cells = []
    for run_dir, name in zip(run_dirs, run_labels(run_dirs)):
        if not (run_dir / "results.jsonl").is_file():
            raise HumanEvalError(f"{run_dir} is not a run directory (no results.jsonl); give directories "
                                 "written by 'tsbench run'")
        manifest = read_manifest(run_dir)
        quality = {c.get("id"): c.get("config", {}).get("quality") or {} for c in manifest.get("cells", [])}
        for row in RunStore(run_dir).load_rows():
            if row.get("status") == "ok":
                cells.append(CellRef(run_dir, name, row["cell_id"], row, quality.get(row["cell_id"], {})))
    if not cells:
        raise HumanEvalError(f"no successful cell in {', '.join(map(str, run_dirs))}")
    return cells


def _listing(cells: Iterable[CellRef], several_runs: bool) -> str:
    return ", ".join(c.label if several_runs else c.cell_id for c in cells)


def _config_key(key: str, columns: list[str]) -> str:
    """The one config column that ``key`` names: ``config.<key>`` or the only column ending in ``.<key>``."""
    if f"config.{key}" in columns:
        return f"config.{key}"
    matches = [c for c in columns if c.endswith(f".{key}")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise HumanEvalError(f"selector key {key!r} is ambiguous: it matches {', '.join(matches)}; "
                             "write more of the path, e.g. " + matches[0].removeprefix("config."))
    short = sorted({c.rsplit(".", 1)[-1] for c in columns})
    raise HumanEvalError(f"selector key {key!r} matches no config column.{suggest(key, short)} "
                         f"Keys: {', '.join(short)}")


def _equal(selected: Any, value: Any) -> bool:
    if isinstance(selected, (int, float)) and isinstance(value, (int, float)) \
            and not isinstance(selected, bool) and not isinstance(value, bool):
        return float(selected) == float(value)
    return selected == value or str(selected) == str(value)


def _parse_selector(spec: str) -> list[tuple[str, Any]]:
    pairs = []
    for part in spec.split(","):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise HumanEvalError(f"cell {spec!r}: neither a cell id nor a KEY=VALUE[,KEY=VALUE] selector "
                                 f"(part {part!r} has no '=')")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        pairs.append((key.strip(), value))
    return pairs


def resolve_cell(spec: str, cells: list[CellRef]) -> CellRef:
    """The cell that ``spec`` names: ``[RUN:]CELL_ID`` or ``[RUN:]key=value,key=value`` over its config.

    Keys are config paths or a unique suffix of one (``window`` for ``config.model.window``); values are
    read as YAML. No match or several matches is an error listing the candidates.
    """
    several_runs = len({c.run_dir for c in cells}) > 1
    run, sep, rest = spec.partition(":")
    pool = cells
    if sep and any(run in (c.run_name, str(c.run_dir)) for c in cells):
        pool, spec = [c for c in cells if run in (c.run_name, str(c.run_dir))], rest
    exact = [c for c in pool if c.cell_id == spec]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise HumanEvalError(f"cell {spec!r} is in several runs: {_listing(exact, True)}; prefix the run, "
                             f"e.g. {exact[0].label}")
    columns = sorted({k for c in pool for k in c.config})
    selector = [(_config_key(key, columns), value) for key, value in _parse_selector(spec)]
    found = [c for c in pool if all(k in c.row and _equal(v, c.row[k]) for k, v in selector)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise HumanEvalError(f"no successful cell matches {spec!r}; cells: {_listing(pool, several_runs)}")
    raise HumanEvalError(f"{spec!r} matches {len(found)} cells: {_listing(found, several_runs)}; "
                         "add keys to the selector or give a cell id")


def _inside(path: Path, root: Path, source: str) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (a hand-edited sidecar or row must not
    make the server read other files)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise HumanEvalError(f"{source}: image path {path} lies outside the run directory {root}; refusing it")
    return resolved


def benchmark_images(cell: CellRef) -> dict[tuple[str, int], RatedImage]:
    """The cell's benchmark images with their prompt texts (original wording); {} when it has none."""
    root = cell.run_dir / "cells" / cell.cell_id / "images"
    records = {(r.prompt_id, r.sample): r for r in read_records(root)}  # a regenerated image: last record wins
    if not records:
        return {}
    q = cell.quality
    if not q.get("benchmark"):
        raise HumanEvalError(f"{cell.label}: the manifest does not say which prompt suite made its images; "
                             "rerun 'tsbench run' for this run directory to rewrite manifest.json")
    prompts = load_prompts(q["benchmark"], version=q.get("version"), data_dir=q.get("data_dir"),
                           path=q.get("path")).by_id()
    images = {}
    for r in records.values():
        path = root / r.path
        if r.prompt_id in prompts and path.is_file():
            image = RatedImage(r.prompt_id, prompts[r.prompt_id].text, r.seed, r.sample,
                               _inside(path, cell.run_dir, str(root / "images.jsonl")))
            images[image.key] = image
    return images


def sample_images(cell: CellRef) -> dict[tuple[str, int], RatedImage]:
    """The cell's sample images (``samples.*`` columns of its row); {} when it has none."""
    row = cell.row
    images = {}
    for i, (rel, prompt, seed) in enumerate(zip(row.get("samples.paths") or [], row.get("samples.prompts") or [],
                                                row.get("samples.seeds") or [])):
        path = cell.run_dir / rel
        if path.is_file():
            image = RatedImage(str(prompt), str(prompt), int(seed), i,
                               _inside(path, cell.run_dir, str(cell.run_dir / "results.jsonl")))
            images[image.key] = image
    return images


def build_study(run_dirs: Iterable[str | Path], specs: list[str]) -> Study:
    """Resolve ``specs`` (at least two distinct cells) and pair their images."""
    cells = load_cells(run_dirs)
    systems = [resolve_cell(spec, cells) for spec in specs]
    labels = [c.label for c in systems]
    if len(specs) < 2:
        raise HumanEvalError("--compare needs at least two cells")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise HumanEvalError(f"--compare names the same cell twice: {', '.join(duplicates)}")
    several_runs = len({c.run_dir for c in cells}) > 1
    names = [c.label if several_runs else c.cell_id for c in systems]
    bench = [benchmark_images(c) for c in systems]
    kind, images = (BENCHMARK, bench) if all(bench) else (SAMPLES, [sample_images(c) for c in systems])
    notes = []
    if kind == SAMPLES and any(bench):
        notes.append("not every compared cell has benchmark images: rating the sample images instead")
    keys = sorted(set.intersection(*(set(i) for i in images)))
    if not keys:
        raise HumanEvalError(f"the compared cells share no {kind} image with the same prompt and seed: "
                             + "; ".join(f"{n}: {len(i)} image(s)" for n, i in zip(names, images)))
    dropped = max(len(i) for i in images) - len(keys)
    if dropped:
        notes.append(f"{dropped} image(s) without a partner of the same prompt and seed in every cell are left out")
    return Study(systems, names, kind, images, keys, notes)
