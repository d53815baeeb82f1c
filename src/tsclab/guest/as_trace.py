"""A real guest's reads as a :class:`PauseTrace`, so the model's own checks judge it.

The verdict IDs of a real run come from the same code as the model's:
:func:`tsclab.check.pause_anomalies.find_anomalies`, run on a trace built
from one vCPU's reads - the pair across the pause, every step after it,
the samples, and the two ends of every frozen stretch - with the guest's
TSC as true time.  "Expected" is the read before the pause plus the TSC
time since, for every clock: unbounded arithmetic at the guest's own rate.

The probe does not read CLOCK_TAI; with no TAI offset set (no NTP daemon
in the guest) it equals REALTIME, and is given that value so the trace has
every clock the checks know.
"""

from __future__ import annotations

from tsclab.check.pause_anomalies import LOSS_THRESHOLD_NS, find_anomalies
from tsclab.guest.observe import CpuObservation, TscRate
from tsclab.guest.trace import CLOCKS, ProbeLog, Reading
from tsclab.sim.raw_pause import PauseSetup, PauseTrace, Read


def _values(reading: Reading) -> dict[str, int]:
    return {**reading.clocks, "TAI": reading.clocks["REALTIME"]}


def _frozen_reading(tsc: int, mono: int, near: Reading) -> Reading:
    # During a freeze every clock stands still at its offset from MONOTONIC.
    offsets = {clock: value - near.clocks["MONOTONIC"] for clock, value in near.clocks.items()}
    return Reading(tsc, {clock: mono + offsets[clock] for clock in CLOCKS}, mono)


def guest_trace(
    log: ProbeLog, cpu: CpuObservation, rate: TscRate, setup: PauseSetup, pause_offset: int
) -> PauseTrace:
    """One vCPU's reads around the pause, shaped as the model's trace."""
    mine = [s for s in log.samples if s.cpu == cpu.cpu]
    before_samples = [s.reading for s in mine if s.offset < pause_offset]
    after_samples = [s.reading for s in mine if s.offset >= pause_offset]
    steps = [s for s in log.steps if s.cpu == cpu.cpu and s.offset >= pause_offset]
    if cpu.pause_step is not None:
        before, after = cpu.pause_step.before, cpu.pause_step.after
    else:  # hidden pause: the samples either side of it
        before, after = before_samples[-1], after_samples[0]
    later: list[Reading] = [r for s in steps for r in (s.before, s.after) if r.tsc > after.tsc]
    later += [r for r in after_samples if r.tsc > after.tsc]
    for frozen in (f for f in log.frozen if f.cpu == cpu.cpu and f.offset >= pause_offset):
        near = max(
            (r for r in [after, *later] if r.tsc <= frozen.tsc_first), key=lambda r: r.tsc, default=after
        )
        later += [_frozen_reading(t, frozen.mono, near) for t in (frozen.tsc_first, frozen.tsc_last)]
    later = sorted({r.tsc: r for r in later}.values(), key=lambda r: r.tsc)

    def read(label: str, reading: Reading, shortfall: int = 0) -> Read:
        elapsed = rate.to_ns(reading.tsc - before.tsc)
        expected = {clock: value + elapsed for clock, value in _values(before).items()}
        return Read(label, elapsed, reading.tsc, _values(reading), expected, "probe", shortfall, None, 0)

    # A reader that read a wrapped value shows it by the leap when the tick's update lands.
    leap = cpu.correction_ns["MONOTONIC"]
    shortfall = leap if leap >= LOSS_THRESHOLD_NS else 0
    trace = PauseTrace(setup=setup)
    trace.reads = [read("before-pause", before), read("after-resume", after, shortfall)]
    tail = later or [after]
    trace.reads.append(read("after-first-tick", tail[0]))
    trace.steady_reads = [read("sample", r) for r in tail[1:-1]]
    trace.reads.append(read("steady", tail[-1]))
    return trace


def observed_verdicts(trace: PauseTrace) -> frozenset[str]:
    """The check's IDs on a guest trace, for the clocks the probe reads."""
    return frozenset(a.id for a in find_anomalies(trace) if a.clock in CLOCKS)
