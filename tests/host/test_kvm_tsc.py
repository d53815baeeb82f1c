"""KVM's guest-TSC arithmetic: ratios, offsets, the tolerance band and catch-up."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import NSEC_PER_SEC, S32_MAX, U32_MAX, U64_MAX, s64
from tsclab.clocksource.pvclock import kvm_get_time_scale
from tsclab.host.kvm_tsc import (
    AMD_SVM,
    ERR_BELOW_HARDWARE,
    ERR_INVALID_RATIO,
    ERR_ZERO_KHZ,
    INTEL_VMX,
    TSC_TOLERANCE_PPM,
    TscRateSetting,
    TscScalingCaps,
    adjust_tsc_khz,
    kvm_compute_l1_tsc_offset,
    kvm_read_l1_tsc,
    kvm_scale_tsc,
    mul_u64_u32_div,
    mul_u64_u32_div_32bit,
    nsec_to_cycles,
    set_tsc_khz,
)

VENDORS = [INTEL_VMX, AMD_SVM]
u64s = st.integers(min_value=0, max_value=U64_MAX)
u32s = st.integers(min_value=0, max_value=U32_MAX)
nonzero_u32s = st.integers(min_value=1, max_value=U32_MAX)

HOST_KHZ = 2_600_000


def exact_scaled(tsc: int, ratio: int, caps: TscScalingCaps) -> int:
    """floor(tsc * ratio / 2**frac_bits) by rational arithmetic, reduced mod 2**64."""
    return floor(Fraction(tsc * ratio, 2**caps.frac_bits)) % 2**64


# --- vendor data -------------------------------------------------------------


def test_vendor_constants() -> None:
    assert (INTEL_VMX.name, INTEL_VMX.frac_bits, INTEL_VMX.max_ratio) == ("vmx", 48, U64_MAX)
    assert (AMD_SVM.name, AMD_SVM.frac_bits, AMD_SVM.max_ratio) == ("svm", 32, 0xFF_FFFF_FFFF)
    assert INTEL_VMX.default_ratio == 0x1_0000_0000_0000
    assert AMD_SVM.default_ratio == 0x1_0000_0000  # SVM_TSC_RATIO_DEFAULT
    assert TSC_TOLERANCE_PPM == 250


@pytest.mark.parametrize(("frac_bits", "max_ratio"), [(0, 1), (64, 1), (32, 0), (32, 1 << 64)])
def test_caps_reject_impossible_values(frac_bits: int, max_ratio: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TscScalingCaps("bad", frac_bits, max_ratio)


# --- kvm_scale_tsc -------------------------------------------------------------


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@given(tsc=u64s)
def test_default_ratio_is_identity(caps: TscScalingCaps, tsc: int) -> None:
    assert kvm_scale_tsc(tsc, caps.default_ratio, caps) == tsc


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@given(tsc=st.integers(min_value=0, max_value=U64_MAX >> 1))
def test_ratio_two_doubles(caps: TscScalingCaps, tsc: int) -> None:
    assert kvm_scale_tsc(tsc, 2 << caps.frac_bits, caps) == 2 * tsc


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
def test_scaled_value_keeps_the_low_64_bits(caps: TscScalingCaps) -> None:
    # 2x of 2**63 + 5 is 2**64 + 10: the wide product is shifted, then truncated.
    assert kvm_scale_tsc((1 << 63) + 5, 2 << caps.frac_bits, caps) == 10


@given(tsc=u64s)
def test_vendors_agree_on_an_exactly_representable_ratio(tsc: int) -> None:
    intel = kvm_scale_tsc(tsc, 3 << 47, INTEL_VMX)
    amd = kvm_scale_tsc(tsc, 3 << 31, AMD_SVM)
    assert intel == amd == (tsc * 3 // 2) % 2**64


def test_vendors_differ_in_the_last_bits_for_an_inexact_ratio() -> None:
    # A 2.0 GHz guest on a 2.6 GHz host: 10/13 has no finite binary expansion.
    intel_ratio = mul_u64_u32_div(INTEL_VMX.default_ratio, 2_000_000, HOST_KHZ)
    amd_ratio = mul_u64_u32_div(AMD_SVM.default_ratio, 2_000_000, HOST_KHZ)
    assert intel_ratio == 0xC4EC_4EC4_EC4E
    assert amd_ratio == 0xC4EC_4EC4
    one_hour = HOST_KHZ * 1000 * 3600
    intel = kvm_scale_tsc(one_hour, intel_ratio, INTEL_VMX)
    amd = kvm_scale_tsc(one_hour, amd_ratio, AMD_SVM)
    assert intel == exact_scaled(one_hour, intel_ratio, INTEL_VMX)
    assert amd == exact_scaled(one_hour, amd_ratio, AMD_SVM)
    # After an hour the true guest count is 7.2e12; both ratios round down,
    # Intel's 48-bit fraction loses 1 cycle, AMD's 32-bit one 2012.
    assert one_hour * 10 // 13 == 7_200_000_000_000
    assert intel == 7_199_999_999_999
    assert amd == 7_199_999_997_988


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@given(tsc=u64s, ratio=u64s)
def test_scaling_is_the_truncated_exact_product(caps: TscScalingCaps, tsc: int, ratio: int) -> None:
    expected = tsc if ratio == caps.default_ratio else exact_scaled(tsc, ratio, caps)
    assert kvm_scale_tsc(tsc, ratio, caps) == expected


# --- offsets -------------------------------------------------------------------


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@given(host=u64s, target=u64s)
def test_offset_round_trip_default_ratio(caps: TscScalingCaps, host: int, target: int) -> None:
    ratio = caps.default_ratio
    offset = kvm_compute_l1_tsc_offset(host, target, ratio, caps)
    assert 0 <= offset <= U64_MAX
    assert kvm_read_l1_tsc(host, offset, ratio, caps) == target


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@given(host=u64s, target=u64s, ratio=st.integers(min_value=1, max_value=AMD_SVM.max_ratio))
def test_offset_round_trip_scaled(caps: TscScalingCaps, host: int, target: int, ratio: int) -> None:
    # The same scaled value is subtracted then added back, modulo 2**64.
    offset = kvm_compute_l1_tsc_offset(host, target, ratio, caps)
    assert kvm_read_l1_tsc(host, offset, ratio, caps) == target


@given(host=st.integers(min_value=0, max_value=1 << 62), target=st.integers(min_value=0, max_value=1 << 62))
def test_offset_round_trip_with_a_set_tsc_khz_ratio(host: int, target: int) -> None:
    setting = set_tsc_khz(2_000_000, HOST_KHZ, INTEL_VMX)
    assert setting.ratio != INTEL_VMX.default_ratio
    offset = kvm_compute_l1_tsc_offset(host, target, setting.ratio, INTEL_VMX)
    assert kvm_read_l1_tsc(host, offset, setting.ratio, INTEL_VMX) == target


@given(host=u64s, target=u64s, elapsed=u64s)
def test_guest_advances_with_the_host_at_default_ratio(host: int, target: int, elapsed: int) -> None:
    ratio = INTEL_VMX.default_ratio
    offset = kvm_compute_l1_tsc_offset(host, target, ratio, INTEL_VMX)
    later = (host + elapsed) % 2**64
    assert kvm_read_l1_tsc(later, offset, ratio, INTEL_VMX) == (target + elapsed) % 2**64


def test_guest_behind_host_gives_a_twos_complement_offset() -> None:
    host, target = 10**12, 10**6
    offset = kvm_compute_l1_tsc_offset(host, target, AMD_SVM.default_ratio, AMD_SVM)
    assert offset == 2**64 - (10**12 - 10**6)
    assert offset > 1 << 63  # "negative" as a u64
    assert s64(offset) == -(10**12 - 10**6)
    assert kvm_read_l1_tsc(host, offset, AMD_SVM.default_ratio, AMD_SVM) == target


def test_guest_behind_scaled_host() -> None:
    # A 2x guest 1000 host cycles in: scaled host is 2000, target 500 -> offset -1500.
    ratio = 2 << INTEL_VMX.frac_bits
    offset = kvm_compute_l1_tsc_offset(1000, 500, ratio, INTEL_VMX)
    assert s64(offset) == -1500
    assert kvm_read_l1_tsc(1001, offset, ratio, INTEL_VMX) == 502


# --- adjust_tsc_khz ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("khz", "ppm", "expected"),
    [
        (HOST_KHZ, -250, 2_599_350),
        (HOST_KHZ, 250, 2_600_650),
        (HOST_KHZ, 0, HOST_KHZ),
        (1_000_001, -250, 999_750),  # 999 750.99975 truncates
        (1_000_001, 250, 1_000_251),  # 1 000 251.00025 truncates
        (3_000_000, -1_000_000, 0),
        # 1e6 + ppm = -1 becomes 2**64 - 1 as a u64; the product wraps to 2**64 - 1000,
        # the quotient 18 446 744 073 709 loses its high bits in the u32 return.
        (1000, -1_000_001, 18_446_744_073_709 % 2**32),
        # 1e6 + S32_MAX overflows the int sum (the kernel wraps it, -fno-strict-overflow)
        # to 1e6 - 2**31 - 1; as a u64 that is 2**64 - 2 146 483 649.
        (1000, S32_MAX, ((2**64 - 2_146_483_649_000) // 10**6) % 2**32),
        # The u32 return also drops the high bits of an honest overflow.
        (U32_MAX, 250, (U32_MAX * 1_000_250 // 10**6) % 2**32),
    ],
)
def test_adjust_tsc_khz_exact(khz: int, ppm: int, expected: int) -> None:
    assert adjust_tsc_khz(khz, ppm) == expected


@given(khz=u32s, ppm=st.integers(min_value=-1_000_000, max_value=1_000_000))
def test_adjust_tsc_khz_is_the_truncated_quotient_in_range(khz: int, ppm: int) -> None:
    assert adjust_tsc_khz(khz, ppm) == (khz * (10**6 + ppm) // 10**6) % 2**32


# --- mul_u64_u32_div ----------------------------------------------------------------


@given(a=u64s, mul=u32s, divisor=nonzero_u32s)
def test_mul_u64_u32_div_matches_exact_arithmetic(a: int, mul: int, divisor: int) -> None:
    expected = (a * mul // divisor) % 2**64
    assert mul_u64_u32_div(a, mul, divisor) == expected
    assert mul_u64_u32_div_32bit(a, mul, divisor) == expected


def test_mul_u64_u32_div_keeps_a_product_wider_than_64_bits() -> None:
    # (2**63 * 6) / 4 needs the 96-bit intermediate; the quotient fits.
    assert mul_u64_u32_div(1 << 63, 6, 4) == 3 << 62
    # A quotient of 2**64 does not fit: the generic C body returns it mod 2**64.
    assert mul_u64_u32_div(1 << 48, 1 << 16, 1) == 0
    assert mul_u64_u32_div_32bit(1 << 48, 1 << 16, 1) == 0


def test_mul_u64_u32_div_by_zero() -> None:
    with pytest.raises(ZeroDivisionError):
        mul_u64_u32_div(1, 1, 0)
    with pytest.raises(ZeroDivisionError):
        mul_u64_u32_div(1, 1, 1 << 32)  # the divisor is a u32


# --- set_tsc_khz --------------------------------------------------------------------


@pytest.mark.parametrize("caps", [INTEL_VMX, AMD_SVM, None], ids=["vmx", "svm", "none"])
@pytest.mark.parametrize("user_khz", [2_599_350, 2_599_351, HOST_KHZ, 2_600_649, 2_600_650])
def test_inside_tolerance_runs_unscaled(caps: TscScalingCaps | None, user_khz: int) -> None:
    setting = set_tsc_khz(user_khz, HOST_KHZ, caps)
    expected_ratio = (caps or INTEL_VMX).default_ratio
    assert setting.ratio == expected_ratio
    assert (setting.catchup, setting.error, setting.use_scaling, setting.ok) == (False, None, False, True)


@pytest.mark.parametrize("caps", VENDORS, ids=lambda c: c.name)
@pytest.mark.parametrize("user_khz", [2_599_349, 2_600_651, 2_000_000, 3_000_000, 100_000])
def test_outside_tolerance_uses_the_ratio_formula(caps: TscScalingCaps, user_khz: int) -> None:
    setting = set_tsc_khz(user_khz, HOST_KHZ, caps)
    assert setting.use_scaling
    assert setting.error is None
    assert not setting.catchup
    assert setting.ratio == (user_khz << caps.frac_bits) // HOST_KHZ
    assert setting.ratio != caps.default_ratio


def test_tolerance_edges_follow_adjust_tsc_khz() -> None:
    lo = adjust_tsc_khz(HOST_KHZ, -TSC_TOLERANCE_PPM)
    hi = adjust_tsc_khz(HOST_KHZ, TSC_TOLERANCE_PPM)
    assert (lo, hi) == (2_599_350, 2_600_650)
    assert not set_tsc_khz(lo, HOST_KHZ, AMD_SVM).use_scaling
    assert set_tsc_khz(lo - 1, HOST_KHZ, AMD_SVM).use_scaling
    assert not set_tsc_khz(hi, HOST_KHZ, AMD_SVM).use_scaling
    assert set_tsc_khz(hi + 1, HOST_KHZ, AMD_SVM).use_scaling


def test_tolerance_parameter_widens_the_band() -> None:
    assert set_tsc_khz(2_599_000, HOST_KHZ, INTEL_VMX).use_scaling
    assert not set_tsc_khz(2_599_000, HOST_KHZ, INTEL_VMX, tolerance_ppm=500).use_scaling
    # A zero tolerance scales any rate but the host's own.
    assert set_tsc_khz(HOST_KHZ + 1, HOST_KHZ, INTEL_VMX, tolerance_ppm=0).use_scaling
    assert not set_tsc_khz(HOST_KHZ, HOST_KHZ, INTEL_VMX, tolerance_ppm=0).use_scaling


def test_no_scaling_hardware_and_faster_guest_catches_up() -> None:
    setting = set_tsc_khz(3_000_000, HOST_KHZ, None)
    assert setting == TscRateSetting(
        ratio=INTEL_VMX.default_ratio,
        catchup=True,
        error=None,
        use_scaling=True,
        virtual_tsc_mult=setting.virtual_tsc_mult,
        virtual_tsc_shift=setting.virtual_tsc_shift,
    )
    assert setting.ok


def test_no_scaling_hardware_reports_the_named_vendors_default() -> None:
    setting = set_tsc_khz(3_000_000, HOST_KHZ, None, vendor=AMD_SVM)
    assert setting.catchup
    assert setting.ratio == AMD_SVM.default_ratio


def test_no_scaling_hardware_and_slower_guest_is_an_error() -> None:
    setting = set_tsc_khz(2_000_000, HOST_KHZ, None)
    assert setting.error == ERR_BELOW_HARDWARE
    assert not setting.catchup
    assert not setting.ok
    assert setting.ratio == INTEL_VMX.default_ratio


def test_amd_ratio_ceiling() -> None:
    # 256x is 1 << 40, one past SVM_TSC_RATIO_MAX; 255x fits.
    host = 1_000_000
    too_fast = set_tsc_khz(256 * host, host, AMD_SVM)
    assert too_fast.error == ERR_INVALID_RATIO
    assert too_fast.ratio == AMD_SVM.default_ratio
    fits = set_tsc_khz(255 * host, host, AMD_SVM)
    assert fits.error is None
    assert fits.ratio == 255 << 32
    # Intel's 16.48 ratio has room for it.
    assert set_tsc_khz(256 * host, host, INTEL_VMX).ratio == 256 << 48


def test_a_ratio_equal_to_the_ceiling_is_rejected() -> None:
    # No u32 rate pair reaches either vendor's ceiling exactly; a made-up vendor can.
    capped = TscScalingCaps("test", 32, 3 << 31)
    assert set_tsc_khz(3_000_000, 2_000_000, capped).error == ERR_INVALID_RATIO
    assert set_tsc_khz(2_999_999, 2_000_000, capped).ratio == (2_999_999 << 32) // 2_000_000


def test_intel_ratio_that_wraps_to_zero_is_rejected() -> None:
    # user/host = 2**16 gives 2**64, which the generic mul_u64_u32_div wraps to 0
    # (x86-64's divq would trap instead).
    setting = set_tsc_khz(1000 << 16, 1000, INTEL_VMX)
    assert setting.error == ERR_INVALID_RATIO


def test_zero_user_khz_is_an_error_with_the_default_ratio() -> None:
    setting = set_tsc_khz(0, HOST_KHZ, INTEL_VMX)
    assert setting == TscRateSetting(ratio=INTEL_VMX.default_ratio, catchup=False, error=ERR_ZERO_KHZ)
    assert setting.virtual_tsc_mult is None
    assert setting.virtual_tsc_shift is None


@pytest.mark.parametrize("caps", [INTEL_VMX, AMD_SVM, None], ids=["vmx", "svm", "none"])
@given(user_khz=st.integers(min_value=1_000, max_value=20_000_000))
def test_virtual_scale_is_kvm_get_time_scale(caps: TscScalingCaps | None, user_khz: int) -> None:
    setting = set_tsc_khz(user_khz, HOST_KHZ, caps)
    scale = kvm_get_time_scale(user_khz * 1000, NSEC_PER_SEC)
    assert setting.virtual_tsc_mult == scale.tsc_to_system_mul
    assert setting.virtual_tsc_shift == scale.tsc_shift


# --- nsec_to_cycles -------------------------------------------------------------------


def test_nsec_to_cycles_one_second_at_2_6_ghz() -> None:
    setting = set_tsc_khz(HOST_KHZ, HOST_KHZ, INTEL_VMX)
    assert setting.virtual_tsc_mult is not None
    assert setting.virtual_tsc_shift is not None
    assert (setting.virtual_tsc_shift, setting.virtual_tsc_mult) == (2, 2_791_728_742)
    cycles = nsec_to_cycles(NSEC_PER_SEC, setting.virtual_tsc_mult, setting.virtual_tsc_shift)
    # The truncated 32-bit fraction costs under a cycle per 2**30 here.
    assert cycles == (NSEC_PER_SEC << 2) * 2_791_728_742 >> 32
    assert 2_599_999_997 <= cycles <= 2_600_000_000


khz_range = st.integers(min_value=1_000, max_value=U32_MAX)


@given(user_khz=khz_range, ns=st.integers(min_value=0, max_value=10**15))
def test_nsec_to_cycles_tracks_the_guest_rate(user_khz: int, ns: int) -> None:
    setting = set_tsc_khz(user_khz, user_khz, None)
    assert setting.virtual_tsc_mult is not None
    assert setting.virtual_tsc_shift is not None
    cycles = nsec_to_cycles(ns, setting.virtual_tsc_mult, setting.virtual_tsc_shift)
    exact = Fraction(ns * user_khz, 10**6)
    # Every step truncates, so the result never exceeds the exact count.  The losses:
    # mul, a 32-bit fraction in [0.5, 1), is short by < 2**-31 relative, and as much
    # again when kvm_get_time_scale had to halve a rate above 2**32 Hz first (about
    # 2**-30 in all near 4.2 THz; 2**-29 leaves room); a right shift of ns drops
    # < 2**-shift ns, worth < 1 cycle at this rate; the final >> 32 loses < 1.
    assert cycles <= exact
    assert exact - cycles <= exact / 2**29 + 2
