"""Anomalies of a raw pause, with stable IDs, read off a :class:`PauseTrace`.

IDs (stable; other tools match on them):

``time-backwards``
    a clock read lower than the read before it; magnitude: the step back.
``overflow-garbage``
    a pre-6.10 reader's ``delta * mult`` wrapped 64 bits; magnitude: how
    far the read fell short of the exact arithmetic (whole ``2**(64-shift)``
    ns steps).  Judged on the MONOTONIC reader base (kernel or vDSO),
    reported for every clock built on it.
``wrap-loss``
    in steady state the clock is behind where unbounded arithmetic would
    have it - lost to counter wraps or to a negative-motion clamp;
    magnitude: the time lost (reported from ``LOSS_THRESHOLD_NS``).
``time-frozen``
    consecutive reads returned the same value although the counter moved on
    (reads stuck until the next update); magnitude: the true time spent stuck.
``ntp-maxerror``
    ``time_maxerror`` grew over the pause (500 us per accumulated second);
    magnitude: the growth in ns.  ``unsync`` says whether it crossed
    NTP's 16 s limit and set ``STA_UNSYNC``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from tsclab.arith import NSEC_PER_USEC
from tsclab.sim.raw_pause import CLOCKS, PauseTrace, Read

# NTP steering moves a clock by a few ns against the unbounded reference;
# anything a millisecond or more behind is time the guest lost.
LOSS_THRESHOLD_NS = 1_000_000


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding: stable ID, clock, reader, magnitude and where it first showed."""

    id: str
    clock: str
    magnitude_ns: int
    first_read: str
    detail: str
    reader: str = "kernel"  # "kernel" (the syscall getters) or "vdso"


Values = list[dict[str, int]]  # one reader's values, aligned with the reads
ORDER = ("time-backwards", "overflow-garbage", "wrap-loss", "time-frozen", "ntp-maxerror")
READERS = ("kernel", "vdso")


def find_anomalies(trace: PauseTrace) -> list[Anomaly]:
    """Every anomaly in the trace, in a fixed order (by ID, clock, reader).

    Kernel reads always count; vDSO reads count where the vDSO served them
    (where it falls back, its reads are the kernel's).
    """
    reads: list[Read] = [*trace.reads[:3], *trace.steady_reads, trace.reads[-1]]
    found: list[Anomaly] = []
    after_resume = trace.reads[1]
    for reader, values in _readers(reads):
        shortfall = (
            after_resume.overflow_shortfall_ns
            if reader == "kernel"
            else after_resume.vdso_overflow_shortfall_ns
        )
        for clock in CLOCKS:
            found.extend(_backwards(clock, reads, values, reader))
            found.extend(_frozen(clock, reads, values, reader))
            found.extend(_garbage(clock, after_resume, shortfall, reader))
            found.extend(_loss(clock, trace.reads[-1], values[-1], reader))
    growth = (trace.maxerror_after_us - trace.maxerror_before_us) * NSEC_PER_USEC
    if growth > 0:
        state = "STA_UNSYNC set" if trace.unsync_after else "still synchronised"
        found.append(Anomaly("ntp-maxerror", "REALTIME", growth, "after-first-tick", state))
    return sorted(found, key=lambda a: (ORDER.index(a.id), CLOCKS.index(a.clock), READERS.index(a.reader)))


def _readers(reads: list[Read]) -> list[tuple[str, Values]]:
    """Each reader's series: the kernel's always, the vDSO's where it served every read."""
    series = [("kernel", [read.values for read in reads])]
    vdso = [read.vdso for read in reads if read.vdso is not None]
    if len(vdso) == len(reads):
        series.append(("vdso", vdso))
    return series


def _backwards(clock: str, reads: list[Read], values: Values, reader: str) -> list[Anomaly]:
    worst: Anomaly | None = None
    for (prev, before), (cur, after) in pairwise(zip(reads, values, strict=True)):
        step = before[clock] - after[clock]
        if step > 0 and (worst is None or step > worst.magnitude_ns):
            detail = f"{prev.label} -> {cur.label} (t={cur.true_ns} ns)"
            worst = Anomaly("time-backwards", clock, step, cur.label, detail, reader)
    return [worst] if worst else []


def _frozen(clock: str, reads: list[Read], values: Values, reader: str) -> list[Anomaly]:
    stuck_ns = 0
    first = ""
    for (prev, before), (cur, after) in pairwise(zip(reads[1:], values[1:], strict=True)):
        # Stuck only if the counter moved on: reads closer than one count apart
        # cannot differ, whatever the clock does.
        if after[clock] == before[clock] and cur.counter > prev.counter:
            stuck_ns += cur.true_ns - prev.true_ns
            first = first or prev.label
    if stuck_ns == 0:
        return []
    return [Anomaly("time-frozen", clock, stuck_ns, first, "reads did not advance", reader)]


def _garbage(clock: str, after_resume: Read, shortfall: int, reader: str) -> list[Anomaly]:
    if shortfall == 0 or clock == "MONOTONIC_RAW":
        return []
    detail = "delta * mult wrapped 64 bits"
    return [Anomaly("overflow-garbage", clock, shortfall, after_resume.label, detail, reader)]


def _loss(clock: str, steady: Read, steady_values: dict[str, int], reader: str) -> list[Anomaly]:
    lost = steady.expected[clock] - steady_values[clock]
    if lost < LOSS_THRESHOLD_NS:
        return []
    detail = "behind unbounded arithmetic in steady state"
    return [Anomaly("wrap-loss", clock, lost, steady.label, detail, reader)]
