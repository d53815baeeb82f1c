"""``tsclab advise`` output: reads against true time, anomalies, writer work."""

from __future__ import annotations

from typing import Any

from tsclab.check.pause_anomalies import Anomaly
from tsclab.report.text import format_duration, format_seconds, render_table
from tsclab.sim.raw_pause import CLOCKS, PauseTrace


def _true_value(trace: PauseTrace, clock: str, true_ns: int) -> int:
    """What a perfect clock would read at ``true_ns`` after boot."""
    epoch_ns = trace.setup.epoch_s * 1_000_000_000
    return true_ns + epoch_ns if clock in ("REALTIME", "TAI") else true_ns


def advise_record(trace: PauseTrace, anomalies: list[Anomaly]) -> dict[str, Any]:
    """The JSON object of ``tsclab advise --json`` (integers, ns)."""
    setup = trace.setup
    reads = []
    for read in trace.reads:
        for reader, values in (("kernel", read.values), ("vdso", read.vdso)):
            if values is None:
                continue  # the vDSO falls back to the syscall: the kernel read is the one
            for clock in CLOCKS:
                reads.append(
                    {
                        "when": read.label,
                        "clock": clock,
                        "reader": reader,
                        "true_ns": read.true_ns,
                        "value_ns": values[clock],
                        "expected_ns": read.expected[clock],
                        "error_ns": values[clock] - _true_value(trace, clock, read.true_ns),
                    }
                    | ({"reader_path": read.reader_path} if reader == "kernel" else {})
                )
    tick = trace.first_tick
    return {
        "profile": setup.profile.name,
        "clocksource": trace.setup.clocksource.dmesg_line(),
        "pause_ns": setup.pause_ns,
        "phase_ns": setup.phase_ns,
        "hz": setup.hz,
        "vdso": "served" if trace.reads[0].vdso is not None else "falls back to the syscall",
        "reads": reads,
        "anomalies": [
            {
                "id": a.id,
                "clock": a.clock,
                "reader": a.reader,
                "magnitude_ns": a.magnitude_ns,
                "first_read": a.first_read,
                "detail": a.detail,
            }
            for a in anomalies
        ],
        "writer": {
            "offset_cycles": tick.offset if tick else 0,
            "accumulations": tick.accumulations if tick else 0,
            "second_overflow_calls": tick.second_overflows if tick else 0,
        },
    }


def render_advise(trace: PauseTrace, anomalies: list[Anomaly]) -> str:
    """Tables: each clock at each read (error against true time), then anomalies."""
    setup = trace.setup
    rows = []
    for read in trace.reads:
        for clock in CLOCKS:
            err = read.values[clock] - _true_value(trace, clock, read.true_ns)
            rows.append(
                [
                    read.label,
                    clock,
                    format_seconds(read.values[clock]),
                    format_seconds(err),
                    _vdso_cell(read.vdso, read.values, clock),
                    read.reader_path,
                ]
            )
    lines = [
        f"{setup.profile.name}, {setup.clocksource.dmesg_line()}",
        f"raw pause of {format_duration(setup.pause_ns)} starting {format_duration(setup.phase_ns)} "
        f"after the last tick (HZ={setup.hz}); the counter kept running",
        "",
        render_table(
            ["read", "clock", "value (kernel)", "error vs true time", "vDSO", "reader path"],
            rows,
            right_align=(2, 3),
        ),
        "",
    ]
    if anomalies:
        lines.append(
            render_table(
                ["anomaly", "clock", "reader", "magnitude", "first seen", "detail"],
                [
                    [a.id, a.clock, a.reader, format_duration(a.magnitude_ns), a.first_read, a.detail]
                    for a in anomalies
                ],
            )
        )
    else:
        lines.append("no anomalies")
    if trace.first_tick is not None:
        tick = trace.first_tick
        lines += [
            "",
            f"first tick after resume: offset {tick.offset} cycles, {tick.accumulations} accumulation steps, "
            f"{tick.second_overflows} second_overflow() calls",
        ]
    return "\n".join(lines)


def _vdso_cell(vdso: dict[str, int] | None, kernel: dict[str, int], clock: str) -> str:
    """``same``, the vDSO's own value where it differs, or ``syscall`` (fallback)."""
    if vdso is None:
        return "syscall"
    if vdso[clock] == kernel[clock]:
        return "same"
    return format_seconds(vdso[clock])
