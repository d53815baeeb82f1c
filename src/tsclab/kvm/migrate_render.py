"""``tsclab kvm migrate`` as text: one migration in detail, and several as a table."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from tsclab.kvm.agreement import Agreement
from tsclab.kvm.facts import HostFacts
from tsclab.kvm.migrate import MigrationReport

WIDTH = 100


def duration(ns: int) -> str:
    """``-2.012954 s``, ``527.4 us``, ``459 ns``: the unit that keeps the figure short."""
    size = abs(ns)
    if size < 1_000:
        return f"{ns} ns"
    if size < 1_000_000:
        return f"{ns / 1e3:.1f} us"
    if size < 1_000_000_000:
        return f"{ns / 1e6:.3f} ms"
    return f"{ns / 1e9:.6f} s"


def _wrap(label: str, text: str, indent: int = 2) -> list[str]:
    first = " " * indent + f"{label:<24}"
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=" " * len(first), break_on_hyphens=False
    ) or [first.rstrip()]


def header(facts: HostFacts, device: str) -> str:
    backends = ", ".join(facts.backends) or "no known backend module"
    return (
        f"tsclab kvm migrate: {device} on Linux {facts.kernel}, clocksource {facts.clocksource}, {backends}; "
        f"TSC {facts.tsc_khz} kHz, TSC offsets {'applied' if facts.tsc_offset_effective else 'NOT applied'}, "
        f"scaling {'yes' if facts.tsc_scaling else 'no'}"
    )


def _where(report: MigrationReport) -> str:
    if report.namespaces is not None:
        return f"TCP over a veth between network namespaces {report.namespaces[0]} and {report.namespaces[1]}"
    return "TCP on 127.0.0.1"


def render(report: MigrationReport) -> str:
    """One migration: outcome, what the guest saw, the model's verdict, every step."""
    o = report.options
    lines = [f"{report.policy.label}: {report.policy.summary}"]
    lines += _wrap("transport", f"{_where(report)}; source and destination VMM processes")
    if o.downtime_ns:
        lines += _wrap("injected stop", duration(o.downtime_ns))
    if o.fault is not None:
        lines += _wrap("injected fault", str(o.fault))
    verdict = "migrated" if report.ok else "FAILED"
    lines += _wrap("outcome", f"{verdict}; the guest runs on the {report.guest_on}")
    if report.error:
        lines += _wrap("error", report.error)
    m, a = report.measurement, report.agreement
    if m is not None and not report.stopped:
        lines += _wrap(
            "no stop",
            f"the migration failed before the guest stopped; {duration(m.downtime_ns)} between a reading "
            f"before the attempt and one after (+/- {duration(m.error_ns)})",
        )
    elif m is not None:
        side = "destination" if report.guest_on == "destination" else "source after the stop"
        lines += _wrap(
            "real downtime",
            f"{duration(m.downtime_ns)} (host realtime from the last reading before the stop to the first on "
            f"the {side}; +/- {duration(m.error_ns)})",
        )
    if m is not None:
        back = " - it WENT BACK" if m.backwards else ", never back"
        lines += _wrap("guest kvmclock", f"advanced {duration(m.kvmclock_advance_ns)}{back}")
        lines += _wrap(
            "kvmclock discontinuity", f"{duration(m.kvmclock_discontinuity_ns)} (advance minus downtime)"
        )
        lines += _wrap(
            "guest TSC",
            f"advanced {m.tsc_advance_cycles} cycles = {duration(m.tsc_advance_ns)}; discontinuity "
            f"{duration(m.tsc_discontinuity_ns)}",
        )
    cs = report.clock_state
    if cs:
        lines += _wrap(
            "clock-state time",
            f"{duration(cs['total'])} of the downtime: source steps {duration(cs['source_steps'])}, "
            f"CLOCK message {duration(cs['clock_message'])}, destination steps "
            f"{duration(cs['destination_steps'])}",
        )
    if a is not None:
        verdict = "agrees" if a.agrees else "DISAGREES"
        lines += _wrap(
            "model",
            f"kvmclock discontinuity {duration(a.predicted_kvmclock_discontinuity_ns)} predicted, "
            f"{duration(a.kvmclock_difference_ns)} off; TSC advance {duration(a.tsc_difference_ns)} off; "
            f"tolerance {duration(a.tolerance_ns)}: {verdict} (guest TSC modelled as: {a.tsc_model}; on a "
            f"KVM that applies TSC offsets the TSC discontinuity would be "
            f"{duration(a.intended_tsc_discontinuity_ns)})",
        )
    if report.steps:
        lines.append("  steps:")
        for r in report.steps:
            flag = " (emulated)" if r.emulated else ""
            lines.append(
                f"    {r.side:<11} {r.phase:<14} {r.step:<22} {duration(r.duration_ns):>10}  {r.status}{flag}"
            )
            lines += textwrap.wrap(r.detail, WIDTH, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(lines)


def _verdict(a: Agreement) -> str:
    return (
        f"{'yes' if a.agrees else 'NO'} ({duration(a.kvmclock_difference_ns)} / {duration(a.tolerance_ns)})"
    )


TABLE_HEAD = (
    "policy",
    "outcome",
    "downtime",
    "kvmclock jump",
    "TSC advance",
    "clock state",
    "model",
    "agrees",
)


def table(reports: Sequence[MigrationReport]) -> str:
    """Per policy: real downtime, guest kvmclock discontinuity, TSC advance, clock-state time, model."""
    rows = [TABLE_HEAD]
    for r in reports:
        m, a = r.measurement, r.agreement
        rows.append(
            (
                r.policy.label,
                "migrated" if r.ok else "failed",
                "-" if m is None else duration(m.downtime_ns),
                "-" if m is None else duration(m.kvmclock_discontinuity_ns),
                "-" if m is None else duration(m.tsc_advance_ns),
                duration(r.clock_state.get("total", 0)),
                "-" if a is None else duration(a.predicted_kvmclock_discontinuity_ns),
                "-" if a is None else _verdict(a),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEAD))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
