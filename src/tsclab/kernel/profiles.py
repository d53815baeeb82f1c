"""Kernel profiles: which timekeeping behaviour each Linux version selects.

Policy as data.  The timekeeper, readers and vDSO are one mechanism each;
a profile only names the variant of each behaviour a version uses.  Adding
a kernel version is adding one profile here.

Version boundaries (all x86-64 guests):

* reader math - ``timekeeping_cycles_to_ns()``/``timekeeping_get_ns()``:
  ``wrapping`` before 6.10 (``delta * mult`` in u64), ``debug-capping``
  for 4.1-6.9 kernels built with ``CONFIG_DEBUG_TIMEKEEPING`` (delta capped
  at ``max_cycles``, near-wrap deltas clamped to 0), ``protected`` from
  6.10 (``delta > max_cycles`` branch with the negative-motion test and the
  128-bit slow path).
* reader negative motion on x86 - before 6.10 ``clocksource_delta()`` with
  ``CONFIG_CLOCKSOURCE_VALIDATE_LAST_CYCLE`` zeroes deltas with the MSB of
  the mask set; from 6.10 the same test sits inside the ``> max_cycles``
  branch (x86-only in 6.10-6.12, all arches from 6.13).
* writer negative motion - ``clocksource_delta()`` in
  ``timekeeping_advance()``/``timekeeping_forward_now()``: MSB test (50%)
  on x86 before 6.13; ``delta > max_raw_delta`` (87.5%) from 6.13 and
  6.12.5.
* ``forward_now`` - one ``delta * mult`` before 6.10, chunked by
  ``max_cycles`` from 6.10.
* x86 vDSO delta - ``cycles > last`` test with a wrapping multiply
  (5.3-6.4), ``& S64_MAX`` masking with a bit-62 negative test (6.5-6.9),
  the ``max_cycles`` branch with a 128-bit slow path (6.10+).
* kvm-clock reads consume ``PVCLOCK_GUEST_STOPPED`` before 6.3
  (``pvclock_clocksource_read``), not from 6.3 (``..._read_nowd``).
* shadow update - from 6.13 ``timekeeping_update_from_shadow()`` holds
  kernel readers off before the vDSO page is written.
* clocksource watchdog - ``interval-skip``: a watchdog interval over 1 s
  skips the skew check ("Long readout interval", 644649553508 in 6.8,
  tagged for stable; also in Debian 12's
  6.1.192, a stable backport, seen on a real guest).  Its delta to ns -
  ``wrapping``: ``clocksource_cyc2ns()``, a u64 ``delta * mult``;
  ``safe``: ``cycles_to_nsec_safe()``, 128-bit past ``max_cycles`` (6.10+;
  Debian's 6.1.192 printed a correct 1200 s ``cs_nsec`` for a TSC, so it
  has it too; 6.6.y stable not checked).  Both take the delta through
  ``clocksource_delta()``, so a watchdog counter that wrapped past its
  negative-motion cutoff reads 0.

The seed thread's alternatives to the nap protocol are guest sides too, on
the 6.13 core (docs/simulator.md, "Alternatives to the nap"): a handler for
the VMM's resume interrupt (``resume-irq``), readers that wait for an update
rather than extrapolate past the host's ``max_sane_delta`` (``max-sane``),
and a VMCLOCK consumer that steps REALTIME when the disruption marker
changes (``vmclock``).  Guest S3 needs no profile: every version has the
suspend path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

ReaderMath = Literal["wrapping", "debug-capping", "protected"]
WriterNegative = Literal["msb", "max-raw-delta"]
ForwardNow = Literal["single", "chunked"]
VdsoDelta = Literal["x86-5.3", "x86-6.5", "x86-6.10"]
Watchdog = Literal["threshold-62ms", "uncertainty-margin", "interval-skip", "rewrite-2026"]
WatchdogDelta = Literal["wrapping", "safe"]


@dataclass(frozen=True, slots=True)
class KernelProfile:
    """The timekeeping behaviours one kernel version selects."""

    name: str
    version: tuple[int, int]
    summary: str
    reader_math: ReaderMath
    reader_negative_msb: bool
    writer_negative: WriterNegative
    forward_now: ForwardNow
    vdso_delta: VdsoDelta
    vdso_overflow_protect: bool
    kvmclock_read_consumes_guest_stopped: bool
    shadow_update_blocks_readers_first: bool
    watchdog: Watchdog
    watchdog_delta: WatchdogDelta
    nap_protocol: bool = False  # the guest side of tsclab's nap protocol (docs/nap-protocol.md)
    # The thread's alternatives (kernel/nap_alternatives.py):
    resume_irq_handler: bool = False  # the VMM's resume interrupt: catch up, touch watchdogs, re-arm
    max_sane_reader: bool = False  # a delta past max_sane_delta: wait for the update, do not extrapolate
    vmclock_consumer: bool = False  # a changed VMCLOCK disruption marker steps REALTIME

    def behaviours(self) -> dict[str, str]:
        """The selected variants, as text (for ``tsclab profiles``)."""
        return {
            "reader math": self.reader_math,
            "reader negative motion": "MSB of mask (50%)" if self.reader_negative_msb else "none",
            "writer negative motion": {
                "msb": "MSB of mask (50%)",
                "max-raw-delta": "max_raw_delta (87.5%)",
            }[self.writer_negative],
            "forward_now": self.forward_now,
            "vDSO delta": self.vdso_delta,
            "vDSO max_cycles": "yes" if self.vdso_overflow_protect else "no",
            "kvm-clock read clears GUEST_STOPPED": "yes"
            if self.kvmclock_read_consumes_guest_stopped
            else "no",
            "readers held off before vDSO update": "yes" if self.shadow_update_blocks_readers_first else "no",
            "clocksource watchdog": self.watchdog,
            "watchdog delta to ns": self.watchdog_delta,
            "nap protocol": "yes" if self.nap_protocol else "no",
            "resume interrupt handler": "yes" if self.resume_irq_handler else "no",
            "reader past max_sane_delta": "waits for the update" if self.max_sane_reader else "not read",
            "VMCLOCK consumer": "steps REALTIME on a new marker" if self.vmclock_consumer else "no",
        }


LINUX_5_10 = KernelProfile(
    name="linux-5.10",
    version=(5, 10),
    summary="LTS 5.10: wrapping reader, x86 vDSO of 5.3, 62.5 ms watchdog threshold",
    reader_math="wrapping",
    reader_negative_msb=True,
    writer_negative="msb",
    forward_now="single",
    vdso_delta="x86-5.3",
    vdso_overflow_protect=False,
    kvmclock_read_consumes_guest_stopped=True,
    shadow_update_blocks_readers_first=False,
    watchdog="threshold-62ms",
    watchdog_delta="wrapping",
)
# Each later profile states only what changed against its predecessor.
LINUX_6_1 = replace(
    LINUX_5_10,
    name="linux-6.1",
    version=(6, 1),
    summary="LTS 6.1 (Debian 12): wrapping reader, before the overflow protection",
    # As Debian 12 ships it (6.1.192): the 6.8 interval skip and the 6.10
    # overflow-safe watchdog conversion are backported (seen on a real guest).
    watchdog="interval-skip",
    watchdog_delta="safe",
)
LINUX_6_1_DEBUG = replace(
    LINUX_6_1,
    name="linux-6.1-debug",
    summary="6.1 built with CONFIG_DEBUG_TIMEKEEPING: readers cap delta at max_cycles",
    reader_math="debug-capping",
)
LINUX_6_6 = replace(
    LINUX_6_1,
    name="linux-6.6",
    version=(6, 6),
    summary="LTS 6.6: wrapping reader; x86 vDSO reads masked with S64_MAX (6.5)",
    vdso_delta="x86-6.5",
    kvmclock_read_consumes_guest_stopped=False,
    watchdog_delta="wrapping",
)
LINUX_6_10 = replace(
    LINUX_6_1,
    name="linux-6.10",
    version=(6, 10),
    summary="6.10: reader delta limit and 128-bit slow path, kernel and x86 vDSO",
    reader_math="protected",
    forward_now="chunked",
    vdso_delta="x86-6.10",
    vdso_overflow_protect=True,
    kvmclock_read_consumes_guest_stopped=False,
    watchdog="interval-skip",
    watchdog_delta="safe",
)
LINUX_6_13 = replace(
    LINUX_6_10,
    name="linux-6.13",
    version=(6, 13),
    summary="6.13: writer negative-motion cutoff at 87.5%, debug code gone, shadow ordering",
    writer_negative="max-raw-delta",
    shadow_update_blocks_readers_first=True,
)

NAP = replace(
    LINUX_6_13,
    name="nap",
    summary="6.13 with the guest side of the nap protocol: park before a nap, re-base after it",
    nap_protocol=True,
)

# The seed thread's alternatives to the nap, each the 6.13 core plus one guest-side piece.
RESUME_IRQ = replace(
    LINUX_6_13,
    name="resume-irq",
    summary="6.13 with a handler for the VMM's resume interrupt: update_wall_time(), watchdogs, timers",
    resume_irq_handler=True,
)
MAX_SANE = replace(
    LINUX_6_13,
    name="max-sane",
    summary="6.13 whose readers wait for the update past the host's max_sane_delta instead of extrapolating",
    max_sane_reader=True,
)
VMCLOCK = replace(
    LINUX_6_13,
    name="vmclock",
    summary="6.13 with a VMCLOCK consumer: a new disruption marker, seen at its next poll, steps REALTIME",
    vmclock_consumer=True,
)

PROFILES: dict[str, KernelProfile] = {
    p.name: p
    for p in (
        LINUX_5_10,
        LINUX_6_1,
        LINUX_6_1_DEBUG,
        LINUX_6_6,
        LINUX_6_10,
        LINUX_6_13,
        NAP,
        RESUME_IRQ,
        MAX_SANE,
        VMCLOCK,
    )
}


class UnknownProfileError(ValueError):
    """A profile name that is not defined."""


def get_profile(name: str) -> KernelProfile:
    """Look up a profile by name; the error lists the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UnknownProfileError(f"unknown kernel profile {name!r}; expected one of: {known}") from None
