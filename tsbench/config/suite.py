"""Typed benchmark-suite config: one small dataclass per axis, loaded from YAML with precise errors.

A sweep can run for hours, so a typo must fail at load time and say where it is (file, dotted key path,
YAML line), what was found and what was expected, instead of silently falling back to a default.
Type checks happen while a plain dict is turned into dataclasses; value checks live in each class's
``__post_init__`` so they also guard configs built directly in Python.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Union

import yaml

from tsbench.config.registry import RegistryError, registry, suggest
from tsbench.stats import DEFAULT_RESAMPLES
from tsbench.io import SAFE_NAME_RULE, is_safe_name

DTYPES = ("float32", "bfloat16", "float16")
# The axes that decide what a cell measures; their values make up the cell hash.
AXES = ("model", "workload", "measure", "quality")
# Largest images and smallest windows first, so out-of-memory cells surface early.
DEFAULT_ORDER = ("-workload.resolution", "model.window")
# A sweep larger than this is refused unless the caller raises the limit (``tsbench run --max-cells``): a typo
# such as a list of 10,000 seeds crossed with another must fail in a second, not fill the memory.
MAX_CELLS = 10_000
# Largest image side: beyond it no AR model generates, and tensor sizes overflow in the FLOP counters.
MAX_RESOLUTION = 65_536
# Limits of the YAML a suite may be: deeper nesting or more values after alias expansion is no suite but a
# mistake or an attack ("billion laughs"), refused before anything walks the expanded values.
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000
DEFAULT_PROMPTS = [
    "a red apple on a wooden table",
    "a photo of an astronaut riding a horse",
    "a watercolor painting of a lighthouse at dusk",
]


class ConfigError(ValueError):
    """A config problem meant for the user: names the source, the key path and, where known, the line."""


class FieldError(ValueError):
    """Raised by ``__post_init__`` checks; the loader prefixes the field's full key path and location."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise FieldError(field_name, message)


def _help(text: str, **kwargs: Any) -> Any:
    """A dataclass field documented for ``--help`` output and generated docs."""
    return field(metadata={"help": text, **kwargs.pop("metadata", {})}, **kwargs)


def option(text: str, *, tensor_file: bool = False, **kwargs: Any) -> Any:
    """A documented field of an adapter's options dataclass (``model.options``). ``tensor_file`` marks a
    path to a file of tensors (weights, precomputed features): the load-time checks probe it before any
    cell runs, and errors about it name the option (``tensor_file_options``)."""
    return _help(text, **kwargs, metadata={"tensor_file": tensor_file})


def tensor_file_options(options: Any) -> dict[str, str]:
    """Name -> path of the set options that name a tensor file (``option(..., tensor_file=True)``)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if f.metadata.get("tensor_file") and getattr(options, f.name)}


@dataclass
class ModelConfig:
    """Which model runs, with which weights, precision and device; ``options`` are the adapter's own."""

    adapter: str = _help("model adapter name (adapter registry)", default="token-shuffle")
    preset: str | None = _help("architecture preset of the adapter; null means the adapter's default", default=None)
    checkpoint: str | None = _help("weights (file or directory); null means random initialisation", default=None)
    window: int | None = _help("Token-Shuffle window size s (s*s visual tokens per AR step); null means the "
                               "model's own: the checkpoint's, else the adapter's default", default=None)
    dtype: str = _help(f"compute dtype, one of {', '.join(DTYPES)}", default="float32")
    device: str = _help("torch device, e.g. 'cpu' or 'cuda'", default="cpu")
    compile: bool = _help("decode with a static-shape step under torch.compile (CUDA graphs on CUDA, inductor "
                          "C++ on CPU); compile time is reported apart as latency.compile_s", default=False)
    options: dict[str, Any] = _help("the adapter's own options (its options dataclass; see 'tsbench list options')",
                                    default_factory=dict, metadata={"options_of": "adapter"})

    def __post_init__(self) -> None:
        _require(bool(self.adapter), "adapter", "must be a non-empty string")
        _require(self.window is None or self.window >= 1, "window", f"must be an integer >= 1 or null, got {self.window!r}")
        _require(self.dtype in DTYPES, "dtype",
                 f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}.{suggest(self.dtype, list(DTYPES))}")
        _require(bool(self.device), "device", "must be a non-empty string such as 'cpu' or 'cuda'")
        options_class = _options_class(self.adapter)
        if not isinstance(self.options, options_class):  # a mapping given in Python; the loader builds the class
            try:
                self.options = options_class(**dict(self.options))
            except TypeError as err:
                raise FieldError("options", f"{err}; the options of adapter {self.adapter!r} are "
                                            f"{', '.join(f.name for f in dataclasses.fields(options_class))}") from None


def _options_class(adapter: str) -> type:
    """The options dataclass an adapter declares, from the adapter registry (reached by name, like the
    benchmark and scorer registries, so importing the config layer imports no model code)."""
    try:
        return registry("adapter").get(adapter).options
    except KeyError as err:  # RegistryError: unknown adapter, with a suggestion
        raise FieldError("adapter", str(err)) from None


@dataclass
class WorkloadConfig:
    """What is generated: image size, batch, guidance and sampling."""

    resolution: int = _help("image side length in pixels", default=256)
    batch_size: int = _help("prompts generated together", default=1)
    cfg_scale: float = _help("classifier-free guidance scale (maximum of the schedule)", default=7.5)
    cfg_schedule: str = _help("CFG scale schedule over the visual tokens", default="half-linear")
    cfg_interval: list[float] | None = _help(
        "[start, end] fraction of the visual sequence where guidance is applied; null means everywhere",
        default=None)
    temperature: float = _help("sampling temperature (> 0)", default=1.0)
    top_k: int | None = _help("keep the k most likely codes; null disables", default=None)
    top_p: float | None = _help("nucleus sampling mass in (0, 1]; null disables", default=None)
    seed: int = _help("base random seed", default=0)
    prompts: list[str] = _help("prompts for performance measurement",
                               default_factory=lambda: list(DEFAULT_PROMPTS))

    def __post_init__(self) -> None:
        _require(self.resolution > 0, "resolution", f"must be a positive integer, got {self.resolution!r}")
        _require(self.resolution <= MAX_RESOLUTION, "resolution",
                 f"must be at most {MAX_RESOLUTION} pixels, got {self.resolution!r}")
        _require(self.batch_size >= 1, "batch_size", f"must be an integer >= 1, got {self.batch_size!r}")
        _require(self.cfg_scale >= 0, "cfg_scale", f"must be >= 0, got {self.cfg_scale!r}")
        _require(bool(self.cfg_schedule), "cfg_schedule", "must be a non-empty schedule name")
        if self.cfg_interval is not None:
            _require(len(self.cfg_interval) == 2 and 0 <= self.cfg_interval[0] <= self.cfg_interval[1] <= 1,
                     "cfg_interval", f"must be [start, end] with 0 <= start <= end <= 1, got {self.cfg_interval!r}")
        _require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature!r}")
        _require(self.top_k is None or self.top_k >= 1, "top_k", f"must be >= 1 or null, got {self.top_k!r}")
        _require(self.top_p is None or 0 < self.top_p <= 1, "top_p", f"must be in (0, 1] or null, got {self.top_p!r}")
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed!r}")
        _require(len(self.prompts) > 0, "prompts", "must list at least one prompt")


@dataclass
class MeasureConfig:
    """Which costs are measured and how long the timing loop runs."""

    flops: bool = _help("count FLOPs per image", default=True)
    latency: bool = _help("time generation", default=True)
    memory: bool = _help("record peak memory", default=True)
    warmup: int = _help("untimed warm-up generations", default=1)
    min_repeats: int = _help("minimum timed generations", default=3)
    min_time_s: float = _help("keep repeating until this many seconds were timed", default=0.0)
    max_batch_search: bool = _help("search the largest batch that fits in memory", default=False)
    roofline: bool = _help("with latency: decode bytes and FLOPs per step against the machine's measured bandwidth "
                           "and peak FLOP/s (roofline.* columns)", default=True)

    def __post_init__(self) -> None:
        _require(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup!r}")
        _require(self.min_repeats >= 1, "min_repeats", f"must be >= 1, got {self.min_repeats!r}")
        _require(self.min_time_s >= 0, "min_time_s", f"must be >= 0, got {self.min_time_s!r}")


@dataclass
class QualityConfig:
    """Which prompt benchmark is generated and how the images are scored."""

    benchmark: str | None = _help("prompt benchmark (`tsbench list benchmarks`); null skips quality", default=None)
    version: str | None = _help("benchmark version; null is the benchmark's default (scores of versions are not "
                                "comparable)", default=None)
    data_dir: str | None = _help("directory holding the benchmark data", default=None)
    path: str | None = _help("prompt file for the 'txt' and 'jsonl' benchmarks", default=None)
    limit: int | None = _help("use only the first N prompts; null uses all", default=None)
    images_per_prompt: int = _help("images generated per prompt", default=1)
    scorers: list[str] = _help("scorer names (scorer registry)", default_factory=list)
    scorer_options: dict[str, Any] = _help("scorer name -> keyword options", default_factory=dict)
    rewrites: str | None = _help("file of rewritten prompts; null uses the original prompts", default=None)
    bootstrap_resamples: int = _help("bootstrap resamples of the prompts behind each 95 % confidence interval "
                                     "(fixed seed); 0 leaves the intervals out", default=DEFAULT_RESAMPLES)

    def __post_init__(self) -> None:
        if self.benchmark is not None:
            benchmark = _registered("benchmark", "benchmark", self.benchmark)
            problem = benchmark.check(self.version, self.path)
            if problem is not None:
                raise FieldError(*problem)
        _require(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or null, got {self.limit!r}")
        _require(self.images_per_prompt >= 1, "images_per_prompt",
                 f"must be >= 1, got {self.images_per_prompt!r}")
        _require(len(set(self.scorers)) == len(self.scorers), "scorers", f"lists a scorer twice: {self.scorers!r}")
        for i, name in enumerate(self.scorers):
            _registered("scorer", f"scorers[{i}]", name, resolve=False)
        for name in self.scorer_options:
            _registered("scorer", f"scorer_options.{name}", name, resolve=False)
        _require(self.bootstrap_resamples >= 0, "bootstrap_resamples",
                 f"must be >= 0 (0: no intervals), got {self.bootstrap_resamples!r}")


def _registered(kind: str, field_name: str, name: str, resolve: bool = True) -> Any:
    """The registry entry ``name`` of ``kind`` (or just its presence), as a field error naming close names."""
    entries = registry(kind)
    if not resolve and name in entries:
        return None
    try:
        return entries.get(name)
    except RegistryError as err:
        raise FieldError(field_name, str(err)) from None


@dataclass
class SweepConfig:
    """Cells to run: dotted config keys mapped to the values they take."""

    grid: dict[str, list[Any]] = _help("dotted key -> values; every combination becomes a cell",
                                       default_factory=dict)
    zip: dict[str, list[Any]] = _help(
        "dotted key -> values; equal-length lists advance together, crossed with the grid", default_factory=dict)
    order: list[str] | None = _help(
        "dotted keys to sort cells by ('-' prefix: descending); null means largest resolution, then smallest window",
        default=None)

    def __post_init__(self) -> None:
        for kind, table in (("grid", self.grid), ("zip", self.zip)):
            for key, values in table.items():
                _require(len(values) > 0, f"{kind}.{key}", "must be a non-empty list of values")
                _require_sweep_key(f"{kind}.{key}", key)
        for key in sorted(set(self.grid) & set(self.zip)):
            raise FieldError(f"zip.{key}", "is also in grid; a key can be swept only once")
        lengths = {key: len(values) for key, values in self.zip.items()}
        _require(len(set(lengths.values())) <= 1, "zip", f"lists must have equal lengths, got {lengths}")
        for i, spec in enumerate(self.order or []):
            try:
                resolve_key(spec.removeprefix("-"))
            except LookupError as e:
                raise FieldError(f"order[{i}]", str(e)) from None

    def size(self) -> int:
        """How many cells the sweep has, from the list lengths alone: no cell is built."""
        return math.prod(len(values) for values in self.grid.values()) * self._zip_rows()

    def combinations(self) -> list[dict[str, Any]]:
        """Overrides of every cell: the cartesian grid crossed with the zipped rows, in declaration order."""
        return [{key: getattr(self, kind)[key][i] for key, (kind, i) in cell.items()} for cell in self._positions()]

    def items(self) -> list[dict[str, str]]:
        """Per cell (as ``combinations``), the sweep item of each value, e.g. ``sweep.grid.model.window[1]``."""
        return [{key: f"sweep.{kind}.{key}[{i}]" for key, (kind, i) in cell.items()} for cell in self._positions()]

    def _zip_rows(self) -> int:
        return len(next(iter(self.zip.values()))) if self.zip else 1

    def _positions(self) -> list[dict[str, tuple[str, int]]]:
        """Per cell, where each value comes from (table, index), so errors can point at the YAML item."""
        grid_axes = [[(key, ("grid", i)) for i in range(len(values))] for key, values in self.grid.items()]
        rows = self._zip_rows()
        zip_rows = [[(key, ("zip", i)) for key in self.zip] for i in range(rows)]
        return [dict([*combo, *row]) for combo in itertools.product(*grid_axes) for row in zip_rows]


@dataclass
class SuiteConfig:
    """A whole benchmark suite: the base cell (one config per axis) and an optional sweep over it."""

    name: str = _help("suite name, used in run directories and reports")
    description: str = _help("free text shown in reports", default="")
    model: ModelConfig = _help("model axis", default_factory=ModelConfig)
    workload: WorkloadConfig = _help("workload axis", default_factory=WorkloadConfig)
    measure: MeasureConfig = _help("measurement axis", default_factory=MeasureConfig)
    quality: QualityConfig = _help("quality axis", default_factory=QualityConfig)
    output_dir: str = _help("directory that receives run directories", default="runs")
    sweep: SweepConfig | None = _help("cells to run; null runs the base config once", default=None)

    # Where each key path was set (a file line, a flag, a sweep item), kept by the loader for the checks that
    # run after loading (``locate``). A plain attribute, not a field: it stays out of to_dict(), == and hashes.
    _origins = None

    def __post_init__(self) -> None:
        _require(bool(self.name), "name", "must be a non-empty string")
        # the name is the run directory under output_dir: '../x' or '/x' would write elsewhere
        _require(is_safe_name(self.name), "name",
                 f"{self.name!r} cannot name the run directory; {SAFE_NAME_RULE}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict; ``suite_from_dict(cfg.to_dict())`` gives an equal config. Adapter options
        appear only where they differ from the adapter's defaults, so a sweep cell that switches
        ``model.adapter`` does not inherit option names the other adapter does not have."""
        data = dataclasses.asdict(self)
        data["model"]["options"] = changed_options(self.model.options)
        return data


def changed_options(options: Any) -> dict[str, Any]:
    """The fields of an options dataclass that differ from their defaults."""
    defaults = type(options)()
    return {f.name: copy.deepcopy(getattr(options, f.name)) for f in dataclasses.fields(options)
            if getattr(options, f.name) != getattr(defaults, f.name)}


def _require_sweep_key(field_name: str, key: str) -> None:
    """Sweep keys must name one field of an axis, so each cell differs in a readable, hashable way."""
    try:
        _, target = resolve_key(key)
    except LookupError as e:
        raise FieldError(field_name, str(e)) from None
    _require(key.split(".")[0] in AXES, field_name, f"sweep keys must start with one of {', '.join(AXES)}")
    _require(not dataclasses.is_dataclass(_unwrap_optional(target)), field_name,
             "must name a single field such as 'model.window', not a whole section")


# ---------------------------------------------------------------------------------------------- schema


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field types resolved from the string annotations that ``from __future__ import annotations`` leaves."""
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _all_keys(cls: type = SuiteConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, for suggestions."""
    keys = []
    for name, tp in _hints(cls).items():
        key = f"{prefix}{name}"
        keys.append(key)
        inner = _unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            keys += _all_keys(inner, f"{key}.")
    return keys


def resolve_key(key: str) -> tuple[list[str], Any]:
    """Split dotted ``key`` into nesting segments and return the type it addresses.

    Below a dict-typed field (``sweep.grid``, ``quality.scorer_options``) the rest of the key is one
    entry name, because sweep keys are themselves dotted. Raises LookupError with a suggestion.
    """
    parts = key.split(".")
    segments: list[str] = []
    tp: Any = SuiteConfig
    while len(segments) < len(parts):
        inner = _unwrap_optional(tp)
        if typing.get_origin(inner) is dict:
            segments.append(".".join(parts[len(segments):]))
            return segments, typing.get_args(inner)[1]
        part = parts[len(segments)]
        if not (dataclasses.is_dataclass(inner) and part in _hints(inner)):
            raise LookupError(f"unknown config key {key!r}.{suggest(key, _all_keys())}")
        segments.append(part)
        tp = _hints(inner)[part]
    return segments, tp


def get_key(config: Any, key: str) -> Any:
    """Value of dotted ``key`` in a config object (e.g. ``get_key(suite, "model.window")``); a missing
    entry of a dict field (``quality.scorer_options.x``) reads as None."""
    value = config
    for segment in resolve_key(key)[0]:
        value = value.get(segment) if isinstance(value, dict) else getattr(value, segment)
    return value


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a raw config dict, creating missing sections."""
    segments = resolve_key(key)[0]
    node = data
    for segment in segments[:-1]:
        if node.get(segment) is None:
            node[segment] = {}
        if not isinstance(node[segment], dict):
            raise LookupError(f"cannot set {key!r}: {segment!r} is {_show(node[segment])}, not a mapping")
        node = node[segment]
    node[segments[-1]] = value


# --------------------------------------------------------------------------------------------- building


class _Context:
    """Where each key path came from (file line or ``--set``), so errors can point at it."""

    def __init__(self, source: str, lines: Mapping[str, int] | None = None, note: str = "") -> None:
        self.source = source
        self.lines = dict(lines or {})
        self.origins: dict[str, str] = {}
        self.note = note

    def replaced(self, key: str, origin: str) -> None:
        """Record that ``key`` now comes from ``origin``; file lines below it no longer apply."""
        self.lines = {p: n for p, n in self.lines.items() if not _is_under(p, key)}
        self.origins[key] = origin

    def for_cell(self, items: Mapping[str, str], note: str = "") -> "_Context":
        """The context of one sweep cell: each swept key comes from its sweep item (``items``: key -> item)."""
        cell = _Context(self.source, self.lines, note=note)
        cell.origins = dict(self.origins)
        for key, item in items.items():
            cell.replaced(key, f"{self.where(item)} ({item})")
        return cell

    def where(self, path: str) -> str:
        while path:
            if path in self.origins:
                return self.origins[path]
            if path in self.lines:
                return f"{self.source}:{self.lines[path]}"
            path = _parent(path)
        return self.source

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {path or 'top level'}: {message}{self.note}")

    def noting(self, note: str) -> "_Context":
        """The same locations, with ``note`` added to every error (e.g. whose options are checked)."""
        other = _Context(self.source, self.lines, note + self.note)
        other.origins = self.origins
        return other


def locate(config: SuiteConfig, key: str) -> str:
    """Where ``key`` of a loaded suite, or of one of its cells, was set: ``FILE:LINE``, a flag such as
    ``--device cuda``, or ``FILE:LINE (sweep.grid.model.device[1])``; for errors found after loading."""
    ctx = config._origins
    return ctx.where(key) if isinstance(ctx, _Context) else f"suite {config.name!r}"


def _is_under(path: str, key: str) -> bool:
    return path == key or path.startswith((f"{key}.", f"{key}["))


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
               type(None): "null"}


def _describe(tp: Any) -> str:
    """Expected type in YAML words, e.g. 'list of string or null'."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return "any value" if tp is Any else _TYPE_NAMES[tp]


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({_TYPE_NAMES.get(type(value), type(value).__name__)})"


def _coerce(value: Any, tp: Any, path: str, ctx: _Context, expected: Any = None) -> Any:
    """Check ``value`` against ``tp`` (``expected``: the type to name in errors, e.g. the Optional);
    ints are widened to floats so equal configs hash equal."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, ctx)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        return _coerce(value, _unwrap_optional(tp), path, ctx, expected=tp)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):  # tuple: only tuple[X, ...]
        item = typing.get_args(tp)[0]
        return origin(_coerce(v, item, f"{path}[{i}]", ctx) for i, v in enumerate(value))
    if origin is dict and isinstance(value, dict):
        item = typing.get_args(tp)[1]
        for key in value:
            if not isinstance(key, str):
                raise ctx.error(path, f"keys must be strings, got {_show(key)}")
        return {k: _coerce(v, item, _join(path, k), ctx) for k, v in value.items()}
    if tp is Any or (tp in (str, bool, int) and type(value) is tp):
        return value
    if tp is float and type(value) in (int, float):
        return float(value)
    raise ctx.error(path, f"expected {_describe(expected or tp)}, got {_show(value)}")


def _build(cls: type, data: Any, path: str, ctx: _Context) -> Any:
    """Dict -> dataclass ``cls``, reporting unknown keys, missing keys, wrong types and bad values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ctx.error(path, f"expected a mapping of {cls.__name__} keys, got {_show(data)}")
    hints = _hints(cls)
    for key in data:
        if key not in hints:
            hint = suggest(str(key), list(hints)) or _option_hint(cls, data, str(key), path) or \
                f" Valid keys: {', '.join(hints)}."
            raise ctx.error(_join(path, key), f"unknown key.{hint}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            note = f" ({f.metadata['help']})" if "help" in f.metadata else ""
            raise ctx.error(_join(path, f.name), f"missing required key{note}")
    kwargs = {key: _coerce(value, hints[key], _join(path, key), ctx) for key, value in data.items()}
    for f in dataclasses.fields(cls):
        if "options_of" in f.metadata:  # an adapter's own options: built into the class that adapter declares
            owner = kwargs.get(f.metadata["options_of"], _default(cls, f.metadata["options_of"]))
            try:
                options_class = _options_class(owner)
            except FieldError as e:
                raise ctx.error(_join(path, e.field), e.message) from None
            kwargs[f.name] = _build(options_class, kwargs.get(f.name), _join(path, f.name),
                                    ctx.noting(f" (options of adapter {owner!r})"))
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ctx.error(_join(path, e.field), e.message) from None


def build_dataclass(cls: type, data: Any, source: str, path: str = "") -> Any:
    """``data`` (e.g. parsed JSON) as dataclass ``cls`` with the suite loader's checks: unknown keys (with
    the closest name), missing keys, wrong types. The ConfigError names ``source`` and the key path
    (below ``path``), e.g. ``ckpt/config.json: config.dim: expected integer, got 'x' (string)``."""
    return _build(cls, data, path, _Context(source))


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _option_hint(cls: type, data: dict[str, Any], key: str, path: str) -> str:
    """' It is an option of adapter X: write it under model.options.' for a key one level too high."""
    for f in dataclasses.fields(cls):
        owner_field = f.metadata.get("options_of")
        if owner_field is None:
            continue
        owner = data.get(owner_field, _default(cls, owner_field))
        try:
            names = [o.name for o in dataclasses.fields(_options_class(owner))]
        except FieldError:
            return ""
        if key in names:
            return f" {key!r} is an option of adapter {owner!r}: write it under {_join(path, f.name)}.{key}."
    return ""


# ---------------------------------------------------------------------------------------------- loading


class Override(NamedTuple):
    """A key set by a command-line flag of its own; errors name the flag (``origin``, e.g. ``--device cuda``)."""

    key: str
    value: Any
    origin: str


def parse_override(expr: str) -> tuple[str, Any]:
    """``"workload.resolution=512"`` -> ``("workload.resolution", 512)``; the value is read as YAML."""
    key, sep, raw = expr.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {expr}: expected KEY.PATH=VALUE, e.g. workload.resolution=512")
    try:
        return key, _parse_yaml(raw, f"--set {expr}")[0]
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {expr}: value is not valid YAML: {e}") from None


def _apply_overrides(data: dict[str, Any], overrides: Iterable[str | Override], ctx: _Context) -> None:
    for item in overrides:
        if isinstance(item, Override):
            key, value, origin = item
        else:
            (key, value), origin = parse_override(item), f"--set {item}"
        try:
            _set_key(data, key, value)
        except LookupError as e:
            raise ConfigError(f"{origin}: {e.args[0]}") from None
        ctx.replaced(key, origin)


def _check_size(sweep: SweepConfig, ctx: _Context, max_cells: int | None) -> None:
    """Refuse a sweep above ``max_cells`` before any of its cells exists."""
    size = sweep.size()
    if max_cells is not None and size > max_cells:
        lengths = " x ".join(f"{len(v)} {k}" for table in (sweep.grid, sweep.zip) for k, v in table.items())
        raise ctx.error("sweep", f"{size:,} cells ({lengths}) is more than the limit of {max_cells:,}; "
                                 f"shrink the sweep, or allow it with --max-cells {size}")


def _check_cells(data: dict[str, Any], sweep: SweepConfig, ctx: _Context) -> None:
    """Build every sweep cell now, so a bad value fails at load time rather than hours into a run."""
    base = {k: v for k, v in data.items() if k != "sweep"}
    for values, items in zip(sweep.combinations(), sweep.items()):
        cell_data = copy.deepcopy(base)
        for key, value in values.items():
            _set_key(cell_data, key, value)
        _build(SuiteConfig, cell_data, "", ctx.for_cell(items, note=f" (in sweep cell {values})"))


def _base_adapter_from_sweep(data: dict[str, Any], ctx: _Context) -> None:
    """A sweep over ``model.adapter`` replaces the base adapter in every cell, so the base's
    ``model.options`` are checked against the first swept adapter; ``_check_cells`` then checks every
    cell's options against that cell's own adapter."""
    sweep = data.get("sweep")
    for kind in ("grid", "zip"):
        table = sweep.get(kind) if isinstance(sweep, dict) else None
        adapters = table.get("model.adapter") if isinstance(table, dict) else None
        if isinstance(adapters, list) and adapters and isinstance(data.get("model") or {}, dict):
            data["model"] = {**(data.get("model") or {}), "adapter": adapters[0]}
            item = f"sweep.{kind}.model.adapter[0]"
            ctx.replaced("model.adapter", f"{ctx.where(item)} ({item})")
            return


def _suite_from(data: Any, ctx: _Context, overrides: Iterable[str | Override], max_cells: int | None) -> SuiteConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{ctx.source}: expected a mapping with at least 'name', got {_show(data)}")
    _apply_overrides(data, overrides, ctx)
    _base_adapter_from_sweep(data, ctx)
    suite = _build(SuiteConfig, data, "", ctx)
    if suite.sweep is not None:
        _check_size(suite.sweep, ctx, max_cells)
        _check_cells(data, suite.sweep, ctx)
    suite._origins = ctx
    return suite


def _line_map(root: yaml.Node, source: str) -> dict[str, int]:
    """The 1-based line of every key path and list item; rejects duplicate keys, recursive aliases, nesting
    deeper than MAX_YAML_DEPTH and aliases that expand to more than MAX_YAML_VALUES values.

    Runs on the composed node tree before construction, because constructing flattens ``<<`` merges
    into the node and duplicate keys would otherwise be dropped silently by PyYAML. Each node is walked
    once however often it is aliased (its size is remembered), so a "billion laughs" file costs as
    little as its text; paths under a repeated alias take the line of the key that holds the alias.
    """
    lines: dict[str, int] = {}
    sizes: dict[int, int] = {}  # id(node) -> values it expands to, for nodes already walked
    active: set[int] = set()  # nodes on the current path: meeting one again means it contains itself

    def fail(node: yaml.Node, path: str, message: str) -> ConfigError:
        line = lines.get(path, node.start_mark.line + 1)
        shown = path if len(path) <= 80 else f"{path[:77]}..."
        return ConfigError(f"{source}:{line}: {shown or 'top level'}: {message}")

    def walk(node: yaml.Node, path: str, depth: int, record: bool) -> int:
        if id(node) in active:
            raise fail(node, path, "recursive alias: the value contains itself (an alias inside its own anchor)")
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_YAML_DEPTH:
            raise fail(node, path, f"nested more than {MAX_YAML_DEPTH} levels deep")
        active.add(id(node))
        size = 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # merged keys: counted, lines stay the parent's
                    size += walk(value_node, path, depth + 1, record=False)
                    continue
                child = _join(path, key_node.value)
                if record:
                    line = key_node.start_mark.line + 1
                    if child in seen:
                        raise ConfigError(f"{source}:{line}: {child}: duplicate key (first set on line {lines[child]})")
                    seen.add(child)
                    lines[child] = line
                size += walk(value_node, child, depth + 1, record)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                if record:
                    lines[f"{path}[{i}]"] = item.start_mark.line + 1
                size += walk(item, f"{path}[{i}]", depth + 1, record)
        active.discard(id(node))
        if size > MAX_YAML_VALUES:
            raise fail(node, path, f"expands to more than {MAX_YAML_VALUES:,} values through aliases; "
                                   "write the values out, or use fewer nested aliases")
        sizes[id(node)] = size
        return size

    walk(root, "", 0, record=True)
    return lines


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Safe-load ``text`` and map each dotted key path to its line, from a single parse; raises
    yaml.YAMLError for bad syntax and ConfigError for what the line map refuses."""
    loader = yaml.SafeLoader(text)
    loader.name = source  # marks in YAML errors then name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines = _line_map(node, source)
        return loader.construct_document(node), lines
    except RecursionError:  # PyYAML's composer recurses per nesting level, before the line map can refuse
        raise ConfigError(f"{source}: nested too deeply (the limit is {MAX_YAML_DEPTH} levels)") from None
    finally:
        loader.dispose()


def load_suite(path: str | Path, overrides: Iterable[str | Override] = (), *,
               max_cells: int | None = MAX_CELLS) -> SuiteConfig:
    """Load and validate a suite YAML file, then apply ``KEY.PATH=VALUE`` overrides (from ``--set``, or
    ``Override``s from flags); a sweep of more than ``max_cells`` cells (None: no limit) is refused."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read suite file: {e}") from None
    try:
        data, lines = _parse_yaml(text, source)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    return _suite_from(data, _Context(source, lines), overrides, max_cells)


def suite_from_dict(d: Mapping[str, Any], source: str = "<dict>", overrides: Iterable[str | Override] = (), *,
                    max_cells: int | None = None) -> SuiteConfig:
    """Validate a plain dict (e.g. ``SuiteConfig.to_dict()`` output); ``d`` is not modified."""
    return _suite_from(copy.deepcopy(dict(d)), _Context(source), overrides, max_cells)


def with_overrides(suite: SuiteConfig, overrides: Mapping[str, Any], source: str = "<sweep cell>",
                   items: Mapping[str, str] | None = None) -> SuiteConfig:
    """A validated copy of ``suite`` without its sweep, with dotted-key ``overrides`` applied; ``items``
    (key -> sweep item, ``SweepConfig.items``) lets ``locate`` point a cell's swept keys at their YAML item."""
    data = suite.to_dict()
    data["sweep"] = None
    items = (items or {}) if isinstance(suite._origins, _Context) else {}  # a suite built in Python has no lines
    ctx = suite._origins.for_cell(items) if isinstance(suite._origins, _Context) else _Context(source)
    for key, value in overrides.items():
        try:
            _set_key(data, key, value)
        except LookupError as e:
            raise ConfigError(f"{source}: {e.args[0]}") from None
        if key not in items:
            ctx.replaced(key, f"{source} ({key}={value!r})")
    config = _build(SuiteConfig, data, "", ctx)
    config._origins = ctx
    return config


def config_hash(cell_dict: Any) -> str:
    """Stable short id of a config: sha256 of canonical JSON (sorted keys, no spaces), 12 hex chars."""
    canonical = json.dumps(cell_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
