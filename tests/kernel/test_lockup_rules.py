"""kernel/lockup_rules.py: the soft-lockup and clocksource-watchdog decisions at their exact edges.

Soft lockup, from the docstring: the report needs ``now - period_ts > 20``
in units of 2**30 ns, where the last touch fell up to one sample period
(4 s) before the gap.  So with U = 2**30:

* ``low_units = gap // U``; ``high_units = ceil((gap + 4e9) / U)``;
* "yes" iff ``low_units > 20``, i.e. ``gap >= 21 * U``;
* "no" iff ``high_units <= 20``, i.e. ``gap <= 20 * U - 4e9``;
* "maybe" in between.
"""

from __future__ import annotations

import pytest

from tsclab.kernel.lockup_rules import (
    Verdict,
    counter_wrap_ns,
    long_readout_after_gap,
    softlockup_after_gap,
    softlockup_reported,
    softlockup_sample_period_ns,
    timer_wheel_granularity,
    watchdog_delta_ns,
    watchdog_interval_ns,
)

U = 1 << 30  # 1_073_741_824 ns
PERIOD = 4_000_000_000
NO_EDGE = 20 * U - PERIOD  # 17_474_836_480: the longest gap that can never report
YES_EDGE = 21 * U  # 22_548_578_304: the shortest gap that always reports


def test_sample_period() -> None:
    assert softlockup_sample_period_ns() == PERIOD
    assert softlockup_sample_period_ns(5) == 2_000_000_000
    assert softlockup_sample_period_ns(60) == 24_000_000_000


@pytest.mark.parametrize(
    ("gap_ns", "verdict"),
    [
        (0, Verdict("no")),
        (NO_EDGE, Verdict("no")),
        (NO_EDGE + 1, Verdict("maybe", 16, 21)),
        (20 * U - 1, Verdict("maybe", 19, 24)),
        (20 * U, Verdict("maybe", 20, 24)),
        # The ceiling: gap + 4 s exactly 24 units is 24, one ns more is 25.
        (24 * U - PERIOD, Verdict("maybe", 20, 24)),
        (24 * U - PERIOD + 1, Verdict("maybe", 20, 25)),
        (YES_EDGE - 1, Verdict("maybe", 20, 25)),
        (YES_EDGE, Verdict("yes", 21, 25)),
        (28_000_000_000, Verdict("yes", 26, 30)),
        (42_948_000_000, Verdict("yes", 39, 44)),
    ],
)
def test_softlockup_after_gap_edges(gap_ns: int, verdict: Verdict) -> None:
    assert softlockup_after_gap(gap_ns) == verdict


def test_softlockup_edges_follow_watchdog_thresh() -> None:
    # watchdog_thresh=5: threshold 10 units, sample period 2 s.
    assert softlockup_after_gap(10 * U - 2_000_000_000, 5) == Verdict("no")
    assert softlockup_after_gap(10 * U - 2_000_000_000 + 1, 5) == Verdict("maybe", 8, 11)
    assert softlockup_after_gap(11 * U - 1, 5) == Verdict("maybe", 10, 13)
    assert softlockup_after_gap(11 * U, 5) == Verdict("yes", 11, 13)


@pytest.mark.parametrize(
    ("gap", "ktime_jump_low_ns", "console_first", "verdict"),
    [
        # No report possible: nothing to suppress.
        (Verdict("no"), 0, "yes", Verdict("no")),
        # No console message after the gap: the gap's own verdict.
        (Verdict("yes", 26, 44), 0, "no", Verdict("yes", 26, 44)),
        (Verdict("maybe", 20, 25), 0, "no", Verdict("maybe", 20, 25)),
        # A message may come first, and ktime stood still: may be suppressed.
        (Verdict("yes", 39, 44), 0, "yes", Verdict("maybe", 0, 44)),
        (Verdict("yes", 39, 44), 0, "maybe", Verdict("maybe", 0, 44)),
        (Verdict("yes", 39, 44), PERIOD - 1, "yes", Verdict("maybe", 0, 44)),
        # ktime jumped a whole sample period: the hrtimer is certainly first.
        (Verdict("yes", 42, 47), PERIOD, "yes", Verdict("yes", 42, 47)),
    ],
)
def test_softlockup_reported(
    gap: Verdict, ktime_jump_low_ns: int, console_first: str, verdict: Verdict
) -> None:
    assert softlockup_reported(gap, ktime_jump_low_ns, console_first) == verdict


def test_softlockup_reported_period_follows_watchdog_thresh() -> None:
    gap = Verdict("yes", 20, 30)
    assert softlockup_reported(gap, 2_000_000_000, "yes", watchdog_thresh_s=5) == gap
    assert softlockup_reported(gap, 1_999_999_999, "yes", watchdog_thresh_s=5) == Verdict("maybe", 0, 30)


@pytest.mark.parametrize(
    ("delta_jiffies", "granularity"),
    [(0, 1), (62, 1), (63, 8), (125, 8), (503, 8), (504, 64), (4_031, 64), (4_032, 512)],
)
def test_timer_wheel_granularity(delta_jiffies: int, granularity: int) -> None:
    assert timer_wheel_granularity(delta_jiffies) == granularity


@pytest.mark.parametrize(
    ("hz", "interval"), [(100, 500_000_000), (250, 500_000_000), (1000, 500_000_000), (300, 499_999_950)]
)
def test_watchdog_interval(hz: int, interval: int) -> None:
    assert watchdog_interval_ns(hz) == interval


# HZ=250: interval 500 ms, threshold two intervals (1 s); the 125-jiffy timer
# lands at wheel level 1 (8 jiffies), plus the tick that runs the softirq:
# slack (8 + 1) * 4 ms = 36 ms, so high = gap + 536 ms.
HIGH = 536_000_000


@pytest.mark.parametrize(
    ("gap_ns", "verdict"),
    [
        (0, Verdict("no")),
        (1_000_000_000 - HIGH, Verdict("no")),
        (1_000_000_000 - HIGH + 1, Verdict("maybe", 464_000_001, 1_000_000_001)),
        (500_000_000, Verdict("maybe", 500_000_000, 1_036_000_000)),
        (1_000_000_000, Verdict("maybe", 1_000_000_000, 1_536_000_000)),
        (1_000_000_001, Verdict("yes", 1_000_000_001, 1_536_000_001)),
        (5_000_000_000, Verdict("yes", 5_000_000_000, 5_536_000_000)),
    ],
)
def test_long_readout_after_gap_edges(gap_ns: int, verdict: Verdict) -> None:
    assert long_readout_after_gap(gap_ns) == verdict
    assert long_readout_after_gap(gap_ns, 250) == verdict


def test_long_readout_slack_follows_hz() -> None:
    # HZ=1000: 500 jiffies at level 1 (8 ms granularity), plus a 1 ms tick: 509 ms above the gap.
    assert long_readout_after_gap(491_000_000, 1000) == Verdict("no")
    assert long_readout_after_gap(491_000_001, 1000) == Verdict("maybe", 491_000_001, 1_000_000_001)
    assert long_readout_after_gap(1_000_000_001, 1000) == Verdict("yes", 1_000_000_001, 1_509_000_001)


HPET_HZ = 100_000_000  # QEMU's HPET: a 10 ns period
HPET_WRAP = 42_949_672_960  # 2**32 * 10 ns


def test_counter_wrap() -> None:
    assert counter_wrap_ns(HPET_HZ, 32) == HPET_WRAP
    assert counter_wrap_ns(3_579_545, 24) == 4_686_968_874  # acpi_pm, truncated from ...874.54
    assert counter_wrap_ns(1_000_000_000, 64) == 1 << 64


@pytest.mark.parametrize(
    ("interval_ns", "delta_ns"),
    [
        (0, 0),
        (5_000_000_000, 5_000_000_000),
        (HPET_WRAP - 1, HPET_WRAP - 1),
        (HPET_WRAP, 0),
        (HPET_WRAP + 1, 1),
        # hpet-negative's printed interval and the HPET's own reading of it
        (43_462_075_132, 512_402_172),
        (2 * HPET_WRAP + 5, 5),
    ],
)
def test_watchdog_delta_for_the_qemu_hpet(interval_ns: int, delta_ns: int) -> None:
    assert watchdog_delta_ns(interval_ns, HPET_HZ, 32) == delta_ns
