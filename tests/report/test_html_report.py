"""The static HTML report: page structure, plots, timeline, escaping, determinism."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from tests.report.run_fixtures import KERNELS, PAUSE_AT_NS, VMMS, synthetic_trace, two_by_two
from tsclab.check.verdict import RunResult, Verdict
from tsclab.report.html_report import write_report
from tsclab.report.plots import (
    MAX_JUMPS,
    MAX_POINTS,
    clock_error_png,
    downsample,
    error_series,
    error_unit,
    png_size,
    time_ticks,
)
from tsclab.sim.trace import Interruption

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What the tests look at: matrix cells, plot images, each section's timeline verdict labels."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.matrix_tables = 0
        self.matrix_cells: list[dict[str, str]] = []
        self.matrix_links: list[str] = []
        self.plots: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.section = ""
        self.timeline_verdicts: dict[str, list[str]] = {}
        self.timelines = 0
        self.scripts = 0

    def _inside(self, tag: str, cls: str) -> bool:
        return any(t == tag and cls in a.get("class", "").split() for t, a in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        classes = a.get("class", "").split()
        if tag == "section" and "combination" in classes:
            self.section = a["id"]
            self.timeline_verdicts[self.section] = []
        if tag == "table" and "matrix" in classes:
            self.matrix_tables += 1
        if tag == "td" and self._inside("table", "matrix"):
            self.matrix_cells.append(a)
        if tag == "a" and self._inside("table", "matrix"):
            self.matrix_links.append(a["href"])
        if tag == "img" and "plot" in classes:
            self.plots.append(a)
        if tag == "svg" and "timeline" in classes:
            self.timelines += 1
        if tag == "script":
            self.scripts += 1
        if tag not in ("img", "meta", "line", "rect", "br"):
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("img", "meta", "line", "rect", "br"):
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "text" and self._inside("g", "verdict"):
            self.timeline_verdicts[self.section].append(data)


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_has_matrix_plots_and_sections(tmp_path: Path) -> None:
    scenario, results = two_by_two()
    index = write_report(tmp_path / "a" / "b", [(scenario, results)], seed=7)
    assert index == tmp_path / "a" / "b" / "index.html"
    assert index.is_file()
    page = parse(index)
    assert page.matrix_tables == 1
    assert len(page.matrix_cells) == 4
    assert [c["class"] for c in page.matrix_cells] == [
        "pass has-verdicts",
        "fail has-verdicts",
        "pass",
        "skipped",
    ]
    # Each cell links to its combination's section.
    assert page.matrix_links == ["#s1-c0", "#s1-c1", "#s1-c2", "#s1-c3"]
    assert {"s1-c0", "s1-c1", "s1-c2", "s1-c3"} <= page.ids
    # One plot per combination that ran (the skipped one has none), each a PNG of the stated size.
    assert len(page.plots) == 3
    for img in page.plots:
        png = (index.parent / img["src"]).read_bytes()
        assert png.startswith(PNG_SIGNATURE)
        assert png_size(png) == (int(img["width"]), int(img["height"]))
    assert sorted(p.name for p in index.parent.iterdir()) == sorted(
        ["index.html", *(i["src"] for i in page.plots)]
    )
    assert page.timelines == 3
    assert page.scripts == 1


def test_timeline_labels_each_verdict_with_its_id(tmp_path: Path) -> None:
    scenario, results = two_by_two()
    page = parse(write_report(tmp_path, [(scenario, results)], seed=7))
    assert page.timeline_verdicts == {
        "s1-c0": ["monotonic-jump", "softlockup"],  # in time order
        "s1-c1": ["softlockup"],
        "s1-c2": [],
        "s1-c3": [],
    }


def test_all_text_is_escaped(tmp_path: Path) -> None:
    scenario, results = two_by_two(description='<script>alert("x")</script> & co')
    text = write_report(tmp_path, [(scenario, results)], seed=7).read_text()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in text
    assert "<script>alert" not in text
    assert text.count("<script>") == 1  # the page's own
    assert "guest &lt;here&gt;" in text  # the skip reason
    assert "&lt;no realtime&gt;" in text  # an event's detail
    assert "<no realtime>" not in text
    assert parse(tmp_path / "index.html").scripts == 1


def test_a_note_shows_under_its_scenario_only_escaped(tmp_path: Path) -> None:
    scenario, results = two_by_two()
    other = dataclasses.replace(scenario, name="other")
    notes = {scenario.name: "a SIGSTOP <unannounced>: nothing to ask"}
    text = write_report(tmp_path, [(scenario, results), (other, results)], seed=7, notes=notes).read_text()
    assert text.count('<p class="note">') == 1
    assert '<p class="note">a SIGSTOP &lt;unannounced&gt;: nothing to ask</p>' in text
    section = text.index('<section class="scenario" id="s1">')
    assert section < text.index('<p class="note">') < text.index('<section class="scenario" id="s2">')


def test_same_input_same_bytes(tmp_path: Path) -> None:
    for name in ("one", "two"):
        scenario, results = two_by_two(samples=3_000)
        write_report(tmp_path / name, [(scenario, results)], seed=7)
    one = sorted((tmp_path / "one").iterdir())
    two = sorted((tmp_path / "two").iterdir())
    assert [p.name for p in one] == [p.name for p in two]
    assert len(one) == 4
    for a, b in zip(one, two, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_rewriting_replaces_the_page(tmp_path: Path) -> None:
    scenario, results = two_by_two()
    write_report(tmp_path, [(scenario, results)], seed=7)
    write_report(tmp_path, [(scenario, results[:1])], seed=8)
    page = parse(tmp_path / "index.html")
    assert len(page.matrix_cells) == 1
    assert "seed 8" in (tmp_path / "index.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_several_scenarios_and_a_run_without_reads(tmp_path: Path) -> None:
    scenario, results = two_by_two()
    quiet = RunResult(synthetic_trace(KERNELS[0], VMMS[0]), ())
    quiet.trace.samples.clear()
    page = parse(write_report(tmp_path, [(scenario, results), (scenario, [quiet])], seed=7))
    assert page.matrix_tables == 2
    assert len(page.matrix_cells) == 5
    assert len(page.plots) == 3
    assert "No clock reads to plot." in (tmp_path / "index.html").read_text()


def test_matplotlib_is_not_imported_until_a_figure_is_drawn() -> None:
    code = (
        "import sys\n"
        "import tsclab.report.html_report, tsclab.report.run_json, tsclab.report.run_matrix\n"
        "import tsclab.check.verdict, tsclab.sim.trace, tsclab.scenario.model\n"
        "assert 'matplotlib' not in sys.modules, sorted(m for m in sys.modules if 'matplotlib' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the pictures' parts -------------------------------------------------------


def test_downsample_keeps_short_series_whole() -> None:
    t = np.arange(50, dtype=np.float64)
    assert downsample(t, t * 2).tolist() == list(range(50))


def test_downsample_is_bounded_and_keeps_ends_extremes_and_jumps() -> None:
    n = 200_000
    t = np.arange(n, dtype=np.float64) * 1e6
    y = np.sin(np.arange(n) / 500.0) * 100
    y[123_457:] -= 1e6  # a step
    y[77_777] = 5e3  # a spike
    t[150_001:] += 1e12  # a huge gap in time
    keep = downsample(t, y)
    assert len(keep) <= MAX_POINTS + 2 * MAX_JUMPS + 2
    assert list(keep) == sorted(set(keep.tolist()))
    assert {0, n - 1, 123_456, 123_457, 77_777, 150_000, 150_001} <= set(keep.tolist())
    assert float(np.min(y[keep])) == float(np.min(y))


def test_downsample_keeps_only_the_largest_jumps_when_there_are_many() -> None:
    n = 100_000
    y = np.where(np.arange(n) % 2 == 0, 0.0, 1.0)  # a jump at every point
    y[50_000:] += 10.0  # the one that matters
    keep = downsample(np.arange(n, dtype=np.float64), y)
    assert len(keep) <= MAX_POINTS + 2 * MAX_JUMPS + 2
    assert {49_999, 50_000} <= set(keep.tolist())


def test_error_unit_by_magnitude() -> None:
    assert error_unit(0) == ("ns", 1.0)
    assert error_unit(999)[0] == "ns"
    assert error_unit(1_000)[0] == "µs"
    assert error_unit(2.5e6)[0] == "ms"
    assert error_unit(120e9)[0] == "s"
    assert error_unit(7_200e9)[0] == "h"
    assert error_unit(3 * 86_400e9)[0] == "d"
    assert error_unit(2**64)[0] == "y"


def test_time_ticks() -> None:
    assert time_ticks(160 * 10**9)[:3] == [(0, "0 s"), (20 * 10**9, "20 s"), (40 * 10**9, "40 s")]
    assert time_ticks(3 * 10**9)[1] == (500_000_000, "0.5 s")
    assert time_ticks(7_200 * 10**9)[-1] == (7_200 * 10**9, "2.0 h")
    assert time_ticks(3) == [(0, "0 ns"), (1, "1 ns"), (2, "2 ns"), (3, "3 ns")]


def test_error_series_by_clock_vcpu_and_path() -> None:
    trace = synthetic_trace(KERNELS[0], VMMS[0], samples=60, clocks=("MONOTONIC", "REALTIME"))
    series = error_series(trace)
    assert list(series) == ["REALTIME", "MONOTONIC"]  # CLOCKS order
    assert [(s.vcpu, s.path) for s in series["MONOTONIC"]] == [(0, "kernel"), (0, "vdso"), (1, "vdso")]
    last = series["MONOTONIC"][0]
    assert last.t_ns[-1] > PAUSE_AT_NS
    assert last.error_ns[-1] <= -120 * 10**9 + 250


def test_a_year_long_snapshot_plots(tmp_path: Path) -> None:
    year = 365 * 86_400 * 10**9
    trace = synthetic_trace(KERNELS[0], VMMS[0], samples=50_000)
    # The pause becomes a year: reads after it move a year on, and their clocks stay behind.
    trace.samples[:] = [
        dataclasses.replace(s, t_ns=s.t_ns + year) if s.t_ns > PAUSE_AT_NS else s for s in trace.samples
    ]
    trace.end_ns += year
    trace.interruptions[:] = [Interruption(PAUSE_AT_NS, PAUSE_AT_NS + year, "snapshot", False, True)]
    verdict = Verdict("monotonic-jump", PAUSE_AT_NS + year, 0, "MONOTONIC", year, "ns", "jumped")
    png = clock_error_png(trace, [verdict])
    assert png is not None
    assert png.startswith(PNG_SIGNATURE)
    scenario, _ = two_by_two()
    page = parse(write_report(tmp_path, [(scenario, [RunResult(trace, (verdict,))])], seed=1))
    assert page.timeline_verdicts["s1-c0"] == ["monotonic-jump"]
    assert len(page.plots) == 1
