"""The guest sides of the seed thread's alternatives to the nap protocol.

The thread (LKML, December 2020) weighed, besides "tell the guest before it
takes a nap", an interrupt on resume, a published "max sane" counter delta,
guest S3, and - later, in VMCLOCK - a disruption marker read after the fact.
This module holds the guest-side pieces that are kernel code, written
against the kernel model; the simulator (:mod:`tsclab.sim.guest_kernel`)
calls them where the kernel would.  The resume interrupt's handler is
interrupt plumbing and lives with the simulator's interrupts.

* **Guest S3** (Paolo Bonzini, 10 Dec 2020: "just put it in S3"): nothing
  new - the suspend path every kernel has.  ``syscore_suspend()`` runs
  ``timekeeping_suspend()``, ``syscore_resume()`` runs
  ``timekeeping_resume()``, and the sleep comes from the persistent clock.
  On an x86 KVM guest that is not the CMOS RTC: ``kvmclock_init()``
  installs ``kvm_get_wallclock()`` as ``x86_platform.get_wallclock`` (every
  version modelled, 5.10 to 6.13), which ``read_persistent_clock64()``
  calls.  It writes ``MSR_KVM_WALL_CLOCK_NEW`` on every call, so KVM
  (``kvm_write_wall_clock()``) publishes host realtime less kvmclock, and
  adding the pvclock read gives the host's CLOCK_REALTIME, in ns.  So the
  sleep is measured at ns resolution on the hosts' realtime, injected by
  ``timekeeping_resume()`` (which does not clear NTP), and the RTC class's
  ``rtc_resume()`` skips its own ``timekeeping_inject_sleeptime64()``
  (``timekeeping_rtc_skipresume()``).  A guest booted with ``no-kvmclock``
  reads the CMOS RTC there instead (``mach_get_cmos_time()``, whole
  seconds), still through ``timekeeping_resume()``; the NTP-clearing
  ``timekeeping_inject_sleeptime64()`` is the RTC class's path on platforms
  with no persistent clock at all.  A guest TSC is not nonstop (QEMU hides
  invariant TSC unless asked), so there is no suspend-timing source.
* **max-sane** (Andy Lutomirski's "max TSC value that makes sense right
  now", agreed by tglx on 10 Dec 2020 <87360djqve.fsf@nanos.tec.linutronix.de>):
  a reader whose delta passes the host's bound neither multiplies it nor
  takes the 128-bit slow path; it waits for the timekeeping update.
* **VMCLOCK consumer**: user space polling the VMCLOCK device sees a new
  ``disruption_marker`` and steps REALTIME (``do_settimeofday64()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tsclab.arith import NSEC_PER_SEC
from tsclab.kernel.timekeeping import Timekeeping
from tsclab.kernel.timespec import Timespec64

# How long a guest takes from the suspend request to S3: freezing tasks,
# suspending devices, taking the other CPUs offline, syscore_suspend().
# An assumption - one to two seconds is the usual order for a small VM, and
# tsclab has not measured it - so the figure is a named constant to vary.
S3_SUSPEND_NS = 1_500_000_000
# How long the VMM waits for the guest's SUSPEND event before it snapshots
# a guest that does not answer, awake: the policy's choice.
S3_ANSWER_TIMEOUT_NS = 10 * NSEC_PER_SEC
# A VMCLOCK consumer's polling period: chrony samples a PHC refclock every
# 2**dpoll seconds, dpoll 0 by default.  Assumed: it steps at the first
# sample that shows a new marker.
VMCLOCK_POLL_NS = NSEC_PER_SEC


class SleepKernel(Protocol):
    """What the suspend path needs from the running kernel."""

    tkg: Timekeeping

    def touch_all_watchdogs(self) -> None: ...


class SuspendToRam:
    """A guest's suspend to RAM and resume, as far as time goes (``kernel/power/suspend.c``)."""

    def __init__(self, kernel: SleepKernel, wallclock: Callable[[], Timespec64]) -> None:
        self.kernel = kernel
        self.wallclock = wallclock  # kvm_get_wallclock(): the host's realtime, now
        self.suspended = False
        self._previous: Callable[[], Timespec64] | None = None

    def suspend(self) -> None:
        """``syscore_suspend()``'s ``timekeeping_suspend()``, the persistent clock being kvm's wall clock.

        The model's timekeeper has one persistent-clock slot, which the nap
        protocol's guest side may also use; it is lent to the wall clock for
        the sleep and given back on resume.
        """
        tkg = self.kernel.tkg
        self._previous = tkg.persistent_clock
        tkg.persistent_clock = self.wallclock
        tkg.timekeeping_suspend()
        self.suspended = True

    def resume(self) -> int:
        """``syscore_resume()``'s ``timekeeping_resume()``: the sleep into REALTIME and BOOTTIME.

        Then what the rest of the resume path does for the detectors:
        ``timekeeping_resume()`` touches this CPU's soft-lockup watchdog, the
        other CPUs come back online with theirs restarted,
        ``clocksource_resume()`` resets the clocksource watchdog, and
        ``hungtask_pm_notify()`` held khungtaskd off.  Returns the sleep
        injected (ns).
        """
        tkg = self.kernel.tkg
        injected = tkg.timekeeping_resume()
        tkg.persistent_clock = self._previous
        self._previous = None
        self.kernel.touch_all_watchdogs()
        self.suspended = False
        return injected.to_ns() if injected is not None else 0


def max_sane_cycles(max_sane_delta: int, tsc_hz: int, clock_hz: int) -> int:
    """The host's ``max_sane_delta`` (guest-TSC cycles) in the clocksource's own cycles; 0 if unpublished.

    The guest converts once, when it reads the page, so the reader's test
    stays one compare.
    """
    if not max_sane_delta or not tsc_hz:
        return 0
    return max_sane_delta * clock_hz // tsc_hz


def beyond_max_sane(delta: int, limit: int, mask: int) -> bool:
    """A forward counter delta the reader must not extrapolate.

    Where 6.10+ tests ``delta > max_cycles`` and takes the slow path, a
    max-sane reader tests ``delta > limit`` and waits for the update.  A
    delta with the mask's top bit set is negative motion, which the same
    branch already answers with 0 (6.13: all architectures); it is left to
    that test, or a reader behind another vCPU's TSC would wait forever.
    """
    if not limit or delta <= limit:
        return False
    return not delta & (mask ^ (mask >> 1))


class VmclockConsumer:
    """User space polling the VMCLOCK device (``/dev/vmclock0`` or its PTP clock) for disruptions.

    VMCLOCK's ABI (``include/uapi/linux/vmclock-abi.h``): ``disruption_marker``
    "changes to another non-repeating value when the CPU counter is
    disrupted".  The consumer notices only when it looks; what it steps to
    is the reference it trusts - the host's realtime, which a full-mode
    VMCLOCK publishes and a basic-mode one (QEMU's) leaves to NTP.
    """

    def __init__(self, tkg: Timekeeping) -> None:
        self.tkg = tkg
        self.marker: int | None = None  # the last marker seen; None before the first poll

    def poll(self, marker: int, reference: Timespec64) -> bool:
        """One poll: on a changed marker, ``do_settimeofday64(reference)``; True if it stepped.

        ``do_settimeofday64()`` publishes with ``TK_CLEAR_NTP``: NTP is
        unsynchronised until its daemon says otherwise.
        """
        seen, self.marker = self.marker, marker
        if seen is None or seen == marker:
            return False
        return self.tkg.do_settimeofday64(reference)
