"""Property tests: the fixed-width helpers against Python's unbounded integers."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab import arith
from tsclab.arith import U32_MAX, U64_MAX

u32s = st.integers(min_value=0, max_value=U32_MAX)
u64s = st.integers(min_value=0, max_value=U64_MAX)
any_ints = st.integers(min_value=-(1 << 130), max_value=1 << 130)


@given(any_ints)
def test_u64_and_u32_wrap_like_c(x: int) -> None:
    assert arith.u64(x) == x % (1 << 64)
    assert arith.u32(x) == x % (1 << 32)


@given(any_ints)
def test_s64_is_twos_complement_of_low_bits(x: int) -> None:
    v = arith.s64(x)
    assert -(1 << 63) <= v < (1 << 63)
    assert (v - x) % (1 << 64) == 0


@given(any_ints)
def test_s32_is_twos_complement_of_low_bits(x: int) -> None:
    v = arith.s32(x)
    assert -(1 << 31) <= v < (1 << 31)
    assert (v - x) % (1 << 32) == 0


def test_known_reinterpretations() -> None:
    assert arith.s64(U64_MAX) == -1
    assert arith.s64(1 << 63) == -(1 << 63)
    assert arith.s32(0x8000_0000) == -(1 << 31)
    assert arith.u64(-1) == U64_MAX


@pytest.mark.parametrize(
    ("bits", "mask"), [(1, 1), (24, 0xFFFFFF), (32, U32_MAX), (56, (1 << 56) - 1), (64, U64_MAX)]
)
def test_mask_bits(bits: int, mask: int) -> None:
    assert arith.mask_bits(bits) == mask


@pytest.mark.parametrize("bits", [0, 65, -1])
def test_mask_bits_rejects_bad_width(bits: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.64"):
        arith.mask_bits(bits)


@given(u64s, st.integers(min_value=1, max_value=U32_MAX))
def test_do_div_matches_floor_division(n: int, base: int) -> None:
    assert arith.do_div(n, base) == (n // base, n % base)


def test_do_div_truncates_divisor_to_u32() -> None:
    # do_div's divisor is a uint32_t: 2**32 + 3 divides as 3.
    assert arith.do_div(300, (1 << 32) + 3) == (100, 0)
    with pytest.raises(ZeroDivisionError):
        arith.do_div(1, 1 << 32)


@given(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.integers(min_value=1, max_value=(1 << 63) - 1),
)
def test_div64_s64_truncates_toward_zero(a: int, b: int) -> None:
    for sa, sb in ((a, b), (a, -b)):
        if (sa, sb) == (arith.S64_MIN, -1):
            with pytest.raises(OverflowError):
                arith.div64_s64(arith.u64(sa), arith.u64(sb))
            continue
        # int(Fraction) truncates toward zero, as C division does.
        assert arith.div64_s64(arith.u64(sa), arith.u64(sb)) == int(Fraction(sa, sb))


@given(u64s.filter(lambda x: x > 0))
def test_ilog2_and_fls(x: int) -> None:
    assert 2 ** arith.ilog2(x) <= x < 2 ** (arith.ilog2(x) + 1)
    assert arith.fls64(x) == arith.ilog2(x) + 1
    assert arith.fls64(0) == 0


def test_ilog2_zero_is_an_error() -> None:
    with pytest.raises(ValueError, match="undefined"):
        arith.ilog2(0)


@given(u64s, u32s, st.integers(min_value=0, max_value=64))
def test_mul_u64_u32_shr_is_exact(a: int, mul: int, shift: int) -> None:
    assert arith.mul_u64_u32_shr(a, mul, shift) == ((a * mul) >> shift) % (1 << 64)


@given(u64s, u32s, u64s, st.integers(min_value=0, max_value=64))
def test_mul_u64_u32_add_u64_shr_is_exact(a: int, mul: int, b: int, shift: int) -> None:
    assert arith.mul_u64_u32_add_u64_shr(a, mul, b, shift) == ((a * mul + b) >> shift) % (1 << 64)


@given(u64s, u64s, st.integers(min_value=0, max_value=127))
def test_mul_u64_u64_shr_is_exact(a: int, b: int, shift: int) -> None:
    assert arith.mul_u64_u64_shr(a, b, shift) == ((a * b) >> shift) % (1 << 64)


@given(u64s, u32s, st.integers(min_value=0, max_value=32))
def test_32bit_mul_u64_u32_shr_agrees_with_reference(a: int, mul: int, shift: int) -> None:
    assert arith.mul_u64_u32_shr_32bit(a, mul, shift) == arith.mul_u64_u32_shr(a, mul, shift)


@given(u64s, u32s, u64s, st.integers(min_value=0, max_value=32))
def test_32bit_mul_add_shr_with_carry_agrees_with_reference(a: int, mul: int, b: int, shift: int) -> None:
    assert arith.mul_u64_u32_add_u64_shr_32bit(a, mul, b, shift) == arith.mul_u64_u32_add_u64_shr(
        a, mul, b, shift
    )


def test_32bit_mul_add_shr_carry_edge() -> None:
    # al*mul + b overflows 64 bits: the carry must come back as 1 << (64 - shift).
    a, mul, b, shift = U32_MAX, U32_MAX, U64_MAX, 24
    assert arith.mul_u64_u32_add_u64_shr_32bit(a, mul, b, shift) == (a * mul + b) >> shift


@given(u64s, u64s, st.integers(min_value=0, max_value=127))
def test_32bit_mul_u64_u64_shr_agrees_with_reference(a: int, b: int, shift: int) -> None:
    assert arith.mul_u64_u64_shr_32bit(a, b, shift) == arith.mul_u64_u64_shr(a, b, shift)


@pytest.mark.parametrize("shift", [33, 64])
def test_32bit_fallbacks_refuse_undefined_shifts(shift: int) -> None:
    with pytest.raises(ValueError, match="shift"):
        arith.mul_u64_u32_shr_32bit(1, 1, shift)
    with pytest.raises(ValueError, match="shift"):
        arith.mul_u64_u32_add_u64_shr_32bit(1, 1, 1, shift)


def test_plain_u64_multiply_wraps_where_the_helper_does_not() -> None:
    # The pre-6.10 reader's bug in one line: delta*mult in u64 loses 2**64.
    delta, mult, shift = 2_750_000_000_000, 6_710_886, 24
    wrapped = arith.u64(delta * mult) >> shift
    exact = arith.mul_u64_u32_shr(delta, mult, shift)
    assert exact - wrapped == 1 << (64 - shift)
