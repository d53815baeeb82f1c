"""The hung-task detector (khungtaskd), as a state machine a simulator drives.

Follows ``kernel/hung_task.c`` from 4.19 (``last_switch_time`` and
``hung_task_check_interval_secs``) to the 2025/2026 trees:

* ``watchdog()`` - the khungtaskd loop: sleep ``hung_timeout_jiffies()``;
  when it is due, run the check unless ``reset_hung_task`` was set
  (``atomic_xchg`` consumes it), then restamp ``hung_last_checked``;
* ``check_hung_uninterruptible_tasks()`` / ``check_hung_task()`` /
  ``task_is_hung()`` (split out in 6.x) - a D-state task whose context
  switch count has not moved since ``last_switch_time`` and for at least
  ``timeout * HZ`` jiffies is reported, with the time since
  ``last_switch_time``;
* ``reset_hung_task_detector()`` - called by ``pvclock_touch_watchdogs()``.

Everything is in jiffies, which catch up in one step after a VM pause, so
a task blocked across the pause is reported on the next check unless a
reset skipped that check.  Not modelled: the PM-notifier suspension
(``hung_detector_suspended``, 6.x), panic, lock and backtrace dumps.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import S64_MAX, s64, u64

# schedule_timeout(MAX_SCHEDULE_TIMEOUT) sleeps until woken: LONG_MAX.
MAX_SCHEDULE_TIMEOUT = S64_MAX
DEFAULT_HUNG_TASK_TIMEOUT_S = 120  # CONFIG_DEFAULT_HUNG_TASK_TIMEOUT
DEFAULT_HUNG_TASK_WARNINGS = 10  # sysctl_hung_task_warnings


@dataclass(slots=True)
class BlockedTask:
    """The fields of ``struct task_struct`` the detector reads and writes.

    ``switch_count`` is ``nvcsw + nivcsw``; ``blocked`` means plain
    ``TASK_UNINTERRUPTIBLE`` (not killable, not ``TASK_IDLE``, not frozen).
    A task that never switched (``switch_count == 0``) is never checked.
    """

    pid: int
    comm: str
    switch_count: int = 0
    last_switch_count: int = 0
    last_switch_time: int = 0  # jiffies
    blocked: bool = True


@dataclass(frozen=True, slots=True)
class HungTaskReport:
    """One "blocked for more than" report and its first dmesg line."""

    pid: int
    comm: str
    blocked_s: int
    text: str


def time_is_after_jiffies(a: int, jiffies_now: int) -> bool:
    """``time_is_after_jiffies(a)``: ``time_before(jiffies, a)`` on unsigned longs."""
    return s64(u64(jiffies_now - a)) < 0


class HungTaskDetector:
    """khungtaskd and its sysctls (``hung_task.c``, 4.19 - 2026).

    ``start_jiffies`` is when the kthread started (``hung_last_checked``);
    ``check_interval_s`` is ``hung_task_check_interval_secs`` (0: the
    timeout); ``warnings`` is ``hung_task_warnings`` (-1: unlimited).
    ``detect_count`` counts hung tasks found, reported or not.
    """

    def __init__(
        self,
        timeout_s: int = DEFAULT_HUNG_TASK_TIMEOUT_S,
        hz: int = 250,
        *,
        start_jiffies: int = 0,
        check_interval_s: int = 0,
        warnings: int = DEFAULT_HUNG_TASK_WARNINGS,
    ) -> None:
        self.timeout_s = timeout_s
        self.hz = hz
        self.check_interval_s = check_interval_s
        self.warnings = warnings
        self.hung_last_checked = u64(start_jiffies)
        self.reset_pending = False  # reset_hung_task
        self.detect_count = 0

    def _interval_s(self) -> int:
        interval = self.check_interval_s or self.timeout_s
        return min(interval, self.timeout_s)

    def hung_timeout_jiffies(self, jiffies_now: int) -> int:
        """``hung_timeout_jiffies(last_checked, interval)``: jiffies left to sleep (a long)."""
        interval = self._interval_s()
        if not interval:
            return MAX_SCHEDULE_TIMEOUT
        return s64(u64(self.hung_last_checked - jiffies_now + interval * self.hz))

    def next_check_jiffies(self, jiffies_now: int) -> int:
        """When khungtaskd's ``schedule_timeout_interruptible()`` wakes it (now, if due)."""
        t = self.hung_timeout_jiffies(jiffies_now)
        return u64(jiffies_now) if t <= 0 else u64(jiffies_now + t)

    def reset(self) -> None:
        """``reset_hung_task_detector()``: the next due check is skipped."""
        self.reset_pending = True

    def check(self, jiffies_now: int, tasks: list[BlockedTask]) -> list[HungTaskReport]:
        """One khungtaskd wake-up at ``jiffies_now``; returns the printed reports.

        An early wake-up (not yet due) goes back to sleep.  A due one consumes
        a pending reset - skipping the scan - or scans; either way the next
        interval starts now.
        """
        if self.hung_timeout_jiffies(jiffies_now) > 0:
            return []
        reset, self.reset_pending = self.reset_pending, False  # atomic_xchg(&reset_hung_task, 0)
        reports = [] if reset else self.check_hung_uninterruptible_tasks(jiffies_now, tasks)
        self.hung_last_checked = u64(jiffies_now)
        return reports

    def check_hung_uninterruptible_tasks(
        self, jiffies_now: int, tasks: list[BlockedTask]
    ) -> list[HungTaskReport]:
        """``check_hung_uninterruptible_tasks(timeout)``: every task through ``check_hung_task()``."""
        reports = []
        for task in tasks:
            report = self.check_hung_task(task, jiffies_now)
            if report is not None:
                reports.append(report)
        return reports

    def task_is_hung(self, t: BlockedTask, jiffies_now: int) -> bool:
        """``task_is_hung()`` (the test inside ``check_hung_task()`` before 6.x)."""
        if not t.blocked or t.switch_count == 0:
            return False
        if t.switch_count != t.last_switch_count:
            # It ran since the last scan: restart its clock.
            t.last_switch_count = t.switch_count
            t.last_switch_time = u64(jiffies_now)
            return False
        return not time_is_after_jiffies(u64(t.last_switch_time + self.timeout_s * self.hz), jiffies_now)

    def check_hung_task(self, t: BlockedTask, jiffies_now: int) -> HungTaskReport | None:
        """``check_hung_task()``: a report while ``hung_task_warnings`` lasts."""
        if not self.task_is_hung(t, jiffies_now):
            return None
        self.detect_count += 1
        if not self.warnings:
            return None
        if self.warnings > 0:
            self.warnings -= 1
        blocked_s = s64(u64(jiffies_now - t.last_switch_time) // self.hz)  # unsigned long / HZ, printed %ld
        text = f"INFO: task {t.comm}:{t.pid} blocked for more than {blocked_s} seconds."
        return HungTaskReport(t.pid, t.comm, blocked_s, text)
