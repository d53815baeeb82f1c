"""kernel/softlockup.py: watchdog_timer_fn()'s decision, exact to the 2**30 ns unit.

Units are ``running_clock() >> 30``: 100 s -> 93, 120 s -> 111, 144 s -> 134,
so a 44 s stall measured from the last softlockup_fn prints "stuck for 41s".
"""

from __future__ import annotations

from tsclab.kernel.softlockup import (
    SOFTLOCKUP_DELAY_REPORT,
    SoftlockupReport,
    SoftlockupWatchdog,
    get_timestamp,
    time_after,
)

S = 1_000_000_000
U = 1 << 30


def never_paused() -> bool:
    return False


def fed_at(t_ns: int, cpu: int = 0) -> SoftlockupWatchdog:
    """A watchdog whose stopper work last ran at ``t_ns``."""
    wd = SoftlockupWatchdog(cpu, running_clock_ns=0)
    wd.softlockup_fn(t_ns)
    return wd


def test_constants_and_units() -> None:
    assert SOFTLOCKUP_DELAY_REPORT == 2**64 - 1
    assert SoftlockupWatchdog(0).sample_period_ns == 4 * S
    assert SoftlockupWatchdog(0, 5).sample_period_ns == 2 * S
    assert (get_timestamp(100 * S), get_timestamp(120 * S), get_timestamp(144 * S)) == (93, 111, 134)


def test_time_after_wraps_like_unsigned_long() -> None:
    assert time_after(5, 4)
    assert not time_after(4, 4)
    assert time_after(1, 2**64 - 1)  # 1 comes after ULONG_MAX


def test_44s_stall_reports_41_units() -> None:
    wd = fed_at(100 * S, cpu=0)
    report = wd.timer_fn(144 * S, never_paused, comm="probe", pid=123)
    assert report == SoftlockupReport(0, 41, "watchdog: BUG: soft lockup - CPU#0 stuck for 41s! [probe:123]")


def test_report_restarts_the_period_but_not_the_stuck_base() -> None:
    wd = fed_at(100 * S)
    assert wd.timer_fn(144 * S, never_paused) is not None
    assert wd.report_ts == 134
    # Four seconds later: within the new period, silent.
    assert wd.timer_fn(148 * S, never_paused) is None
    # 21+ units after the report: reported again, counted from the old touch.
    again = wd.timer_fn(134 * U + 21 * U + 1, never_paused, pid=7)
    assert again is not None
    assert again.stuck_s == 155 - 93


def test_20s_jump_is_silent() -> None:
    wd = fed_at(100 * S)
    assert wd.timer_fn(120 * S, never_paused) is None


def test_threshold_edge_is_strictly_after_20_units() -> None:
    wd = fed_at(93 * U)  # period_ts = 93
    assert wd.timer_fn(113 * U + U - 1, never_paused) is None  # now = 113 = 93 + 20
    wd = fed_at(93 * U)
    report = wd.timer_fn(114 * U, never_paused)  # now = 114 > 113
    assert report is not None
    assert report.stuck_s == 21


def test_touch_suppresses_one_check_and_restarts_the_period() -> None:
    wd = fed_at(100 * S)
    wd.touch()
    assert wd.report_ts == SOFTLOCKUP_DELAY_REPORT
    assert wd.timer_fn(144 * S, never_paused) is None
    assert wd.report_ts == 134
    assert wd.sched_clock_ticks == 0  # only the _sync touch asks for a tick
    # The touch moved the report period only: a later stall counts from 93.
    report = wd.timer_fn(170 * S, never_paused)  # 158 > 134 + 20
    assert report is not None
    assert report.stuck_s == 158 - 93


def test_check_paused_suppresses_through_touch_sync() -> None:
    wd = fed_at(100 * S)

    def kvm_check_and_clear_guest_paused() -> bool:
        wd.touch_sync()  # pvclock_touch_watchdogs() -> touch_softlockup_watchdog_sync()
        return True

    assert wd.timer_fn(144 * S, kvm_check_and_clear_guest_paused) is None
    assert wd.sched_clock_ticks == 1
    assert not wd.touch_sync_pending
    assert wd.report_ts == 134


def test_check_paused_result_alone_does_not_suppress() -> None:
    """The kernel ignores the return value: only the touch it causes matters."""
    wd = fed_at(100 * S)
    report = wd.timer_fn(144 * S, lambda: True)
    assert report is not None
    assert report.stuck_s == 41


def test_paused_check_runs_after_now_is_read() -> None:
    seen: list[int] = []
    wd = fed_at(100 * S)

    def probe() -> bool:
        seen.append(wd.report_ts)
        return False

    wd.timer_fn(101 * S, probe)
    assert seen == [93]  # called before the report timestamp is consumed


def test_kick_is_queued_once_until_softlockup_fn_runs() -> None:
    wd = SoftlockupWatchdog(2, running_clock_ns=10 * S)
    assert not wd.softlockup_fn_queued
    wd.timer_fn(14 * S, never_paused)
    assert wd.kicked
    assert wd.softlockup_fn_queued
    wd.timer_fn(18 * S, never_paused)  # the stopper has not run: no second kick
    assert not wd.kicked
    wd.softlockup_fn(18 * S + 1000)
    assert not wd.softlockup_fn_queued
    assert wd.touch_ts == get_timestamp(18 * S + 1000)
    wd.timer_fn(22 * S, never_paused)
    assert wd.kicked


def test_enable_stamps_both_timestamps() -> None:
    wd = SoftlockupWatchdog(1, running_clock_ns=50 * U)
    assert (wd.touch_ts, wd.report_ts) == (50, 50)
    report = wd.timer_fn(71 * U, never_paused, comm="swapper/1", pid=0)
    assert report is not None
    assert report.text == "watchdog: BUG: soft lockup - CPU#1 stuck for 21s! [swapper/1:0]"


def test_thresh_zero_disables_reports() -> None:
    wd = SoftlockupWatchdog(0, 0)
    assert wd.timer_fn(10_000 * S, never_paused) is None
