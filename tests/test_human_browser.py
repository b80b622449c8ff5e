"""The rating app in a real browser: headless Debian Chromium driven by Playwright votes with the mouse and
the keyboard against a real ``tsbench human serve`` process, which is then killed and restarted; every
vote is checked in SQLite, and the summary's numbers against the votes cast. A prompt holding
``<script>`` must never run. Screenshots land in test-artifacts/ for a human to look at."""
from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from human_runs import cell_id, fake_run, start_server
from tsbench.human.summary import summarize

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> a red circle'
PROMPTS = [EVIL, "two blue squares", "a green triangle", "a yellow star above a circle", "one square",
           "three circles"]
QUESTIONS = ("alignment", "flaws", "appearance")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found on PATH; install it with: "
                                                          "apt-get install -y chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(page, script: str, timeout_s: float = 15.0) -> None:
    """Poll ``script`` (a JS function) until it returns true. Not wait_for_function: that evaluates its
    predicate with eval, which the app's Content-Security-Policy rightly forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}")
        time.sleep(0.05)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)  # no shutdown handler, no flush: what a crash leaves
    proc.wait()


class Rater:
    """The page as a rater sees it, and what each vote must have stored."""

    def __init__(self, page, db: Path) -> None:
        self.page, self.db = page, db
        self.cast: dict[int, dict[str, str]] = {}  # presentation id -> answers as clicked (left/tie/right)
        self.prompts: list[str] = []

    def current(self) -> tuple[int, str]:
        """Wait until a pair and both its images are shown; its presentation id (from the database: the
        page does not show it) and prompt."""
        self.page.wait_for_selector("#rating:not([hidden])")
        until(self.page, "() => ['left', 'right'].every(id => { const i = document.getElementById(id);"
                                    " return i.complete && i.naturalWidth > 0; })")
        prompt = self.page.text_content("#prompt")
        assert self.page.evaluate("window.__pwned") is None  # the injected script and handler never ran
        assert self.page.eval_on_selector("#prompt", "e => e.children.length") == 0  # text, not markup
        con = sqlite3.connect(self.db)
        row = con.execute("SELECT p.id FROM presentations p JOIN pairs pr ON pr.id = p.pair_id JOIN raters r ON "
                          "r.id = p.rater_id WHERE r.name = 'ann' AND p.status = 'pending'").fetchone()
        con.close()
        return row[0], prompt

    def done(self) -> int:
        return self.page.evaluate("() => document.getElementById('progress').value")

    def vote_with_mouse(self, answers: dict[str, str]) -> None:
        presentation, prompt = self.current()
        before = self.done()
        for question, choice in answers.items():
            self.page.click(f'.question[data-question="{question}"] button[data-choice="{choice}"]')
        self.page.click("#submit")
        self._saved(presentation, prompt, answers, before)

    def vote_with_keys(self, answers: dict[str, str]) -> None:
        presentation, prompt = self.current()
        before = self.done()
        keys = {"left": "1", "tie": "ArrowDown", "right": "ArrowRight"}
        for question in QUESTIONS:
            self.page.keyboard.press(keys[answers[question]])
        self.page.keyboard.press("Enter")
        self._saved(presentation, prompt, answers, before)

    def _saved(self, presentation: int, prompt: str, answers: dict[str, str], before: int) -> None:
        until(self.page, f"() => document.getElementById('progress').value > {before}")
        self.cast[presentation] = dict(answers)
        self.prompts.append(prompt)
        assert self.stored(presentation) == answers  # acknowledged = in SQLite

    def stored(self, presentation: int) -> dict[str, str]:
        con = sqlite3.connect(self.db)
        rows = con.execute("SELECT question, shown, choice, p.left_system, pr.system_a FROM votes v JOIN "
                           "presentations p ON p.id = v.presentation_id JOIN pairs pr ON pr.id = v.pair_id "
                           "WHERE v.presentation_id = ? AND v.current = 1", (presentation,)).fetchall()
        con.close()
        for question, shown, choice, left, system_a in rows:  # the side maps to the right system
            winner_is_a = (shown == "left") == (left == system_a)
            assert choice == ("tie" if shown == "tie" else "a" if winner_is_a else "b"), (question, shown, choice)
        return {question: shown for question, shown, *_ in rows}


def _expected_rates(db: Path, cast: dict[int, dict[str, str]], question: str) -> tuple[float, float, float]:
    """Win / tie / lose of system a computed from the clicks and the sides the database recorded."""
    con = sqlite3.connect(db)
    sides = dict(con.execute("SELECT p.id, p.left_system = pr.system_a FROM presentations p JOIN pairs pr "
                             "ON pr.id = p.pair_id"))
    con.close()
    outcomes = []
    for presentation, answers in cast.items():
        shown = answers[question]
        outcomes.append("tie" if shown == "tie" else "win" if (shown == "left") == bool(sides[presentation]) else "lose")
    return tuple(outcomes.count(o) / len(outcomes) for o in ("win", "tie", "lose"))


def test_rating_round_in_chromium_survives_a_killed_server(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the package only)")
    run = fake_run(tmp_path / "run", prompts=PROMPTS)
    db = tmp_path / "votes.sqlite"
    port = _free_port()
    proc, url = start_server(run, db, port)
    dialogs, errors = [], []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 960})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.fill("#name", "ann")
            page.click("text=Start rating")
            rater = Rater(page, db)
            rater.current()
            assert page.text_content("#rater-name") == "ann"

            rater.vote_with_mouse({"alignment": "left", "flaws": "tie", "appearance": "right"})
            rater.vote_with_keys({"alignment": "right", "flaws": "left", "appearance": "tie"})
            rater.vote_with_mouse({"alignment": "left", "flaws": "left", "appearance": "left"})
            assert page.text_content("#progress-text") == "3 / 6 pairs"
            pending, pending_prompt = rater.current()

            _kill(proc)
            assert {pid: rater.stored(pid) for pid in rater.cast} == rater.cast  # nothing acknowledged was lost
            proc, _ = start_server(run, db, port)
            page.reload()  # the name is remembered: straight back to the pair that was pending
            again, prompt = rater.current()
            assert (again, prompt) == (pending, pending_prompt) and prompt not in rater.prompts
            assert page.text_content("#progress-text") == "3 / 6 pairs"

            rater.vote_with_keys({"alignment": "tie", "flaws": "tie", "appearance": "left"})
            skipped, skipped_prompt = rater.current()
            page.keyboard.press("s")
            until(page, "() => document.getElementById('progress').value >= 5")
            assert rater.current()[1] != skipped_prompt

            page.keyboard.press("u")  # change the answers of the last voted pair
            page.wait_for_selector("#revising:not([hidden])")
            last = list(rater.cast)[-1]
            assert page.get_attribute('.question[data-question="appearance"] button[data-choice="left"]',
                                      "aria-pressed") == "true"  # the stored answer is preselected
            page.click('.question[data-question="alignment"] button[data-choice="right"]')
            page.click("#submit")
            page.wait_for_selector("#revising", state="hidden")
            rater.cast[last]["alignment"] = "right"
            assert rater.stored(last) == rater.cast[last]

            rater.vote_with_keys({"alignment": "left", "flaws": "right", "appearance": "right"})
            page.wait_for_selector("#finished:not([hidden])")
            assert page.text_content("#finished-text") == "You rated or skipped 6 of 6 pairs."

            # a second rater skips until the prompt with markup comes: shown as text; look at this screenshot
            viewer = browser.new_page(viewport={"width": 1000, "height": 960})
            viewer.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            viewer.on("pageerror", lambda e: errors.append(str(e)))
            viewer.goto(url)
            viewer.fill("#name", "bob")
            viewer.click("text=Start rating")
            for skips in range(len(PROMPTS)):
                until(viewer, f"() => document.getElementById('progress').value >= {skips} && "
                                         "document.getElementById('prompt').textContent.length > 0")
                if viewer.text_content("#prompt") == EVIL:
                    break
                viewer.keyboard.press("s")
            until(viewer, "() => ['left', 'right'].every(id => document.getElementById(id).naturalWidth > 0)")
            assert viewer.text_content("#prompt") == EVIL and viewer.evaluate("window.__pwned") is None
            assert viewer.eval_on_selector("#prompt", "e => e.children.length") == 0
            viewer.click('.question[data-question="alignment"] button[data-choice="left"]')
            shot = ARTIFACTS / "human_rating_escaped_prompt.png"
            viewer.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            browser.close()
    finally:
        _kill(proc)

    assert not dialogs and not errors, (dialogs, errors)
    con = sqlite3.connect(db)
    shown_to_ann = [r[0] for r in con.execute("SELECT pair_id FROM presentations p JOIN raters r ON r.id = "
                                              "p.rater_id WHERE r.name = 'ann'")]
    revisions = con.execute("SELECT revision, current FROM votes WHERE presentation_id = ? AND question = "
                            "'alignment' ORDER BY id", (last,)).fetchall()
    con.close()
    assert sorted(shown_to_ann) == sorted(set(shown_to_ann)) and len(shown_to_ann) == 6  # no pair twice
    assert revisions == [(1, 0), (2, 1)]
    assert sorted(rater.prompts + [skipped_prompt]) == sorted(PROMPTS)

    summary = summarize(db)
    assert summary["votes"] == 3 * len(rater.cast) == 15 and summary["skipped"] >= 1
    assert summary["replaced_votes"] == 1
    for question in summary["questions"]:
        (rates,) = question["pairs"]
        assert (rates["system"], rates["opponent"]) == (cell_id(1), cell_id(2))
        assert (rates["win"], rates["tie"], rates["lose"]) == pytest.approx(
            _expected_rates(db, rater.cast, question["id"]))
        assert rates["votes"] == 5 and rates["prompts"] == 5
