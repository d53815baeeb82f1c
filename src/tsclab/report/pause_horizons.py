"""The pause-horizon overview: common clocksources side by side, in words.

For each clocksource, the table lists the pause lengths (from the last
tick) at which guest timekeeping changes behaviour, and one line says what
a pause longer than each horizon does.  Horizons further out than
``REACHABLE_NS`` (a year) are summarised rather than spelled out: no host
pauses a guest for centuries.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from tsclab.clocksource import Clocksource, Horizons, counter_kind, horizons_for
from tsclab.clocksource.horizons import CONSEQUENCES, NEVER_REACHED
from tsclab.report.clocksource import clocksource_record, legacy_backstep_ns
from tsclab.report.text import format_duration, format_frequency, render_table

REACHABLE_NS = 365 * 86400 * 10**9


@dataclass(frozen=True, slots=True)
class DemoCounter:
    """One row of the overview: a counter kind at a frequency, with a label."""

    kind: str
    freq: int  # in the kind's registration unit
    label: str

    def register(self) -> Clocksource:
        return counter_kind(self.kind).register(self.freq)


DEMO_COUNTERS: tuple[DemoCounter, ...] = (
    DemoCounter("tsc", 2_500_000, "tsc 2.5 GHz"),
    DemoCounter("tsc", 3_000_000, "tsc 3.0 GHz"),
    DemoCounter("tsc", 2_000_000, "tsc 2.0 GHz (shift-23 band)"),
    DemoCounter("tsc", 3_700_000, "tsc 3.7 GHz (shift-23 band)"),
    DemoCounter("kvm-clock", 1_000_000_000, "kvm-clock"),
    DemoCounter("hpet", 14_318_180, "hpet 14.318 MHz"),
    DemoCounter("hpet", 100_000_000, "hpet 100 MHz (QEMU)"),
    DemoCounter("acpi_pm", 3_579_545, "acpi_pm"),
)


def consequence_line(label: str, horizons: Horizons) -> str:
    """One sentence per clocksource: past each horizon, what happens."""
    cs = horizons.clocksource
    fields = {
        "wrap": format_duration(horizons.wrap.pause_ns),
        "backstep": format_duration(legacy_backstep_ns(cs)),
    }
    reachable = [h for h in horizons.all() if h.pause_ns is not None and h.pause_ns < REACHABLE_NS]
    reachable.sort(key=lambda h: (h.pause_ns, h.key))
    clauses = []
    for pause_ns, group in groupby(reachable, key=lambda h: h.pause_ns):
        texts = [CONSEQUENCES[h.key].format(**fields) for h in group]
        clauses.append(f"past {format_duration(pause_ns)}, " + "; ".join(texts))
    never = [NEVER_REACHED[h.key] for h in horizons.all() if h.cycles is None and h.key in NEVER_REACHED]
    distant = [h for h in horizons.all() if h.pause_ns is not None and h.pause_ns >= REACHABLE_NS]
    tail = []
    if never:
        tail.append("; ".join(never))
    if distant:
        nearest = min(h.pause_ns for h in distant if h.pause_ns is not None)
        tail.append(f"nothing else happens before {format_duration(nearest)}")
    sentences = [text[0].upper() + text[1:] for text in (*clauses, *tail)]
    return f"{label}: " + ". ".join(sentences) + "."


def overview_rows(counters: tuple[DemoCounter, ...] = DEMO_COUNTERS) -> list[tuple[str, Horizons]]:
    """Register every demo counter and compute its horizons."""
    return [(c.label, horizons_for(c.register())) for c in counters]


def render_overview(counters: tuple[DemoCounter, ...] = DEMO_COUNTERS) -> str:
    """The table of horizons, then one line of consequences per clocksource."""
    rows = overview_rows(counters)
    table = render_table(
        [
            "clocksource",
            "freq",
            "bits",
            "shift",
            "max_idle_ns",
            "6.10+ slow path",
            "pre-6.10 overflow",
            "50% negative",
            "87.5% negative",
            "wrap",
        ],
        [
            [
                label,
                format_frequency(h.clocksource.freq_hz),
                str(h.clocksource.bits),
                str(h.clocksource.shift),
                format_duration(h.clocksource.max_idle_ns),
                format_duration(h.slow_path.pause_ns),
                format_duration(h.legacy_overflow.pause_ns),
                format_duration(h.reader_negative.pause_ns),
                format_duration(h.writer_negative_6_13.pause_ns),
                format_duration(h.wrap.pause_ns),
            ]
            for label, h in rows
        ],
        right_align=tuple(range(1, 10)),
    )
    lines = [consequence_line(label, h) for label, h in rows]
    return "\n".join(
        [
            "Pause horizons: how long a guest can be paused, counted from its last tick,",
            "with its counter running on (no guest involvement), before each effect starts.",
            "",
            table,
            "",
            "What a longer pause does:",
            "",
            *lines,
        ]
    )


def overview_record(counters: tuple[DemoCounter, ...] = DEMO_COUNTERS) -> list[dict[str, Any]]:
    """The overview as JSON-ready data (integers, ns)."""
    return [
        {"label": label, **clocksource_record(h.clocksource), "consequences": consequence_line(label, h)}
        for label, h in overview_rows(counters)
    ]
