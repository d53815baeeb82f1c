"""The hung-task and RCU detectors inside whole runs: when a pause makes them speak."""

from __future__ import annotations

from tsclab.arith import NSEC_PER_SEC
from tsclab.lab import run_one
from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload

S = NSEC_PER_SEC


def _migration(*, rcu_busy: bool = False, blocked: bool = True) -> Scenario:
    """A task waits on 25 s I/O requests; a 100 s stop-and-copy lands in the middle of one."""
    workload: tuple[Workload, ...] = (Workload("reader", 0, every_ns=100_000_000),)
    if blocked:
        workload += (Workload("blocked-task", 1, every_ns=25 * S),)
    return Scenario(
        name="hung",
        description="a D-state task across a migration",
        guest=GuestSpec(
            vcpus=2,
            clocksource="kvm-clock",
            kernels=("linux-6.13",),
            watchdog="none",
            hung_task_timeout_s=30,
            rcu_busy=rcu_busy,
            workload=workload,
        ),
        hosts=(HostSpec("a", 2_500_000), HostSpec("b", 2_500_000)),
        vmms=("upstream-doc",),
        events=(Event(40 * S, "migrate", 100 * S, to="b", precopy_ns=1 * S),),
        settle_ns=60 * S,
    )


def test_a_task_blocked_across_an_accounted_downtime_is_reported_hung() -> None:
    # khungtaskd checks every 30 s of jiffies.  Its check at 30 s saw the task's
    # switch count move (a request completed at 25 s) and stamped it.  The
    # request issued at 25 s needs 25 s of *running* time: at the stop (41 s)
    # 16 s are left.  After the 100 s downtime jiffies jump, khungtaskd is
    # overdue and checks at once: no switch since 30 s, blocked for ~110 s.
    result = run_one(_migration(), "linux-6.13", "upstream-doc", 0)
    hung = [m for m in result.trace.messages if m.kind == "hung-task"]
    assert len(hung) == 1
    assert hung[0].text.startswith("INFO: task io-wait1:100 blocked for more than ")
    assert hung[0].value > 100  # seconds: the downtime is in it
    assert "hung-task" in result.ids


def test_the_same_task_under_qemu_which_hides_the_downtime_is_not() -> None:
    result = run_one(_migration(), "linux-6.13", "qemu", 0)
    assert "hung-task" not in result.ids


def test_tsc_state_tells_the_guest_and_the_detector_skips_a_check() -> None:
    # KVMCLOCK_CTRL: the first vCPU to see PVCLOCK_GUEST_STOPPED calls
    # reset_hung_task_detector() (pvclock_touch_watchdogs), so the overdue check is skipped.
    result = run_one(_migration(), "linux-6.13", "tsc-state", 0)
    assert "hung-task" not in result.ids


def test_no_rcu_stall_without_grace_periods_in_flight() -> None:
    quiet = run_one(_migration(blocked=False), "linux-6.13", "upstream-doc", 0)
    busy = run_one(_migration(rcu_busy=True, blocked=False), "linux-6.13", "upstream-doc", 0)
    assert "rcu-stall" not in quiet.ids
    assert "rcu-stall" in busy.ids
