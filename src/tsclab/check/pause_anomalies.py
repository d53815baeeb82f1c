"""Anomalies of a raw pause, with stable IDs, read off a :class:`PauseTrace`.

IDs (stable; other tools match on them):

``time-backwards``
    a clock read lower than the read before it; magnitude: the step back.
``overflow-garbage``
    a pre-6.10 reader's ``delta * mult`` wrapped 64 bits; magnitude: how
    far the read fell short of the exact arithmetic (whole ``2**(64-shift)``
    ns steps).  Judged on the MONOTONIC reader base, reported for every
    clock built on it.
``wrap-loss``
    in steady state the clock is behind where unbounded arithmetic would
    have it - lost to counter wraps or to a negative-motion clamp;
    magnitude: the time lost (reported from ``LOSS_THRESHOLD_NS``).
``time-frozen``
    consecutive reads returned the same value although time passed (reads
    stuck until the next update); magnitude: the true time spent stuck.
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
    """One finding: stable ID, clock, magnitude and where it first showed."""

    id: str
    clock: str
    magnitude_ns: int
    first_read: str
    detail: str


def find_anomalies(trace: PauseTrace) -> list[Anomaly]:
    """Every anomaly in the trace, in a fixed order (by ID, then clock)."""
    reads: list[Read] = [*trace.reads[:3], *trace.steady_reads, trace.reads[-1]]
    found: list[Anomaly] = []
    for clock in CLOCKS:
        found.extend(_backwards(clock, reads))
        found.extend(_frozen(clock, reads))
        found.extend(_garbage(clock, trace.reads[1]))
        found.extend(_loss(clock, trace.reads[-1]))
    growth = (trace.maxerror_after_us - trace.maxerror_before_us) * NSEC_PER_USEC
    if growth > 0:
        state = "STA_UNSYNC set" if trace.unsync_after else "still synchronised"
        found.append(Anomaly("ntp-maxerror", "REALTIME", growth, "after-first-tick", state))
    order = ["time-backwards", "overflow-garbage", "wrap-loss", "time-frozen", "ntp-maxerror"]
    return sorted(found, key=lambda a: (order.index(a.id), CLOCKS.index(a.clock)))


def _backwards(clock: str, reads: list[Read]) -> list[Anomaly]:
    worst: Anomaly | None = None
    for prev, cur in pairwise(reads):
        step = prev.values[clock] - cur.values[clock]
        if step > 0 and (worst is None or step > worst.magnitude_ns):
            worst = Anomaly(
                "time-backwards", clock, step, cur.label, f"{prev.label} -> {cur.label} (t={cur.true_ns} ns)"
            )
    return [worst] if worst else []


def _frozen(clock: str, reads: list[Read]) -> list[Anomaly]:
    stuck_ns = 0
    first = ""
    for prev, cur in pairwise(reads[1:]):
        if cur.values[clock] == prev.values[clock] and cur.true_ns > prev.true_ns:
            stuck_ns += cur.true_ns - prev.true_ns
            first = first or prev.label
    if stuck_ns == 0:
        return []
    return [Anomaly("time-frozen", clock, stuck_ns, first, "reads did not advance")]


def _garbage(clock: str, after_resume: Read) -> list[Anomaly]:
    if after_resume.reader_path != "wrapped-multiply" or clock == "MONOTONIC_RAW":
        return []
    short = after_resume.overflow_shortfall_ns
    return [Anomaly("overflow-garbage", clock, short, after_resume.label, "delta * mult wrapped 64 bits")]


def _loss(clock: str, steady: Read) -> list[Anomaly]:
    lost = steady.expected[clock] - steady.values[clock]
    if lost < LOSS_THRESHOLD_NS:
        return []
    return [Anomaly("wrap-loss", clock, lost, steady.label, "behind unbounded arithmetic in steady state")]
