"""The report's figures, from the per-cell frame of ``aggregate.load_cells``.

Every function draws one figure from whatever columns exist and returns None when its data is absent,
so a run without FLOPs, quality scores or a batch sweep still gets the other plots. PNGs are small
(dpi 100) because a report may hold dozens of them.
"""
from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from tsbench.engine.cfg import list_schedules  # noqa: E402
from tsbench.report.aggregate import CONFIG_COLUMNS, key_text  # noqa: E402
from tsbench.report.baselines import label as baseline_label  # noqa: E402
from tsbench.report.quality import Scored, benchmark, prompt_set, scored, why_not_comparable  # noqa: E402
from tsbench.report.quality import with_headline  # noqa: E402
from tsbench.report.schedules import plot_schedules  # noqa: E402
from tsbench.scoring.aggregate import column as quality_column  # noqa: E402

DPI = 100
PLAIN = FuncFormatter(lambda value, _: f"{value:.3g}" if value < 1000 else f"{value:,.0f}")
# Keys that may split cells into separate lines; only the ones that actually vary are used.
LINE_KEYS = ("run", "adapter", "preset", "window", "resolution", "cfg_schedule", "cfg_scale", "batch_size",
             "dtype", "device", "compile")
# Published rows drawn in the per-skill chart (all rows are in the report's tables): the paper's own model
# and the AR baseline it builds on, from the Token-Shuffle tables so that one protocol is shown.
PLOT_BASELINE_MODELS = ("Token-Shuffle", "LlamaGen")
PLOT_BASELINE_SOURCE = "Token-Shuffle arXiv 2504.17789"
GRID_TITLES = {"window": "windows", "cfg_schedule": "CFG schedules"}
GRID_TITLE_KEYS = ("preset", "resolution", "window", "cfg_schedule", "cfg_scale", "batch_size")
CAPTIONS = {
    "flops_vs_resolution": "Analytic FLOPs per image vs resolution, one line per window s. Thin guide lines "
                           "divide the s = 1 curve by s² (what linear and MLP layers save) and s⁴ (what "
                           "attention saves). The LM head, the shuffle layers and the VQ decoder still run "
                           "per original token, so a curve stays above the s² guide where they dominate.",
    "latency_breakdown": "Where the time of one image goes: prefill, AR decode steps and VQ decode "
                         "(medians of the batch, divided by the batch size).",
    "memory_vs_resolution": "Peak memory vs resolution (solid) and the KV cache alone (dashed).",
    "throughput_vs_batch": "Images per second vs batch size, for the settings run at several batch sizes.",
    "roofline": "Decode roofline: FLOPs per byte a decode step moves (weights once, plus the KV cache it reads) "
                "against the FLOP/s it achieved, one point per cell. The slanted line is the measured read "
                "bandwidth, the flat one the measured peak matmul FLOP/s; a point's distance below the lower "
                "of the two is what the engine leaves on the table. Larger windows and batches move right, "
                "from memory-bound towards compute-bound.",
    "quality_vs_window": "Overall quality score vs window size; error bars are 95 % bootstrap intervals "
                         "over the prompts.",
    "quality_per_schedule": "Overall quality score per CFG schedule, with 95 % bootstrap intervals.",
    "pareto_quality_latency": "Quality (with its 95 % interval) vs latency per image; the line joins the "
                              "Pareto-optimal cells (no other cell is both faster and better).",
    "cfg_schedules": "Guidance weight over the image's AR steps for every registered CFG schedule.",
    "skills": "Per-skill quality of the best cells (solid, with 95 % intervals) beside published numbers "
              "(hatched, 'published'; † = images from rewritten prompts), drawn only when the cells were "
              "measured as the published rows were (see the tables below).",
}


class PlotWarning(UserWarning):
    """A figure failed to draw; the report goes on without it."""


def caption(path: Path) -> str:
    """Report caption of a figure written by this module."""
    return next((text for stem, text in CAPTIONS.items() if path.stem.startswith(stem)), "")


# ---- helpers ---------------------------------------------------------------------------------------
def _ok(cells: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Successful cells that have every one of ``columns``."""
    if cells.empty or not set(columns) <= set(cells.columns):
        return cells.iloc[0:0]
    data = cells[cells["status"] == "ok"].dropna(subset=list(columns))
    return data.copy()


def _varying(frame: pd.DataFrame, keys: tuple[str, ...] | list[str]) -> list[str]:
    return [k for k in keys if k in frame.columns and frame[k].nunique(dropna=False) > 1]


def _label(keys: list[str], values: Any) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(key_text(k, v) for k, v in zip(keys, values)) or "all cells"


def _lines(frame: pd.DataFrame, x: str, y: str, keys: tuple[str, ...],
           extra: tuple[str, ...] = ()) -> list[tuple[str, pd.DataFrame]]:
    """One (label, points) line per combination of the varying ``keys``; the median over the rest (also
    of the ``extra`` columns, e.g. an interval's bounds)."""
    keys = [k for k in _varying(frame, keys) if k != x]
    columns = [y, *[c for c in extra if c in frame.columns]]
    agg = frame.groupby([*keys, x], dropna=False)[columns].median().reset_index().sort_values(x)
    if not keys:
        return [("all cells", agg)]
    return [(_label(keys, values), group) for values, group in agg.groupby(keys, dropna=False, sort=True)]


def _log_if_wide(ax: plt.Axes, values: pd.Series) -> None:
    """Log y once values span an order of magnitude; a linear axis would flatten the small ones."""
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() >= 10:
        ax.set_yscale("log")


def _pow2_axis(ax: plt.Axes, ticks: list[int]) -> None:
    """Log-2 x axis labelled with the swept values themselves (256, 512, ...)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([str(t) for t in ticks]))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: plt.Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI, bbox_inches="tight")  # keeps legends placed beside or below the axes
    plt.close(fig)
    return out


def _finish(ax: plt.Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if legend and ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
        _legend(ax)
    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale == "log" and not isinstance(axis.get_major_formatter(), FixedFormatter):
            _plain_log(axis, limits)


def _legend(ax: plt.Axes, handles: list[Any] | None = None, labels: list[str] | None = None) -> None:
    """Inside the axes when short; beside them when long, so that it never hides data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if len(handles) > 5:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(handles, labels, fontsize=7)


def _plain_log(axis: matplotlib.axis.Axis, limits: tuple[float, float]) -> None:
    """Log ticks as 0.02 rather than 2x10^-2; minor ticks labelled too when the axis spans under a decade."""
    low, high = sorted(limits)
    axis.set_major_formatter(PLAIN)
    axis.set_minor_formatter(PLAIN if low > 0 and high / low < 10 else NullFormatter())


def _ints(series: pd.Series) -> list[int]:
    return sorted(int(v) for v in series.dropna().unique())


# ---- cost ------------------------------------------------------------------------------------------
def plot_flops(cells: pd.DataFrame, out: Path) -> Path | None:
    """FLOPs per image vs resolution per window, log-log, with the s² / s⁴ reduction guides."""
    data = _ok(cells, "flops.total", "resolution", "window")
    if data.empty:
        return None
    data["total"] = data["flops.total"] / 1e9
    panels = [("total", "total per image, incl. VQ decode")]
    if {"flops.by_phase.prefill", "flops.by_phase.decode"} <= set(data.columns):
        data["ar"] = (data["flops.by_phase.prefill"] + data["flops.by_phase.decode"]) / 1e9
        if data["ar"].notna().any():
            panels.insert(0, ("ar", "AR transformer (prefill + decode)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for i, (ax, (column, title)) in enumerate(zip(axes[0], panels)):
        _flops_panel(ax, data.dropna(subset=[column]), column, guides=i == 0)
        _pow2_axis(ax, _ints(data["resolution"]))
        ax.set_yscale("log")
        _finish(ax, f"FLOPs: {title}", "resolution (px, log scale)", "GFLOP per image (log scale)")
    return _save(fig, out)


def _flops_panel(ax: plt.Axes, data: pd.DataFrame, column: str, guides: bool) -> None:
    others = [k for k in _varying(data, ("adapter", "preset", "cfg_scale")) if k != "window"]
    for values, group in (data.groupby(others, dropna=False) if others else [((), data)]):
        prefix = _label(others, values) + ", " if others else ""
        agg = group.groupby(["window", "resolution"])[column].median()
        base = agg.get(1) if 1 in agg.index.get_level_values("window") else None
        for window in _ints(group["window"]):
            line = agg.loc[window]
            (drawn,) = ax.plot(line.index, line.values, marker="o", label=f"{prefix}s = {window}")
            if guides and base is not None and window > 1:
                for power, style in ((2, "--"), (4, ":")):
                    ax.plot(base.index, base.values / window**power, style, color=drawn.get_color(),
                            linewidth=0.9, alpha=0.6)
    if guides and 1 in set(data["window"]) and data["window"].max() > 1:
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="grey", linestyle="--"), Line2D([], [], color="grey", linestyle=":")]
        labels += ["guide: (s = 1) / s²", "guide: (s = 1) / s⁴"]
        _legend(ax, handles, labels)


def plot_latency_breakdown(cells: pd.DataFrame, out: Path) -> Path | None:
    """Prefill / decode / VQ-decode time per image for every cell: seconds, and shares of the total
    (the shares stay readable when one slow cell dwarfs the others)."""
    data = _ok(cells, "latency.prefill_s", "latency.vq_decode_s", "latency.end_to_end_s")
    if data.empty:
        return None
    batch = data["batch_size"].astype("float64").fillna(1.0).to_numpy()
    decode = (data["latency.end_to_end_s"] - data["latency.prefill_s"] - data["latency.vq_decode_s"]).clip(lower=0)
    parts = {"prefill": data["latency.prefill_s"].to_numpy() / batch, "decode (AR steps)": decode.to_numpy() / batch,
             "VQ decode": data["latency.vq_decode_s"].to_numpy() / batch}
    total = sum(parts.values())
    names = (data["run"] + ": " + data["cell_id"]) if data["run"].nunique() > 1 else data["cell_id"]
    fig, (ax, share_ax) = plt.subplots(1, 2, figsize=(11, 1.3 + 0.32 * len(data)), sharey=True,
                                       gridspec_kw={"width_ratios": [3, 2]})
    left, share_left = np.zeros(len(data)), np.zeros(len(data))
    for (part, seconds), color in zip(parts.items(), ("#4c72b0", "#dd8452", "#55a868")):
        ax.barh(range(len(data)), seconds, left=left, label=part, color=color)
        share = np.divide(100 * seconds, total, out=np.zeros_like(seconds), where=total > 0)
        share_ax.barh(range(len(data)), share, left=share_left, color=color)
        left += seconds
        share_left += share
    ax.set_yticks(range(len(data)), list(names), fontsize=7)
    ax.invert_yaxis()
    _finish(ax, "Latency per image", "seconds per image (batch median / batch size)", "")
    _finish(share_ax, "Share of the time", "% of the image's time", "", legend=False)
    share_ax.set_xlim(0, 100)
    return _save(fig, out)


def plot_memory(cells: pd.DataFrame, out: Path) -> Path | None:
    """Peak memory (allocator peak on GPU, process RSS on CPU) and KV cache vs resolution."""
    column = next((c for c in ("memory.peak_allocated_mib", "memory.peak_rss_mib")
                   if not _ok(cells, c, "resolution").empty), None)
    if column is None:
        return None
    data = _ok(cells, column, "resolution")
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    keys = ("run", "adapter", "preset", "window", "batch_size", "dtype", "device")
    kv_data = _ok(data, "memory.kv_cache_mib")
    kv_lines = dict(_lines(kv_data, "resolution", "memory.kv_cache_mib", keys)) if not kv_data.empty else {}
    for name, line in _lines(data, "resolution", column, keys):
        (drawn,) = ax.plot(line["resolution"], line[column], marker="o", label=name)
        if name in kv_lines:
            ax.plot(kv_lines[name]["resolution"], kv_lines[name]["memory.kv_cache_mib"], "--",
                    color=drawn.get_color(), label=f"{name} (KV cache)")
    _pow2_axis(ax, _ints(data["resolution"]))
    _log_if_wide(ax, pd.concat([data[column], data.get("memory.kv_cache_mib", pd.Series(dtype=float))]))
    what = "peak allocated (GPU)" if column.endswith("allocated_mib") else "peak RSS (whole process, CPU)"
    _finish(ax, "Peak memory vs resolution", "resolution (px, log scale)", f"{what}, MiB")
    return _save(fig, out)


def plot_throughput(cells: pd.DataFrame, out: Path) -> Path | None:
    """Images per second vs batch size, for each setting run at two or more batch sizes."""
    data = _ok(cells, "throughput.images_per_s", "batch_size")
    lines = [(name, line) for name, line in _lines(data, "batch_size", "throughput.images_per_s", LINE_KEYS)
             if len(line) > 1] if not data.empty else []
    if not lines:
        return None
    data = pd.concat([line for _, line in lines])
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    for name, line in lines:
        ax.plot(line["batch_size"], line["throughput.images_per_s"], marker="o", label=name)
    _pow2_axis(ax, _ints(data["batch_size"]))
    _log_if_wide(ax, data["throughput.images_per_s"])
    _finish(ax, "Throughput vs batch size", "batch size (log scale)", "images per second")
    return _save(fig, out)


def plot_roofline(cells: pd.DataFrame, out: Path) -> Path | None:
    """Arithmetic intensity vs achieved FLOP/s of the decode step per cell, under each machine's roof."""
    data = _ok(cells, "roofline.arithmetic_intensity", "roofline.achieved_flop_s", "env.read_bandwidth_bytes_s",
               "env.peak_matmul_flop_s")
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    keys = [k for k in _varying(data, LINE_KEYS) if k != "resolution"]
    groups = data.groupby(keys, dropna=False) if keys else [((), data)]
    for values, group in groups:
        ax.scatter(group["roofline.arithmetic_intensity"], group["roofline.achieved_flop_s"] / 1e9, s=30, zorder=3,
                   label=_label(keys, values))
    low, high = data["roofline.arithmetic_intensity"].min() / 4, data["roofline.arithmetic_intensity"].max() * 4
    roofs = data[["env.read_bandwidth_bytes_s", "env.peak_matmul_flop_s", "dtype"]].drop_duplicates()
    for bandwidth, peak, dtype in roofs.itertuples(index=False):
        ridge = peak / bandwidth
        x = np.geomspace(min(low, ridge / 4), max(high, ridge * 4), 200)
        ax.plot(x, np.minimum(bandwidth * x, peak) / 1e9, color="black", linewidth=1, alpha=0.7)
        ax.annotate(f"read bandwidth {bandwidth / 1e9:.1f} GB/s", (x[0], bandwidth * x[0] / 1e9), fontsize=7,
                    xytext=(2, 6), textcoords="offset points", parse_math=False)
        ax.annotate(f"peak matmul {dtype}: {peak / 1e9:,.0f} GFLOP/s", (x[-1], peak / 1e9), fontsize=7,
                    xytext=(-4, 4), textcoords="offset points", ha="right", parse_math=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _finish(ax, "Decode roofline", "arithmetic intensity (FLOP per byte moved, log scale)",
            "achieved GFLOP/s (log scale)")
    return _save(fig, out)


# ---- quality ---------------------------------------------------------------------------------------
def _bounds(s: Scored) -> tuple[str, str]:
    return quality_column(s.scorer, s.headline, "ci_low"), quality_column(s.scorer, s.headline, "ci_high")


def _yerr(points: pd.DataFrame, y: str, low: str, high: str) -> np.ndarray | None:
    """Asymmetric error bars from an interval's bounds; None when the points have none."""
    if low not in points or points[low].isna().all():
        return None
    return np.vstack([(points[y] - points[low]).clip(lower=0).fillna(0), (points[high] - points[y]).clip(lower=0).fillna(0)])


def _headline(s: Scored) -> str:
    return f"{s.scorer} {s.headline}"


def _title(s: Scored, data: pd.DataFrame, what: str) -> str:
    """Title naming the prompt set and its size: scores on different prompt sets are not comparable."""
    sets = list(dict.fromkeys(prompt_set(row) for _, row in data.iterrows()))
    return f"{_headline(s)} {what}\n" + textwrap.shorten("; ".join(sets), 70)


def _quality_subplots(n: int, width: float = 5.2) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, 4.4), squeeze=False)
    return fig, list(axes[0])


def plot_quality_vs_window(cells: pd.DataFrame, out: Path) -> Path | None:
    """Headline score per window size, one line per other varying setting, with interval bars."""
    shown = with_headline(cells)
    data = _ok(cells, "window")
    if not shown or data["window"].nunique() < 2:
        return None
    fig, axes = _quality_subplots(len(shown))
    for ax, s in zip(axes, shown):
        y, (low, high) = s.headline_column, _bounds(s)
        subset = data.dropna(subset=[y])
        for name, line in _lines(subset, "window", y, LINE_KEYS, (low, high)):
            ax.errorbar(line["window"], line[y], yerr=_yerr(line, y, low, high), marker="o", capsize=3, label=name)
        _pow2_axis(ax, _ints(subset["window"]))
        _finish(ax, _title(s, subset, "vs window"), "window size s (log scale)", f"{_headline(s)} (95 % CI)")
    return _save(fig, out)


def plot_quality_per_schedule(cells: pd.DataFrame, out: Path) -> Path | None:
    """Headline score per CFG schedule (grouped bars with interval bars); needs at least two schedules."""
    shown = with_headline(cells)
    data = _ok(cells, "cfg_schedule")
    if not shown or data["cfg_schedule"].nunique() < 2:
        return None
    fig, axes = _quality_subplots(len(shown), width=6.0)
    for ax, s in zip(axes, shown):
        y, (low, high) = s.headline_column, _bounds(s)
        subset = data.dropna(subset=[y])
        keys = [k for k in _varying(subset, LINE_KEYS) if k != "cfg_schedule"]
        columns = [c for c in (y, low, high) if c in subset]
        medians = subset.groupby(["cfg_schedule", *keys], dropna=False)[columns].median().reset_index()
        schedules = sorted(medians["cfg_schedule"].unique())
        series = [((), medians)] if not keys else list(medians.groupby(keys, dropna=False, sort=True))
        width = 0.8 / len(series)
        for i, (values, group) in enumerate(series):
            group = group.set_index("cfg_schedule").reindex(schedules)
            x = np.arange(len(schedules)) + (i - (len(series) - 1) / 2) * width
            ax.bar(x, group[y], width, yerr=_yerr(group, y, low, high), capsize=3,
                   label=_label(keys, values) if keys else "all cells")
        ax.set_xticks(range(len(schedules)), schedules)
        _finish(ax, _title(s, subset, "per CFG schedule"), "CFG schedule", f"{_headline(s)} (95 % CI)")
    return _save(fig, out)


def pareto_front(points: pd.DataFrame, cost: str, gain: str) -> pd.DataFrame:
    """Cells no other cell beats on both: lower ``cost`` and higher ``gain``, sorted by cost."""
    best = -np.inf
    keep = []
    for index, row in points.sort_values([cost, gain], ascending=[True, False]).iterrows():
        if row[gain] > best:
            keep.append(index)
            best = row[gain]
    return points.loc[keep]


def plot_pareto(cells: pd.DataFrame, out: Path) -> Path | None:
    """Quality vs latency per image, coloured by window, with interval bars and the Pareto front."""
    shown = with_headline(cells)
    if not shown or _ok(cells, "latency.per_image_s").empty:
        return None
    fig, axes = _quality_subplots(len(shown), width=5.8)
    for ax, s in zip(axes, shown):
        y, (low, high) = s.headline_column, _bounds(s)
        data = _ok(cells, y, "latency.per_image_s")
        for window, group in data.groupby("window", dropna=False):
            ax.errorbar(group["latency.per_image_s"], group[y], yerr=_yerr(group, y, low, high), fmt="o",
                        capsize=2, markersize=5, label=key_text("window", window))
        front = pareto_front(data, "latency.per_image_s", y)
        ax.plot(front["latency.per_image_s"], front[y], "-", color="black", linewidth=1, label="Pareto front")
        for _, row in front.iterrows():
            ax.annotate(row["cell_id"], (row["latency.per_image_s"], row[y]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points", parse_math=False)
        ax.set_xscale("log")
        _finish(ax, _title(s, data, "vs latency"), "seconds per image (log scale)", f"{_headline(s)} (95 % CI)")
    return _save(fig, out)


def plot_cfg_schedules(cells: pd.DataFrame, out: Path) -> Path | None:
    """Every registered schedule at the runs' most common scale and AR step count."""
    if cells.empty or cells["cfg_scale"].dropna().empty:
        return None
    steps = cells["workload.ar_steps"].max() if "workload.ar_steps" in cells.columns else np.nan
    return plot_schedules(out, scale=float(cells["cfg_scale"].mode().iloc[0]),
                          steps=int(steps) if pd.notna(steps) and steps > 1 else 256, schedules=list_schedules())


def _published_series(baselines: pd.DataFrame, bench_name: Any, metrics: list[str],
                      tags: list[str]) -> list[tuple[str, list[float]]]:
    rows = baselines[baselines["metric"].isin(metrics) & baselines["model"].isin(PLOT_BASELINE_MODELS)
                     & baselines["source"].str.startswith(PLOT_BASELINE_SOURCE) & (baselines["benchmark"] == bench_name)]
    series = []
    for _, group in rows.groupby(["model", "prompt_rewriting", "source"], dropna=False, sort=False):
        values = group.set_index("tag")["value"].reindex(tags)
        if values.notna().any():
            first = group.iloc[0]
            table = first["source"].removeprefix(PLOT_BASELINE_SOURCE).strip()
            series.append((f"published: {baseline_label(first)} ({table})", values.tolist()))
    return series


def plot_skills(cells: pd.DataFrame, baselines: pd.DataFrame, out_dir: Path, top: int = 3) -> list[Path]:
    """Per scorer with several tags, one bar chart over them: the best cells (with interval bars) and,
    where those cells were measured as the published rows were, the published rows beside them."""
    written = []
    for s in scored(cells):
        if len(s.tags) < 2:  # a single number (e.g. CLIPScore's mean) has no skills to compare
            continue
        order = s.headline_column or quality_column(s.scorer, s.tags[0])
        data = _ok(cells, order).sort_values(order, ascending=False).head(top)
        bench_name = next(iter(data.get("quality.benchmark", pd.Series(dtype=str)).dropna()), None)
        bench = benchmark(bench_name)
        comparable = [why_not_comparable(row, s.scorer, bench) is None for _, row in data.iterrows()]
        metrics = [m for m, spec in (bench.published.items() if bench else ())
                   if all(comparable) and spec.metric in set(data.get(quality_column(s.scorer, "metric"), []))
                   and spec.measured_with in set(data.get(quality_column(s.scorer, "model"), []))]
        series = [(f"{row['run']}: {row['cell_id']}" if cells["run"].nunique() > 1 else row["cell_id"],
                   [row.get(quality_column(s.scorer, t), np.nan) for t in s.tags],
                   [row.get(quality_column(s.scorer, t, "ci_low"), np.nan) for t in s.tags],
                   [row.get(quality_column(s.scorer, t, "ci_high"), np.nan) for t in s.tags], False)
                  for _, row in data.iterrows()]
        series += [(name, values, [np.nan] * len(values), [np.nan] * len(values), True)
                   for name, values in _published_series(baselines, bench_name, metrics, s.tags)]
        fig, ax = plt.subplots(figsize=(max(6.4, 0.75 * len(s.tags) * max(1, len(series) / 3)), 4.8))
        width = 0.8 / len(series)
        for i, (name, values, lows, highs, published) in enumerate(series):
            x = np.arange(len(s.tags)) + (i - (len(series) - 1) / 2) * width
            style = ({"hatch": "///", "edgecolor": "0.25", "alpha": 0.55} if published else {})
            bars = pd.DataFrame({"v": values, "lo": lows, "hi": highs})
            ax.bar(x, values, width, label=name, yerr=_yerr(bars, "v", "lo", "hi"), capsize=2, **style)
        ax.set_xticks(range(len(s.tags)), s.tags, rotation=30, ha="right", fontsize=8)
        values = [v for _, vs, _, _, _ in series for v in vs if pd.notna(v)]
        if values and 0 <= min(values) and max(values) <= 1:
            ax.set_ylim(0, 1)
        what = "your cells vs published" if metrics else "your cells (no published row measured the same way)"
        _finish(ax, _title(s, data, f"per skill: {what}"), "", f"{s.scorer} (95 % CI)", legend=False)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
        written.append(_save(fig, out_dir / f"skills_{s.scorer}.png"))
    return written


# ---- image grids -----------------------------------------------------------------------------------
def sample_file(run_dir: str | Path, relative: str) -> Path | None:
    """A sample path from a row: relative to the run directory, or to its parent (older layout)."""
    for base in (Path(run_dir), Path(run_dir).parent):
        if (base / relative).is_file():
            return base / relative
    return None


@dataclass
class GridSpec:
    """Same prompts and seeds (rows) across cells that differ only in ``vary`` (columns)."""

    vary: str
    fixed: dict[str, Any]
    columns: list[pd.Series]
    samples: list[tuple[str, Any]]
    filename: str

    @property
    def title(self) -> str:
        shown = [key_text(k, v) for k, v in self.fixed.items() if k in GRID_TITLE_KEYS]
        return f"{GRID_TITLES.get(self.vary, self.vary)} side by side: " + ", ".join(shown)

    def column_label(self, cell: pd.Series) -> str:
        return key_text(self.vary, cell[self.vary])

    def images(self, cell: pd.Series) -> list[Path | None]:
        """Sample file of each grid row in ``cell`` (None when the file is gone)."""
        return [sample_file(cell["run_dir"], p) for p in list(cell["samples.paths"])[:len(self.samples)]]


def grid_specs(cells: pd.DataFrame, vary: tuple[str, ...] = ("window", "cfg_schedule"), max_grids: int = 3,
               max_rows: int = 4) -> list[GridSpec]:
    """Grids for each ``vary`` key: groups of cells equal on every other config column, largest images first."""
    data = _ok(cells, "samples.paths", "samples.prompts", "samples.seeds")
    specs = []
    for key in vary:
        if data.empty or data[key].nunique() < 2:
            continue
        others = [c for c in CONFIG_COLUMNS if c != key]
        groups = [g for _, g in data.groupby(others, dropna=False, sort=False) if g[key].nunique() > 1]
        groups.sort(key=lambda g: -(g["resolution"].max() if g["resolution"].notna().any() else 0))
        for i, group in enumerate(groups[:max_grids]):
            group = group.sort_values(key).drop_duplicates(key)
            first = group.iloc[0]
            same = group[[list(p) == list(first["samples.prompts"]) and list(s) == list(first["samples.seeds"])
                          for p, s in zip(group["samples.prompts"], group["samples.seeds"])]]
            samples = list(zip(first["samples.prompts"], first["samples.seeds"]))[:max_rows]
            if len(same) > 1 and samples:
                specs.append(GridSpec(key, {k: first[k] for k in others}, [row for _, row in same.iterrows()],
                                      samples, f"grid_{key}_{i + 1}.png"))
    return specs


def plot_grid(spec: GridSpec, out_dir: Path) -> Path:
    """The grid as one PNG with column captions (cell setting) and row captions (prompt, seed)."""
    rows, cols = len(spec.samples), len(spec.columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols + 2.0, 1.7 * rows + 0.7), squeeze=False)
    for j, cell in enumerate(spec.columns):
        axes[0][j].set_title(spec.column_label(cell), fontsize=9, parse_math=False)
        for i, path in enumerate(spec.images(cell)):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if path is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            else:
                with Image.open(path) as image:
                    ax.imshow(image.convert("RGB"), interpolation="nearest")
    for i, (prompt, seed) in enumerate(spec.samples):
        text = textwrap.fill(textwrap.shorten(str(prompt), 90), 24) + f"\nseed {seed}"
        axes[i][0].set_ylabel(text, fontsize=7, rotation=0, ha="right", va="center", parse_math=False)
    fig.suptitle(spec.title, fontsize=10, parse_math=False)
    return _save(fig, out_dir / spec.filename)


# ---- all -------------------------------------------------------------------------------------------
def make_plots(cells: pd.DataFrame, baselines: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Every figure that the data allows, written into ``out_dir``; returns the PNG paths."""
    with plt.rc_context({"text.parse_math": False}):  # '$' in a run, preset or cell name is plain text
        return _make_plots(cells, baselines, Path(out_dir))


def _make_plots(cells: pd.DataFrame, baselines: pd.DataFrame, out_dir: Path) -> list[Path]:
    single: list[tuple[Callable[..., Path | None], str]] = [
        (plot_flops, "flops_vs_resolution"), (plot_latency_breakdown, "latency_breakdown"),
        (plot_memory, "memory_vs_resolution"), (plot_throughput, "throughput_vs_batch"), (plot_roofline, "roofline"),
        (plot_quality_vs_window, "quality_vs_window"), (plot_quality_per_schedule, "quality_per_schedule"),
        (plot_pareto, "pareto_quality_latency"), (plot_cfg_schedules, "cfg_schedules"),
    ]
    written = [_guarded(fn, cells, out_dir / f"{stem}.png") for fn, stem in single]
    written += _guarded(plot_skills, cells, baselines, out_dir) or []
    written += [_guarded(plot_grid, spec, out_dir) for spec in grid_specs(cells)]
    return [p for p in written if p is not None]


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """A broken figure must not cost the whole report of a long run: warn and leave it out."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001
        plt.close("all")
        warnings.warn(f"{fn.__name__} failed, figure left out: {type(err).__name__}: {err}", PlotWarning,
                      stacklevel=2)
        return None
