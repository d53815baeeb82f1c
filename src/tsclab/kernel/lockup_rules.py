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

A console message suppresses the next report: the 8250 serial console's
write path calls ``touch_nmi_watchdog()``, which touches the soft-lockup
watchdog too (``touch_softlockup_watchdog()``: the report timestamp becomes
``SOFTLOCKUP_DELAY_REPORT``).  So after a pause the order matters: the
watchdog hrtimer fires in hard-irq context as soon as ktime passes its
expiry, the clocksource watchdog (a jiffies timer, in softirq) prints its
"Long readout interval" once jiffies pass its own.  If ktime jumped by a
whole sample period, the hrtimer is certainly first; if ktime stood still
(the reader clamped a negative delta, so time froze and resumed where it
was), which comes first depends on where both timers were in their periods.

Clocksource watchdog (``kernel/time/clocksource.c`` ``clocksource_watchdog``,
6.8+ and its stable backports, 6.1.y among them): every ``WATCHDOG_INTERVAL`` (HZ/2
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


def softlockup_reported(
    gap: Verdict,
    ktime_jump_low_ns: int,
    console_first: str,
    watchdog_thresh_s: int = DEFAULT_WATCHDOG_THRESH_S,
) -> Verdict:
    """The report after a gap, given whether a console message may come first.

    ``console_first`` is the verdict on a console message printed after the
    gap in softirq context ("yes", "no", "maybe").  A ktime jump of at least
    one sample period puts the hrtimer first whatever the phases.
    """
    if gap.state == "no" or console_first == "no":
        return gap
    if ktime_jump_low_ns >= softlockup_sample_period_ns(watchdog_thresh_s):
        return gap
    return Verdict("maybe", 0, gap.high)


# Timer wheel (kernel/time/timer.c, 4.8+): 64 buckets a level, each level
# 8 times coarser; a timer lands in the first level that reaches its
# expiry and fires at that level's granularity, rounded up.
_LVL_BITS = 6
_LVL_CLK_SHIFT = 3


def timer_wheel_granularity(delta_jiffies: int) -> int:
    """Jiffies of granularity of a timer armed ``delta_jiffies`` ahead (``calc_wheel_index``)."""
    level = 0
    while delta_jiffies >= ((1 << _LVL_BITS) - 1) << (level * _LVL_CLK_SHIFT):
        level += 1
    return 1 << (level * _LVL_CLK_SHIFT)


def watchdog_interval_ns(hz: int) -> int:
    """``WATCHDOG_INTERVAL``: ``HZ >> 1`` jiffies."""
    return (hz >> 1) * (NSEC_PER_SEC // hz)


def long_readout_after_gap(gap_ns: int, hz: int = 250) -> Verdict:
    """Does the clocksource watchdog's first run after a gap skip, printing "Long readout interval"?

    Its interval is the gap plus up to one watchdog period, plus the timer
    wheel's rounding of that period and the tick that runs the softirq;
    ``low``/``high`` bound ``cs_nsec`` (the watched clocksource, the 64-bit TSC).
    """
    interval = watchdog_interval_ns(hz)
    jiffy = NSEC_PER_SEC // hz
    slack = (timer_wheel_granularity(hz >> 1) + 1) * jiffy
    low, high = gap_ns, gap_ns + interval + slack
    if low > 2 * interval:  # WATCHDOG_INTERVAL_MAX_NS
        return Verdict("yes", low, high)
    if high <= 2 * interval:
        return Verdict("no")
    return Verdict("maybe", low, high)


def counter_wrap_ns(freq_hz: int, bits: int) -> int:
    """How long a ``bits``-wide counter at ``freq_hz`` takes to come round, truncated to ns."""
    return (1 << bits) * NSEC_PER_SEC // freq_hz


def watchdog_delta_ns(interval_ns: int, freq_hz: int, bits: int) -> int:
    """What the watchdog's own masked delta says of ``interval_ns`` (it wraps)."""
    return interval_ns % counter_wrap_ns(freq_hz, bits)
