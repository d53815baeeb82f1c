"""kernel/hung_task.py: khungtaskd across a jiffies jump, at HZ=250 with the 120 s default.

The task blocks (D state, 5 context switches so far) before the first scan at
jiffies 30000, which records ``last_switch_time = 30000``.  A 200 s pause
makes jiffies jump by 50000: the next wake-up, at 80000, finds the task
unchanged for 50000 jiffies = 200 s >= 120 s.
"""

from __future__ import annotations

from tsclab.kernel.hung_task import (
    MAX_SCHEDULE_TIMEOUT,
    BlockedTask,
    HungTaskDetector,
    HungTaskReport,
    time_is_after_jiffies,
)

HZ = 250
TIMEOUT = 120 * HZ  # 30000 jiffies


def first_scan() -> tuple[HungTaskDetector, BlockedTask]:
    det = HungTaskDetector(120, HZ, start_jiffies=0)
    task = BlockedTask(pid=123, comm="probe", switch_count=5)
    assert det.check(TIMEOUT, [task]) == []
    assert (task.last_switch_count, task.last_switch_time) == (5, TIMEOUT)
    return det, task


def test_sleep_schedule() -> None:
    det = HungTaskDetector(120, HZ, start_jiffies=1000)
    assert det.next_check_jiffies(1000) == 31000
    assert det.next_check_jiffies(20000) == 31000
    assert det.next_check_jiffies(90000) == 90000  # overdue: runs at once
    assert HungTaskDetector(120, HZ, start_jiffies=0, check_interval_s=30).next_check_jiffies(0) == 7500
    assert (
        HungTaskDetector(120, HZ, check_interval_s=600).next_check_jiffies(0) == TIMEOUT
    )  # min(interval, timeout)
    assert HungTaskDetector(0, HZ).hung_timeout_jiffies(5) == MAX_SCHEDULE_TIMEOUT


def test_early_wake_up_goes_back_to_sleep() -> None:
    det, task = first_scan()
    assert det.check(TIMEOUT + 100, [task]) == []
    assert det.hung_last_checked == TIMEOUT


def test_task_blocked_across_200s_jump_is_reported() -> None:
    det, task = first_scan()
    reports = det.check(TIMEOUT + 200 * HZ, [task])
    assert reports == [
        HungTaskReport(123, "probe", 200, "INFO: task probe:123 blocked for more than 200 seconds.")
    ]
    assert det.detect_count == 1
    assert det.next_check_jiffies(TIMEOUT + 200 * HZ) == 2 * TIMEOUT + 200 * HZ


def test_reset_skips_the_check_after_the_jump() -> None:
    det, task = first_scan()
    det.reset()  # pvclock_touch_watchdogs() -> reset_hung_task_detector()
    assert det.check(TIMEOUT + 200 * HZ, [task]) == []
    assert not det.reset_pending
    assert det.hung_last_checked == TIMEOUT + 200 * HZ
    # Only one check is skipped: still blocked a full interval later, it is reported.
    later = det.check(2 * TIMEOUT + 200 * HZ, [task])
    assert [r.blocked_s for r in later] == [320]


def test_reset_is_not_consumed_by_an_early_wake_up() -> None:
    det, task = first_scan()
    det.reset()
    det.check(TIMEOUT + 1, [task])
    assert det.reset_pending


def test_a_task_that_ran_is_not_reported() -> None:
    det, task = first_scan()
    task.switch_count = 6  # it was woken and blocked again
    assert det.check(TIMEOUT + 200 * HZ, [task]) == []
    assert task.last_switch_time == TIMEOUT + 200 * HZ


def test_not_blocked_long_enough() -> None:
    def scan_at(jiffies_now: int) -> list[int]:
        det = HungTaskDetector(120, HZ, check_interval_s=30)
        task = BlockedTask(pid=9, comm="dd", switch_count=3, last_switch_count=3, last_switch_time=10_000)
        return [r.blocked_s for r in det.check(jiffies_now, [task])]

    assert scan_at(10_000 + TIMEOUT - 1) == []  # time_is_after_jiffies(last_switch_time + timeout)
    assert scan_at(10_000 + TIMEOUT) == [120]
    assert scan_at(10_000 + TIMEOUT + HZ - 1) == [120]  # whole seconds, truncated


def test_never_switched_and_not_d_state_are_skipped() -> None:
    det = HungTaskDetector(120, HZ)
    fresh = BlockedTask(pid=1, comm="new")  # switch_count 0
    running = BlockedTask(pid=2, comm="cpu", switch_count=4, last_switch_count=4, blocked=False)
    assert det.check(10 * TIMEOUT, [fresh, running]) == []
    assert fresh.last_switch_time == 0


def test_warnings_run_out() -> None:
    det = HungTaskDetector(120, HZ, warnings=2)
    tasks = [BlockedTask(pid=p, comm="w", switch_count=1, last_switch_count=1) for p in (10, 11, 12)]
    reports = det.check(TIMEOUT, tasks)
    assert [r.pid for r in reports] == [10, 11]
    assert det.detect_count == 3
    assert det.warnings == 0
    unlimited = HungTaskDetector(120, HZ, warnings=-1)
    assert (
        len(unlimited.check(TIMEOUT, [BlockedTask(pid=1, comm="w", switch_count=1, last_switch_count=1)]))
        == 1
    )
    assert unlimited.warnings == -1


def test_jiffies_comparisons_wrap() -> None:
    start = 2**64 - 1000
    assert time_is_after_jiffies(5, start)  # 5 lies after ULONG_MAX - 1000
    det = HungTaskDetector(120, HZ, start_jiffies=start)
    assert det.next_check_jiffies(start) == (start + TIMEOUT) % 2**64
    task = BlockedTask(pid=3, comm="nfs", switch_count=2, last_switch_count=2, last_switch_time=start)
    assert [r.blocked_s for r in det.check((start + TIMEOUT) % 2**64, [task])] == [120]
