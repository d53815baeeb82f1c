"""kernel/sched_clock.py: cyc2ns as tsc.c computes it.

For tsc_khz = 2_500_000, ``clocks_calc_mult_shift(khz, NSEC_PER_MSEC, 0)``
gives (1717986918, 32), lowered to (858993459, 31); 2.5e9 cycles are then
exactly 1e9 ns.  A u64 ``tsc * mul`` would wrap after 2**64 / 858993459 =
21.5e9 cycles (8.6 s); the kernel's 128-bit multiply does not.
"""

from __future__ import annotations

import pytest

from tsclab.arith import u64
from tsclab.kernel.sched_clock import (
    CYC2NS_INIT,
    Cyc2ns,
    cycles_2_ns,
    native_sched_clock,
    set_cyc2ns_scale,
)

TSC_BOOT = 123_456_789_000


def boot_scale(khz: int = 2_500_000) -> Cyc2ns:
    """cyc2ns_init_boot_cpu(): the old data is all zero, so ns_now is 0."""
    return set_cyc2ns_scale(khz, TSC_BOOT, cycles_2_ns(CYC2NS_INIT, TSC_BOOT))


def test_mul_shift_for_2_5_ghz() -> None:
    c = boot_scale()
    assert (c.mul, c.shift) == (858_993_459, 31)
    assert c.offset == u64(-((TSC_BOOT * 858_993_459) >> 31))


def test_shift_below_32_is_kept() -> None:
    c = set_cyc2ns_scale(800_000, 0, 0)  # 800 MHz: mul would not fit at shift 32
    assert (c.mul, c.shift, c.offset) == (2_684_354_560, 31, 0)


def test_sched_clock_starts_at_zero_and_counts_seconds() -> None:
    c = boot_scale()
    assert native_sched_clock(c, TSC_BOOT) == 0
    assert native_sched_clock(c, TSC_BOOT + 2_500_000_000) == 1_000_000_000


def test_no_overflow_after_ten_years() -> None:
    c = boot_scale()
    tsc = 10 * 365 * 86400 * 2_500_000_000
    exact = u64(c.offset + ((tsc * c.mul) >> c.shift))
    wrapped = u64(c.offset + (u64(tsc * c.mul) >> c.shift))
    assert cycles_2_ns(c, tsc) == exact == 315_359_950_543_858_940
    assert cycles_2_ns(c, tsc) != wrapped


def test_rescale_is_continuous() -> None:
    old = boot_scale()
    tsc_now = 5_000_000_000_000
    now_ns = cycles_2_ns(old, tsc_now)
    new = set_cyc2ns_scale(2_499_814, tsc_now, now_ns)  # refined calibration
    assert new.mul == 859_057_373
    assert cycles_2_ns(new, tsc_now) == now_ns
    assert cycles_2_ns(new, tsc_now + 2_499_814_000) == now_ns + 1_000_000_000


def test_zero_khz_is_refused() -> None:
    with pytest.raises(ValueError, match="tsc_khz is 0"):
        set_cyc2ns_scale(0, 1, 2)
