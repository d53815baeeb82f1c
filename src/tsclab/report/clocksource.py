"""Reports about one registered clocksource: a JSON record and a text view."""

from __future__ import annotations

from typing import Any

from tsclab.clocksource import Clocksource, Horizon, horizons_for
from tsclab.clocksource.horizons import cycles_to_true_ns
from tsclab.report.text import format_duration, format_frequency, format_seconds, render_table


def legacy_backstep_ns(cs: Clocksource) -> int:
    """How far a pre-6.10 reader falls behind once ``delta * mult`` wraps.

    ``(X - 2**64) >> shift == (X >> shift) - 2**(64 - shift)`` exactly,
    because 2**64 is a multiple of 2**shift: the loss is one
    ``2**(64 - shift)`` ns step per wrap of the product.
    """
    return 1 << (64 - cs.shift)


def clocksource_record(cs: Clocksource) -> dict[str, Any]:
    """Everything ``tsclab clocksource --json`` prints: integers, ns durations.

    Horizons appear as ``<key>_cycles`` (the first counter delta that
    triggers them) and ``<key>_ns`` (the shortest pause from the last tick
    that reaches it); both are null when no delta within the counter's
    range can trigger the horizon.
    """
    horizons = horizons_for(cs)
    record: dict[str, Any] = {
        "dmesg": cs.dmesg_line(),
        "name": cs.name,
        "bits": cs.bits,
        "mask": cs.mask,
        "unit": cs.unit,
        "freq": cs.freq,
        "freq_hz": cs.freq_hz,
        "mult": cs.mult,
        "shift": cs.shift,
        "maxadj": cs.maxadj,
        "max_cycles": cs.max_cycles,
        "max_cycles_ns": cycles_to_true_ns(cs.max_cycles, cs.freq_hz),
        "max_idle_ns": cs.max_idle_ns,
        "max_raw_delta": cs.max_raw_delta,
        "wrap_ns": horizons.wrap.pause_ns,
    }
    for horizon in horizons.all():
        record[f"{horizon.key}_cycles"] = horizon.cycles
        record[f"{horizon.key}_ns"] = horizon.pause_ns
    record["legacy_overflow_backstep_ns"] = (
        legacy_backstep_ns(cs) if horizons.legacy_overflow.cycles is not None else None
    )
    return record


def _horizon_row(h: Horizon) -> list[str]:
    cycles = "-" if h.cycles is None else f"{h.cycles:#x}"
    if h.pause_ns is None:
        return [h.title, cycles, "never", "-"]
    return [h.title, cycles, format_seconds(h.pause_ns), format_duration(h.pause_ns)]


def render_clocksource(cs: Clocksource) -> str:
    """The text view: the kernel's line, the registration, the horizons."""
    horizons = horizons_for(cs)
    registered = "clocksource_register_khz" if cs.unit == "khz" else "clocksource_register_hz"
    max_cycles_ns = cycles_to_true_ns(cs.max_cycles, cs.freq_hz)
    facts = [
        ["registered with", f"{registered}({cs.freq}) = {format_frequency(cs.freq_hz)}"],
        ["counter width", f"{cs.bits} bits, mask {cs.mask:#x}"],
        ["mult", str(cs.mult)],
        ["shift", str(cs.shift)],
        ["maxadj", f"{cs.maxadj} (11% of mult: NTP's steering limit)"],
        [
            "max_cycles",
            f"{cs.max_cycles:#x} = {cs.max_cycles} cycles = {format_seconds(max_cycles_ns)}",
        ],
        ["max_idle_ns", f"{cs.max_idle_ns} ns = {format_duration(cs.max_idle_ns)}"],
        ["max_raw_delta", f"{cs.max_raw_delta:#x} (87.5% of mask; 6.13+ writer cutoff)"],
        [
            "wrap period",
            f"{format_seconds(horizons.wrap.pause_ns)} = {format_duration(horizons.wrap.pause_ns)}",
        ],
    ]
    if horizons.legacy_overflow.cycles is not None:
        facts.append(["pre-6.10 overflow step", f"{legacy_backstep_ns(cs)} ns = 2^{64 - cs.shift} ns"])
    ordered = sorted(horizons.all(), key=lambda h: (h.pause_ns is None, h.pause_ns or 0, h.key))
    return "\n".join(
        [
            cs.dmesg_line(),
            "",
            render_table(["field", "value"], facts),
            "",
            "Pause horizons: the counter delta since the last tick at which each starts,",
            "and the shortest pause after that tick that reaches it.",
            "",
            render_table(
                ["horizon", "delta (cycles)", "pause", "about"],
                [_horizon_row(h) for h in ordered],
                right_align=(1, 2),
            ),
        ]
    )
