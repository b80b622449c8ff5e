"""Votes in SQLite: WAL mode, ``synchronous=FULL``, one transaction per vote.

A vote is acknowledged only after its transaction has committed, so a killed server loses none that a
rater saw confirmed. Every presentation of a pair to a rater is a row (``UNIQUE(rater, pair)``: no pair
is shown to a rater twice), with the side each system was on. Votes are never deleted: a re-vote marks
the earlier row as replaced and adds a new revision, and one partial unique index keeps a single current
vote per rater, pair and question.

The database holds everything the summary needs (system names, prompts, pairs), so it can be
summarised without the run directories.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tsbench.human.images import HumanEvalError, Study
from tsbench.human.protocol import QUESTION_IDS, SHOWN_CHOICES

FORMAT, SCHEMA_VERSION = "tsbench-human-eval", 1
DEFAULT_DB_NAME = "human_eval.sqlite"
SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS systems (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, run_dir TEXT NOT NULL, cell_id TEXT NOT NULL,
  config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  system_id INTEGER NOT NULL REFERENCES systems(id), unit TEXT NOT NULL, seed INTEGER NOT NULL,
  sample INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (system_id, unit, seed));
CREATE TABLE IF NOT EXISTS pairs (
  id INTEGER PRIMARY KEY, unit TEXT NOT NULL, seed INTEGER NOT NULL, prompt TEXT NOT NULL,
  system_a INTEGER NOT NULL REFERENCES systems(id), system_b INTEGER NOT NULL REFERENCES systems(id),
  CHECK (system_a < system_b), UNIQUE (unit, seed, system_a, system_b));
CREATE TABLE IF NOT EXISTS raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS presentations (
  id INTEGER PRIMARY KEY, rater_id INTEGER NOT NULL REFERENCES raters(id),
  pair_id INTEGER NOT NULL REFERENCES pairs(id), left_system INTEGER NOT NULL REFERENCES systems(id),
  status TEXT NOT NULL CHECK (status IN ('pending', 'voted', 'skipped')),
  shown_at TEXT NOT NULL, answered_at TEXT, UNIQUE (rater_id, pair_id));
CREATE TABLE IF NOT EXISTS votes (
  id INTEGER PRIMARY KEY, presentation_id INTEGER NOT NULL REFERENCES presentations(id),
  rater_id INTEGER NOT NULL REFERENCES raters(id), pair_id INTEGER NOT NULL REFERENCES pairs(id),
  question TEXT NOT NULL, choice TEXT NOT NULL CHECK (choice IN ('a', 'tie', 'b')),
  shown TEXT NOT NULL CHECK (shown IN ('left', 'tie', 'right')), revision INTEGER NOT NULL,
  current INTEGER NOT NULL CHECK (current IN (0, 1)), replaces INTEGER REFERENCES votes(id),
  created_at TEXT NOT NULL, replaced_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS one_current_vote ON votes (rater_id, pair_id, question) WHERE current = 1;
"""


@dataclass(frozen=True)
class Pair:
    """Two systems' images of one prompt and seed; ``system_a < system_b`` (ids), votes are stored in
    that orientation."""

    id: int
    unit: str
    seed: int
    prompt: str
    system_a: int
    system_b: int


@dataclass(frozen=True)
class Presentation:
    id: int
    pair: Pair
    left_system: int
    status: str


@dataclass(frozen=True)
class VoteResult:
    revote: bool
    changed: tuple[str, ...]  # questions whose answer changed (all of them on a first vote)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def is_human_db(path: str | Path) -> bool:
    """Whether ``path`` is a database written by this module (read without creating anything)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_HEADER:
                return False
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return False
    return row is not None and row[0] == FORMAT


class VoteStore:
    """The database of one human evaluation; safe to share between the server's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not is_human_db(self.path):
            raise HumanEvalError(f"{self.path} exists and is not a tsbench human-eval database; "
                                 "give a new path with --db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._con.row_factory = sqlite3.Row
        mode = self._con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise HumanEvalError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the database on a "
                                 "local file system")
        self._con.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the vote is acknowledged
        self._con.execute("PRAGMA foreign_keys=ON")
        self._con.executescript(SCHEMA)  # IF NOT EXISTS throughout: a restart reopens the same tables
        with self.transaction() as con:
            con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?), ('schema_version', ?), ('created_at', ?)",
                        (FORMAT, str(SCHEMA_VERSION), _now()))
            version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise HumanEvalError(f"{self.path} has schema version {version}; this tsbench reads {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), serialised between threads."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._con.execute(sql, args).fetchall()

    # ---- the study ---------------------------------------------------------------------------------
    def register(self, study: Study) -> tuple[list[int], list[Pair]]:
        """Record the study's systems, images and pairs (idempotent: a restart finds them again).

        Returns the system ids in ``study`` order and the study's pairs: every two systems (in
        ``--compare`` order) on every shared prompt and seed.
        """
        with self.transaction() as con:
            ids = []
            for cell, name in zip(study.systems, study.names):
                con.execute("INSERT OR IGNORE INTO systems (name, run_dir, cell_id, config) VALUES (?, ?, ?, ?)",
                            (name, str(cell.run_dir.resolve()), cell.cell_id, json.dumps(cell.config, default=str)))
                ids.append(con.execute("SELECT id FROM systems WHERE name = ?", (name,)).fetchone()[0])
            for system, images in zip(ids, study.images):
                for key in study.keys:
                    image = images[key]
                    con.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                                "path = excluded.path, sample = excluded.sample",
                                (system, image.unit, image.seed, image.sample, study.kind, str(image.path)))
            pairs = []
            for i, first in enumerate(ids):
                for second in ids[i + 1:]:
                    a, b = sorted((first, second))
                    for unit, seed in study.keys:
                        prompt = study.images[0][(unit, seed)].prompt
                        con.execute("INSERT OR IGNORE INTO pairs (unit, seed, prompt, system_a, system_b) "
                                    "VALUES (?, ?, ?, ?, ?)", (unit, seed, prompt, a, b))
                        row = con.execute("SELECT * FROM pairs WHERE unit = ? AND seed = ? AND system_a = ? AND "
                                          "system_b = ?", (unit, seed, a, b)).fetchone()
                        if row["prompt"] != prompt:
                            raise HumanEvalError(f"{self.path} rated prompt {unit!r} as {row['prompt']!r}, but the "
                                                 f"run now has {prompt!r}; use a new --db for these images")
                        pairs.append(_pair(row))
        return ids, pairs

    # ---- raters and presentations -------------------------------------------------------------------
    def rater(self, name: str) -> int:
        """The rater's id, created on first use."""
        with self.transaction() as con:
            con.execute("INSERT OR IGNORE INTO raters (name, created_at) VALUES (?, ?)", (name, _now()))
            return con.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()[0]

    def assign(self, rater_id: int, pick: Callable[[set[int], dict[int, int]], tuple[Pair, int] | None]
               ) -> Presentation | None:
        """The rater's pending presentation, else a new one of the pair that ``pick(seen, coverage)``
        chooses (pair, left system); None when ``pick`` finds nothing left. ``coverage`` counts every
        rater's pending and voted presentations per pair."""
        with self.transaction() as con:
            pending = con.execute(_PRESENTATION + " WHERE p.rater_id = ? AND p.status = 'pending' ORDER BY p.id",
                                  (rater_id,)).fetchone()
            if pending is not None:
                return _presentation(pending)
            seen = {r[0] for r in con.execute("SELECT pair_id FROM presentations WHERE rater_id = ?", (rater_id,))}
            coverage = {r[0]: r[1] for r in con.execute(
                "SELECT pair_id, COUNT(*) FROM presentations WHERE status != 'skipped' GROUP BY pair_id")}
            chosen = pick(seen, coverage)
            if chosen is None:
                return None
            pair, left = chosen
            if left not in (pair.system_a, pair.system_b):
                raise ValueError(f"left system {left} is not in pair {pair.id}")
            cursor = con.execute("INSERT INTO presentations (rater_id, pair_id, left_system, status, shown_at) "
                                 "VALUES (?, ?, ?, 'pending', ?)", (rater_id, pair.id, left, _now()))
            return Presentation(cursor.lastrowid, pair, left, "pending")

    def presentation(self, rater_id: int, presentation_id: int) -> Presentation | None:
        rows = self._read(_PRESENTATION + " WHERE p.id = ? AND p.rater_id = ?", (presentation_id, rater_id))
        return _presentation(rows[0]) if rows else None

    def answered(self, rater_id: int, before: int | None = None) -> tuple[Presentation, dict[str, str]] | None:
        """The rater's latest voted presentation (before ``before``) with its current answers as shown
        to the rater (left / tie / right): what a 'change my previous answers' view needs."""
        rows = self._read(_PRESENTATION + " WHERE p.rater_id = ? AND p.status = 'voted' AND p.id < ? "
                          "ORDER BY p.id DESC LIMIT 1", (rater_id, before if before is not None else 2**62))
        if not rows:
            return None
        shown = self._read("SELECT question, shown FROM votes WHERE presentation_id = ? AND current = 1",
                           (rows[0]["presentation_id"],))
        return _presentation(rows[0]), {r["question"]: r["shown"] for r in shown}

    def done(self, rater_id: int, pair_ids: list[int]) -> int:
        """How many of ``pair_ids`` the rater has voted on or skipped."""
        wanted = set(pair_ids)
        rows = self._read("SELECT pair_id FROM presentations WHERE rater_id = ? AND status != 'pending'", (rater_id,))
        return sum(r[0] in wanted for r in rows)

    # ---- votes --------------------------------------------------------------------------------------
    def vote(self, rater_id: int, presentation_id: int, answers: dict[str, str]) -> VoteResult:
        """Store the three answers (as shown: left / tie / right) in one transaction.

        On a presentation already voted, answers that differ replace the earlier votes (marked replaced,
        new revision); identical answers change nothing, so a retried request is harmless.
        """
        if set(answers) != set(QUESTION_IDS) or not set(answers.values()) <= set(SHOWN_CHOICES):
            raise HumanEvalError(f"answers must give each of {', '.join(QUESTION_IDS)} one of "
                                 f"{', '.join(SHOWN_CHOICES)}; got {answers}")
        with self.transaction() as con:
            row = con.execute(_PRESENTATION + " WHERE p.id = ? AND p.rater_id = ?",
                              (presentation_id, rater_id)).fetchone()
            if row is None:
                raise LookupError(f"presentation {presentation_id} is not this rater's")
            shown = _presentation(row)
            if shown.status == "skipped":
                raise HumanEvalError("this pair was skipped; a skipped pair is not rated")
            now = _now()
            current = {r["question"]: r for r in con.execute(
                "SELECT * FROM votes WHERE presentation_id = ? AND current = 1", (presentation_id,))}
            changed = []
            for question in QUESTION_IDS:
                choice = answers[question]
                old = current.get(question)
                if old is not None and old["shown"] == choice:
                    continue
                if old is not None:
                    con.execute("UPDATE votes SET current = 0, replaced_at = ? WHERE id = ?", (now, old["id"]))
                con.execute("INSERT INTO votes (presentation_id, rater_id, pair_id, question, choice, shown, revision, "
                            "current, replaces, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                            (presentation_id, rater_id, shown.pair.id, question, _stored(shown, choice), choice,
                             1 if old is None else old["revision"] + 1, None if old is None else old["id"], now))
                changed.append(question)
            con.execute("UPDATE presentations SET status = 'voted', answered_at = COALESCE(answered_at, ?) "
                        "WHERE id = ?", (now, presentation_id))
        return VoteResult(revote=shown.status == "voted", changed=tuple(changed))

    def skip(self, rater_id: int, presentation_id: int) -> None:
        """Skip a pending pair: it is not shown to this rater again and counts as uncovered for others."""
        with self.transaction() as con:
            cursor = con.execute("UPDATE presentations SET status = 'skipped', answered_at = ? WHERE id = ? AND "
                                 "rater_id = ? AND status = 'pending'", (_now(), presentation_id, rater_id))
            if cursor.rowcount != 1:
                raise LookupError(f"presentation {presentation_id} is not a pending pair of this rater")


_PRESENTATION = ("SELECT p.id AS presentation_id, p.left_system, p.status, pr.* FROM presentations p "
                 "JOIN pairs pr ON pr.id = p.pair_id")


def _pair(row: sqlite3.Row) -> Pair:
    return Pair(row["id"], row["unit"], row["seed"], row["prompt"], row["system_a"], row["system_b"])


def _presentation(row: sqlite3.Row) -> Presentation:
    return Presentation(row["presentation_id"], _pair(row), row["left_system"], row["status"])


def _stored(shown: Presentation, choice: str) -> str:
    """left / tie / right on the page -> a / tie / b of the pair."""
    if choice == "tie":
        return "tie"
    winner = shown.left_system if choice == "left" else ({shown.pair.system_a, shown.pair.system_b}
                                                         - {shown.left_system}).pop()
    return "a" if winner == shown.pair.system_a else "b"


def read_votes(path: str | Path) -> dict[str, Any]:
    """Everything the summary needs: systems, current votes (one per rater, pair, question), counts."""
    path = Path(path)
    if not is_human_db(path):
        raise HumanEvalError(f"{path} is not a tsbench human-eval database (made by 'tsbench human serve')")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
    con.row_factory = sqlite3.Row
    try:
        systems = {r["id"]: r["name"] for r in con.execute("SELECT id, name FROM systems ORDER BY id")}
        votes = [dict(r) for r in con.execute(
            "SELECT v.rater_id AS rater, v.pair_id AS pair, p.unit, p.seed, p.system_a, p.system_b, v.question, "
            "v.choice FROM votes v JOIN pairs p ON p.id = v.pair_id WHERE v.current = 1 ORDER BY v.id")]
        counts = con.execute("SELECT (SELECT COUNT(*) FROM raters), (SELECT COUNT(*) FROM votes WHERE replaces "
                             "IS NOT NULL), (SELECT COUNT(*) FROM presentations WHERE status = 'skipped'), "
                             "(SELECT COUNT(*) FROM presentations WHERE status = 'voted')").fetchone()
        kinds = sorted({r[0] for r in con.execute("SELECT DISTINCT kind FROM images")})
    finally:
        con.close()
    return {"systems": systems, "votes": votes, "raters": counts[0], "replaced": counts[1], "skipped": counts[2],
            "rated_pairs": counts[3], "image_kinds": kinds}
