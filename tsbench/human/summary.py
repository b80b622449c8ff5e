"""Statistics of a human evaluation, per question: win / tie / lose rates of every system pair, Bradley–Terry
strengths when more than two systems were compared, and inter-rater agreement.

- **Intervals** are 95 % percentile bootstrap intervals over prompts: a resample draws prompts with
  replacement and keeps all votes of a drawn prompt (every seed, rater and system pair) together, so
  votes on one prompt are not taken as independent. Fixed seed, 2,000 resamples. The rates and the
  strengths use tsbench's one resampling helper, ``tsbench.stats.bootstrap_intervals``, on the
  per-prompt counts summed by ``tsbench.stats.resampled_sums``.
- **Bradley–Terry**: P(i beats j) = p_i / (p_i + p_j), fitted by Hunter's MM algorithm. A tie counts
  as half a win for each side (not a Davidson or Rao–Kupper tie parameter: with three answers per
  question this keeps ties in the data without another parameter). Each system also gets half a
  virtual win and half a virtual loss against a reference of average strength, so a system that won
  (or lost) every comparison still gets a finite strength. Strengths are log p, centred to mean 0.
- **Agreement**: Krippendorff's alpha with the interval metric on A better = +1, tie = 0, B better = −1
  (so A-vs-B disagreements weigh four times A-vs-tie ones), over the (pair, question) units that
  several raters answered; alpha handles units with different numbers of raters. Raw agreement (the
  share of rater pairs giving the same answer) is reported beside it.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tsbench.human.protocol import QUESTIONS, STORED_CHOICES
from tsbench.human.store import is_human_db, read_votes
from tsbench.stats import CONFIDENCE, SEED, bootstrap_intervals, resampled_sums

N_RESAMPLES = 2000  # the human summary's own count, printed with it (quality tables: stats.DEFAULT_RESAMPLES)
BT_PRIOR = 0.5
OUTCOMES = ("win", "tie", "lose")
CHOICE_INDEX = {choice: i for i, choice in enumerate(STORED_CHOICES)}  # a / tie / b -> win / tie / lose
CHOICE_VALUE = {"a": 1.0, "tie": 0.0, "b": -1.0}


def _over_prompts(per_unit: np.ndarray,
                 statistic: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile interval of ``statistic`` of the summed per-prompt statistics ``per_unit[u]``, over
    resamples of the prompts; None with fewer than two prompts (no spread to draw)."""
    return bootstrap_intervals(lambda idx: statistic(resampled_sums(per_unit, idx)), [len(per_unit)],
                               resamples=N_RESAMPLES)


def _rates(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum(axis=-1, keepdims=True)


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR, tol: float = 1e-10,
                  max_iter: int = 20_000) -> np.ndarray:
    """Log-strengths (centred to mean 0) from ``wins[..., i, j]``, the (half-)wins of i over j.

    Leading axes are independent fits (the bootstrap fits all resamples at once). ``prior`` is the
    weight of the virtual win and virtual loss against a reference of strength 1; with ``prior=0``
    this is the plain maximum-likelihood fit (which needs every system to win and lose somewhere).
    """
    wins = np.asarray(wins, dtype=float)
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(axis=-1)
    p = np.ones(wins.shape[:-1])
    for _ in range(max_iter):
        denominator = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1) + 2 * prior / (p + 1)
        new = (won + prior) / denominator
        if prior == 0:  # the likelihood alone fixes p only up to a common factor
            new = new / np.exp(np.log(new).mean(axis=-1, keepdims=True))
        done = np.nanmax(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    theta = np.log(p)
    return theta - theta.mean(axis=-1, keepdims=True)


def _interval(bounds: tuple[np.ndarray, np.ndarray] | None, i: int) -> list[float] | None:
    return None if bounds is None else [float(bounds[0][i]), float(bounds[1][i])]


def pair_rates(votes: list[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]]:
    """Win / tie / lose of the first system of each pair (``system_a``) against the second."""
    by_pair: dict[tuple[int, int], dict[str, np.ndarray]] = defaultdict(dict)
    for v in votes:
        counts = by_pair[(v["system_a"], v["system_b"])].setdefault(v["unit"], np.zeros(3))
        counts[CHOICE_INDEX[v["choice"]]] += 1
    rows = []
    for (a, b), units in sorted(by_pair.items()):
        per_unit = np.array(list(units.values()))
        total = per_unit.sum(axis=0)
        bounds = _over_prompts(per_unit, _rates)
        row = {"system": names[a], "opponent": names[b], "votes": int(total.sum()), "prompts": len(units)}
        for i, outcome in enumerate(OUTCOMES):
            row[outcome] = float(total[i] / total.sum())
            row[f"{outcome}_ci"] = _interval(bounds, i)
        rows.append(row)
    return rows


def strengths(votes: list[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]] | None:
    """Bradley–Terry log-strengths with bootstrap intervals; None unless more than two systems were rated."""
    systems = sorted({v["system_a"] for v in votes} | {v["system_b"] for v in votes})
    if len(systems) <= 2:
        return None
    index = {s: i for i, s in enumerate(systems)}
    k = len(systems)
    units: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((k, k)))
    for v in votes:
        a, b, wins = index[v["system_a"]], index[v["system_b"]], units[v["unit"]]
        share = {"a": 1.0, "tie": 0.5, "b": 0.0}[v["choice"]]
        wins[a, b] += share
        wins[b, a] += 1 - share
    per_unit = np.array(list(units.values()))
    theta = bradley_terry(per_unit.sum(axis=0))
    bounds = _over_prompts(per_unit, bradley_terry)
    rows = [{"system": names[s], "strength": float(theta[i]), "strength_ci": _interval(bounds, i)}
            for s, i in index.items()]
    return sorted(rows, key=lambda r: -r["strength"])


def agreement(votes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Krippendorff's alpha (interval metric) and raw agreement over (pair, question) units with several
    raters; None when no unit has two."""
    answers: dict[int, dict[int, float]] = defaultdict(dict)
    for v in votes:
        answers[v["pair"]][v["rater"]] = CHOICE_VALUE[v["choice"]]
    shared = {pair: by_rater for pair, by_rater in answers.items() if len(by_rater) > 1}
    if not shared:
        return None
    raters = sorted({r for by_rater in shared.values() for r in by_rater})
    data = np.full((len(raters), len(shared)), np.nan)
    for j, by_rater in enumerate(shared.values()):
        for rater, value in by_rater.items():
            data[raters.index(rater), j] = value
    agreeing = [x == y for by_rater in shared.values() for x, y in itertools.combinations(by_rater.values(), 2)]
    result = {"method": "Krippendorff's alpha, interval metric on +1 / 0 / -1", "units": len(shared),
              "raters": len(raters), "alpha": _alpha(data), "raw_agreement": sum(agreeing) / len(agreeing)}
    if result["alpha"] is None:
        result["note"] = "alpha undefined: every answer in these units is the same"
    return result


def _alpha(data: np.ndarray) -> float | None:
    try:
        import krippendorff
    except ImportError as err:
        raise ImportError("inter-rater agreement needs the 'krippendorff' package: pip install 'tsbench[human]'") \
            from err
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="interval",
                                   value_domain=[-1.0, 0.0, 1.0])
    return None if math.isnan(alpha) else float(alpha)


def find_databases(run_dir: str | Path) -> list[Path]:
    """The human-eval databases in a run directory: any ``*.sqlite`` written by ``tsbench human serve``."""
    return [p for p in sorted(Path(run_dir).glob("*.sqlite")) if is_human_db(p)]


def summarize(db: str | Path) -> dict[str, Any]:
    """The whole summary of one database, JSON-ready."""
    data = read_votes(db)
    names = data["systems"]
    questions = []
    for question in QUESTIONS:
        votes = [v for v in data["votes"] if v["question"] == question.id]
        questions.append({"id": question.id, "title": question.title, "ask": question.ask, "votes": len(votes),
                          "pairs": pair_rates(votes, names), "bradley_terry": strengths(votes, names),
                          "agreement": agreement(votes)})
    rated = sorted({v["system_a"] for v in data["votes"]} | {v["system_b"] for v in data["votes"]})
    return {"database": str(db), "systems": [names[s] for s in rated], "raters": data["raters"],
            "rated_pairs": data["rated_pairs"], "votes": len(data["votes"]), "replaced_votes": data["replaced"],
            "skipped": data["skipped"], "image_kinds": data["image_kinds"], "questions": questions,
            "method": {"interval": f"{CONFIDENCE:.0%} percentile bootstrap over prompts", "resamples": N_RESAMPLES,
                       "seed": SEED, "bradley_terry": f"ties = half a win; virtual prior {BT_PRIOR} win + "
                                                      f"{BT_PRIOR} loss vs an average system",
                       "agreement": "Krippendorff's alpha, interval metric on +1 / 0 / -1"}}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _ci(ci: list[float] | None, fmt: Callable[[float], str]) -> str:
    return "(one prompt: no interval)" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text tables for the terminal."""
    lines = [f"{summary['database']}: {summary['votes']} current votes (one per rater, pair and question) on "
             f"{summary['rated_pairs']} rated pairs by {summary['raters']} rater(s); "
             f"{summary['replaced_votes']} replaced by re-votes, {summary['skipped']} pair(s) skipped",
             f"systems: {', '.join(summary['systems']) or 'none rated yet'}",
             f"intervals: {summary['method']['interval']} ({summary['method']['resamples']} resamples, "
             f"seed {summary['method']['seed']})"]
    for q in summary["questions"]:
        lines += ["", f"== {q['title']}: {q['ask']} ({q['votes']} vote(s))"]
        for r in q["pairs"]:
            lines.append(f"  {r['system']}  vs  {r['opponent']}   ({r['votes']} vote(s), {r['prompts']} prompt(s))")
            for outcome, word in zip(OUTCOMES, ("wins", "ties", "loses")):
                lines.append(f"    {word:6s} {_pct(r[outcome]):>6s}  {_ci(r[outcome + '_ci'], _pct)}")
        if q["bradley_terry"]:
            lines.append("  Bradley–Terry log-strength (mean 0; ties = half wins):")
            for r in q["bradley_terry"]:
                lines.append(f"    {r['strength']:+.3f}  {_ci(r['strength_ci'], lambda x: f'{x:+.3f}')}  {r['system']}")
        a = q["agreement"]
        if a:
            alpha = "undefined" if a["alpha"] is None else f"{a['alpha']:.3f}"
            lines.append(f"  agreement: alpha = {alpha}, raw {_pct(a['raw_agreement'])} over {a['units']} "
                         f"pair(s) rated by several of {a['raters']} raters ({a['method']})")
        else:
            lines.append("  agreement: no pair has two raters yet")
    return "\n".join(lines)
