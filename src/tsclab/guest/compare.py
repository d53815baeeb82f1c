"""Predicted beside observed, row by row, each with its tolerance.

Tolerances, and why they are what they are:

``SAMPLE_TOL_NS`` (1 ms) - jumps and steps back.  The model is fed the
    TSC step the guest itself saw across the pause, and each probe sample
    reads the TSC and then the clocks within microseconds, so what is left
    is QEMU's own: its HPET and ACPI PM follow its virtual clock, the TSC
    the host's, and the two resume within the scheduling latency of
    QEMU's threads.
``frozen`` - one tick plus ``SAMPLE_TOL_NS``.  The model reads just
    before each tick, so its frozen time comes in whole ticks; the probe
    measures to the read.
``lost`` and ``jump`` - ``SAMPLE_TOL_NS`` plus ``RATE_TOL_PPM`` (20 ppm) of
    the window or the pause.  Loss is TSC time minus clock time over the
    whole window, and the pause is the TSC's step, both at the rate the
    guest kernel calibrated; QEMU's HPET and ACPI PM follow its virtual
    clock, which the real runs put up to 9 ppm from that rate.
Kernel messages - "yes" and "no" must match; a "maybe" (the model cannot
    see where the last watchdog touch fell) matches either, and is shown
    as such.  Figures the kernel prints are checked against their band.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.guest.observe import CpuObservation, Observation
from tsclab.guest.predict import Band, Prediction
from tsclab.guest.trace import CLOCKS, KernelMessage
from tsclab.kernel.lockup_rules import Verdict

SAMPLE_TOL_NS = 1_000_000
RATE_TOL_PPM = 20
LOSS_ID_THRESHOLD_NS = 1_000_000  # as check.pause_anomalies: a millisecond or more is time lost


@dataclass(frozen=True, slots=True)
class Row:
    """One compared quantity."""

    quantity: str  # jump, backwards, frozen, lost, overflow, or a kernel message kind
    clock: str  # a clock, or "" for kernel messages
    cpu: int | None  # the vCPU whose reader saw it; None for kernel messages
    predicted: str  # the band or verdict, as text
    observed: str
    tolerance_ns: int
    verdict_id: str  # the check's stable ID when the observation shows it, else ""
    ok: bool


def compare(observation: Observation, predictions: dict[int, Prediction], *, tick_ns: int) -> list[Row]:
    """Rows for each vCPU against the prediction for the pause it saw; kernel messages against vCPU 0's."""
    rows: list[Row] = []
    for cpu in observation.cpus:
        rows.extend(_cpu_rows(cpu, predictions[cpu.cpu], tick_ns))
    rows.extend(_message_rows(observation, predictions[0]))
    return rows


def _within(value: int, band: Band, tolerance: int) -> bool:
    return band.low - tolerance <= value <= band.high + tolerance


def _band_text(band: Band) -> str:
    return str(band.low) if band.low == band.high else f"{band.low}..{band.high}"


def _cpu_rows(cpu: CpuObservation, prediction: Prediction, tick_ns: int) -> list[Row]:
    rows: list[Row] = []
    loss_tol = SAMPLE_TOL_NS + cpu.window_ns * RATE_TOL_PPM // 1_000_000

    def row(quantity: str, clock: str, band: Band, value: int, tol: int, verdict_id: str) -> None:
        rows.append(
            Row(
                quantity,
                clock,
                cpu.cpu,
                _band_text(band),
                str(value),
                tol,
                verdict_id,
                _within(value, band, tol),
            )
        )

    # The pause fed to the model is TSC cycles at the guest's calibrated rate;
    # the HPET and ACPI PM follow QEMU's virtual clock, a few ppm apart.
    jump_tol = SAMPLE_TOL_NS + cpu.tsc_step_ns * RATE_TOL_PPM // 1_000_000
    for clock in CLOCKS:
        jump = cpu.jump_ns[clock]
        row("jump", clock, prediction.jump[clock], jump, jump_tol, "")
    for clock in CLOCKS:
        back = cpu.backwards_ns[clock]
        row(
            "backwards",
            clock,
            prediction.backwards[clock],
            back,
            SAMPLE_TOL_NS,
            "time-backwards" if back else "",
        )
    row(
        "frozen",
        "MONOTONIC",
        prediction.frozen,
        cpu.frozen_ns,
        tick_ns + SAMPLE_TOL_NS,
        "time-frozen" if cpu.frozen_ns else "",
    )
    for clock in CLOCKS:
        lost = cpu.lost_ns[clock]
        row(
            "lost",
            clock,
            prediction.lost[clock],
            lost,
            loss_tol,
            "wrap-loss" if lost >= LOSS_ID_THRESHOLD_NS else "",
        )
    # Overflow garbage: a reader that reads before the overdue tick gets a
    # value short by whole 2**(64-shift) ns steps, and sees the clock leap by
    # that much when the tick's update lands; one that reads after it sees
    # nothing wrong.  Either is allowed - which one happened is the finding.
    if prediction.overflow.high:
        leap = cpu.correction_ns["MONOTONIC"]
        garbage = _within(leap, prediction.overflow, SAMPLE_TOL_NS)
        ok = garbage or leap <= SAMPLE_TOL_NS
        rows.append(
            Row(
                "overflow",
                "MONOTONIC",
                cpu.cpu,
                f"0 or {_band_text(prediction.overflow)}",
                str(leap),
                SAMPLE_TOL_NS,
                "overflow-garbage" if garbage else "",
                ok,
            )
        )
    return rows


def _message_rows(observation: Observation, prediction: Prediction) -> list[Row]:
    seen = _by_kind(observation.messages)
    rows = [
        _message_row("softlockup", prediction.softlockup, seen.get("softlockup", []), "seconds"),
        _message_row("long-readout", prediction.long_readout, seen.get("long-readout", []), "cs_nsec"),
        _message_row(
            "clocksource-unstable", prediction.clocksource_unstable, seen.get("clocksource-unstable", []), ""
        ),
    ]
    printed = seen.get("long-readout", [])
    if prediction.watchdog_wrap_ns and printed:
        # The kernel's own two figures: the HPET's masked delta is the TSC's
        # interval modulo the HPET wrap (both read within microseconds), or 0
        # past the HPET's negative-motion cutoff.
        cs_nsec, wd_nsec = int(printed[0].fields["cs_nsec"]), int(printed[0].fields["wd_nsec"])
        # Where cs_nsec itself wrapped 64 bits (a 6.1 cyc2ns past its horizon), add the wraps back.
        interval = cs_nsec + prediction.watchdog_cs_wraps * prediction.watchdog_cs_wrap_ns
        expected = interval % prediction.watchdog_wrap_ns
        if prediction.watchdog_negative_ns and expected >= prediction.watchdog_negative_ns:
            expected = 0  # clocksource_delta() took the wrapped delta for negative motion
        tol = SAMPLE_TOL_NS + interval * RATE_TOL_PPM // 1_000_000
        rows.append(
            Row(
                "long-readout wd_nsec",
                "",
                None,
                str(expected),
                str(wd_nsec),
                tol,
                "",
                abs(wd_nsec - expected) <= tol,
            )
        )
    # Printed but not yet modelled: shown, never judged.
    for kind in ("rcu-stall", "hung-task", "tsc-unstable"):
        for message in seen.get(kind, []):
            rows.append(Row(kind, "", None, "not modelled", message.line[-60:], 0, kind, True))
    return rows


def _message_row(kind: str, verdict: Verdict, seen: list[KernelMessage], figure: str) -> Row:
    observed = bool(seen)
    predicted = (
        verdict.state
        if verdict.state != "yes" or not figure
        else f"yes ({figure} {verdict.low}..{verdict.high})"
    )
    if not observed:
        return Row(kind, "", None, predicted, "no", 0, "", verdict.state in ("no", "maybe"))
    ok = verdict.state in ("yes", "maybe")
    text = "yes"
    if figure:
        value = int(seen[0].fields[figure])
        text = f"yes ({figure} {value})"
        if verdict.state == "yes":
            tol = 0 if figure == "seconds" else SAMPLE_TOL_NS
            ok = verdict.low - tol <= value <= verdict.high + tol
    verdict_id = kind if kind in ("softlockup", "clocksource-unstable") else ""
    return Row(kind, "", None, predicted, text, 0, verdict_id, ok)


def _by_kind(messages: list[KernelMessage]) -> dict[str, list[KernelMessage]]:
    found: dict[str, list[KernelMessage]] = {}
    for message in messages:
        found.setdefault(message.kind, []).append(message)
    return found
