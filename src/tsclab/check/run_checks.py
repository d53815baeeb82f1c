"""Verdicts over a simulated run's trace (IDs in :data:`tsclab.check.verdict.VERDICT_IDS`).

Each check reads the trace only.  A check that finds something reports
one verdict per clock (or per detector) carrying the first offending
event and the largest magnitude seen.  Thresholds:

* ``time-backwards``: any step back, on one vCPU or across vCPUs (a read
  lower than one another vCPU made at the same or an earlier true time: a
  task moving between the two would see it);
* ``time-frozen``: two MONOTONIC reads on one vCPU ``FROZEN_MIN_NS`` or more
  apart in running time that returned the same value;
* ``wrap-loss``: MONOTONIC behind by ``LOSS_THRESHOLD_NS`` or more at the end
  of the run, on a counter narrower than 64 bits or after a negative-motion
  clamp - time the counter's wraps swallowed (time the VMM hid, or the
  emulated counter stood still, is not counted as lost);
* ``realtime-error``: REALTIME off true UTC by more than the scenario's bound;
* ``boottime-missing-nap``: BOOTTIME advanced less than a nap's length by
  more than that bound;
* ``monotonic-jump``: MONOTONIC advanced across an interruption the VMM
  hides by more than that bound;
* ``ntp-maxerror``: one timekeeping update grew maxerror by over 1 ms;
* ``timer-late``: a timer fired later, in running time, than the scenario's bound;
* the detectors' own reports: soft lockup, RCU stall, hung task, clocksource
  marked unstable, NTP unsynchronised; ``livelock``: a reader that spun out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from tsclab.arith import NSEC_PER_SEC
from tsclab.check.verdict import VERDICT_IDS, Verdict
from tsclab.sim.trace import Interruption, RunTrace, Sample

LOSS_THRESHOLD_NS = 1_000_000
FROZEN_MIN_NS = 1_000_000
MAXERROR_GROWTH_US = 1_000
_MESSAGE_VERDICTS = {
    "softlockup": ("softlockup", "s"),
    "rcu-stall": ("rcu-stall", "jiffies"),
    "hung-task": ("hung-task", "s"),
    "clocksource-unstable": ("clocksource-unstable", "ns"),
}


def judge(trace: RunTrace, *, timer_late_bound_ns: int) -> tuple[Verdict, ...]:
    """Every verdict of ``trace``, in ``VERDICT_IDS`` order, then by time."""
    if trace.skipped:
        return ()
    found: list[Verdict] = [
        *_backwards(trace.samples),
        *_overflow(trace.samples),
        *_wrap_loss(trace),
        *_frozen(trace),
        *_maxerror(trace),
        *_realtime(trace),
        *_boottime(trace),
        *_monotonic_jump(trace),
        *_messages(trace),
        *_unsync(trace),
        *_livelock(trace),
        *_late_timers(trace, timer_late_bound_ns),
    ]
    order = {vid: i for i, vid in enumerate(VERDICT_IDS)}
    return tuple(sorted(found, key=lambda v: (order[v.id], v.t_ns, v.clock or "", v.vcpu or 0)))


class Hit(NamedTuple):
    """One offending read or event, before hits are folded into a verdict."""

    magnitude: int
    text: str
    t_ns: int
    vcpu: int | None
    clock: str | None


def _worst(vid: str, hits: Iterable[Hit]) -> Iterator[Verdict]:
    """One verdict per clock: the first hit's event, the largest magnitude."""
    first: dict[str | None, Hit] = {}
    worst: dict[str | None, int] = defaultdict(int)
    for hit in hits:
        first.setdefault(hit.clock, hit)
        worst[hit.clock] = max(worst[hit.clock], hit.magnitude)
    for clock, hit in first.items():
        yield Verdict(vid, hit.t_ns, hit.vcpu, clock, worst[clock], "ns", hit.text)


_UNITS = ((NSEC_PER_SEC, "s"), (1_000_000, "ms"), (1_000, "us"))


def _ms(ns: int) -> str:
    """A duration in words: three decimals, rounded half up, at the largest unit the rounded
    figure reaches (999 999 999 ns is "1.000 s", not "1000.000 ms"); integer arithmetic only."""
    size = abs(ns)
    sign = "-" if ns < 0 else ""
    for scale, unit in _UNITS:
        thousandths = (size * 1000 + scale // 2) // scale
        if thousandths >= 1000:
            whole, part = divmod(thousandths, 1000)
            return f"{sign}{whole}.{part:03d} {unit}"
    return f"{ns} ns"


# --- clock values -------------------------------------------------------------


def _backwards(samples: list[Sample]) -> Iterator[Verdict]:
    """Steps back on one vCPU; and across vCPUs, against reads at earlier or the same true time.

    Reads at one instant are compared whatever order they were recorded in:
    two vCPUs reading different values at the same moment means a task
    moving from the higher to the lower would see time go back.
    """

    def hits() -> Iterator[Hit]:
        last: dict[tuple[str, int], int] = {}
        highest: dict[str, dict[int, int]] = defaultdict(dict)  # clock -> vCPU -> highest read so far
        group: list[Sample] = []
        for s in [*samples, None]:
            if group and (s is None or s.t_ns != group[0].t_ns):
                yield from _judge_instant(group, last, highest)
                group = []
            if s is not None:
                group.append(s)

    return _worst("time-backwards", hits())


def _judge_instant(
    group: list[Sample], last: dict[tuple[str, int], int], highest: dict[str, dict[int, int]]
) -> Iterator[Hit]:
    """Reads taken at one true time: against their own vCPU's last read, then every other vCPU's
    highest read so far, this instant's included."""
    at_instant: dict[str, dict[int, int]] = defaultdict(dict)
    stepped_back: set[int] = set()
    for i, s in enumerate(group):
        own = last.get((s.clock, s.vcpu))
        if own is not None and s.value_ns < own:
            stepped_back.add(i)
            step = own - s.value_ns
            yield Hit(
                step, f"vCPU {s.vcpu} read {s.clock} {_ms(step)} lower than before", s.t_ns, s.vcpu, s.clock
            )
        last[(s.clock, s.vcpu)] = s.value_ns
        seen = at_instant[s.clock]
        seen[s.vcpu] = max(seen.get(s.vcpu, s.value_ns), s.value_ns)
    for clock, seen in at_instant.items():
        for vcpu, value in seen.items():
            highest[clock][vcpu] = max(highest[clock].get(vcpu, value), value)
    for i, s in enumerate(group):
        if i in stepped_back:
            continue
        rivals = [(value, v) for v, value in highest[s.clock].items() if v != s.vcpu and value > s.value_ns]
        if rivals:
            value, vcpu = max(rivals)
            step = value - s.value_ns
            text = f"vCPU {s.vcpu} read {s.clock} {_ms(step)} below a read on vCPU {vcpu}"
            yield Hit(step, text, s.t_ns, s.vcpu, s.clock)


def _overflow(samples: list[Sample]) -> Iterator[Verdict]:
    return _worst(
        "overflow-garbage",
        (
            Hit(
                s.wrap_loss_ns,
                f"{s.path} read of {s.clock} wrapped: short by {_ms(s.wrap_loss_ns)}",
                s.t_ns,
                s.vcpu,
                s.clock,
            )
            for s in samples
            if s.wrap_loss_ns > 0
        ),
    )


def _unseen_before(trace: RunTrace, t_ns: int) -> int:
    """True time before ``t_ns`` that MONOTONIC was never meant to count: what the VMM hid
    on purpose, or what the clocksource counter itself stood still through (their union)."""
    spans = sorted([(i.start_ns, i.end_ns) for i in trace.interruptions if i.hidden] + trace.counter_stopped)
    total, reach = 0, -1
    for start, end in spans:
        begin, finish = max(start, reach), min(end, t_ns)
        if finish > begin:
            total += finish - begin
        reach = max(reach, finish)
    return total


def _wrap_loss(trace: RunTrace) -> Iterator[Verdict]:
    """Behind at the end by what wraps swallow: at least half a wrap of a narrow counter
    (a wrap is lost whole), or after a negative-motion clamp, ``LOSS_THRESHOLD_NS``."""
    mono = [s for s in trace.samples if s.clock == "MONOTONIC"]
    clamped = any(s.reader_path == "negative-clamp" for s in mono)
    narrow = trace.counter_bits < 64
    if not mono or not (narrow or clamped):
        return
    last = mono[-1]
    expected = trace.boot_values["MONOTONIC"] + last.t_ns - _unseen_before(trace, last.t_ns)
    loss = expected - last.value_ns
    threshold = (
        max(LOSS_THRESHOLD_NS, trace.counter_wrap_ns // 2) if narrow and not clamped else LOSS_THRESHOLD_NS
    )
    if loss >= threshold:
        text = f"MONOTONIC on vCPU {last.vcpu} is {_ms(loss)} behind at the end of the run"
        yield Verdict("wrap-loss", last.t_ns, last.vcpu, "MONOTONIC", loss, "ns", text)


def _stopped_between(trace: RunTrace, a: int, b: int) -> int:
    return sum(max(0, min(i.end_ns, b) - max(i.start_ns, a)) for i in trace.interruptions)


def _frozen(trace: RunTrace) -> Iterator[Verdict]:
    """One hit per stuck stretch, once it ends (or at the end of the run)."""

    def stretches() -> Iterator[tuple[Sample, Sample]]:
        since: dict[int, Sample] = {}
        last: dict[int, Sample] = {}
        for s in trace.samples:
            if s.clock != "MONOTONIC":
                continue
            start = since.get(s.vcpu)
            if start is not None and s.value_ns != start.value_ns:
                yield start, last[s.vcpu]
                start = None
            if start is None:
                since[s.vcpu] = s
            last[s.vcpu] = s
        for vcpu, start in since.items():
            yield start, last[vcpu]

    def hits() -> Iterator[Hit]:
        for start, end in sorted(stretches(), key=lambda pair: pair[0].t_ns):
            ran = end.t_ns - start.t_ns - _stopped_between(trace, start.t_ns, end.t_ns)
            if ran >= FROZEN_MIN_NS:
                yield Hit(
                    ran, f"MONOTONIC on vCPU {end.vcpu} stuck for {_ms(ran)}", start.t_ns, end.vcpu, end.clock
                )

    return _worst("time-frozen", hits())


def _realtime(trace: RunTrace) -> Iterator[Verdict]:
    bound = trace.realtime_bound_ns
    return _worst(
        "realtime-error",
        (
            Hit(abs(err), f"REALTIME {_ms(err)} off true UTC on vCPU {s.vcpu}", s.t_ns, s.vcpu, s.clock)
            for s in trace.samples
            if s.clock == "REALTIME" and abs(err := s.value_ns - trace.true_utc_ns(s.t_ns)) > bound
        ),
    )


def _across(trace: RunTrace, clock: str, cut: Interruption) -> Iterator[tuple[int, int, int]]:
    """Per vCPU: (advance of ``clock`` across ``cut``, true time between the two reads, read time after)."""
    before: dict[int, Sample] = {}
    for s in trace.samples:
        if s.clock != clock:
            continue
        if s.t_ns <= cut.start_ns:
            before[s.vcpu] = s
        elif s.t_ns >= cut.end_ns and s.vcpu in before:
            b = before.pop(s.vcpu)
            yield s.value_ns - b.value_ns, s.t_ns - b.t_ns, s.vcpu


def _boottime(trace: RunTrace) -> Iterator[Verdict]:
    for cut in trace.interruptions:
        if not cut.nap:
            continue
        for advance, gap, vcpu in _across(trace, "BOOTTIME", cut):
            missing = gap - advance
            if missing > trace.realtime_bound_ns:
                text = f"BOOTTIME advanced {_ms(advance)} across a {_ms(gap)} {cut.action} on vCPU {vcpu}"
                yield Verdict("boottime-missing-nap", cut.end_ns, vcpu, "BOOTTIME", missing, "ns", text)
                break


def _monotonic_jump(trace: RunTrace) -> Iterator[Verdict]:
    for cut in trace.interruptions:
        if not cut.hidden:
            continue
        length = cut.end_ns - cut.start_ns
        for advance, gap, vcpu in _across(trace, "MONOTONIC", cut):
            jump = advance - (gap - length)
            if jump > trace.realtime_bound_ns:
                text = f"MONOTONIC jumped {_ms(jump)} across a {cut.action} the VMM hides, on vCPU {vcpu}"
                yield Verdict("monotonic-jump", cut.end_ns, vcpu, "MONOTONIC", jump, "ns", text)
                break


# --- what the guest kernel said ----------------------------------------------------


def _messages(trace: RunTrace) -> Iterator[Verdict]:
    seen: set[str] = set()
    for m in trace.messages:
        entry = _MESSAGE_VERDICTS.get(m.kind)
        if entry is None or entry[0] in seen:
            continue
        vid, unit = entry
        seen.add(vid)
        worst = max(x.value for x in trace.messages if x.kind == m.kind)
        yield Verdict(vid, m.t_ns, m.vcpu, None, worst, unit, m.text)


def _maxerror(trace: RunTrace) -> Iterator[Verdict]:
    grown = [n for n in trace.ntp if n.growth_us > MAXERROR_GROWTH_US]
    if grown:
        worst = max(n.growth_us for n in grown)
        text = f"one update grew NTP maxerror by {grown[0].growth_us} us"
        yield Verdict("ntp-maxerror", grown[0].t_ns, None, None, worst * 1000, "ns", text)


def _unsync(trace: RunTrace) -> Iterator[Verdict]:
    for n in trace.ntp:
        if n.unsync:
            text = f"STA_UNSYNC set: maxerror {n.maxerror_us} us passed NTP's 16 s limit"
            yield Verdict("ntp-unsync", n.t_ns, None, None, n.maxerror_us, "us", text)
            return


def _livelock(trace: RunTrace) -> Iterator[Verdict]:
    if trace.stalls:
        s = trace.stalls[0]
        yield Verdict("livelock", s.t_ns, s.vcpu, None, max(x.spins for x in trace.stalls), "count", s.where)


def _late_timers(trace: RunTrace, bound: int) -> Iterator[Verdict]:
    late = [f for f in trace.timers if f.late_ns > bound]
    if late:
        f = late[0]
        text = f"timer {f.name} on vCPU {f.vcpu} fired {_ms(f.late_ns)} late"
        yield Verdict("timer-late", f.t_ns, f.vcpu, None, max(x.late_ns for x in late), "ns", text)
