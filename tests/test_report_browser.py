"""The report in a real browser: headless Chromium loads it from file://, every image must decode, the
page's script must run without errors, and a screenshot lands in test-artifacts/ for a human to look at."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_report import real_run, synthetic_run  # noqa: F401 - fixtures shared with the report tests
from tsbench.report.html import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Injected into a copy of the page: record script errors from the start, then after load mark each image
# and click the first sortable header, so --dump-dom shows the results as attributes.
ERROR_PROBE = """<script>window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); }, true);</script>"""
LOAD_PROBE = """<script>window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-loaded", img.complete && img.naturalWidth > 0 ? "yes" : "no");
  });
  var th = document.querySelector("table.sortable th");
  if (th) { th.click(); }
  document.body.setAttribute("data-sorted", th ? th.getAttribute("aria-sort") : "none");
  document.body.setAttribute("data-errors", window.__errors.join(" | "));
  document.body.setAttribute("data-checked", String(document.images.length));
});</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found on PATH; install it with: "
                                                          "apt-get install -y chromium")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _probe_copy(index: Path) -> Path:
    """The page with the probes, beside the original so that its relative image paths still resolve."""
    html = index.read_text(encoding="utf-8")
    probed = index.with_name("probe.html")
    probed.write_text(html.replace("</title>", "</title>" + ERROR_PROBE, 1).replace("</body>", LOAD_PROBE + "</body>"),
                      encoding="utf-8")
    return probed


def test_report_renders_in_chromium(real_run: Path, synthetic_run: Path, tmp_path: Path) -> None:  # noqa: F811
    index = build_report([real_run, synthetic_run], tmp_path / "report")
    result = _chromium(tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                       "--dump-dom", _probe_copy(index).as_uri())
    dom = result.stdout
    assert 'data-checked="' in dom, f"page did not finish loading; chromium said:\n{result.stderr[-3000:]}"
    images = int(re.search(r'data-checked="(\d+)"', dom).group(1))
    broken = re.findall(r'<img[^>]*data-loaded="no"[^>]*>', dom)
    assert images >= 10 and dom.count('data-loaded="yes"') == images, broken
    assert 'data-errors=""' in dom, re.search(r'data-errors="([^"]*)"', dom).group(1)
    assert 'data-sorted="ascending"' in dom  # the sort script ran and handled the click
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not console_errors, console_errors
    assert "<script>alert(1)</script>" not in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    result = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", index.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-3000:]
