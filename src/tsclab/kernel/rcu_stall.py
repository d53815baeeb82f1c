"""The RCU CPU stall detector (normal grace periods), as a state machine.

Follows ``kernel/rcu/tree_stall.h`` (and ``rcu_gp_fqs()`` in ``tree.c``)
from 5.4 to the 2025/2026 trees, for one grace period at a time:

* ``record_gp_stall_check_time()`` - a GP starts: ``gp_start = jiffies``,
  ``jiffies_stall = jiffies + rcu_jiffies_till_stall_check()``;
* ``check_cpu_stall()`` - from each CPU's scheduling-clock tick: once
  ``jiffies`` reaches ``jiffies_stall``, the CPU that still owes a quiescent
  state reports itself at once, any other CPU after
  ``RCU_STALL_RAT_DELAY`` more jiffies.  It claims the report by moving
  ``jiffies_stall`` (cmpxchg), then calls
  ``kvm_check_and_clear_guest_paused()`` and stays silent if it returns
  true;
* ``rcu_cpu_stall_reset()`` - called by ``pvclock_touch_watchdogs()``.

Two behaviours changed, so they are parameters (:class:`RcuStallVariant`):

``reset``
    ``disable-gp``: ``jiffies_stall = jiffies + ULONG_MAX / 2`` - no stall
    warning for the rest of this GP (before a80be428fbc1, Sergey
    Senozhatsky, 2021, 5.14/5.15);
    ``restart``: ``jiffies_stall = jiffies + rcu_jiffies_till_stall_check()``
    (a80be428fbc1 until b96e7a5fa0ba);
    ``fqs-countdown``: ``nr_fqs_jiffies_stall = 3``, ``jiffies_stall =
    ULONG_MAX``; stall checks are off until the third ``rcu_gp_fqs()``
    re-arms ``jiffies_stall`` from a fresh ``jiffies`` (b96e7a5fa0ba,
    Joel Fernandes, v6.7, backported to 6.6.y and other stable trees).
``claim``
    ``3x-timeout``: the claim sets ``jiffies_stall = jiffies + 3 *
    timeout + 3`` before the paused check (until mid-2021);
    ``rest-of-gp``: the claim sets ``jiffies + ULONG_MAX / 2``, and only a
    printed report re-arms ``jiffies + 3 * timeout + 3``; a paused guest
    therefore silences the rest of the GP unless a reset re-arms it.

Times are jiffies (unsigned long, wrapping; compared with
``ULONG_CMP_GE``/``ULONG_CMP_LT``).  Not modelled: stall suppression,
``CONFIG_PROVE_RCU``'s extra delay, expedited GPs, the per-CPU detail lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tsclab.arith import U64_MAX, u64

ULONG_MAX = U64_MAX
RCU_STALL_RAT_DELAY = 2  # tree.h: let other CPUs take a tick before ratting on them
DEFAULT_RCU_CPU_STALL_TIMEOUT_S = 21  # CONFIG_RCU_CPU_STALL_TIMEOUT

ResetStyle = Literal["disable-gp", "restart", "fqs-countdown"]
ClaimStyle = Literal["3x-timeout", "rest-of-gp"]


@dataclass(frozen=True, slots=True)
class RcuStallVariant:
    """The version-dependent parts of the stall detector."""

    reset: ResetStyle = "fqs-countdown"
    claim: ClaimStyle = "rest-of-gp"

    @classmethod
    def for_version(cls, version: tuple[int, int]) -> RcuStallVariant:
        """The variant a kernel release line carries (current stable releases).

        Before 5.14: the 2021 changes are absent.  From 5.14 on, a current
        stable release has b96e7a5fa0ba (v6.7, Cc: stable); early releases of
        5.14 - 6.6 had ``restart`` instead - pass it explicitly for them.
        """
        if version < (5, 14):
            return cls(reset="disable-gp", claim="3x-timeout")
        return cls()


@dataclass(frozen=True, slots=True)
class RcuStallReport:
    """One stall warning: the reporting CPU, ``t=`` (jiffies since the GP began), headline."""

    cpu: int
    stalled_jiffies: int
    text: str


def ulong_cmp_ge(a: int, b: int) -> bool:
    """``ULONG_CMP_GE(a, b)``: ``ULONG_MAX / 2 >= a - b`` in unsigned long."""
    return u64(a - b) <= ULONG_MAX // 2


def ulong_cmp_lt(a: int, b: int) -> bool:
    """``ULONG_CMP_LT(a, b)``: ``ULONG_MAX / 2 < a - b`` in unsigned long."""
    return u64(a - b) > ULONG_MAX // 2


def rcu_jiffies_till_stall_check(timeout_s: int, hz: int) -> int:
    """``rcu_jiffies_till_stall_check()``: the timeout clamped to 3..300 s, in jiffies."""
    return min(max(timeout_s, 3), 300) * hz


class RcuStallDetector:
    """``rcu_state``'s stall fields and ``check_cpu_stall()`` for normal GPs.

    ``flavour`` is ``rcu_state.name``: ``rcu_preempt`` (``CONFIG_PREEMPT_RCU``)
    or ``rcu_sched``.
    """

    def __init__(
        self,
        timeout_s: int = DEFAULT_RCU_CPU_STALL_TIMEOUT_S,
        hz: int = 250,
        *,
        variant: RcuStallVariant | None = None,
        flavour: str = "rcu_preempt",
    ) -> None:
        self.timeout_s = timeout_s
        self.hz = hz
        self.variant = RcuStallVariant() if variant is None else variant
        self.flavour = flavour
        self.gp_in_progress = False
        self.gp_start = 0
        self.jiffies_stall = 0
        self.nr_fqs_jiffies_stall = 0

    @property
    def till_stall_check(self) -> int:
        """``rcu_jiffies_till_stall_check()`` for this detector's timeout and HZ."""
        return rcu_jiffies_till_stall_check(self.timeout_s, self.hz)

    def gp_started(self, jiffies_now: int) -> None:
        """``record_gp_stall_check_time()`` at the start of a grace period."""
        self.gp_in_progress = True
        self.gp_start = u64(jiffies_now)
        self.nr_fqs_jiffies_stall = 0
        self.jiffies_stall = u64(jiffies_now + self.till_stall_check)

    def gp_ended(self) -> None:
        """The grace period completed: no stall can be reported for it."""
        self.gp_in_progress = False

    def reset(self, jiffies_now: int | None = None) -> None:
        """``rcu_cpu_stall_reset()``; the ``disable-gp`` and ``restart`` variants read ``jiffies``."""
        if self.variant.reset == "fqs-countdown":
            self.nr_fqs_jiffies_stall = 3
            self.jiffies_stall = ULONG_MAX
            return
        if jiffies_now is None:
            raise ValueError(f"rcu_cpu_stall_reset() ({self.variant.reset}) needs jiffies_now")
        if self.variant.reset == "restart":
            self.jiffies_stall = u64(jiffies_now + self.till_stall_check)
        else:
            self.jiffies_stall = u64(jiffies_now + ULONG_MAX // 2)

    def fqs(self, jiffies_now: int) -> None:
        """``rcu_gp_fqs()``'s countdown (``fqs-countdown``): the third one re-arms the check."""
        nr_fqs = self.nr_fqs_jiffies_stall
        if not nr_fqs:
            return
        if nr_fqs == 1:
            self.jiffies_stall = u64(jiffies_now + self.till_stall_check)
        self.nr_fqs_jiffies_stall = nr_fqs - 1

    def check(
        self, cpu: int, jiffies_now: int, cpu_owes_qs: bool, check_paused: Callable[[], bool]
    ) -> RcuStallReport | None:
        """``check_cpu_stall()`` from ``cpu``'s tick at ``jiffies_now``.

        ``cpu_owes_qs`` is whether this CPU's bit is still set in its leaf
        ``rcu_node``'s ``qsmask`` (a self-detected stall); otherwise the CPU
        reports the others' stall, ``RCU_STALL_RAT_DELAY`` jiffies later.
        ``check_paused`` is ``kvm_check_and_clear_guest_paused()``, called
        only once this CPU has claimed the report; true means silence.
        """
        if not self.gp_in_progress or self.nr_fqs_jiffies_stall > 0:
            return None
        j = u64(jiffies_now)
        js, gps = self.jiffies_stall, self.gp_start
        if ulong_cmp_lt(j, js) or ulong_cmp_ge(gps, js):
            return None  # no stall yet
        if not (cpu_owes_qs or ulong_cmp_ge(j, u64(js + RCU_STALL_RAT_DELAY))):
            return None
        # cmpxchg(&jiffies_stall, js, jn) succeeds: this CPU reports (or not).
        jn = self._claim_value(j)
        self.jiffies_stall = jn
        if check_paused():
            return None
        report = RcuStallReport(cpu, u64(j - gps), self._headline(cpu_owes_qs))
        if self.variant.claim == "rest-of-gp" and self.jiffies_stall == jn:
            self.jiffies_stall = u64(j + 3 * self.till_stall_check + 3)
        return report

    def _claim_value(self, j: int) -> int:
        if self.variant.claim == "3x-timeout":
            return u64(j + 3 * self.till_stall_check + 3)
        return u64(j + ULONG_MAX // 2)

    def _headline(self, self_detected: bool) -> str:
        """The first line of ``print_cpu_stall()`` / ``print_other_cpu_stall()`` (pr_fmt "rcu: ")."""
        if self_detected:
            return f"rcu: INFO: {self.flavour} self-detected stall on CPU"
        return f"rcu: INFO: {self.flavour} detected stalls on CPUs/tasks:"
