"""What raw pauses of several lengths do on several kernels, side by side."""

from __future__ import annotations

from typing import Any

from tsclab.arith import NSEC_PER_SEC
from tsclab.check.pause_anomalies import Anomaly, find_anomalies
from tsclab.clocksource import Clocksource, register
from tsclab.kernel.profiles import get_profile
from tsclab.report.text import format_duration, render_table
from tsclab.sim.raw_pause import PauseSetup, PauseTrace, run_raw_pause

DEMO_PAUSES_NS = (60 * NSEC_PER_SEC, 20 * 60 * NSEC_PER_SEC, 86_400 * NSEC_PER_SEC)
DEMO_PROFILES = ("linux-6.1", "linux-6.13")


def run_matrix(
    cs: Clocksource, pauses: tuple[int, ...], profiles: tuple[str, ...]
) -> list[tuple[str, int, PauseTrace, list[Anomaly]]]:
    """One raw pause (half a tick after the last tick) per profile and length."""
    out = []
    for pause in pauses:
        for name in profiles:
            trace = run_raw_pause(PauseSetup(cs, get_profile(name), pause, phase_ns=2_000_000))
            out.append((name, pause, trace, find_anomalies(trace)))
    return out


def _summary(anomalies: list[Anomaly]) -> str:
    mono = [a for a in anomalies if a.clock in ("MONOTONIC", "REALTIME")]
    seen: dict[str, int] = {}
    for a in mono:
        seen[a.id] = max(seen.get(a.id, 0), a.magnitude_ns)
    return ", ".join(f"{k} {format_duration(v)}" for k, v in seen.items()) or "none"


def render_matrix() -> str:
    """The demo's second part: a 2.5 GHz TSC guest on 6.1 and 6.13."""
    cs = register("tsc", 64, freq_khz=2_500_000)
    rows = []
    for name, pause, trace, anomalies in run_matrix(cs, DEMO_PAUSES_NS, DEMO_PROFILES):
        resume = trace.reads[1]
        err = resume.values["MONOTONIC"] - resume.true_ns
        tick = trace.first_tick
        work = f"{tick.accumulations} steps, {tick.second_overflows} second_overflow" if tick else "-"
        rows.append([format_duration(pause), name, format_duration(err), work, _summary(anomalies)])
    return "\n".join(
        [
            "Raw pauses of a 2.5 GHz TSC guest (HZ=250), pause starting 2 ms after a tick:",
            "",
            render_table(
                [
                    "pause",
                    "kernel",
                    "MONOTONIC error at resume",
                    "first tick's work",
                    "anomalies (MONOTONIC/REALTIME)",
                ],
                rows,
                right_align=(2,),
            ),
        ]
    )


def matrix_record() -> list[dict[str, Any]]:
    cs = register("tsc", 64, freq_khz=2_500_000)
    return [
        {
            "kernel": name,
            "pause_ns": pause,
            "anomalies": [{"id": a.id, "clock": a.clock, "magnitude_ns": a.magnitude_ns} for a in anomalies],
        }
        for name, pause, _trace, anomalies in run_matrix(cs, DEMO_PAUSES_NS, DEMO_PROFILES)
    ]
