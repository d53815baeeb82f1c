"""``tsclab run`` text output: the (kernel profile x VMM policy) verdict matrix.

Rows are kernel profiles and columns VMM policies, each in the order the
results first name them (the scenario's order).  A cell lists the
combination's verdict IDs in :data:`~tsclab.check.verdict.VERDICT_IDS`
order, or ``ok``; a checked cell is marked ``✓`` (as expected) or ``✗``
(with what was expected); a combination that does not apply reads ``n/a``
with its reason in a footnote.
"""

from __future__ import annotations

from collections.abc import Iterable

from tsclab.check.verdict import VERDICT_IDS, RunResult
from tsclab.report.text import format_duration, render_table
from tsclab.scenario.model import Scenario

PASS_MARK = "✓"
FAIL_MARK = "✗"
MISSING_CELL = "-"  # a (kernel, vmm) pair the results do not cover


def ordered_ids(ids: Iterable[str]) -> list[str]:
    """Verdict IDs in report order (unknown IDs, if any, last and sorted)."""
    wanted = set(ids)
    known = [i for i in VERDICT_IDS if i in wanted]
    return known + sorted(wanted - set(VERDICT_IDS))


def _id_list(ids: Iterable[str]) -> str:
    return ", ".join(ordered_ids(ids)) or "ok"


def matrix_axes(
    results: list[RunResult],
) -> tuple[list[str], list[str], dict[tuple[str, str], RunResult]]:
    """Kernels (rows) and VMMs (columns) in first-seen order, and each pair's result."""
    kernels: list[str] = []
    vmms: list[str] = []
    cells: dict[tuple[str, str], RunResult] = {}
    for result in results:
        kernel, vmm = result.trace.kernel, result.trace.vmm
        if (kernel, vmm) in cells:
            raise ValueError(f"two results for kernel {kernel!r} x vmm {vmm!r}")
        cells[kernel, vmm] = result
        if kernel not in kernels:
            kernels.append(kernel)
        if vmm not in vmms:
            vmms.append(vmm)
    return kernels, vmms, cells


def matrix_cell(result: RunResult) -> str:
    """A matrix cell's text (without a skipped cell's footnote number)."""
    check = result.check
    if check == "skipped":
        return "n/a"
    text = _id_list(result.ids)
    if check == "pass":
        return f"{PASS_MARK} {text}"
    if check == "fail":
        expected = ", ".join(ordered_ids(result.expected or ())) or "none"
        return f"{FAIL_MARK} {text} (expected: {expected})"
    return text


def _summary(results: list[RunResult]) -> str:
    counts = dict.fromkeys(("pass", "fail", "unchecked", "skipped"), 0)
    for result in results:
        counts[result.check] += 1
    parts = [f"{n} {check}" for check, n in counts.items() if n]
    noun = "combination" if len(results) == 1 else "combinations"
    return f"{len(results)} {noun}: " + (", ".join(parts) or "none")


def render_matrix(scenario: Scenario, results: list[RunResult]) -> str:
    """The scenario's title, its verdict matrix, a summary line and any footnotes."""
    kernels, vmms, cells = matrix_axes(results)
    footnotes: list[str] = []
    rows = []
    for kernel in kernels:
        row = [kernel]
        for vmm in vmms:
            result = cells.get((kernel, vmm))
            if result is None:
                row.append(MISSING_CELL)
                continue
            text = matrix_cell(result)
            if result.check == "skipped":
                footnotes.append(f"[{len(footnotes) + 1}] {kernel} x {vmm}: {result.trace.skipped}")
                text = f"{text} [{len(footnotes)}]"
            row.append(text)
        rows.append(row)
    title = f"{scenario.name}: {scenario.description}" if scenario.description else scenario.name
    lines = [title, ""]
    if results:
        lines.append(render_table(["kernel \\ vmm", *vmms], rows))
    lines.append(_summary(results))
    if footnotes:
        lines += ["", *footnotes]
    return "\n".join(lines)


def _magnitude(magnitude: int, unit: str) -> str:
    text = f"{magnitude} {unit}"
    if unit == "ns" and abs(magnitude) >= 1_000:
        text += f" ({format_duration(magnitude)})"
    return text


def render_verdict_details(result: RunResult) -> str:
    """One line per verdict: ID, first event's true time, vCPU, clock, magnitude, event."""
    if not result.verdicts:
        return "no verdicts"
    rows = [
        [
            v.id,
            format_duration(v.t_ns),
            "-" if v.vcpu is None else str(v.vcpu),
            v.clock or "-",
            _magnitude(v.magnitude, v.unit),
            v.event,
        ]
        for v in result.verdicts
    ]
    return render_table(["verdict", "at", "vcpu", "clock", "magnitude", "event"], rows, right_align=(1, 2))
