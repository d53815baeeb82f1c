"""pvclock scaling: KVM's (shift, mul) and the guest's use of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import U32_MAX, U64_MAX
from tsclab.clocksource import (
    PvclockScale,
    kvm_get_time_scale,
    kvm_tsc_scale,
    pvclock_scale_delta,
    pvclock_tsc_khz,
)
from tsclab.clocksource.pvclock import div_frac


def test_2_5_ghz_example() -> None:
    scale = kvm_tsc_scale(2_500_000)
    assert scale == PvclockScale(tsc_shift=-1, tsc_to_system_mul=0xCCCCCCCC)
    # The truncated fraction loses 0.23 ppm: 1 s of TSC reads 999 999 999 ns.
    assert pvclock_scale_delta(2_500_000_000, scale.tsc_to_system_mul, scale.tsc_shift) == 999_999_999
    assert pvclock_scale_delta(2_500_000_000_000, scale.tsc_to_system_mul, scale.tsc_shift) == 999_999_999_767
    assert pvclock_tsc_khz(scale) == 2_500_000


@pytest.mark.parametrize(
    ("khz", "shift", "mul"),
    [(1_000_000, 1, 1 << 31), (3_000_000, -1, 0xAAAAAAAA), (100_000, 4, 0xA0000000)],
)
def test_other_rates(khz: int, shift: int, mul: int) -> None:
    assert kvm_tsc_scale(khz) == PvclockScale(shift, mul)


@given(st.integers(min_value=1_000, max_value=20_000_000))
def test_scale_converts_one_second_of_cycles_to_one_second(khz: int) -> None:
    scale = kvm_tsc_scale(khz)
    assert 1 << 31 <= scale.tsc_to_system_mul <= U32_MAX
    ns = pvclock_scale_delta(khz * 1000, scale.tsc_to_system_mul, scale.tsc_shift)
    # mul is a 32-bit fraction in [0.5, 1): truncation costs < 2**-31 relative.
    assert abs(ns - 1_000_000_000) <= 2


@given(st.integers(min_value=1_000, max_value=20_000_000))
def test_guest_recovers_tsc_khz_up_to_shift_truncation(khz: int) -> None:
    scale = kvm_tsc_scale(khz)
    recovered = pvclock_tsc_khz(scale)
    # Both divisions truncate, and the shift scales that loss by 2**|shift|.
    assert khz - (1 << abs(scale.tsc_shift)) - 1 <= recovered <= khz + 1


@given(
    st.integers(min_value=0, max_value=U64_MAX),
    st.integers(min_value=0, max_value=U32_MAX),
    st.integers(min_value=-32, max_value=31),
)
def test_scale_delta_is_bits_32_to_95_of_the_product(delta: int, mul: int, shift: int) -> None:
    shifted = delta >> -shift if shift < 0 else (delta << shift) % (1 << 64)
    assert pvclock_scale_delta(delta, mul, shift) == ((shifted * mul) >> 32) % (1 << 64)


def test_left_shift_of_the_delta_wraps_like_c() -> None:
    # A positive tsc_shift is a plain u64 shift: a huge delta loses its top bits.
    assert pvclock_scale_delta(1 << 63, 1 << 31, 1) == 0


def test_div_frac_refuses_quotients_that_fault() -> None:
    assert div_frac(1, 2) == 1 << 31
    with pytest.raises(ValueError, match="32 bits"):
        div_frac(2, 2)


def test_time_scale_generic_rates() -> None:
    # Scaling 1 GHz to 1 GHz is the identity: (delta << 1) * 2**31 >> 32.
    scale = kvm_get_time_scale(1_000_000_000, 1_000_000_000)
    assert pvclock_scale_delta(123_456_789, scale.tsc_to_system_mul, scale.tsc_shift) == 123_456_789
    with pytest.raises(ValueError, match="non-zero"):
        kvm_get_time_scale(1_000_000_000, 0)
