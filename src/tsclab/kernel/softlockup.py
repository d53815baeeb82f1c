"""The soft-lockup detector of one CPU, as a state machine a simulator drives.

Follows ``kernel/watchdog.c`` from 5.14 (Petr Mladek's rework: separate
``watchdog_touch_ts`` and ``watchdog_report_ts``, ``SOFTLOCKUP_DELAY_REPORT``,
``kvm_check_and_clear_guest_paused()`` called on every hrtimer expiry) to the
2025/2026 trees, whose decision logic is unchanged (later additions - the
interrupt-storm statistics, ``scx_softlockup()`` - only print or notify):

* ``get_timestamp()`` - ``running_clock() >> 30``: "seconds" of 2**30 ns;
* ``update_report_ts()`` / ``update_touch_ts()`` - stamp the report
  timestamp, or both;
* ``touch_softlockup_watchdog()`` / ``..._sync()`` - the report timestamp
  becomes ``SOFTLOCKUP_DELAY_REPORT`` (the touch timestamp is left alone);
* ``softlockup_fn()`` - the stopper work the hrtimer queues;
* ``is_softlockup()`` - ``time_after(now, period_ts + 2 * watchdog_thresh)``
  reports ``now - touch_ts``;
* ``watchdog_timer_fn()`` - the per-CPU hrtimer's decision.

Kernels before 5.14 kept one timestamp (0 meaning "touched") and called
``kvm_check_and_clear_guest_paused()`` only once a lockup was found; that
variant is not modelled here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tsclab.arith import U64_MAX, s64, u32, u64
from tsclab.kernel.lockup_rules import (
    DEFAULT_WATCHDOG_THRESH_S,
    SOFTLOCKUP_UNIT_SHIFT,
    softlockup_sample_period_ns,
)

# "Delay the softlockup report when running a known slow code": ULONG_MAX.
SOFTLOCKUP_DELAY_REPORT = U64_MAX


@dataclass(frozen=True, slots=True)
class SoftlockupReport:
    """One "BUG: soft lockup" report, with the line as dmesg shows it."""

    cpu: int
    stuck_s: int
    text: str


def get_timestamp(running_clock_ns: int) -> int:
    """``get_timestamp()``: ``running_clock() >> 30`` (2**30 ns is about 1.074 s)."""
    return u64(running_clock_ns) >> SOFTLOCKUP_UNIT_SHIFT


def time_after(a: int, b: int) -> bool:
    """``time_after(a, b)`` on unsigned longs: ``(long)(b - a) < 0``."""
    return s64(u64(b - a)) < 0


def softlockup_text(cpu: int, stuck_s: int, comm: str, pid: int) -> str:
    """The ``pr_emerg()`` line, with ``watchdog.c``'s ``pr_fmt`` prefix."""
    return f"watchdog: BUG: soft lockup - CPU#{cpu} stuck for {stuck_s}s! [{comm}:{pid}]"


class SoftlockupWatchdog:
    """The soft-lockup watchdog of one CPU (``kernel/watchdog.c``, 5.14 - 2026).

    Construction is ``watchdog_enable()``: the stopper completion starts
    done and both timestamps are stamped from ``running_clock_ns``.
    ``softlockup_fn_queued`` is true while the stopper work queued by
    :meth:`timer_fn` has not run yet; ``kicked`` says whether the last
    :meth:`timer_fn` queued it (the caller then schedules
    :meth:`softlockup_fn`).  ``sched_clock_ticks`` counts the
    ``sched_clock_tick()`` calls a synchronous touch asked for.
    """

    def __init__(
        self, cpu: int, watchdog_thresh_s: int = DEFAULT_WATCHDOG_THRESH_S, *, running_clock_ns: int = 0
    ) -> None:
        self.cpu = cpu
        self.watchdog_thresh_s = watchdog_thresh_s
        # set_sample_period(): 2 * watchdog_thresh / NUM_SAMPLE_PERIODS seconds.
        self.sample_period_ns = softlockup_sample_period_ns(watchdog_thresh_s)
        self.touch_ts = 0
        self.report_ts = 0
        self.touch_sync_pending = False  # softlockup_touch_sync
        self.softlockup_fn_queued = False  # !completion_done(&softlockup_completion)
        self.kicked = False
        self.sched_clock_ticks = 0
        self._update_touch_ts(running_clock_ns)

    @property
    def softlockup_thresh(self) -> int:
        """``get_softlockup_thresh()``: twice the hard-lockup threshold, in timestamp units."""
        return self.watchdog_thresh_s * 2

    def _update_report_ts(self, running_clock_ns: int) -> None:
        self.report_ts = get_timestamp(running_clock_ns)

    def _update_touch_ts(self, running_clock_ns: int) -> None:
        self.touch_ts = get_timestamp(running_clock_ns)
        self._update_report_ts(running_clock_ns)

    def softlockup_fn(self, running_clock_ns: int) -> None:
        """``softlockup_fn()``: the stopper work ran - the CPU could schedule."""
        self._update_touch_ts(running_clock_ns)
        self.softlockup_fn_queued = False  # complete(&softlockup_completion)

    def touch(self) -> None:
        """``touch_softlockup_watchdog()``: delay the next report by one period.

        Only the report timestamp moves (``touch_softlockup_watchdog_sched()``);
        the "stuck for" figure still counts from the last :meth:`softlockup_fn`.
        Its ``wq_watchdog_touch()`` belongs to the workqueue watchdog.
        """
        self.report_ts = SOFTLOCKUP_DELAY_REPORT

    def touch_sync(self) -> None:
        """``touch_softlockup_watchdog_sync()``: as :meth:`touch`, plus a ``sched_clock_tick()`` due."""
        self.touch_sync_pending = True
        self.report_ts = SOFTLOCKUP_DELAY_REPORT

    def is_softlockup(self, touch_ts: int, period_ts: int, now: int) -> int:
        """``is_softlockup()``: the stuck time in timestamp units, or 0.

        The kernel returns ``now - touch_ts`` (unsigned long) as an ``int``
        and prints it with ``%u``: the low 32 bits.
        """
        if self.watchdog_thresh_s == 0:
            return 0
        if time_after(now, u64(period_ts + self.softlockup_thresh)):
            return u32(now - touch_ts)
        return 0

    def timer_fn(
        self, running_clock_ns: int, check_paused: Callable[[], bool], comm: str = "probe", pid: int = 1
    ) -> SoftlockupReport | None:
        """``watchdog_timer_fn()``: one expiry of this CPU's watchdog hrtimer.

        Kernel order: the stopper work (``softlockup_fn``) is kicked FIRST -
        ``stop_one_cpu_nowait()``, only if the previous one completed - but it
        runs only after this handler returns, so it cannot stamp in time for
        this check; the caller schedules it when :attr:`kicked` is set.  Then
        ``now`` is read, then ``check_paused()`` is called
        (``kvm_check_and_clear_guest_paused()``; its result is ignored here,
        as in the kernel: a paused guest is forgiven only because the callee's
        ``pvclock_touch_watchdogs()`` calls this CPU's :meth:`touch_sync`),
        then the report timestamp is read.  A touched watchdog
        (``SOFTLOCKUP_DELAY_REPORT``) just restarts its report period.
        ``comm``/``pid`` are the task the hrtimer interrupted.
        """
        self.kicked = not self.softlockup_fn_queued
        if self.kicked:
            self.softlockup_fn_queued = True
        # Read the clock before the paused check: the check may touch the watchdog.
        now = get_timestamp(running_clock_ns)
        check_paused()
        period_ts = self.report_ts
        if period_ts == SOFTLOCKUP_DELAY_REPORT:
            if self.touch_sync_pending:
                self.touch_sync_pending = False
                self.sched_clock_ticks += 1
            self._update_report_ts(running_clock_ns)
            return None
        stuck = self.is_softlockup(self.touch_ts, period_ts, now)
        if not stuck:
            return None
        # Start the period for the next warning, then report.
        self._update_report_ts(running_clock_ns)
        return SoftlockupReport(self.cpu, stuck, softlockup_text(self.cpu, stuck, comm, pid))
