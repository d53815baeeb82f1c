"""The guest's side of the nap protocol (docs/nap-protocol.md section 3), on the kernel model.

What new kernel code would do, written against the model's timekeeper
(:class:`tsclab.kernel.timekeeping.Timekeeping`) and NTP state; the
simulator calls it at the points the kernel would: the nap interrupt's
``stop_machine(nap_park)``, the first thing after the vCPUs run again, and
each timekeeping update (the fallback).
"""

from __future__ import annotations

from typing import Protocol

from tsclab.kernel.ntp import NTP_PHASE_LIMIT, NtpState
from tsclab.kernel.timekeeping import Timekeeping
from tsclab.kernel.timespec import Timespec64
from tsclab.nap.page import FLAG_TSC_RATE_CHANGED, GUEST_PARKED, GUEST_RESUMING, GUEST_RUNNING, WOKEN, NapPage


class NapKernel(Protocol):
    """What the protocol's guest side needs from the running kernel."""

    tkg: Timekeeping
    ntp: NtpState

    def touch_all_watchdogs(self) -> None: ...

    def tsc_rate_changed(self, tsc_khz: int) -> None: ...


def _bound_us(ns: int) -> int:
    return -(-ns // 1000)


class NapGuest:
    """The guest half: park, wake-up, and the fallback check."""

    def __init__(self, kernel: NapKernel, page: NapPage) -> None:
        self.kernel = kernel
        self.page = page
        self.parked = False
        self._rtc = Timespec64(0, 0)  # the "persistent clock" the resume path reads
        kernel.tkg.persistent_clock = lambda: self._rtc

    def park(self) -> None:
        """Steps 1-3 inside ``stop_machine``: ``timekeeping_suspend()``, acknowledge."""
        tkg = self.kernel.tkg
        self._rtc = tkg.ktime_get_real_ts64()
        tkg.timekeeping_suspend()
        self.parked = True
        self.page.guest_state = GUEST_PARKED
        self.page.acked_generation = self.page.generation

    def wake(self) -> int:
        """Steps 5-11, before any reader runs: re-base, inject the nap, bound NTP, touch.

        Returns the sleep injected (ns).  The page must say ``WOKEN``.
        """
        page = self.page
        page.guest_state = GUEST_RESUMING
        self._rtc = self._rtc + Timespec64.from_ns(page.nap_ns)
        injected = self.kernel.tkg.timekeeping_resume()
        self._retune(page)
        self._publish_bound()
        self.kernel.touch_all_watchdogs()
        self.parked = False
        page.applied_generation = page.generation
        page.guest_state = GUEST_RUNNING
        return injected.to_ns() if injected is not None else 0

    def check(self) -> int:
        """Step 12, at each timekeeping update: a nap the guest did not park for.

        Injects into REALTIME and BOOTTIME the part of the nap the counter
        did not show; returns it (ns), 0 when there was nothing to apply.
        """
        page = self.page
        if self.parked or page.host_state != WOKEN or page.generation == page.applied_generation:
            return 0
        shown = 0
        if page.tsc_khz and page.tsc_at_wake > page.tsc_at_freeze:
            shown = (page.tsc_at_wake - page.tsc_at_freeze) * 1_000_000 // page.tsc_khz
        missing = max(page.nap_ns - shown, 0)
        if missing:
            self.kernel.tkg.timekeeping_inject_sleeptime64(Timespec64.from_ns(missing), clear_ntp=False)
        self._retune(page)
        self._publish_bound()
        self.kernel.touch_all_watchdogs()
        page.applied_generation = page.generation
        return missing

    def _retune(self, page: NapPage) -> None:
        """Step 7's first half: a TSC whose rate changed is registered again at the new rate."""
        if page.flags & FLAG_TSC_RATE_CHANGED and page.tsc_khz:
            self.kernel.tsc_rate_changed(page.tsc_khz)

    def _publish_bound(self) -> None:
        """Step 8: NTP's error bounds grow by the host's bound on ``nap_ns``; NTP stays synchronised."""
        ntp = self.kernel.ntp
        bound = _bound_us(self.page.realtime_error_ns)
        ntp.time_esterror = min(ntp.time_esterror + bound, NTP_PHASE_LIMIT)
        ntp.time_maxerror = min(ntp.time_maxerror + bound, NTP_PHASE_LIMIT)
