"""Human preference evaluation without a browser: cell selectors, image pairing, the SQLite store (re-votes,
resume), balanced scheduling, the web app's guards (traversal, token, size and rate limits), a killed
server, the summary statistics on hand-computable cases and the report section."""
from __future__ import annotations

import io
import itertools
import json
import math
import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from human_runs import PROMPTS, cell_id, fake_run, start_server
from tsbench.cli import main
from tsbench.human.images import HumanEvalError, build_study, load_cells, resolve_cell
from tsbench.human.schedule import Schedule
from tsbench.human.store import Pair, VoteStore
from tsbench.human.summary import agreement, bradley_terry, pair_rates, strengths, summarize

ALL_LEFT = {"alignment": "left", "flaws": "left", "appearance": "left"}


def client_for(run: Path, db: Path, windows=(1, 2), **kwargs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tsbench.human.app import create_app

    study = build_study([run], [cell_id(w) for w in windows])
    return TestClient(create_app(study, VoteStore(db), **kwargs))


def window_of(png: bytes) -> int:
    """Which system made a served image (see human_runs.colour)."""
    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))[0] // 40


# ---- which cells and images --------------------------------------------------------------------------
def test_cells_by_id_and_by_selector(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", windows=(1, 2, 4))
    cells = load_cells([run])
    assert resolve_cell("window=2,cfg_schedule=constant", cells).cell_id == cell_id(2)  # the id itself
    assert resolve_cell("window=4", cells).cell_id == cell_id(4)  # a short key: config.model.window
    assert resolve_cell("model.window=1,cfg_scale=3", cells).cell_id == cell_id(1)  # 3 == 3.0
    with pytest.raises(HumanEvalError, match="matches 3 cells: window=1.*window=2.*window=4"):
        resolve_cell("cfg_schedule=constant", cells)
    with pytest.raises(HumanEvalError, match="ambiguous.*config.model.seed, config.workload.seed"):
        resolve_cell("seed=0", cells)
    with pytest.raises(HumanEvalError, match="Did you mean 'window'"):
        resolve_cell("windw=1", cells)
    with pytest.raises(HumanEvalError, match="no successful cell matches 'window=8'; cells: window=1"):
        resolve_cell("window=8", cells)


def test_cells_of_several_runs_need_the_run_when_ambiguous(tmp_path: Path) -> None:
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b")
    cells = load_cells([a, b])
    with pytest.raises(HumanEvalError, match="in several runs: a:window=1.*b:window=1"):
        resolve_cell(cell_id(1), cells)
    assert resolve_cell(f"b:{cell_id(1)}", cells).run_dir == b
    assert resolve_cell("a:window=2", cells).run_dir == a
    study = build_study([a, b], [f"a:{cell_id(1)}", f"b:{cell_id(2)}"])
    assert study.names == ["a:window=1,cfg_schedule=constant", "b:window=2,cfg_schedule=constant"]


def test_pairs_use_benchmark_images_with_matching_prompt_and_seed(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", missing={2: {1}})
    study = build_study([run], ["window=1", "window=2"])
    assert study.kind == "benchmark"
    assert study.keys == [("p0", 0), ("p2", 2)]  # p1 has no window=2 image
    assert "1 image(s) without a partner" in study.notes[0]
    first = study.images[0][("p2", 2)]
    assert first.prompt == PROMPTS[2] and first.path.is_file()
    with pytest.raises(HumanEvalError, match="twice"):
        build_study([run], ["window=1", cell_id(1)])


def test_samples_are_rated_when_a_cell_has_no_benchmark_images(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", benchmark=False, samples=3)
    study = build_study([run], ["window=1", "window=2"])
    assert study.kind == "samples"
    assert study.keys == [("a red circle", 0), ("a red circle", 1), ("a red circle", 2)]


def test_an_image_path_outside_the_run_is_refused(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    sidecar = run / "cells" / cell_id(1) / "images" / "images.jsonl"
    lines = sidecar.read_text().splitlines()
    record = json.loads(lines[0]) | {"path": "../../../../secret.png"}
    sidecar.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    with pytest.raises(HumanEvalError, match="outside the run directory"):
        build_study([run], ["window=1", "window=2"])


# ---- scheduling ----------------------------------------------------------------------------------------
def _spread(counts) -> int:
    return max(counts) - min(counts)


def test_schedule_balances_pairs_system_pairs_and_prompts() -> None:
    systems, units = [1, 2, 3], [f"p{i}" for i in range(5)]
    pairs = [Pair(i, unit, 0, unit, a, b) for i, (unit, (a, b)) in
             enumerate(itertools.product(units, itertools.combinations(systems, 2)))]
    schedule = Schedule(pairs)
    coverage: Counter[int] = Counter()
    seen: dict[str, set[int]] = {"ann": set(), "bob": set()}
    for step in range(24):  # two raters taking turns, 12 pairs each, out of 15
        rater = ("ann", "bob")[step % 2]
        pair = schedule.next_pair(seen[rater], coverage)
        assert pair.id not in seen[rater]
        seen[rater].add(pair.id)
        coverage[pair.id] += 1
        counts = [coverage[p.id] for p in pairs]
        by_systems = Counter()
        by_unit = Counter()
        for p in pairs:
            by_systems[(p.system_a, p.system_b)] += coverage[p.id]
            by_unit[p.unit] += coverage[p.id]
        assert _spread(counts) <= 1, step
        assert _spread(list(by_systems.values())) <= 1, step
        assert _spread(list(by_unit.values())) <= 1, step
    assert len(seen["ann"] & seen["bob"]) == 24 - 15  # overlap only once every pair has one rating
    assert schedule.next_pair({p.id for p in pairs}, coverage) is None


def test_left_side_is_drawn_per_presentation() -> None:
    pair = Pair(1, "p", 0, "p", 1, 2)
    pick = Schedule([pair]).picker(random.Random(0))
    sides = Counter(pick(set(), {})[1] for _ in range(200))
    assert set(sides) == {1, 2} and min(sides.values()) > 60


# ---- the store -----------------------------------------------------------------------------------------
def _study_store(tmp_path: Path, windows=(1, 2)) -> tuple[VoteStore, list[Pair]]:
    run = fake_run(tmp_path / "run", windows=windows)
    store = VoteStore(tmp_path / "votes.sqlite")
    _, pairs = store.register(build_study([run], [cell_id(w) for w in windows]))
    return store, pairs


def test_database_is_wal_and_refuses_foreign_files(tmp_path: Path) -> None:
    store, _ = _study_store(tmp_path)
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(HumanEvalError, match="not a tsbench human-eval database"):
        VoteStore(other)


def test_revote_replaces_and_keeps_history(tmp_path: Path) -> None:
    store, pairs = _study_store(tmp_path)
    ann = store.rater("ann")
    shown = store.assign(ann, Schedule(pairs).picker())
    first = store.vote(ann, shown.id, {"alignment": "left", "flaws": "tie", "appearance": "right"})
    assert not first.revote and first.changed == ("alignment", "flaws", "appearance")
    again = store.vote(ann, shown.id, {"alignment": "left", "flaws": "tie", "appearance": "right"})
    assert again.changed == ()  # a retried request adds nothing
    changed = store.vote(ann, shown.id, {"alignment": "right", "flaws": "tie", "appearance": "right"})
    assert changed.revote and changed.changed == ("alignment",)
    con = sqlite3.connect(store.path)
    rows = con.execute("SELECT question, shown, revision, current, replaces, replaced_at FROM votes "
                       "WHERE question = 'alignment' ORDER BY id").fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [("left", 1, 0), ("right", 2, 1)]
    assert rows[0][5] is not None and rows[1][4] is not None  # the old one is marked replaced, the new one says so
    assert con.execute("SELECT COUNT(*) FROM votes WHERE current = 1").fetchone()[0] == 3
    with pytest.raises(sqlite3.IntegrityError):  # never two current votes for one rater, pair and question
        con.execute("UPDATE votes SET current = 1")
    summary = summarize(store.path)
    assert summary["votes"] == 3 and summary["replaced_votes"] == 1
    alignment = summary["questions"][0]["pairs"][0]
    expected = "b" if shown.left_system == shown.pair.system_a else "a"  # 'right' was the final answer
    assert alignment["win"] == (1.0 if expected == "a" else 0.0)


def test_skip_and_foreign_presentations_are_refused(tmp_path: Path) -> None:
    store, pairs = _study_store(tmp_path)
    ann, bob = store.rater("ann"), store.rater("bob")
    shown = store.assign(ann, Schedule(pairs).picker())
    with pytest.raises(LookupError):
        store.vote(bob, shown.id, ALL_LEFT)
    store.skip(ann, shown.id)
    with pytest.raises(HumanEvalError, match="skipped"):
        store.vote(ann, shown.id, ALL_LEFT)
    with pytest.raises(HumanEvalError, match="answers must give each"):
        store.vote(ann, shown.id, {"alignment": "left"})
    assert store.assign(ann, Schedule(pairs).picker()).pair.id != shown.pair.id  # a skipped pair does not come back


def test_reopened_store_continues_without_repeating_a_pair(tmp_path: Path) -> None:
    store, pairs = _study_store(tmp_path)
    ann = store.rater("ann")
    voted = []
    for _ in range(2):
        shown = store.assign(ann, Schedule(pairs).picker())
        store.vote(ann, shown.id, ALL_LEFT)
        voted.append(shown.pair.id)
    pending = store.assign(ann, Schedule(pairs).picker())
    store.close()
    store = VoteStore(tmp_path / "votes.sqlite")  # a restart
    _, pairs = store.register(build_study([tmp_path / "run"], [cell_id(1), cell_id(2)]))
    again = store.assign(store.rater("ann"), Schedule(pairs).picker())
    assert again == pending and again.pair.id not in voted  # the same pending pair, same sides
    store.vote(ann, again.id, ALL_LEFT)
    assert store.assign(ann, Schedule(pairs).picker()) is None  # three prompts, all rated
    assert store.done(ann, [p.id for p in pairs]) == 3


# ---- the web app ---------------------------------------------------------------------------------------
def test_app_votes_map_sides_to_systems(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    client = client_for(run, tmp_path / "votes.sqlite")
    assert client.post("/api/rater", json={"name": "ann"}).json() == {"name": "ann", "done": 0, "total": 3}
    lefts = []
    for _ in range(3):
        shown = client.get("/api/next", params={"rater": "ann"}).json()
        left, right = (window_of(client.get(shown[side]).content) for side in ("left", "right"))
        assert {left, right} == {1, 2}
        lefts.append(left)
        saved = client.post("/api/vote", params={"rater": "ann"},
                            json={"presentation": shown["presentation"], "answers": ALL_LEFT}).json()
        assert saved["saved"] and not saved["revote"]
    assert client.get("/api/next", params={"rater": "ann"}).json() == {"state": "finished", "done": 3, "total": 3}
    # system a is window=1 (first in --compare): it wins exactly where it was on the left
    rates = summarize(tmp_path / "votes.sqlite")["questions"][0]["pairs"][0]
    assert rates["system"] == cell_id(1) and rates["win"] == pytest.approx(lefts.count(1) / 3)
    previous = client.get("/api/previous", params={"rater": "ann"}).json()
    assert previous["state"] == "previous" and previous["answers"] == ALL_LEFT


def test_images_are_served_by_opaque_id_only(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    client = client_for(run, tmp_path / "votes.sqlite")
    shown = client.get("/api/next", params={"rater": "ann"}).json()
    good = client.get(shown["left"])
    assert good.status_code == 200 and good.headers["content-type"] == "image/png"
    assert "last-modified" not in good.headers and "etag" not in good.headers  # nothing that tells systems apart
    assert "window" not in shown["left"] and "p0" not in shown["left"]
    for path in ["/img/../results.jsonl", "/img/..%2F..%2Fresults.jsonl", "/img/%2e%2e%2fmanifest.json",
                 "/img/" + "A" * 22, f"/img/{run / 'prompts.jsonl'}", "/static/../app.py", "/static/app.py"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"cell_id" not in response.content and b"prompt" not in response.content


def test_token_guards_every_request_when_set(tmp_path: Path) -> None:
    from tsbench.human.app import is_loopback, server_token

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert server_token("127.0.0.1") is None and server_token("127.0.0.1", require_token=True)
    assert len(server_token("0.0.0.0")) >= 32
    run = fake_run(tmp_path / "run")
    client = client_for(run, tmp_path / "votes.sqlite", token="s3cret-token")
    vote = {"presentation": 1, "answers": ALL_LEFT}
    assert client.get("/").status_code == 403
    assert client.get("/api/next", params={"rater": "ann", "token": "wrong"}).status_code == 403
    assert client.post("/api/vote", params={"rater": "ann"}, json=vote).status_code == 403
    assert client.get("/static/rate.js").status_code == 200  # the page's own script carries no data
    assert client.get("/", params={"token": "s3cret-token"}).status_code == 200
    shown = client.get("/api/next", params={"rater": "ann"}, headers={"X-Tsbench-Token": "s3cret-token"}).json()
    assert client.get(shown["left"]).status_code == 403
    assert client.get(shown["left"], params={"token": "s3cret-token"}).status_code == 200
    saved = client.post("/api/vote", params={"rater": "ann", "token": "s3cret-token"},
                        json={"presentation": shown["presentation"], "answers": ALL_LEFT})
    assert saved.status_code == 200 and saved.json()["saved"]


def test_request_size_and_rate_limits(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    client = client_for(run, tmp_path / "votes.sqlite", vote_limit="2/minute", request_limit="8/minute")
    huge = client.post("/api/rater", json={"name": "x" * 20_000})
    assert huge.status_code == 413
    chunked = client.post("/api/rater", content=iter([b'{"name": "ann"}']), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 411
    assert client.post("/api/rater", json={"name": "  "}).status_code == 422
    assert client.post("/api/rater", json={"name": "a\u202eb"}).status_code == 422  # bidi override
    shown = client.get("/api/next", params={"rater": "ann"}).json()
    body = {"presentation": shown["presentation"], "answers": ALL_LEFT}
    codes = [client.post("/api/vote", params={"rater": "ann"}, json=body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    codes = [client.get("/api/next", params={"rater": "bob"}).status_code for _ in range(9)]
    assert codes[:8] == [200] * 8 and codes[8] == 429


def test_page_escapes_and_forbids_inline_script(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    client = client_for(run, tmp_path / "votes.sqlite")
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text.replace('<script src="static/rate.js" defer></script>', "")
    script = client.get("/static/rate.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_killed_server_loses_no_acknowledged_vote(tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    run = fake_run(tmp_path / "run", prompts=[f"prompt {i}" for i in range(6)])
    db = tmp_path / "votes.sqlite"
    proc, url = start_server(run, db)
    prompts_seen = []
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(3):
                shown = http.get("/api/next", params={"rater": "ann"}).json()
                prompts_seen.append(shown["prompt"])
                ack = http.post("/api/vote", params={"rater": "ann"},
                                json={"presentation": shown["presentation"], "answers": ALL_LEFT})
                assert ack.status_code == 200 and ack.json()["saved"]
            pending = http.get("/api/next", params={"rater": "ann"}).json()
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown handler runs
        proc.wait()
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM votes WHERE current = 1").fetchone()[0] == 9
    con.close()
    proc, url = start_server(run, db)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            again = http.get("/api/next", params={"rater": "ann"}).json()
            assert again["prompt"] == pending["prompt"] and again["done"] == 3  # continues where ann left off
            while again["state"] == "pair":
                prompts_seen.append(again["prompt"])
                http.post("/api/vote", params={"rater": "ann"},
                          json={"presentation": again["presentation"], "answers": ALL_LEFT}).raise_for_status()
                again = http.get("/api/next", params={"rater": "ann"}).json()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sorted(prompts_seen) == sorted(f"prompt {i}" for i in range(6))  # every pair once, none twice
    assert summarize(db)["votes"] == 18


def test_cli_errors_and_summarize_json(tmp_path: Path, capsys) -> None:
    run = fake_run(tmp_path / "run")
    assert main(["human", "serve", str(run), "--compare", "window=1"]) == 2
    assert "at least two cells" in capsys.readouterr().err
    assert main(["human", "serve", str(run), "--compare", "window=1", "window=9"]) == 2
    assert "no successful cell matches 'window=9'" in capsys.readouterr().err
    assert main(["human", "summarize", str(run / "results.jsonl")]) == 2
    assert "not a tsbench human-eval database" in capsys.readouterr().err
    store, pairs = _study_store(tmp_path)
    ann = store.rater("ann")
    store.vote(ann, store.assign(ann, Schedule(pairs).picker()).id, ALL_LEFT)
    assert main(["human", "summarize", str(store.path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["votes"] == 3 and [q["id"] for q in out["questions"]] == ["alignment", "flaws", "appearance"]
    assert main(["human", "summarize", str(store.path)]) == 0
    assert "Text alignment" in capsys.readouterr().out


# ---- summary statistics on hand-computable cases -------------------------------------------------------
def test_rate_intervals_resample_prompts() -> None:
    # two prompts, one won and one lost: a resample holds 0, 1 or 2 copies of the won one, so the win
    # rate is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4 -> the 95 % interval is [0, 1]; no tie ever
    (row,) = pair_rates(_votes({(1, 2): [("p0", "a"), ("p1", "b")]}), {1: "s1", 2: "s2"})
    assert row["win_ci"] == [0.0, 1.0] and row["lose_ci"] == [0.0, 1.0] and row["tie_ci"] == [0.0, 0.0]
    # a prompt's votes move together: five prompts, each with the same two wins, a tie and a loss (two
    # raters, two seeds), give every resample the same rates -> a zero-width interval at those rates
    same = [(f"p{i}", choice) for i in range(5) for choice in ("a", "a", "tie", "b")]
    (row,) = pair_rates(_votes({(1, 2): same}), {1: "s1", 2: "s2"})
    for outcome, rate in zip(("win", "tie", "lose"), (0.5, 0.25, 0.25)):
        assert row[outcome] == rate and row[f"{outcome}_ci"] == pytest.approx([rate, rate])
    # one prompt: nothing to resample, so no interval (not a fake zero-width one)
    (row,) = pair_rates(_votes({(1, 2): [("p0", "a"), ("p0", "b")]}), {1: "s1", 2: "s2"})
    assert row["win_ci"] is None and row["prompts"] == 1
    # fixed seed: the same votes give the same interval
    mixed = _votes({(1, 2): [(f"p{i}", "a" if i % 3 else "b") for i in range(10)]})
    assert pair_rates(mixed, {1: "s1", 2: "s2"}) == pair_rates(mixed, {1: "s1", 2: "s2"})


def test_strength_intervals_resample_prompts() -> None:
    # three systems, every prompt giving each system one win and one loss: every resample fits equal
    # strengths, so each interval is [0, 0]; with one prompt there is no interval
    cycle = {(1, 2): [], (2, 3): [], (1, 3): []}
    for i in range(4):
        cycle[(1, 2)].append((f"p{i}", "a"))
        cycle[(2, 3)].append((f"p{i}", "a"))
        cycle[(1, 3)].append((f"p{i}", "b"))
    rows = strengths(_votes(cycle), {1: "s1", 2: "s2", 3: "s3"})
    assert all(r["strength_ci"] == pytest.approx([0, 0], abs=1e-9) for r in rows)
    one = {pair: rows_[:1] for pair, rows_ in cycle.items()}
    assert all(r["strength_ci"] is None for r in strengths(_votes(one), {1: "s1", 2: "s2", 3: "s3"}))
    # system 1 beats 2 on some prompts and loses on others: its interval spans its point strength
    mixed = {(1, 2): [(f"p{i}", "a" if i % 2 else "b") for i in range(8)],
             (2, 3): [(f"p{i}", "a") for i in range(8)]}
    by_name = {r["system"]: r for r in strengths(_votes(mixed), {1: "s1", 2: "s2", 3: "s3"})}
    low, high = by_name["s1"]["strength_ci"]
    assert low < by_name["s1"]["strength"] < high


def _votes(outcomes: dict[tuple[int, int], list[tuple[str, str]]]) -> list[dict]:
    """{(system_a, system_b): [(unit, choice), ...]} -> vote rows as read from the database."""
    return [{"rater": 1, "pair": hash((a, b, unit)), "unit": unit, "seed": 0, "system_a": a, "system_b": b,
             "question": "alignment", "choice": choice}
            for (a, b), rows in outcomes.items() for unit, choice in rows]


def test_pair_rates_count_votes() -> None:
    votes = _votes({(1, 2): [("p0", "a"), ("p1", "a"), ("p2", "tie"), ("p3", "b")]})
    (row,) = pair_rates(votes, {1: "s1", 2: "s2"})
    assert (row["win"], row["tie"], row["lose"]) == (0.5, 0.25, 0.25)
    assert row["votes"] == 4 and row["prompts"] == 4
    assert row["win_ci"][0] <= 0.5 <= row["win_ci"][1]


def test_bradley_terry_recovers_hand_computed_strengths() -> None:
    # strengths 4 : 2 : 1 give P(0>1) = 2/3, P(1>2) = 2/3, P(0>2) = 4/5; these exact counts are fitted
    # exactly, so log-strengths centred to mean 0 are log 4 - log 2 = log 2, 0 and -log 2
    wins = np.array([[0, 2, 4], [1, 0, 2], [1, 1, 0]], dtype=float)
    assert np.allclose(bradley_terry(wins, prior=0), [math.log(2), 0, -math.log(2)], atol=1e-6)
    # ties as half wins: 1 win + 1 tie = 1.5 : 0.5, so the strength ratio is 3
    theta = bradley_terry(np.array([[0, 1.5], [0.5, 0]]), prior=0)
    assert theta[0] - theta[1] == pytest.approx(math.log(3), abs=1e-6)
    # the prior keeps a system that always wins finite, and the order right
    theta = bradley_terry(np.array([[0, 5, 5], [0, 0, 1], [0, 1, 0]], dtype=float))
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1] == pytest.approx(theta[2])


def test_agreement_on_hand_computed_units() -> None:
    def votes(rows):
        return [{"pair": pair, "rater": rater, "choice": choice} for pair, rater, choice in rows]

    # unit 1: both say A (+1, +1); unit 2: A and tie (+1, 0). Values 1, 1, 1, 0: D_o = 2 * 1 / 4 = 0.5,
    # D_e = (3 * 1 + 1 * 3) / (4 * 3) = 0.5 -> alpha = 0; raw agreement 1 of 2 rater pairs
    result = agreement(votes([(1, 1, "a"), (1, 2, "a"), (2, 1, "a"), (2, 2, "tie")]))
    assert result["alpha"] == pytest.approx(0.0) and result["raw_agreement"] == 0.5 and result["units"] == 2
    result = agreement(votes([(1, 1, "a"), (1, 2, "a"), (2, 1, "b"), (2, 2, "b"), (3, 1, "tie")]))
    assert result["alpha"] == pytest.approx(1.0) and result["units"] == 2  # unit 3 has one rater
    assert agreement(votes([(1, 1, "a"), (2, 2, "b")])) is None
    assert agreement(votes([(1, 1, "a"), (1, 2, "a")]))["alpha"] is None  # no variation: undefined


def test_summary_of_three_systems_from_the_store(tmp_path: Path) -> None:
    store, pairs = _study_store(tmp_path, windows=(1, 2, 4))
    raters = [store.rater(name) for name in ("ann", "bob")]
    for rater, name in zip(raters, ("ann", "bob")):
        while (shown := store.assign(rater, Schedule(pairs).picker(random.Random(1)))) is not None:
            # the lower window is always judged better on alignment, a tie otherwise
            lower_left = shown.left_system == shown.pair.system_a  # system ids follow --compare: 1 < 2 < 4
            store.vote(rater, shown.id, {"alignment": "left" if lower_left else "right", "flaws": "tie",
                                         "appearance": "tie"})
    summary = summarize(store.path)
    assert summary["raters"] == 2 and summary["votes"] == 2 * 9 * 3
    alignment, flaws = summary["questions"][0], summary["questions"][1]
    assert [(r["system"], r["opponent"], r["win"], r["votes"]) for r in alignment["pairs"]] == [
        (cell_id(1), cell_id(2), 1.0, 6), (cell_id(1), cell_id(4), 1.0, 6), (cell_id(2), cell_id(4), 1.0, 6)]
    assert [r["system"] for r in alignment["bradley_terry"]] == [cell_id(1), cell_id(2), cell_id(4)]
    assert all(r["tie"] == 1.0 for r in flaws["pairs"])
    assert [r["strength"] for r in flaws["bradley_terry"]] == pytest.approx([0, 0, 0], abs=1e-9)
    assert alignment["agreement"]["raw_agreement"] == 1.0 and alignment["agreement"]["units"] == 9


def test_report_shows_the_human_section(tmp_path: Path) -> None:
    from tsbench.report.html import build_report

    run = fake_run(tmp_path / "run", prompts=["<script>alert(1)</script> a circle", "b", "c"])
    plain = build_report([run], tmp_path / "plain")
    assert 'id="human"' not in plain.read_text()
    store = VoteStore(run / "human_eval.sqlite")
    _, pairs = store.register(build_study([run], [cell_id(1), cell_id(2)]))
    ann = store.rater("<b>ann</b>")
    while (shown := store.assign(ann, Schedule(pairs).picker())) is not None:
        store.vote(ann, shown.id, {"alignment": "left" if shown.left_system == shown.pair.system_a else "right",
                                   "flaws": "tie", "appearance": "tie"})
    html = build_report([run], tmp_path / "report").read_text()
    assert 'id="human"' in html and "Text alignment" in html and "100.0 %" in html
    assert "<script>alert(1)</script>" not in html and "<b>ann</b>" not in html
    charts = list((tmp_path / "report" / "images").glob("human_*.png"))
    assert len(charts) == 1 and charts[0].name in html
