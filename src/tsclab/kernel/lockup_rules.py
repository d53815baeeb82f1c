"""When the watchdogs a pause trips will speak: soft lockup and clocksource watchdog.

Only the arithmetic of their decisions, for a single pause seen by a guest
that was otherwise idle or busy in user space; the full detectors (touch
paths, per-version variants, hung-task, RCU) belong to the simulator.

Soft lockup (``kernel/watchdog.c``, 5.14 - 6.x): ``get_timestamp()`` is
``running_clock() >> 30`` - units of 2**30 ns, about 1.07 s.  The per-CPU
hrtimer (period ``2 * watchdog_thresh / 5`` s) queues ``softlockup_fn``,
which stamps ``watchdog_touch_ts`` and the report timestamp; the hrtimer
itself reports when ``now > period_ts + 2 * watchdog_thresh`` (``time_after``),
printing ``now - touch_ts`` as "stuck for Ns".  ``running_clock()`` is
``local_clock()``: on x86 with a stable sched_clock that is the raw TSC, so
the check sees the whole pause even when timekeeping does not.

Clocksource watchdog (``kernel/time/clocksource.c`` ``clocksource_watchdog``,
6.3+ and the 6.1.y stable backport): every ``WATCHDOG_INTERVAL`` (HZ/2
jiffies) it compares each watched clocksource with the watchdog; when
``max(cs_nsec, wd_nsec)`` exceeds ``WATCHDOG_INTERVAL_MAX_NS`` (two
intervals, 1 s) it skips the comparison, printing "Long readout interval"
when the interval is more than twice the longest skipped so far - so the
skew check cannot mark a clocksource unstable after a long pause.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_SEC

SOFTLOCKUP_UNIT_SHIFT = 30  # get_timestamp(): running_clock() >> 30
DEFAULT_WATCHDOG_THRESH_S = 10  # kernel.watchdog_thresh
NUM_SAMPLE_PERIODS = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    """A prediction that may be certain or depend on what the model cannot see."""

    state: str  # "yes", "no" or "maybe"
    low: int = 0  # the range of the printed figure, where there is one
    high: int = 0


def softlockup_sample_period_ns(watchdog_thresh_s: int = DEFAULT_WATCHDOG_THRESH_S) -> int:
    return 2 * watchdog_thresh_s * (NSEC_PER_SEC // NUM_SAMPLE_PERIODS)


def softlockup_after_gap(gap_ns: int, watchdog_thresh_s: int = DEFAULT_WATCHDOG_THRESH_S) -> Verdict:
    """Does the first watchdog hrtimer after a ``gap_ns`` jump of ``local_clock`` report?

    The last touch was up to one sample period before the gap; the unit
    boundaries fall anywhere.  ``low``/``high`` bound the "stuck for" seconds.
    """
    thresh = 2 * watchdog_thresh_s
    unit = 1 << SOFTLOCKUP_UNIT_SHIFT
    shortest = gap_ns  # touched just before the gap
    longest = gap_ns + softlockup_sample_period_ns(watchdog_thresh_s)
    # floor((T + x) / unit) - floor(T / unit) lies in [floor(x/unit), ceil(x/unit)].
    low_units, high_units = shortest // unit, -(-longest // unit)
    if low_units > thresh:
        return Verdict("yes", low_units, high_units)
    if high_units <= thresh:
        return Verdict("no")
    return Verdict("maybe", low_units, high_units)


WATCHDOG_INTERVAL_NS_HZ250 = 500_000_000  # HZ >> 1 jiffies
WATCHDOG_INTERVAL_MAX_NS = 2 * WATCHDOG_INTERVAL_NS_HZ250


def long_readout_after_gap(gap_ns: int) -> Verdict:
    """Does the clocksource watchdog's first run after a gap skip, printing "Long readout interval"?

    Its interval is the gap plus up to one watchdog period; ``low``/``high``
    bound ``cs_nsec`` (the watched clocksource, the 64-bit TSC).
    """
    low, high = gap_ns, gap_ns + WATCHDOG_INTERVAL_NS_HZ250
    if low > WATCHDOG_INTERVAL_MAX_NS:
        return Verdict("yes", low, high)
    if high <= WATCHDOG_INTERVAL_MAX_NS:
        return Verdict("no")
    return Verdict("maybe", low, high)


def watchdog_delta_ns(interval_ns: int, freq_hz: int, bits: int) -> int:
    """What the watchdog's own masked delta says of ``interval_ns`` (it wraps)."""
    wrap_ns = (1 << bits) * NSEC_PER_SEC // freq_hz
    return interval_ns % wrap_ns
