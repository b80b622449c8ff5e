"""Results store: rows survive kills, bad rows are loud, resume skips only unchanged finished cells."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tsbench.runner.store import RunStore, StoreError, atomic_write_text, flatten_row

ROOT = Path(__file__).resolve().parents[1]


def row(cell_id: str, status: str = "ok", cell_hash: str = "h1", **extra: object) -> dict[str, object]:
    return {"cell_id": cell_id, "cell_hash": cell_hash, "status": status, "message": "", **extra}


def test_append_load_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    rows = [row("a", **{"latency.p50": 1.5, "raw": [1, 2]}), row("b", status="oom", message="CUDA OOM\nat x")]
    for r in rows:
        store.append(r)
    assert store.load_rows() == rows
    assert store.results_path.read_text().count("\n") == 2


@pytest.mark.parametrize("bad, match", [
    ({"cell_id": "a", "status": "ok"}, "lacks cell_hash, message"),
    (row("a", status="done"), "status must be one of ok, error, oom"),
    (row("a", latency={"p50": 1}), "'latency' is not flat"),
])
def test_append_rejects_bad_rows(tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        RunStore(tmp_path).append(bad)


def test_truncated_last_line_is_ignored_then_repaired(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a"))
    with open(store.results_path, "ab") as f:
        f.write(b'{"cell_id": "b", "cell_ha')
    with pytest.warns(UserWarning, match="partial last row"):
        assert [r["cell_id"] for r in store.load_rows()] == ["a"]
    with pytest.warns(UserWarning, match="dropped a partial last row"):
        store.append(row("c"))
    assert [r["cell_id"] for r in store.load_rows()] == ["a", "c"]


def test_malformed_complete_line_raises_with_line_number(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a"))
    with open(store.results_path, "ab") as f:
        f.write(b'{"cell_id": "b", oops}\n[1]\n')
    store.append(row("c"))
    with pytest.raises(StoreError, match=r"results\.jsonl:2: malformed result row"):
        store.load_rows()
    lines = store.results_path.read_bytes().split(b"\n")
    store.results_path.write_bytes(b"\n".join(lines[:1] + lines[2:]))
    with pytest.raises(StoreError, match=r"results\.jsonl:2: result row must be a JSON object"):
        store.load_rows()


def test_last_row_wins_and_resume_set(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for r in [row("a", status="error"), row("a", value=1), row("b"), row("b", status="oom"),
              row("c", cell_hash="old"), row("d", value=1), row("d", value=2)]:
        store.append(r)
    rows = store.load_rows()
    assert [r["cell_id"] for r in rows] == ["a", "b", "c", "d"] and rows[3]["value"] == 2
    done = store.done_cells()
    assert done == {"a": "h1", "c": "old", "d": "h1"}  # b's latest row is an OOM: retried
    assert done.get("c") != "h1"  # a cell whose config changed is rerun by the caller


def test_export_writes_csv_and_parquet(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a", **{"latency.p50": 1.5}))
    store.append(row("b", status="error", message="boom"))
    store.append(row("a", **{"latency.p50": 2.5}))
    csv_path, parquet_path = store.export()
    for frame in (pd.read_csv(csv_path), pd.read_parquet(parquet_path)):
        assert list(frame["cell_id"]) == ["a", "b"]
        assert frame["latency.p50"].iloc[0] == 2.5 and pd.isna(frame["latency.p50"].iloc[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.jsonl", "results.parquet"]


def test_manifest_and_atomic_write(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.write_manifest({"name": "demo"}, [{"id": "default", "hash": "h1"}], {"torch": "2.13"})
    manifest = json.loads(path.read_text())
    assert manifest["suite"] == {"name": "demo"} and manifest["cells"][0]["id"] == "default"
    assert manifest["environment"] == {"torch": "2.13"} and manifest["written_at"]
    target = tmp_path / "sub" / "x.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["x.txt"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_flatten_row() -> None:
    assert flatten_row({"a": 1, "latency": {"p50": 2, "raw": [1]}}) == {"a": 1, "latency.p50": 2, "latency.raw": [1]}


CHILD = """
import sys
from tsbench.runner.store import RunStore
store = RunStore(sys.argv[1])
i = 0
while True:
    store.append({"cell_id": f"c{i}", "cell_hash": "h", "status": "ok", "message": "", "i": i, "pad": "x" * 20000})
    i += 1
"""


def test_sigkill_mid_append_leaves_no_half_row(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    store = RunStore(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 10
        while not store.results_path.exists() or store.results_path.stat().st_size == 0:
            assert child.poll() is None and time.monotonic() < deadline, "child wrote nothing"
            time.sleep(0.005)
        time.sleep(random.Random(seed).uniform(0, 0.1))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    rows = store.load_rows()
    assert rows, f"seed {seed}"
    assert [r["i"] for r in rows] == list(range(len(rows))), f"seed {seed}"
    assert all(len(r["pad"]) == 20000 for r in rows), f"seed {seed}"
    store.append(row("after"))  # appending after the kill must still give a loadable file
    assert store.load_rows()[-1]["cell_id"] == "after"
