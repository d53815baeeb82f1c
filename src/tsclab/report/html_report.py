"""``tsclab run --html DIR``: a static report, one page and its plot images.

``index.html`` needs nothing but the PNGs beside it: no network, no script
library (a few lines of inline script only record, once the page has
loaded, how many plots displayed and how many matrix cells there are, for
tests that drive a browser).  All text from scenarios and traces is
escaped.  The same input gives the same bytes: no wall-clock times, and
the PNGs carry no metadata.  The plots are written first and the page
last, each atomically, so the page never points at a missing image.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path

from tsclab.check.verdict import VERDICT_IDS, RunResult
from tsclab.report.plots import clock_error_png, png_size, timeline_svg
from tsclab.report.run_json import write_bytes_atomic, write_text_atomic
from tsclab.report.run_matrix import MISSING_CELL, matrix_axes, matrix_cell, ordered_ids
from tsclab.report.text import format_duration, format_seconds
from tsclab.scenario.model import Scenario

MAX_EVENT_ROWS = 1_000  # the per-combination event table stops here (the timeline shows all)

_CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 2px solid #444; margin-top: 2em; }
h3 { border-bottom: 1px solid #bbb; margin-top: 1.6em; }
.meta { color: #555; }
.note { border-left: 4px solid #b58900; padding: .3em .8em; background: #fdf6e3; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
table.matrix td a { display: block; color: inherit; text-decoration: none; }
table.matrix td.pass { background: #d4f4d4; }
table.matrix td.fail { background: #f8c8c8; font-weight: bold; }
table.matrix td.unchecked { background: #f4f4f4; }
table.matrix td.unchecked.has-verdicts { background: #fbe7b5; }
table.matrix td.skipped, table.matrix td.missing { background: #e4e4e4; color: #777; }
table.verdicts td:nth-child(2), table.events td:first-child { white-space: nowrap; text-align: right; }
table.events { font-size: 0.85em; }
.check-pass { color: #1a7f1a; } .check-fail { color: #c01818; font-weight: bold; }
img.plot { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
svg.timeline { max-width: 100%; height: auto; display: block; font-family: sans-serif; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var loaded = 0;
  document.querySelectorAll("img.plot").forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; }
  });
  document.body.dataset.plotsLoaded = String(loaded);
  document.body.dataset.matrixCells = String(document.querySelectorAll("table.matrix td").length);
});
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:60] or "x"


def _anchor(si: int, ci: int) -> str:
    return f"s{si}-c{ci}"


def _source(source: str) -> str:
    if source.startswith(("https://", "http://")):
        return f'<a href="{_esc(source)}">{_esc(source)}</a>'
    return _esc(source)


def _matrix_html(si: int, results: list[RunResult]) -> str:
    kernels, vmms, cells = matrix_axes(results)
    index = {(r.trace.kernel, r.trace.vmm): ci for ci, r in enumerate(results)}
    out = ['<table class="matrix">', "<thead><tr><th>kernel \\ vmm</th>"]
    out += [f"<th>{_esc(vmm)}</th>" for vmm in vmms]
    out.append("</tr></thead><tbody>")
    for kernel in kernels:
        out.append(f"<tr><th>{_esc(kernel)}</th>")
        for vmm in vmms:
            result = cells.get((kernel, vmm))
            if result is None:
                out.append(f'<td class="missing">{_esc(MISSING_CELL)}</td>')
                continue
            classes = result.check + (" has-verdicts" if result.verdicts else "")
            title = result.trace.skipped or f"{kernel} x {vmm}: {result.check}"
            out.append(
                f'<td class="{classes}" title="{_esc(title)}">'
                f'<a href="#{_anchor(si, index[kernel, vmm])}">{_esc(matrix_cell(result))}</a></td>'
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    skipped = [r for r in results if r.check == "skipped"]
    if skipped:
        out.append('<ul class="skipped">')
        out += [
            f"<li>n/a: {_esc(r.trace.kernel)} x {_esc(r.trace.vmm)}: {_esc(r.trace.skipped)}</li>"
            for r in skipped
        ]
        out.append("</ul>")
    return "\n".join(out)


def _verdicts_html(result: RunResult) -> str:
    if not result.verdicts:
        return '<p class="verdicts">No verdicts.</p>'
    out = [
        '<table class="verdicts"><thead><tr><th>verdict</th><th>at</th><th>vCPU</th><th>clock</th>'
        "<th>magnitude</th><th>first offending event</th></tr></thead><tbody>"
    ]
    for v in result.verdicts:
        magnitude = f"{v.magnitude} {v.unit}"
        if v.unit == "ns" and abs(v.magnitude) >= 1_000:
            magnitude += f" ({format_duration(v.magnitude)})"
        out.append(
            f'<tr><td title="{_esc(VERDICT_IDS.get(v.id, ""))}">{_esc(v.id)}</td>'
            f'<td title="{_esc(format_seconds(v.t_ns))}">{_esc(format_duration(v.t_ns))}</td>'
            f"<td>{'-' if v.vcpu is None else v.vcpu}</td><td>{_esc(v.clock or '-')}</td>"
            f"<td>{_esc(magnitude)}</td><td>{_esc(v.event)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _events_html(result: RunResult) -> str:
    trace = result.trace
    rows = [(e.t_ns, 0, e.actor, e.kind, e.detail) for e in trace.events]
    rows += [(m.t_ns, 1, f"dmesg vCPU {m.vcpu}", m.kind, m.text) for m in trace.messages]
    if not rows:
        return '<p class="events">No timeline events or kernel messages.</p>'
    rows.sort(key=lambda r: (r[0], r[1]))
    out = [
        f"<details><summary>Timeline: {len(trace.events)} events, {len(trace.messages)} kernel messages"
        "</summary>",
        '<table class="events"><thead><tr><th>true time</th><th>source</th><th>kind</th><th>detail</th>'
        "</tr></thead><tbody>",
    ]
    out += [
        f"<tr><td>{_esc(format_seconds(t))}</td><td>{_esc(src)}</td><td>{_esc(kind)}</td>"
        f"<td>{_esc(detail)}</td></tr>"
        for t, _, src, kind, detail in rows[:MAX_EVENT_ROWS]
    ]
    out.append("</tbody></table>")
    if len(rows) > MAX_EVENT_ROWS:
        out.append(f"<p>... and {len(rows) - MAX_EVENT_ROWS} more (all are on the timeline).</p>")
    out.append("</details>")
    return "\n".join(out)


def _combination_html(directory: Path, si: int, ci: int, result: RunResult) -> str:
    trace = result.trace
    check = result.check
    out = [
        f'<section class="combination" id="{_anchor(si, ci)}">',
        f"<h3>{_esc(trace.kernel)} x {_esc(trace.vmm)}</h3>",
    ]
    expected = (
        "none" if result.expected is None else (", ".join(ordered_ids(result.expected)) or "no verdicts")
    )
    out.append(
        f'<p class="meta">check: <span class="check-{check}">{_esc(check)}</span>'
        f" &middot; expected: {_esc(expected)} &middot; {trace.vcpus} vCPUs &middot; "
        f"ran {_esc(format_duration(trace.end_ns))} of true time &middot; "
        f"{len(trace.samples)} clock reads</p>"
    )
    if check == "skipped":
        out.append(f'<p class="skipped">Does not apply: {_esc(trace.skipped)}</p>')
        out.append("</section>")
        return "\n".join(out)
    out.append(_verdicts_html(result))
    out.append(timeline_svg(trace, result.verdicts))
    png = clock_error_png(trace, result.verdicts)
    if png is None:
        out.append('<p class="noplot">No clock reads to plot.</p>')
    else:
        name = f"{_anchor(si, ci)}-{_slug(trace.kernel)}-{_slug(trace.vmm)}.png"
        write_bytes_atomic(directory / name, png)
        width, height = png_size(png)
        alt = f"each clock's error against true time, {trace.kernel} x {trace.vmm}"
        out.append(
            f'<img class="plot" src="{_esc(name)}" width="{width}" height="{height}" alt="{_esc(alt)}">'
        )
    out.append(_events_html(result))
    out.append("</section>")
    return "\n".join(out)


def _scenario_html(
    directory: Path, si: int, scenario: Scenario, results: list[RunResult], note: str = ""
) -> str:
    out = [
        f'<section class="scenario" id="s{si}">',
        f"<h2>{_esc(scenario.name)}</h2>",
        f'<p class="description">{_esc(scenario.description)}</p>',
    ]
    if note:
        out.append(f'<p class="note">{_esc(note)}</p>')
    if scenario.path:
        out.append(f'<p class="meta">from <code>{_esc(scenario.path)}</code></p>')
    if scenario.sources:
        out.append('<p>Sources:</p><ul class="sources">')
        out += [f"<li>{_source(s)}</li>" for s in scenario.sources]
        out.append("</ul>")
    out.append(_matrix_html(si, results))
    out += [_combination_html(directory, si, ci, r) for ci, r in enumerate(results)]
    out.append("</section>")
    return "\n".join(out)


def render_page(
    directory: Path,
    runs: list[tuple[Scenario, list[RunResult]]],
    seed: int,
    notes: Mapping[str, str] | None = None,
) -> str:
    """The page's HTML; writes each combination's plot into ``directory`` on the way.

    ``notes`` maps a scenario's name to a remark shown under its
    description (the demo explains there what the nap cannot avoid).
    """
    notes = notes or {}
    counts: dict[str, int] = {}
    for _, results in runs:
        for r in results:
            counts[r.check] = counts.get(r.check, 0) + 1
    summary = ", ".join(f"{counts[c]} {c}" for c in ("pass", "fail", "unchecked", "skipped") if c in counts)
    body = [
        _scenario_html(directory, si, s, rs, notes.get(s.name, ""))
        for si, (s, rs) in enumerate(runs, start=1)
    ]
    nav = "".join(f'<li><a href="#s{si}">{_esc(s.name)}</a></li>' for si, (s, _) in enumerate(runs, start=1))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>tsclab run report</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<h1>tsclab run</h1>",
            f'<p class="meta">seed {seed} &middot; {len(runs)} scenario{"" if len(runs) == 1 else "s"}'
            f" &middot; {_esc(summary or 'no combinations')}</p>",
            f'<ul class="toc">{nav}</ul>',
            *body,
            f"<script>{_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report(
    directory: Path,
    runs: list[tuple[Scenario, list[RunResult]]],
    seed: int,
    notes: Mapping[str, str] | None = None,
) -> Path:
    """Write ``index.html`` and its plots into ``directory`` (created as needed); return the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    page = render_page(directory, runs, seed, notes)
    index = directory / "index.html"
    write_text_atomic(index, page)
    return index
