"""x86 ``native_sched_clock()``: TSC cycles to nanoseconds through ``cyc2ns``.

Models ``arch/x86/kernel/tsc.c`` (4.x - 2026; the latch-protected
``struct cyc2ns_data`` of PeterZ's 2017 rework):

* ``__set_cyc2ns_scale(khz, cpu, tsc_now)`` - ``clocks_calc_mult_shift(
  &mul, &shift, khz, NSEC_PER_MSEC, 0)`` (``maxsec`` 0: the full 32-bit
  range, so shift 32 for every TSC above 1 GHz), a shift of 32 lowered to
  31 with ``mul >>= 1`` (perf exports it and expects < 32), and
  ``offset = ns_now - mul_u64_u32_shr(tsc_now, mul, shift)`` where
  ``ns_now = cycles_2_ns(tsc_now)`` under the old data, so sched_clock
  continues without a step;
* ``cycles_2_ns(cyc)`` - ``offset + mul_u64_u32_shr(cyc, mul, shift)``:
  the product is taken in 128 bits (96 bits used), so no overflow however
  long the TSC ran; the sum wraps as a u64.

Before the first scale the per-CPU data is all zero (``cyc2ns_data_init``),
so the boot CPU's sched_clock starts at 0 at ``tsc_init()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_MSEC, mul_u64_u32_shr, u32, u64
from tsclab.clocksource.registration import clocks_calc_mult_shift


@dataclass(frozen=True, slots=True)
class Cyc2ns:
    """``struct cyc2ns_data``: u32 ``cyc2ns_mul``, u32 ``cyc2ns_shift``, u64 ``cyc2ns_offset``."""

    mul: int
    shift: int
    offset: int


# cyc2ns_data_init(): what cycles_2_ns() uses before the first scale.
CYC2NS_INIT = Cyc2ns(mul=0, shift=0, offset=0)


def cycles_2_ns(c: Cyc2ns, tsc: int) -> int:
    """``cycles_2_ns(cyc)``: exact 96-bit product, shifted, plus the offset (u64)."""
    return u64(c.offset + mul_u64_u32_shr(tsc, c.mul, c.shift))


def set_cyc2ns_scale(tsc_khz: int, tsc_now: int, sched_clock_now_ns: int) -> Cyc2ns:
    """``__set_cyc2ns_scale(tsc_khz, cpu, tsc_now)``: a new scale continuous at ``tsc_now``.

    ``sched_clock_now_ns`` is ``cycles_2_ns(tsc_now)`` under the data being
    replaced (0 at boot).  ``set_cyc2ns_scale()`` skips the update for
    ``khz == 0``; here that is an error, there being nothing to return.
    """
    if u32(tsc_khz) == 0:
        raise ValueError("set_cyc2ns_scale: tsc_khz is 0 (the kernel keeps the old scale)")
    mul, shift = clocks_calc_mult_shift(tsc_khz, NSEC_PER_MSEC, 0)
    if shift == 32:
        # Exported to perf (arch_perf_update_userpage), which expects < 32.
        shift = 31
        mul >>= 1
    offset = u64(sched_clock_now_ns - mul_u64_u32_shr(tsc_now, mul, shift))
    return Cyc2ns(mul=mul, shift=shift, offset=offset)


def native_sched_clock(c: Cyc2ns, tsc: int) -> int:
    """``native_sched_clock()`` with a usable TSC: ``cycles_2_ns(rdtsc())``."""
    return cycles_2_ns(c, tsc)
