"""kernel/rcu_stall.py: check_cpu_stall() around a jiffies jump, HZ=250, 21 s timeout.

``rcu_jiffies_till_stall_check()`` is 21 * 250 = 5250 jiffies.  A grace
period starts at jiffies 1000, so ``jiffies_stall`` is 6250; a 60 s pause
makes the next tick see jiffies 16000.
"""

from __future__ import annotations

import pytest

from tsclab.kernel.rcu_stall import (
    RCU_STALL_RAT_DELAY,
    ULONG_MAX,
    RcuStallDetector,
    RcuStallReport,
    RcuStallVariant,
    rcu_jiffies_till_stall_check,
    ulong_cmp_ge,
    ulong_cmp_lt,
)

HZ = 250
TILL = 21 * HZ
GP0 = 1000
AFTER_PAUSE = GP0 + 60 * HZ  # 16000

OLD = RcuStallVariant.for_version((5, 10))
RESTART = RcuStallVariant(reset="restart", claim="rest-of-gp")


def never_paused() -> bool:
    return False


def paused() -> bool:
    return True


def in_gp(variant: RcuStallVariant | None = None) -> RcuStallDetector:
    det = RcuStallDetector(21, HZ, variant=variant)
    det.gp_started(GP0)
    return det


def test_timeout_and_variants() -> None:
    assert rcu_jiffies_till_stall_check(21, HZ) == 5250
    assert rcu_jiffies_till_stall_check(1, HZ) == 3 * HZ
    assert rcu_jiffies_till_stall_check(1000, 1000) == 300_000
    assert in_gp().jiffies_stall == GP0 + TILL
    assert (OLD.reset, OLD.claim) == ("disable-gp", "3x-timeout")
    assert RcuStallVariant.for_version((6, 13)) == RcuStallVariant(reset="fqs-countdown", claim="rest-of-gp")


def test_ulong_cmp() -> None:
    assert ulong_cmp_ge(5, 5)
    assert ulong_cmp_ge(2, ULONG_MAX)  # 2 is 3 jiffies after ULONG_MAX
    assert ulong_cmp_lt(ULONG_MAX, 2)
    assert not ulong_cmp_lt(5, 5)


def test_no_stall_before_the_timeout() -> None:
    det = in_gp()
    assert det.check(0, GP0 + TILL - 1, True, never_paused) is None


def test_stall_reported_on_first_check_after_jump() -> None:
    det = in_gp()
    report = det.check(0, AFTER_PAUSE, True, never_paused)
    assert report == RcuStallReport(0, 15000, "rcu: INFO: rcu_preempt self-detected stall on CPU")
    # The next warning for this GP comes 3 * timeout + 3 jiffies later.
    assert det.jiffies_stall == AFTER_PAUSE + 3 * TILL + 3
    assert det.check(0, AFTER_PAUSE + 1, True, never_paused) is None
    again = det.check(1, AFTER_PAUSE + 3 * TILL + 3, True, never_paused)
    assert again is not None
    assert again.stalled_jiffies == AFTER_PAUSE + 3 * TILL + 3 - GP0


def test_other_cpus_report_two_jiffies_late() -> None:
    det = in_gp()
    js = GP0 + TILL
    assert det.check(3, js + RCU_STALL_RAT_DELAY - 1, False, never_paused) is None
    report = det.check(3, js + RCU_STALL_RAT_DELAY, False, never_paused)
    assert report == RcuStallReport(3, TILL + 2, "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:")


def test_check_paused_suppresses_and_silences_the_rest_of_the_gp() -> None:
    det = in_gp()
    assert det.check(0, AFTER_PAUSE, True, paused) is None
    assert det.jiffies_stall == AFTER_PAUSE + ULONG_MAX // 2
    assert det.check(0, AFTER_PAUSE + 100 * TILL, True, never_paused) is None
    det.gp_ended()
    det.gp_started(AFTER_PAUSE + 100 * TILL)
    assert det.jiffies_stall == AFTER_PAUSE + 101 * TILL


def test_check_paused_is_called_only_once_a_stall_is_due() -> None:
    calls: list[int] = []
    det = in_gp()

    def probe() -> bool:
        calls.append(1)
        return False

    det.check(0, GP0 + 10, True, probe)
    assert calls == []
    det.check(0, AFTER_PAUSE, True, probe)
    assert calls == [1]


def test_reset_defers_until_three_fqs() -> None:
    det = in_gp()
    det.reset()  # pvclock_touch_watchdogs() -> rcu_cpu_stall_reset()
    assert (det.nr_fqs_jiffies_stall, det.jiffies_stall) == (3, ULONG_MAX)
    assert det.check(0, AFTER_PAUSE, True, never_paused) is None
    det.fqs(AFTER_PAUSE + 3)
    det.fqs(AFTER_PAUSE + 6)
    assert det.check(0, AFTER_PAUSE + 6, True, never_paused) is None  # still counting down
    det.fqs(AFTER_PAUSE + 9)
    assert (det.nr_fqs_jiffies_stall, det.jiffies_stall) == (0, AFTER_PAUSE + 9 + TILL)
    assert det.check(0, AFTER_PAUSE + 9 + TILL - 1, True, never_paused) is None
    late = det.check(0, AFTER_PAUSE + 9 + TILL, True, never_paused)
    assert late is not None
    assert late.stalled_jiffies == AFTER_PAUSE + 9 + TILL - GP0


def test_paused_guest_with_pvclock_touch_watchdogs() -> None:
    """kvm_check_and_clear_guest_paused() itself calls rcu_cpu_stall_reset()."""
    det = in_gp()

    def kvm_check_and_clear_guest_paused() -> bool:
        det.reset()
        return True

    assert det.check(0, AFTER_PAUSE, True, kvm_check_and_clear_guest_paused) is None
    assert det.nr_fqs_jiffies_stall == 3
    for j in (3, 6, 9):
        det.fqs(AFTER_PAUSE + j)
    assert det.jiffies_stall == AFTER_PAUSE + 9 + TILL


def test_restart_variant_resets_from_jiffies() -> None:
    det = in_gp(RESTART)
    det.reset(AFTER_PAUSE)
    assert det.jiffies_stall == AFTER_PAUSE + TILL
    assert det.check(0, AFTER_PAUSE, True, never_paused) is None
    with pytest.raises(ValueError, match="needs jiffies_now"):
        det.reset()


def test_old_variant_paused_defers_by_three_timeouts() -> None:
    det = in_gp(OLD)
    assert det.check(0, AFTER_PAUSE, True, paused) is None
    assert det.jiffies_stall == AFTER_PAUSE + 3 * TILL + 3
    report = det.check(0, AFTER_PAUSE + 3 * TILL + 3, True, never_paused)
    assert report is not None


def test_old_variant_reset_disables_the_gp() -> None:
    det = in_gp(OLD)
    det.reset(GP0 + 5)
    assert det.check(0, GP0 + 1_000_000, True, never_paused) is None


def test_no_gp_no_stall() -> None:
    det = RcuStallDetector(21, HZ, flavour="rcu_sched")
    assert det.check(0, 10**9, True, never_paused) is None
    det.gp_started(0)
    report = det.check(0, TILL, True, never_paused)
    assert report is not None
    assert report.text == "rcu: INFO: rcu_sched self-detected stall on CPU"
