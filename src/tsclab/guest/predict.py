"""What the model says a real guest will show across one pause.

The guest kernel is run through :func:`tsclab.sim.raw_pause.run_raw_pause`
with the clocksource registered exactly as the guest registered it, the
kernel profile of the guest's version, HZ from its config, and the pause
the guest's hardware saw (the TSC step across it; zero when QEMU hid it).
Where in its tick the guest was stopped is read off the guest (the time
since the last timekeeping update, from CLOCK_MONOTONIC_COARSE); what
the model cannot know - whether a reader ran before or after the overdue
tick - is covered by taking both reads: each prediction is a band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsclab.arith import U64_MAX
from tsclab.check.pause_anomalies import Anomaly, find_anomalies
from tsclab.clocksource import Clocksource, register
from tsclab.clocksource.counters import ACPI_PM_HZ, HPET_QEMU_PERIOD_FS, hpet_freq_from_period
from tsclab.guest.trace import CLOCKS
from tsclab.kernel.lockup_rules import (
    Verdict,
    counter_wrap_ns,
    long_readout_after_gap,
    softlockup_after_gap,
    softlockup_reported,
)
from tsclab.kernel.profiles import KernelProfile
from tsclab.sim.raw_pause import PauseSetup, PauseTrace, run_raw_pause


@dataclass(frozen=True, slots=True)
class Band:
    """An inclusive range of ns the model allows."""

    low: int
    high: int

    @classmethod
    def of(cls, values: list[int]) -> Band:
        return cls(min(values), max(values))


@dataclass(frozen=True, slots=True)
class GuestFacts:
    """What the guest's boot says about itself, as the predictions need it."""

    clocksource: str
    tsc_khz: int
    hz: int
    vcpus: int
    sched_clock_stable: bool
    tsc_watched: bool  # the TSC is on the clocksource watchdog's list


@dataclass
class Prediction:
    guest_pause_ns: int
    clocksource: Clocksource
    jump: dict[str, Band] = field(default_factory=dict)
    backwards: dict[str, Band] = field(default_factory=dict)
    frozen: Band = field(default_factory=lambda: Band(0, 0))
    lost: dict[str, Band] = field(default_factory=dict)
    overflow: Band = field(
        default_factory=lambda: Band(0, 0)
    )  # the 64-bit delta*mult wrap's shortfall on MONOTONIC
    softlockup: Verdict = field(default_factory=lambda: Verdict("no"))
    long_readout: Verdict = field(default_factory=lambda: Verdict("no"))
    watchdog_wrap_ns: int = 0  # the clocksource watchdog's (HPET's) wrap; 0: no watchdog runs
    watchdog_cs_wraps: int = 0  # times the watchdog's own cs_nsec = (delta * mult) >> shift wrapped 64 bits
    watchdog_cs_wrap_ns: int = 0  # what one such wrap takes off cs_nsec: 2**(64 - shift) ns
    watchdog_negative_ns: int = 0  # the watchdog's masked delta from here on reads as 0 (0: no cutoff)
    clocksource_unstable: Verdict = field(default_factory=lambda: Verdict("no"))
    # The model's check IDs (tsclab advise's), for the clocks the probe reads:
    # those every phase shows, and those some phase or reader timing may show.
    verdicts_certain: frozenset[str] = frozenset()
    verdicts_possible: frozenset[str] = frozenset()


def _qemu_hpet() -> Clocksource:
    """QEMU's HPET as Linux registers it: a 10 ns period, driven as a 32-bit counter."""
    return register("hpet", 32, freq_hz=hpet_freq_from_period(HPET_QEMU_PERIOD_FS))


def guest_clocksource(facts: GuestFacts) -> Clocksource:
    """The clocksource as the guest's driver registered it."""
    if facts.clocksource == "tsc":
        return register("tsc", 64, freq_khz=facts.tsc_khz)
    if facts.clocksource == "hpet":
        return _qemu_hpet()
    if facts.clocksource == "acpi_pm":
        return register("acpi_pm", 24, freq_hz=ACPI_PM_HZ)
    raise ValueError(f"no model of the guest clocksource {facts.clocksource!r}")


def predict(
    facts: GuestFacts, profile: KernelProfile, guest_pause_ns: int, since_update_ns: int | None = None
) -> Prediction:
    """The bands and verdicts for a pause of ``guest_pause_ns`` as the guest's counters saw it.

    ``since_update_ns``: how long before the pause timekeeping last updated,
    where the guest told us (its MONOTONIC - MONOTONIC_COARSE); otherwise
    every phase within a tick is tried.
    """
    cs = guest_clocksource(facts)
    tick_ns = 1_000_000_000 // facts.hz
    phases = (since_update_ns,) if since_update_ns is not None else (0, tick_ns // 2, tick_ns - 1)
    from_update = since_update_ns is not None
    traces = [
        run_raw_pause(
            PauseSetup(
                clocksource=cs,
                profile=profile,
                pause_ns=guest_pause_ns,
                phase_ns=phase,
                hz=facts.hz,
                phase_from_update=from_update,
            )
        )
        for phase in phases
    ]
    # The checks run once per trace; every figure below is read off their findings.
    found = [_reader_anomalies(t) for t in traces]
    prediction = Prediction(guest_pause_ns, cs)
    for clock in CLOCKS:
        prediction.jump[clock] = Band.of([j for t in traces for j in _jumps(t, clock)])
        prediction.backwards[clock] = Band.of([_magnitude(f, "time-backwards", clock) for f in found])
        prediction.lost[clock] = Band.of([_lost(t, clock) for t in traces])
    prediction.frozen = Band.of([_magnitude(f, "time-frozen", "MONOTONIC") for f in found])
    per_phase = [_verdicts(f) for f in found]
    # A reader may read before or after the overdue tick's update: only the
    # former sees overflow garbage, so that one is never certain.
    prediction.verdicts_certain = frozenset.intersection(*per_phase) - {"overflow-garbage"}
    prediction.verdicts_possible = frozenset.union(*per_phase)
    prediction.overflow = Band.of([_magnitude(f, "overflow-garbage", "MONOTONIC") for f in found])
    _predict_messages(prediction, facts, profile)
    return prediction


def _reader_values(trace: PauseTrace, index: int) -> dict[str, int]:
    # User space reads through the vDSO where the clocksource has a vDSO mode.
    read = trace.reads[index]
    return read.vdso if read.vdso is not None else read.values


def _jumps(trace: PauseTrace, clock: str) -> list[int]:
    """The step from the last read before the pause to the first after, before or after the tick."""
    before = _reader_values(trace, 0)[clock]
    return [_reader_values(trace, 1)[clock] - before, _reader_values(trace, 2)[clock] - before]


def _reader_anomalies(trace: PauseTrace) -> list[Anomaly]:
    """The checks' findings for the reader user space uses: the vDSO where it serves, else the kernel."""
    reader = "vdso" if trace.reads[0].vdso is not None else "kernel"
    return [a for a in find_anomalies(trace) if a.reader == reader]


def _magnitude(found: list[Anomaly], anomaly_id: str, clock: str) -> int:
    return max((a.magnitude_ns for a in found if a.id == anomaly_id and a.clock == clock), default=0)


def _verdicts(found: list[Anomaly]) -> frozenset[str]:
    """The IDs for the clocks the probe reads; NTP's is left out (no NTP in the guest)."""
    return frozenset(a.id for a in found if a.clock in CLOCKS and a.id != "ntp-maxerror")


def _lost(trace: PauseTrace, clock: str) -> int:
    steady = trace.reads[-1]
    return steady.expected[clock] - steady.values[clock]


def _predict_messages(prediction: Prediction, facts: GuestFacts, profile: KernelProfile) -> None:
    pause, frozen = prediction.guest_pause_ns, prediction.frozen
    # Either the interval is short and nothing skewed, or it is long and skipped.
    prediction.clocksource_unstable = Verdict("no")
    if facts.tsc_watched and profile.watchdog != "interval-skip":
        # An older watchdog compares a long interval too: not modelled here.
        prediction.clocksource_unstable = Verdict("maybe")
    elif facts.tsc_watched:
        # The watchdog timer is a jiffies timer: it runs when time moves again,
        # after the pause and any freeze; it reads the TSC (never wraps) against
        # the HPET (wraps), and skips when the interval is long.
        low = long_readout_after_gap(pause + frozen.low, facts.hz)
        high = long_readout_after_gap(pause + frozen.high, facts.hz)
        verdict = _merge(low, high)
        tsc = register("tsc", 64, freq_khz=facts.tsc_khz)
        if profile.watchdog_delta == "wrapping":
            # cs_nsec is clocksource_cyc2ns(): a u64 delta * mult, which wraps too.
            printed = [_cyc2ns(tsc, ns) for ns in (verdict.low, verdict.high)]
            prediction.watchdog_cs_wraps = printed[0][1]
            prediction.watchdog_cs_wrap_ns = 1 << (64 - tsc.shift)
            if printed[0][1] == printed[1][1]:
                verdict = Verdict(verdict.state, printed[0][0], printed[1][0])
        prediction.long_readout = verdict
        hpet = _qemu_hpet()
        wrap = counter_wrap_ns(hpet.freq_hz, hpet.bits)
        prediction.watchdog_wrap_ns = wrap
        # The watchdog's own delta goes through clocksource_delta(): past the
        # negative-motion cutoff it reads 0.
        prediction.watchdog_negative_ns = wrap // 2 if profile.writer_negative == "msb" else wrap - wrap // 8
    # local_clock() runs on the TSC when sched_clock is stable: it sees the
    # pause and the freeze after it whatever timekeeping does.  Unstable, it
    # is held within a tick of ktime, which jumps by MONOTONIC's jump.
    if facts.sched_clock_stable:
        gap = _merge(softlockup_after_gap(pause + frozen.low), softlockup_after_gap(pause + frozen.high))
    else:
        jump = prediction.jump["MONOTONIC"]
        gap = _merge(softlockup_after_gap(max(jump.low, 0)), softlockup_after_gap(max(jump.high, 0)))
    ktime_jump = max(prediction.jump["MONOTONIC"].low, 0)
    prediction.softlockup = softlockup_reported(gap, ktime_jump, prediction.long_readout.state)


def _cyc2ns(cs: Clocksource, interval_ns: int) -> tuple[int, int]:
    """``clocksource_cyc2ns()`` of the cycles in ``interval_ns``: (printed ns, 64-bit wraps)."""
    product = (interval_ns * cs.freq_hz // 1_000_000_000) * cs.mult
    return (product & U64_MAX) >> cs.shift, product >> 64


def _merge(a: Verdict, b: Verdict) -> Verdict:
    """Either verdict may hold; a "no" carries no figures, so it does not widen the range."""
    if a.state == "no" and b.state == "no":
        return a
    spoken = [v for v in (a, b) if v.state != "no"]
    state = a.state if a.state == b.state else "maybe"
    return Verdict(state, min(v.low for v in spoken), max(v.high for v in spoken))
