"""Results of a run directory, safe against a kill at any moment.

``results.jsonl`` is the source of truth: each finished cell appends one flat JSON row at once (so a
crash later loses nothing), rows are only ever appended, and the last row of a cell wins. Tables and
the manifest are derived files replaced atomically, so a reader never sees a half-written one.
"""
from __future__ import annotations

import datetime
import fcntl
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from tsbench.io import atomic_write_bytes, atomic_write_text

STATUSES = ("ok", "error", "oom")
REQUIRED_KEYS = ("cell_id", "cell_hash", "status", "message")
_SCALARS = (type(None), bool, int, float, str)


class StoreError(ValueError):
    """A result row that cannot be written or a results file that cannot be read back."""


def flatten_row(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"latency": {"p50": 1}}`` -> ``{"latency.p50": 1}``: rows must be flat to become table columns."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_row(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _row_problem(row: Any) -> str | None:
    """What makes ``row`` no result row (not an object, a required key missing, an unknown status), or None."""
    if not isinstance(row, Mapping):
        return f"must be a JSON object with {', '.join(REQUIRED_KEYS)}"
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    if row["status"] not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}, got {row['status']!r}"
    return None


def _encode_row(row: Mapping[str, Any]) -> bytes:
    """One JSON line; checked here so that a bad row fails in the cell that made it, not at export."""
    problem = _row_problem(row)
    if problem:
        raise StoreError(f"result row {problem}: {sorted(row)}")
    for key, value in row.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(key, str) or not all(isinstance(v, _SCALARS) for v in items):
            raise StoreError(f"result row value {key!r} is not flat (scalar or list of scalars); "
                             "use flatten_row() on nested reports")
    return (json.dumps(dict(row), ensure_ascii=False) + "\n").encode("utf-8")


def _drop_partial_tail(fd: int, path: Path) -> None:
    """Cut a last line without newline (a write interrupted by a kill) so the next row starts a line.

    Appending after it would glue two rows into one malformed line in the middle of the file.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep, chunk = 0, 1 << 16
    for end in range(size, 0, -chunk):
        start = max(0, end - chunk)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
    os.ftruncate(fd, keep)
    warnings.warn(f"{path}: dropped a partial last row ({size - keep} bytes) left by an interrupted write",
                  stacklevel=3)


RESULTS_FILE, MANIFEST_FILE = "results.jsonl", "manifest.json"


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest, or {} when it is missing or unreadable (its rows alone still describe the run)."""
    try:
        return json.loads((Path(run_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_labels(run_dirs: Iterable[str | Path]) -> list[str]:
    """Short unique names of run directories: the directory name, with its parent when two runs share a name."""
    paths = [Path(d).resolve() for d in run_dirs]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def write_tables(frame: Any, csv_path: Path, parquet_path: Path) -> tuple[Path, Path]:
    """A pandas frame as CSV and Parquet, each file replaced atomically."""
    atomic_write_text(csv_path, frame.to_csv(index=False))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(parquet_path, buffer.getvalue())
    return csv_path, parquet_path


class RunStore:
    """Rows, tables and manifest of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = self.run_dir / RESULTS_FILE
        self.csv_path = self.run_dir / "results.csv"
        self.parquet_path = self.run_dir / "results.parquet"
        self.manifest_path = self.run_dir / MANIFEST_FILE

    @classmethod
    def existing(cls, run_dir: str | Path) -> "RunStore":
        """The store of a run directory that must already exist (for commands that read a run): a missing
        directory is an error, never created."""
        if not (Path(run_dir) / RESULTS_FILE).is_file():
            raise StoreError(f"{run_dir} is not a run directory (no {RESULTS_FILE}); give a directory that "
                             "`tsbench run` wrote")
        return cls(run_dir)

    def append(self, row: Mapping[str, Any]) -> None:
        """Durably append one flat row: a single ``write`` of the whole line with O_APPEND, then fsync.

        The lock serialises writers (e.g. one per GPU) with the partial-line repair.
        """
        line = _encode_row(row)
        fd = os.open(self.results_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_partial_tail(fd, self.results_path)
            written = os.write(fd, line)
            if written != len(line):
                raise StoreError(f"{self.results_path}: short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock

    def _read_rows(self) -> Iterator[dict[str, Any]]:
        try:
            data = self.results_path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")  # bytes: str.splitlines would also split on U+2028 inside values
        if lines.pop():
            warnings.warn(f"{self.results_path}: ignoring a partial last row left by an interrupted write",
                          stacklevel=3)
        for lineno, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as e:
                raise StoreError(f"{self.results_path}:{lineno}: malformed result row ({e}); "
                                 "repair or delete that line") from None
            problem = _row_problem(row)
            if problem:  # checked like a row being written, so readers may index any required key
                raise StoreError(f"{self.results_path}:{lineno}: result row {problem}; repair or delete that line")
            yield row

    def load_rows(self) -> list[dict[str, Any]]:
        """One row per cell, the last one written (a rerun supersedes earlier attempts)."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self._read_rows():
            latest[row["cell_id"]] = row
        return list(latest.values())

    def done_cells(self) -> dict[str, str]:
        """cell_id -> cell_hash of cells whose latest row is ok; a cell is skippable on resume only if its
        current hash matches (error and oom rows are retried)."""
        return {row["cell_id"]: row["cell_hash"] for row in self.load_rows() if row["status"] == "ok"}

    def export(self) -> tuple[Path, Path]:
        """Write ``results.csv`` and ``results.parquet`` from the deduplicated rows."""
        import pandas as pd  # imported here so that cell workers, which only append, start fast

        return write_tables(pd.DataFrame(self.load_rows()), self.csv_path, self.parquet_path)

    def write_manifest(self, suite_dict: Mapping[str, Any], resolved_cells: Iterable[Any],
                       environment: Mapping[str, Any]) -> Path:
        """Record what the run was asked to do and where: suite, every resolved cell, environment.

        Cells may be ``Cell`` objects (anything with ``to_dict()``) or plain dicts.
        """
        manifest = {
            "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "suite": dict(suite_dict),
            "cells": [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in resolved_cells],
            "environment": dict(environment),
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        return self.manifest_path
