"""The report's human-evaluation section: for each human-eval database found in a run directory, the
tables of ``tsbench human summarize`` and a win / tie / lose bar chart.

The numbers come from ``tsbench.human.summary`` (the one home of that statistics); this module only
lays them out for the page.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from tsbench.human.summary import OUTCOMES, find_databases, summarize
from tsbench.report.plots import PlotWarning, _save

COLOURS = {"win": "#2e8b57", "tie": "#b8bec6", "lose": "#c0392b"}


def _text(value: str, sort: float | None = None) -> dict[str, str]:
    return {"text": value, "sort": "" if sort is None else repr(float(sort))}


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _ci(ci: list[float] | None, scale: float = 100.0, unit: str = " %") -> str:
    return "–" if ci is None else f"{scale * ci[0]:.1f} – {scale * ci[1]:.1f}{unit}"


def _rates_table(question: dict[str, Any]) -> dict[str, Any]:
    headers = ["system (win = this one better)", "opponent", "votes", "prompts"]
    for outcome in OUTCOMES:
        headers += [outcome, f"{outcome} 95 % CI"]
    rows = []
    for r in question["pairs"]:
        row = [_text(r["system"]), _text(r["opponent"]), _text(str(r["votes"]), r["votes"]),
               _text(str(r["prompts"]), r["prompts"])]
        for outcome in OUTCOMES:
            row += [_text(_pct(r[outcome]), r[outcome]), _text(_ci(r[f"{outcome}_ci"]))]
        rows.append(row)
    return {"headers": headers, "rows": rows}


def _strengths_table(question: dict[str, Any]) -> dict[str, Any] | None:
    if not question["bradley_terry"]:
        return None
    rows = [[_text(r["system"]), _text(f"{r['strength']:+.3f}", r["strength"]),
             _text(_ci(r["strength_ci"], 1.0, ""))] for r in question["bradley_terry"]]
    return {"headers": ["system", "Bradley–Terry log-strength (mean 0)", "95 % CI"], "rows": rows}


def _agreement(question: dict[str, Any]) -> str:
    a = question["agreement"]
    if not a:
        return "Inter-rater agreement: no pair was rated by two raters."
    alpha = "undefined (every answer the same)" if a["alpha"] is None else f"{a['alpha']:.3f}"
    return (f"Inter-rater agreement over {a['units']} pair(s) rated by several of {a['raters']} raters: "
            f"{a['method']} = {alpha}; raw agreement {_pct(a['raw_agreement'])}.")


def plot_votes(summary: dict[str, Any], out: Path) -> Path | None:
    """Stacked win / tie / lose bars, one panel per system pair, one bar per question; whiskers are the
    95 % intervals of the win rate (at the end of the green bar) and the lose rate (start of the red)."""
    pairs = list(dict.fromkeys((r["system"], r["opponent"]) for q in summary["questions"] for r in q["pairs"]))
    if not pairs:
        return None
    fig, axes = plt.subplots(len(pairs), 1, figsize=(8.6, 0.8 + 2.4 * len(pairs)), squeeze=False)
    for ax, (system, opponent) in zip(axes[:, 0], pairs):
        rows = [(q["title"], r) for q in summary["questions"] for r in q["pairs"]
                if (r["system"], r["opponent"]) == (system, opponent)]
        y = np.arange(len(rows))[::-1]
        left = np.zeros(len(rows))
        for outcome in OUTCOMES:
            values = np.array([r[outcome] for _, r in rows])
            ax.barh(y, values, left=left, color=COLOURS[outcome], height=0.7,
                    label={"win": f"{system} better", "tie": "tie", "lose": f"{opponent} better"}[outcome])
            for yi, x0, v in zip(y, left, values):  # labels away from the whiskers at the inner ends
                if v >= 0.06:
                    x, align = {"win": (x0 + 0.01, "left"), "tie": (x0 + v / 2, "center"),
                                "lose": (x0 + v - 0.01, "right")}[outcome]
                    ax.text(x, yi + 0.18, f"{100 * v:.0f} %", ha=align, va="center", fontsize=8)
            left = left + values
        for (_, r), yi in zip(rows, y):
            for outcome, at, dy in (("win", r["win"], -0.16), ("lose", 1 - r["lose"], 0.0)):
                ci = r[f"{outcome}_ci"]
                if ci is not None:
                    low, high = (ci[0], ci[1]) if outcome == "win" else (1 - ci[1], 1 - ci[0])
                    ax.errorbar(at, yi + dy, xerr=[[at - low], [high - at]], color="0.15", capsize=3,
                                linewidth=1)
        ax.set_yticks(y, [f"{title} ({r['votes']})" for title, r in rows], fontsize=8)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{100 * v:.0f} %"))
        ax.set_title(f"{system} vs {opponent}", fontsize=9, loc="left", parse_math=False)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, frameon=False)
    fig.suptitle("Human preference: win / tie / lose per question (votes in brackets; whiskers: 95 % CI)",
                 fontsize=9)
    return _save(fig, out)


def human_sections(run_dirs: list[Path], images_dir: Path) -> list[dict[str, Any]]:
    """One section per human-eval database in the run directories (none when there is no database)."""
    sections = []
    for db in [db for run_dir in run_dirs for db in find_databases(run_dir)]:
        try:
            summary = summarize(db)
            with plt.rc_context({"text.parse_math": False}):
                digest = hashlib.sha1(str(db.resolve()).encode()).hexdigest()[:10]
                chart = plot_votes(summary, images_dir / f"human_{digest}.png")
        except Exception as err:  # noqa: BLE001 - a broken database must not cost the rest of the report
            warnings.warn(f"{db}: human evaluation left out of the report: {type(err).__name__}: {err}",
                          PlotWarning, stacklevel=2)
            sections.append({"db": str(db), "error": f"{type(err).__name__}: {err}"})
            continue
        sections.append({
            "db": str(db), "error": None, "chart": f"images/{chart.name}" if chart else None,
            "overview": (f"{summary['votes']} current votes on {summary['rated_pairs']} rated pair(s) by "
                         f"{summary['raters']} rater(s) ({summary['replaced_votes']} replaced by re-votes, "
                         f"{summary['skipped']} skipped; {', '.join(summary['image_kinds'])} images). Intervals: "
                         f"{summary['method']['interval']}, {summary['method']['resamples']} resamples, seed "
                         f"{summary['method']['seed']}. Bradley–Terry: {summary['method']['bradley_terry']}."),
            "questions": [{"title": q["title"], "ask": q["ask"], "rates": _rates_table(q),
                           "strengths": _strengths_table(q), "agreement": _agreement(q)}
                          for q in summary["questions"]],
        })
    return sections
