"""The HTML report in a real browser: every plot loads and the matrix is all there.

Needs ``chromium`` (or ``chromium-browser``) on PATH; without it the test
skips, unless ``TSCLAB_REQUIRE_CHROMIUM=1`` (as in CI), when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.report.run_fixtures import two_by_two
from tsclab.report.html_report import write_report

TIMEOUT_S = 120


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = "chromium not on PATH (apt-get install chromium)"
    if os.environ.get("TSCLAB_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{reason}, and TSCLAB_REQUIRE_CHROMIUM=1")
    pytest.skip(reason)


class DumpedDom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.plots = 0
        self.matrix_tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "body":
            self.body = a
        elif tag == "img" and "plot" in classes:
            self.plots += 1
        elif tag == "table" and "matrix" in classes:
            self.matrix_tables += 1


def open_in_chromium(index: Path, work: Path) -> DumpedDom:
    """Load ``index`` in headless Chromium, let its scripts run, and parse the DOM it ends with."""
    proc = subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            index.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = DumpedDom()
    dom.feed(proc.stdout)
    dom.close()
    return dom


def test_chromium_loads_every_plot(tmp_path: Path) -> None:
    find_chromium()
    scenario, results = two_by_two(samples=5_000)
    index = write_report(tmp_path / "report", [(scenario, results)], seed=7)
    dom = open_in_chromium(index, tmp_path)
    assert dom.matrix_tables == 1
    assert dom.plots == 3  # one per combination that ran
    assert dom.body.get("data-plots-loaded") == str(dom.plots)
    assert dom.body.get("data-matrix-cells") == "4"
