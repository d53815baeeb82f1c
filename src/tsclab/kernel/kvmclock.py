"""The guest's kvm-clock driver: pvclock reads, the ``last_value`` clamp, GUEST_STOPPED.

Models ``arch/x86/kernel/pvclock.c`` and ``arch/x86/kernel/kvmclock.c``
(5.x to the 2025/2026 trees):

* ``__pvclock_clocksource_read(src, dowd)`` - scale the TSC by this vCPU's
  ``pvclock_vcpu_time_info``; with ``dowd`` consume ``PVCLOCK_GUEST_STOPPED``
  (clear it in guest memory, then ``pvclock_touch_watchdogs()``); return
  the raw value when both ``valid_flags`` and the page have
  ``PVCLOCK_TSC_STABLE_BIT``; otherwise clamp against the global
  ``last_value`` so no vCPU sees time go back.  Before 6.3 every read
  consumed the flag (``pvclock_clocksource_read()``); from 6.3
  (8739c6811572, "sched/clock/x86: Mark sched_clock() noinstr") kvm-clock
  reads use ``pvclock_clocksource_read_nowd()`` - ``KernelProfile.
  kvmclock_read_consumes_guest_stopped``.
* The clamp's comparison: older trees ``if (ret < last) return last`` with
  ``atomic64_cmpxchg``, later ones ``if (ret <= last) return last`` with
  ``try_cmpxchg``.  Equal values are returned either way; only whether the
  equal value is written back differs, which nothing can observe.
* ``kvm_clock_read()``, ``kvm_sched_clock_read()`` (``kvm_clock_read() -
  kvm_sched_clock_offset``: it went through the flag-consuming read before
  6.3 too), ``kvm_check_and_clear_guest_paused()`` (this CPU's page: clear
  the flag, then touch the watchdogs), ``pvclock_resume()``.

``valid_flags`` holds ``PVCLOCK_TSC_STABLE_BIT`` only when the host offers
``KVM_FEATURE_CLOCKSOURCE_STABLE_BIT`` (``kvmclock_init()``).  The pvti
version retry loop is not modelled: a read sees one consistent page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tsclab.arith import u64
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.vdso import (
    PVCLOCK_GUEST_STOPPED,
    PVCLOCK_TSC_STABLE_BIT,
    PvclockVcpuTimeInfo,
    pvclock_read_cycles,
)

ClampCompare = Literal["lt", "le"]


class KvmclockGuest:
    """One guest's kvm-clock state: ``last_value`` is global, the pvti pages per vCPU.

    ``stable_bit_valid`` is ``KVM_FEATURE_CLOCKSOURCE_STABLE_BIT``
    (``pvclock_set_flags(PVCLOCK_TSC_STABLE_BIT)``); ``clamp`` the
    comparison of the ``last_value`` loop.
    """

    def __init__(
        self, profile: KernelProfile, *, stable_bit_valid: bool = True, clamp: ClampCompare = "le"
    ) -> None:
        self.profile = profile
        self.valid_flags = PVCLOCK_TSC_STABLE_BIT if stable_bit_valid else 0
        self.clamp: ClampCompare = clamp
        self.last_value = 0

    def clocksource_read(
        self, pvti: PvclockVcpuTimeInfo, tsc: int, dowd: bool, on_guest_stopped: Callable[[], None] | None
    ) -> int:
        """``__pvclock_clocksource_read(src, dowd)`` at guest TSC ``tsc``."""
        ret = pvclock_read_cycles(pvti, tsc)
        flags = pvti.flags  # read with the time, inside the version loop
        if dowd and flags & PVCLOCK_GUEST_STOPPED:
            if on_guest_stopped is None:
                raise ValueError("this read consumes PVCLOCK_GUEST_STOPPED: pass on_guest_stopped")
            pvti.flags &= ~PVCLOCK_GUEST_STOPPED  # guest memory: the host sees it cleared
            on_guest_stopped()
        if self.valid_flags & PVCLOCK_TSC_STABLE_BIT and flags & PVCLOCK_TSC_STABLE_BIT:
            return ret
        return self._clamp_last_value(ret)

    def _clamp_last_value(self, ret: int) -> int:
        """The global accumulator: never return less than any vCPU already returned."""
        last = self.last_value
        behind = ret < last if self.clamp == "lt" else ret <= last
        if behind:
            return last
        self.last_value = ret  # the cmpxchg succeeds: reads are sequential here
        return ret

    def read(self, pvti: PvclockVcpuTimeInfo, tsc: int, on_guest_stopped: Callable[[], None]) -> int:
        """``kvm_clock_read()`` on the vCPU whose page is ``pvti``.

        Consumes ``PVCLOCK_GUEST_STOPPED`` (clears it in ``pvti`` and calls
        ``on_guest_stopped``, i.e. ``pvclock_touch_watchdogs()``) only on
        profiles before 6.3.
        """
        return self.clocksource_read(
            pvti, tsc, self.profile.kvmclock_read_consumes_guest_stopped, on_guest_stopped
        )

    def check_and_clear_guest_paused(
        self, pvti: PvclockVcpuTimeInfo | None, on_guest_stopped: Callable[[], None]
    ) -> bool:
        """``kvm_check_and_clear_guest_paused()`` for this CPU's page (None: not registered)."""
        if pvti is None or not pvti.flags & PVCLOCK_GUEST_STOPPED:
            return False
        pvti.flags &= ~PVCLOCK_GUEST_STOPPED
        on_guest_stopped()
        return True

    def sched_clock_ns(
        self,
        pvti: PvclockVcpuTimeInfo,
        tsc: int,
        offset: int,
        on_guest_stopped: Callable[[], None] | None = None,
    ) -> int:
        """``kvm_sched_clock_read()``: ``kvm_clock_read() - kvm_sched_clock_offset`` (u64).

        Same read as :meth:`read` (the ``last_value`` clamp included); from
        6.3 it handles no flag, before 6.3 it consumed ``PVCLOCK_GUEST_STOPPED``
        like every kvm-clock read, so ``on_guest_stopped`` is then required
        whenever the flag is set.
        """
        dowd = self.profile.kvmclock_read_consumes_guest_stopped
        return u64(self.clocksource_read(pvti, tsc, dowd, on_guest_stopped) - offset)

    def resume(self) -> None:
        """``pvclock_resume()``: forget ``last_value`` (after guest suspend/resume)."""
        self.last_value = 0
