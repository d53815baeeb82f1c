"""Report of a real-guest check: predicted beside observed, per case.

Rows carry exact ns as text ("123" or a band "low..high"); the table shows
them as durations, the JSON keeps the integers.
"""

from __future__ import annotations

import re
from typing import Any

from tsclab.guest.run import CaseResult
from tsclab.report.text import format_duration, render_table

_NUMBER = re.compile(r"^-?\d+$")
_BAND = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_HEADERS = ("quantity", "clock", "cpu", "predicted", "observed", "tolerance", "verdict", "")


def _human(text: str) -> str:
    if _NUMBER.match(text):
        return format_duration(int(text))
    if match := _BAND.match(text):
        low, high = int(match[1]), int(match[2])
        return f"{format_duration(low)} .. {format_duration(high)}"
    return re.sub(r"(cs_nsec|wd_nsec) (-?\d+)(?:\.\.(-?\d+))?", _human_figure, text)


def _human_figure(match: re.Match[str]) -> str:
    low = format_duration(int(match[2]))
    return (
        f"{match[1]} {low}" if match[3] is None else f"{match[1]} {low} .. {format_duration(int(match[3]))}"
    )


def render_case(result: CaseResult) -> str:
    case, obs = result.case, result.observation
    status = "PASS" if result.passed else "FAIL"
    head = (
        f"{case.name}: {status} - {case.why}\n"
        f"  {case.vcpus} vCPU, clocksource {result.facts.clocksource}, {case.mode} pause of "
        f"{format_duration(case.pause_ns)} (host measured {format_duration(obs.pause.measured_ns)}); "
        f"TSC {result.facts.tsc_khz} kHz, HZ {result.facts.hz}"
    )
    for cpu in obs.cpus:
        if cpu.since_update_ns is not None:
            head += (
                f"\n  vCPU {cpu.cpu}: last timekeeping update {format_duration(cpu.since_update_ns)} "
                f"before the pause (longest gap between updates before it: "
                f"{format_duration(cpu.longest_update_gap_ns)})"
            )
    rows = [
        (
            row.quantity,
            row.clock,
            "" if row.cpu is None else str(row.cpu),
            _human(row.predicted),
            _human(row.observed),
            format_duration(row.tolerance_ns) if row.tolerance_ns else "",
            row.verdict_id,
            "ok" if row.ok else "MISMATCH",
        )
        for row in result.rows
    ]
    return head + "\n" + render_table(_HEADERS, rows)


def render_summary(results: list[CaseResult]) -> str:
    rows = [
        (
            r.case.name,
            r.facts.clocksource,
            str(r.case.vcpus),
            r.case.mode,
            format_duration(r.case.pause_ns),
            ", ".join(sorted({row.verdict_id for row in r.rows if row.verdict_id})) or "-",
            "PASS" if r.passed else "FAIL",
        )
        for r in results
    ]
    return render_table(
        ("case", "clocksource", "vCPUs", "mode", "pause", "verdicts observed", "result"), rows
    )


def case_record(result: CaseResult) -> dict[str, Any]:
    case, obs = result.case, result.observation
    return {
        "case": case.name,
        "why": case.why,
        "passed": result.passed,
        "clocksource": result.facts.clocksource,
        "vcpus": case.vcpus,
        "mode": case.mode,
        "pause_ns": case.pause_ns,
        "host_pause_ns": obs.pause.measured_ns,
        "guest_pause_ns": {str(cpu): p.guest_pause_ns for cpu, p in result.predictions.items()},
        "since_update_ns": {str(cpu.cpu): cpu.since_update_ns for cpu in obs.cpus},
        "longest_update_gap_ns": {str(cpu.cpu): cpu.longest_update_gap_ns for cpu in obs.cpus},
        "tsc_khz": result.facts.tsc_khz,
        "hz": result.facts.hz,
        "workdir": str(result.workdir),
        "rows": [
            {
                "quantity": row.quantity,
                "clock": row.clock,
                "cpu": row.cpu,
                "predicted": row.predicted,
                "observed": row.observed,
                "tolerance_ns": row.tolerance_ns,
                "verdict_id": row.verdict_id,
                "ok": row.ok,
            }
            for row in result.rows
        ],
        "kernel_messages": [m.line for m in obs.messages],
    }
