"""The ``tsbench`` command. Exit codes: 0 ok, 1 a run or a cell failed, 2 usage or configuration error,
130 interrupted (Ctrl-C)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

import tsbench
from tsbench.config.registry import RegistryError
from tsbench.config.suite import MAX_CELLS, MAX_RESOLUTION
from tsbench.stats import DEFAULT_RESAMPLES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


# Every user-facing error class of tsbench derives from one of these (ConfigError, CheckpointError, StoreError,
# PromptFileError, ScoringInputError... are ValueErrors); their messages name the file, key or value and say
# what to do, so main() prints them as one line. OSError gets its own line (``os_error_message``).
USER_ERRORS = (UsageError, ValueError, RegistryError)


def os_error_message(err: OSError) -> str:
    """``cannot write PATH: REASON`` for a file-system refusal (a run directory that is a file, a read-only
    directory); PATH is the one meant (``filename2`` is a rename's target)."""
    path = err.filename2 or err.filename
    if path is None:  # not about one path (e.g. a port in use): its own message
        return str(err)
    reason = {FileExistsError: "it exists and is not a directory",
              NotADirectoryError: "a part of the path is a file, not a directory",
              IsADirectoryError: "it is a directory"}.get(type(err), err.strerror or str(err))
    verb = "open" if isinstance(err, FileNotFoundError) else "write"
    return f"cannot {verb} {os.fsdecode(path)}: {reason}"


def _positive_int(limit: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer >= 1 (and <= ``limit``), so a bad number is a usage error, not a traceback."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < 1 or (limit is not None and value > limit):
            bound = f"between 1 and {limit}" if limit is not None else "at least 1"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return parse


def _suite_names() -> list[str]:
    """The suites in ./suites, by name."""
    return sorted(p.stem for p in Path("suites").glob("*.yaml"))


def _suite_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    candidate = Path("suites") / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = _suite_names()
    raise UsageError(f"suite {name!r} not found: give a YAML path" + (f" or one of {', '.join(known)}" if known else ""))


def cmd_run(args: argparse.Namespace) -> int:
    from tsbench.config.suite import Override, load_suite
    from tsbench.runner.distributed import process_group, run_distributed
    from tsbench.runner.run import run_suite, summary_table
    from tsbench.runner.sweep import expand_cells

    overrides: list[str | Override] = list(args.set or [])
    for value, key, flag in ((args.checkpoint, "model.checkpoint", "--checkpoint"),
                             (args.vq_checkpoint, "model.options.vq_checkpoint", "--vq-checkpoint"),
                             (args.limit, "quality.limit", "--limit"),
                             (args.data_dir, "quality.data_dir", "--data-dir"),
                             (args.device, "model.device", "--device"),
                             (args.allow_pickled_args or None, "model.options.allow_pickled_args",
                              "--allow-pickled-args")):
        if value is not None:  # errors about the key then name the flag, e.g. "--device cuda: model.device: ..."
            overrides.append(Override(key, value, flag if value is True else f"{flag} {value}"))
    suite = load_suite(_suite_path(args.suite), overrides, max_cells=args.max_cells)
    quality = None
    if any(cell.config.quality.benchmark for cell in expand_cells(suite)):  # a quality key may be swept
        from tsbench.runner.quality import make_quality_hook

        quality = make_quality_hook(scorer_python=args.scorer_python)
    with process_group(suite.model.device) as world:
        if world.is_main:
            cells = suite.sweep.size() if suite.sweep else 1
            print(f"suite {suite.name!r}: {cells} cell(s)", flush=True)
        if world.size > 1:  # under torchrun: cells and prompts are shared out over the ranks
            outcome = run_distributed(suite, world, run_dir=args.run_dir, force=args.force,
                                      scorer_python=args.scorer_python, progress=not args.no_progress)
        else:
            outcome = run_suite(suite, run_dir=args.run_dir, force=args.force, quality=quality,
                                progress=not args.no_progress)
    if not world.is_main:  # rank 0 prints, reports and exits 1 for the run; failing here would make
        return EXIT_OK     # torchrun stop rank 0 midway
    print(summary_table(outcome.run_dir))
    print(f"\n{outcome.ran} cell(s) run, {outcome.skipped} already done; results in {outcome.run_dir}")
    if not args.no_report:
        from tsbench.report.html import build_report

        out = Path(args.report_dir) if args.report_dir else outcome.run_dir / "report"
        print(f"report: {build_report([outcome.run_dir], out)}")
    if outcome.failed:
        print(f"{len(outcome.failed)} cell(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_flops(args: argparse.Namespace) -> int:
    from tsbench.measure.flops import flops_report

    print(flops_report(args.adapter, args.preset, args.resolution, args.window, cfg=args.cfg,
                       as_json=args.json, prompt_tokens=args.prompt_tokens))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from tsbench.benchmarks import BENCHMARKS
    from tsbench.scoring import SCORERS

    tables: dict[str, Callable[[], object]] = {
        "adapters": tsbench.list_adapters,
        "presets": tsbench.list_presets,
        "options": _adapter_options,
        "schedules": tsbench.list_schedules,
        "suites": _suite_names,
        "benchmarks": BENCHMARKS.names,
        "scorers": SCORERS.names,
    }
    for what in [args.what] if args.what else tables:
        value = tables[what]()
        if isinstance(value, dict):
            print(f"{what}:")
            for key, names in value.items():
                sep = "\n    " if what == "options" else ", "  # option lines carry their help text
                print(f"  {key}:{sep if what == 'options' else ' '}{sep.join(names)}")
        else:
            print(f"{what}: {', '.join(value)}")
    return EXIT_OK


def _adapter_options() -> dict[str, list[str]]:
    """Each adapter's ``model.options``: name=default (help)."""
    import dataclasses

    from tsbench.models import ADAPTERS

    return {name: [f"{f.name}={f.default!r} ({f.metadata.get('help', '')})"
                   for f in dataclasses.fields(ADAPTERS.get(name).options)] or ["(none)"]
            for name in ADAPTERS.names()}


def cmd_cfg_schedules(args: argparse.Namespace) -> int:
    for name in tsbench.list_schedules():
        points = [tsbench.cfg_scale(name, int(t * 100), 100, args.scale) for t in (0, 0.25, 0.5, 0.99)]
        print(f"{name:12s} " + "  ".join(f"{p:5.2f}" for p in points) + "   (t = 0, .25, .5, .99)")
    if args.plot:
        from tsbench.report.schedules import plot_schedules

        print(f"plot: {plot_schedules(args.plot, scale=args.scale)}")
    return EXIT_OK


def cmd_summarize(args: argparse.Namespace) -> int:
    from tsbench.scoring import SCORERS
    from tsbench.scoring.aggregate import read_score_rows, summarize

    rows = read_score_rows(args.scores)
    scorers = sorted({str(r.get("scorer")) for r in rows})
    if args.scorer:
        rows = [r for r in rows if r.get("scorer") == args.scorer]
        if not rows:
            raise UsageError(f"{args.scores} has no rows of scorer {args.scorer!r}; it has {', '.join(scorers)}")
    elif len(scorers) > 1:  # e.g. two VQAScore backends in one cell's scores.jsonl: never mix them
        raise UsageError(f"{args.scores} holds rows of several scorers ({', '.join(scorers)}); pick one with --scorer")
    if not rows:
        raise UsageError(f"{args.scores} holds no score rows")
    scorer = args.scorer or scorers[0]
    aggregation = SCORERS.get(scorer).aggregation if scorer in SCORERS else "official"
    summary = summarize(args.benchmark, rows, version=args.version, data_dir=args.data_dir, path=args.prompts,
                        aggregation=aggregation, resamples=args.resamples)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.table())
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    from tsbench.runner.quality import score_run

    print(score_run(Path(args.run_dir), args.scorer, scorer_python=args.scorer_python, overrides=args.set or []))
    return EXIT_OK


def cmd_data(args: argparse.Namespace) -> int:
    from tsbench.benchmarks import BENCHMARKS
    from tsbench.benchmarks.data import DATASETS, fetch

    name = args.name  # a benchmark (its data set at --version) or a data set's own name
    if name not in DATASETS:
        name = BENCHMARKS.get(args.name).dataset(args.version)
        if name is None:
            raise UsageError(f"benchmark {args.name!r} has no files to download")
    print(f"{name}: {fetch(name, args.data_dir)}")
    return EXIT_OK


def cmd_shapes_train(args: argparse.Namespace) -> int:
    import torch
    from dataclasses import replace

    from tsbench.benchmarks.shapes.train import LMRecipe, VQRecipe, run_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    vq_recipe, lm_recipe = VQRecipe(precision=args.precision), LMRecipe(precision=args.precision)
    if args.vq_steps:
        vq_recipe = replace(vq_recipe, steps=args.vq_steps)
    if args.steps:
        lm_recipe = replace(lm_recipe, steps=args.steps)
    if args.examples:
        lm_recipe = replace(lm_recipe, examples=args.examples)
    if args.init_from:
        lm_recipe = replace(lm_recipe, init_from=args.init_from, seed=args.seed if args.seed is not None else 1)
    elif args.seed is not None:
        lm_recipe = replace(lm_recipe, seed=args.seed)
    written = run_recipe(Path(args.out), tuple(args.stages), tuple(args.windows), vq_recipe, lm_recipe,
                         device=args.device, resume=args.resume)
    for directory in written:
        print(f"trained: {directory}  (use it with --checkpoint {directory})")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from tsbench.report.html import build_report

    print(f"report: {build_report([Path(d) for d in args.run_dirs], Path(args.out))}")
    return EXIT_OK


def cmd_human_serve(args: argparse.Namespace) -> int:
    from tsbench.human.images import build_study
    from tsbench.human.store import DEFAULT_DB_NAME

    try:
        from tsbench.human.app import serve
    except ImportError as err:
        raise UsageError(f"the rating app needs the 'human' extra ({err.name} is missing): "
                         "pip install 'tsbench[human]'") from None
    study = build_study(args.run_dirs, args.compare)
    db = Path(args.db) if args.db else Path(args.run_dirs[0]) / DEFAULT_DB_NAME
    print(f"{len(study.keys)} {study.kind} image(s) per system, {len(study.names)} systems: "
          f"{', '.join(study.names)}")
    for note in study.notes:
        print(f"note: {note}")
    print(f"votes go to {db}")

    def announce(url: str) -> None:
        print(f"rate at {url}   (Ctrl-C stops; restarting continues where each rater left off)", flush=True)

    serve(study, db, args.host, args.port, require_token=args.require_token, announce=announce)
    print(f"stopped; the votes are in {db} (tsbench human summarize {db})")
    return EXIT_OK


def cmd_human_summarize(args: argparse.Namespace) -> int:
    from tsbench.human.summary import format_summary, summarize

    summary = summarize(Path(args.db))
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_summary(summary))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tsbench {tsbench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a YAML suite (every cell of its sweep)")
    p.add_argument("suite", help="suite YAML path, or a name in ./suites")
    p.add_argument("--checkpoint", help="weights (directory or file); sets model.checkpoint")
    p.add_argument("--vq-checkpoint", help="VQ tokenizer weights; sets model.options.vq_checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a dotted config key (repeatable)")
    p.add_argument("--limit", type=_positive_int(), help="use only the first N benchmark prompts")
    p.add_argument("--data-dir", help="local copy of the benchmark's official files")
    p.add_argument("--device", help="torch device, e.g. cuda")
    p.add_argument("--allow-pickled-args", action="store_true",
                   help="load LlamaGen training checkpoints that also pickle argparse args (warns); sets "
                        "model.options.allow_pickled_args")
    p.add_argument("--run-dir", help="results directory (default: <output_dir>/<suite name>)")
    p.add_argument("--force", action="store_true", help="rerun cells that are already done")
    p.add_argument("--max-cells", type=_positive_int(), default=MAX_CELLS,
                   help=f"refuse a sweep of more cells than this (default {MAX_CELLS:,})")
    p.add_argument("--scorer-python", help="python of a separate environment, for the scorers that need one "
                                           "(their 'python' option; see the README's Quality section)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--report-dir", help="where the report goes (default: <run dir>/report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("flops", help="analytic FLOPs per image, without allocating weights")
    p.add_argument("--adapter", default="token-shuffle")
    p.add_argument("--preset", default="ts-2.7b")
    p.add_argument("--resolution", type=_positive_int(MAX_RESOLUTION), default=1024, help="image side in pixels")
    p.add_argument("--window", type=_positive_int(), default=None, help="shuffle window (default: the model's own)")
    p.add_argument("--cfg", action=argparse.BooleanOptionalAction, default=True, help="count both CFG branches")
    p.add_argument("--prompt-tokens", type=_positive_int(), default=None,
                   help="prompt length T (default: the adapter's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("list", help="list adapters, presets, adapter options, schedules, suites, benchmarks, "
                                    "scorers")
    p.add_argument("what", nargs="?",
                   choices=["adapters", "presets", "options", "schedules", "suites", "benchmarks", "scorers"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("cfg-schedules", help="print (and plot) the CFG schedules")
    p.add_argument("--plot", help="write a PNG with every schedule")
    p.add_argument("--scale", type=float, default=7.5)
    p.set_defaults(func=cmd_cfg_schedules)

    p = sub.add_parser("summarize", help="the benchmark's table, with 95%% intervals and coverage, from per-image "
                                         "score rows; 'partial' (no overall) when prompts are missing")
    p.add_argument("--benchmark", required=True, help="benchmark name (tsbench list benchmarks)")
    p.add_argument("--version", help="benchmark version (default: the benchmark's, e.g. GenAI-Bench 1600)")
    p.add_argument("--data-dir")
    p.add_argument("--prompts", help="prompt file of the txt and jsonl benchmarks")
    p.add_argument("--scores", required=True, help="scores.jsonl")
    p.add_argument("--scorer", help="use only this scorer's rows (needed when the file holds several)")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples per interval (0: none)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("score", help="score the images of an earlier run")
    p.add_argument("run_dir")
    p.add_argument("--scorer", action="append", required=True, help="scorer name (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="scorer options, e.g. 'quality.scorer_options.vqascore-hf={model: DIR}' (repeatable; "
                        "default: the run's own quality.scorer_options)")
    p.add_argument("--scorer-python")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("data", help="download official benchmark files")
    p.add_argument("action", choices=["fetch"])
    p.add_argument("name", help="a benchmark (genai-bench, geneval) or a data set name such as genai-bench-527")
    p.add_argument("--version", help="benchmark version (default: the benchmark's, e.g. GenAI-Bench 1600)")
    p.add_argument("--data-dir", help="destination (default: the tsbench cache)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("shapes", help="ShapesBench: retrain the shipped tokenizer and Token-Shuffle models")
    shapes = p.add_subparsers(dest="shapes_command", required=True)
    p = shapes.add_parser("train", help="the whole recipe: VQ on rendered scenes, then one model per window")
    p.add_argument("--out", required=True, help="output directory: vq/ and shapes-s<window>/ checkpoints")
    p.add_argument("--stages", nargs="+", choices=["vq", "lm"], default=["vq", "lm"],
                   help="'lm' alone reuses OUT/vq/vq.safetensors")
    p.add_argument("--windows", nargs="+", type=int, default=[1, 2, 4], choices=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, help="LM optimizer steps (default: the recipe's)")
    p.add_argument("--vq-steps", type=int, help="VQ optimizer steps (default: the recipe's)")
    p.add_argument("--init-from", help="continue training the shapes-s<window> models of an earlier --out "
                                      "directory (fresh examples: seed 1 unless --seed)")
    p.add_argument("--seed", type=int, help="LM seed: initialisation, examples and batches")
    p.add_argument("--examples", type=int, help="distinct (prompt, scene) pairs (default: the recipe's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="'auto': bf16 autocast on CUDA and on CPUs with AMX-BF16, else fp32")
    p.add_argument("--resume", action="store_true",
                   help="continue from the training states in OUT/state/ (a killed run ends as an uninterrupted one)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.set_defaults(func=cmd_shapes_train)

    p = sub.add_parser("human", help="human preference evaluation: blinded image pairs rated in a local web app")
    human = p.add_subparsers(dest="human_command", required=True)
    p = human.add_parser("serve", help="serve blinded pairs of the compared cells' images for rating")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--compare", nargs="+", required=True, metavar="CELL",
                   help="two or more cells: a cell id, or KEY=VALUE[,KEY=VALUE] over its config (e.g. "
                        "window=1,cfg_schedule=constant); RUN:CELL picks a run when several are given")
    p.add_argument("--db", help="SQLite database of the votes (default: RUN_DIR/human_eval.sqlite of the first run)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback; any other "
                                                      "address requires the printed URL's token)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--require-token", action="store_true", help="require the token on loopback too")
    p.set_defaults(func=cmd_human_serve)
    p = human.add_parser("summarize", help="win/tie/lose rates, Bradley-Terry strengths and rater agreement")
    p.add_argument("db", help="the votes database (e.g. runs/smoke/human_eval.sqlite)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_human_summarize)

    p = sub.add_parser("report", help="HTML report and plots from run directories")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake is one ``tsbench: error:`` line and exit code 2; anything else
    is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        sys.stderr.close()
        return EXIT_OK
    except USER_ERRORS as err:
        print(f"tsbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"tsbench: error: {os_error_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tsbench: interrupted; finished cells are saved, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
