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
from tsclab.nap.page import FLAG_TSC_RATE_CHANGED, GUEST_PARKED, GUEST_RESUMING, GUEST_RUNNING, NapPage


class NapKernel(Protocol):
    """What the protocol's guest side needs from the running kernel."""

    tkg: Timekeeping
    ntp: NtpState

    def touch_all_watchdogs(self) -> None: ...

    def tsc_rate_changed(self, tsc_khz: int) -> None: ...


def _bound_us(ns: int) -> int:
    return -(-ns // 1000)


def cycles_to_ns(cycles: int, tsc_khz: int) -> int:
    """Guest TSC cycles as ns at ``tsc_khz`` (0 when the rate is not published)."""
    return cycles * 1_000_000 // tsc_khz if tsc_khz else 0


def unapplied_sleep(
    slept_ns: int, slept_tsc: int, applied_ns: int, applied_tsc: int, skipped: int, khz: int
) -> int:
    """Sleep to inject (step 7): the unapplied naps less what the counter showed readers.

    Of the unapplied naps' counter cycles (``slept_tsc - applied_tsc``),
    ``skipped`` are dropped by the re-base; the rest were (or will be)
    accumulated into MONOTONIC by the updates, so that part of the sleep is
    already counted.  Never negative: BOOTTIME does not step back when a
    host moved the TSC by more than the time it measured.
    """
    shown = slept_tsc - applied_tsc - skipped
    return max(slept_ns - applied_ns - cycles_to_ns(shown, khz), 0)


class NapGuest:
    """The guest half: park, wake-up, and the fallback check.

    The guest remembers the page's running totals it has applied
    (``applied_ns``, ``applied_tsc``, ``applied_error_ns``); whatever
    applies a nap - the wake-up or the fallback - applies the difference
    and moves them on, so every nap is counted once (property 9) even when
    a wake-up was missed or seen twice.
    """

    def __init__(self, kernel: NapKernel, page: NapPage) -> None:
        self.kernel = kernel
        self.page = page
        self.parked = False
        self.applied_ns = 0
        self.applied_tsc = 0
        self.applied_error_ns = 0
        self._tsc_total_at_park = 0

    def park(self) -> None:
        """Steps 1-3 inside ``stop_machine``: ``timekeeping_suspend()``, acknowledge."""
        self.kernel.tkg.timekeeping_suspend()
        self._tsc_total_at_park = self.page.slept_tsc
        self.parked = True
        self.page.guest_state = GUEST_PARKED
        self.page.acked_generation = self.page.generation

    def wake(self) -> int:
        """Steps 5-11, before any reader runs: re-base, inject the nap, bound NTP, touch.

        The naps since the park (their counter cycles) are skipped; any
        earlier unapplied nap was visible to readers and is counted as the
        fallback counts it.  Returns the sleep injected (ns).  The page
        must say ``WOKEN``.
        """
        page = self.page
        page.guest_state = GUEST_RESUMING
        skip = page.slept_tsc - self._tsc_total_at_park
        injected = self._unapplied_sleep(skip)
        self.kernel.tkg.nap_resume(skip, Timespec64.from_ns(injected))
        self._finish_apply()
        self.parked = False
        page.guest_state = GUEST_RUNNING
        return injected

    def check(self) -> int:
        """Step 12, at each timekeeping update: a nap the guest did not park for.

        Injects into REALTIME and BOOTTIME the part of the naps the counter
        did not show; returns it (ns), 0 when there was nothing to apply.
        """
        page = self.page
        if self.parked or page.woken_generation == page.applied_generation:
            return 0
        missing = self._unapplied_sleep(0)
        if missing:
            self.kernel.tkg.timekeeping_inject_sleeptime64(Timespec64.from_ns(missing), clear_ntp=False)
        self._finish_apply()
        return missing

    def _unapplied_sleep(self, skipped_cycles: int) -> int:
        """:func:`unapplied_sleep` from the page's totals and the ones this guest applied."""
        page = self.page
        return unapplied_sleep(
            page.slept_ns, page.slept_tsc, self.applied_ns, self.applied_tsc, skipped_cycles, page.tsc_khz
        )

    def _finish_apply(self) -> None:
        """Steps 7 (retune), 8 (the bound), 9 (watchdogs), 11 (applied): the totals move on."""
        page = self.page
        self._retune(page)
        self._publish_bound(page.slept_error_ns - self.applied_error_ns)
        self.kernel.touch_all_watchdogs()
        self.applied_ns, self.applied_tsc, self.applied_error_ns = (
            page.slept_ns,
            page.slept_tsc,
            page.slept_error_ns,
        )
        page.applied_generation = page.woken_generation

    def _retune(self, page: NapPage) -> None:
        """Step 7's first half: a TSC whose rate changed is registered again at the new rate."""
        if page.flags & FLAG_TSC_RATE_CHANGED and page.tsc_khz:
            self.kernel.tsc_rate_changed(page.tsc_khz)

    def _publish_bound(self, error_ns: int) -> None:
        """Step 8: NTP's error bounds grow by the host's bound; NTP stays synchronised."""
        ntp = self.kernel.ntp
        bound = _bound_us(error_ns)
        ntp.time_esterror = min(ntp.time_esterror + bound, NTP_PHASE_LIMIT)
        ntp.time_maxerror = min(ntp.time_maxerror + bound, NTP_PHASE_LIMIT)
