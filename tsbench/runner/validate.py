"""Every check that needs more than the config schema, run over all cells before any cell runs.

The loader (``tsbench.config.suite``) checks types and plain values, and the names it needs to build a
cell's config (adapter, benchmark, scorers: their registries); what needs an adapter's own knowledge
(its presets, the windows and resolutions it can run), the machine (a device) or the files (weights) is
checked here, once per expanded cell, so a sweep fails in a second with ``FILE:LINE: key: message``
instead of hours in, cell after cell. This module is the one home of such load-time checks: a new one is
a function ``check(config)`` that raises ``FieldError(key, message)`` for the offending dotted key, added
to ``CELL_CHECKS``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch

from tsbench.config.registry import RegistryError, unknown_name
from tsbench.config.suite import ConfigError, FieldError, SuiteConfig, locate, tensor_file_options
from tsbench.engine.cfg import CFG_SCHEDULES
from tsbench.models import ADAPTERS
from tsbench.models.checkpoint import CheckpointError, check_tensor_file
from tsbench.runner.sweep import Cell

CellCheck = Callable[[SuiteConfig], None]
RUN_DEVICES = ("cpu", "cuda", "mps", "xpu")  # device types a benchmark can run on
MAX_SHOWN = 20  # problems listed in one error; the rest are counted


def device_problem(spec: str) -> str | None:
    """Why ``spec`` cannot run a benchmark on this machine (malformed, unknown or absent), or None."""
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        return f"{spec!r} is not a torch device; use 'cpu' or 'cuda' (or 'cuda:N')"
    if device.type not in RUN_DEVICES:
        return f"{spec!r} cannot run a benchmark; use one of {', '.join(RUN_DEVICES)}"
    if device.type == "cpu":
        return None
    backend = getattr(torch, device.type) if device.type != "mps" else torch.backends.mps
    if not backend.is_available():
        return f"{spec!r} is not available on this machine (no {device.type} device); use 'cpu'"
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        return f"{spec!r}: this machine has {count} {device.type} device(s), numbered from 0"
    return None


def check_device(config: SuiteConfig) -> None:
    problem = device_problem(config.model.device)
    if problem:
        raise FieldError("model.device", problem)


def checkpoint_paths(config: SuiteConfig) -> dict[str, str]:
    """Dotted key -> path of every file or directory of weights the cell's model reads: ``model.checkpoint``
    and the adapter's options marked as tensor files (``option(..., tensor_file=True)``)."""
    paths = {"model.checkpoint": config.model.checkpoint} if config.model.checkpoint else {}
    paths.update({f"model.options.{name}": path for name, path in tensor_file_options(config.model.options).items()})
    return paths


def checkpoint_key(config: SuiteConfig, err: CheckpointError) -> str:
    """The key whose path a CheckpointError is about (``model.checkpoint`` when none matches)."""
    keys = [key for key, path in checkpoint_paths(config).items() if err.path is not None and err.path == Path(path)]
    return keys[0] if keys else "model.checkpoint"


def check_checkpoint_files(config: SuiteConfig) -> None:
    """Each tensor file must exist and have a readable header; ``model.checkpoint`` may also be a directory,
    whose layout is the adapter's to check."""
    for key, path in checkpoint_paths(config).items():
        if key == "model.checkpoint" and not Path(path).exists():
            raise FieldError(key, f"{path}: not found; give the file or directory of the model's weights")
        if key == "model.checkpoint" and Path(path).is_dir():
            continue
        try:
            check_tensor_file(path)
        except CheckpointError as err:
            raise FieldError(key, str(err)) from None


def check_cfg_schedule(config: SuiteConfig) -> None:
    try:
        CFG_SCHEDULES.get(config.workload.cfg_schedule)
    except RegistryError as err:
        raise FieldError("workload.cfg_schedule", str(err)) from None


def check_preset(config: SuiteConfig) -> None:
    """The preset is one the adapter lists (random-weight and trained ones; null is the adapter's default)."""
    m = config.model
    if m.preset is None:
        return
    names = ADAPTERS.get(m.adapter).presets()
    if m.preset not in names:
        raise FieldError("model.preset", unknown_name(f"{m.adapter} preset", m.preset, names))


def check_window_and_resolution(config: SuiteConfig) -> None:
    """The window is one the adapter can run this preset or checkpoint at, and the resolution a multiple of
    the VQ downsampling factor times the window, from the adapter's ``geometry`` (no weights read)."""
    m, resolution = config.model, config.workload.resolution
    adapter = ADAPTERS.get(m.adapter)
    unknown_preset = m.preset is not None and m.preset not in adapter.presets()
    if unknown_preset or (m.checkpoint and not Path(m.checkpoint).exists()):
        return  # check_preset or check_checkpoint_files names it
    try:
        geometry = adapter.geometry(m.preset, m.checkpoint, m.window, m.options)
    except CheckpointError as err:
        raise FieldError(checkpoint_key(config, err), str(err)) from None
    model = f"adapter {m.adapter!r}" + (f", preset {m.preset!r}" if m.preset else "") + \
        (f", checkpoint {m.checkpoint}" if m.checkpoint else "")
    if geometry.window not in geometry.windows:
        choices = ", ".join(map(str, geometry.windows))
        raise FieldError("model.window", f"window {geometry.window} is not supported by {model}; use "
                                         f"{'one of ' if len(geometry.windows) > 1 else 'window '}{choices}, or "
                                         "leave model.window unset to run the model's own")
    factor = geometry.downsample * geometry.window
    if resolution % factor:
        below, above = resolution // factor * factor, (resolution // factor + 1) * factor
        nearest = f"{below} or {above}" if below else str(above)
        raise FieldError("workload.resolution", f"{resolution} is not a multiple of {factor} (VQ downsampling "
                                                f"{geometry.downsample} x window {geometry.window} of {model}); "
                                                f"use {nearest}")


def check_compile(config: SuiteConfig) -> None:
    """``model.compile`` asks for an adapter whose model has a static-shape ``decode`` to compile."""
    m = config.model
    if m.compile and not ADAPTERS.get(m.adapter).compiles:
        raise FieldError("model.compile", f"adapter {m.adapter!r} has no static-shape decode step (it decodes "
                                          "through its own cache), so it cannot be compiled; set model.compile: "
                                          "false for it")


# The load-time checks, in the order their errors are listed.
CELL_CHECKS: tuple[CellCheck, ...] = (check_device, check_checkpoint_files, check_cfg_schedule, check_preset,
                                      check_window_and_resolution, check_compile)


def validate_cells(cells: Iterable[Cell], checks: Iterable[CellCheck] = CELL_CHECKS) -> None:
    """Run ``checks`` on every cell; raise one ConfigError listing each distinct problem with the place
    (file line, flag or sweep item) where the offending key was set."""
    checks = tuple(checks)
    problems: dict[str, None] = {}  # ordered and distinct: a base-config mistake shows once, not per cell
    for cell in cells:
        for check in checks:
            try:
                check(cell.config)
            except FieldError as err:
                problems.setdefault(f"{locate(cell.config, err.field)}: {err.field}: {err.message}")
    if problems:
        shown = list(problems)[:MAX_SHOWN]
        more = len(problems) - len(shown)
        raise ConfigError("\n".join(shown + ([f"... and {more} more"] if more else [])))
