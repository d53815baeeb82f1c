"""Fixed-width integer arithmetic as the kernel's C code performs it.

Python integers are unbounded, C's are not.  Every kernel-side quantity in
tsclab passes through these helpers at exactly the points where C would
truncate: a ``u64`` multiply wraps modulo 2**64, a ``u32`` cast drops the
high bits, ``do_div`` divides a u64 by a u32 and truncates.

The multiply-shift helpers follow ``include/linux/math64.h`` and
``include/vdso/math64.h``.  Each has two forms:

* the reference form (``mul_u64_u32_shr`` ...): the exact result of the
  wide product, truncated to 64 bits.  This is what x86-64 computes with
  ``__int128`` (or ``mulq``/``shrd``), and what the kernel promises on every
  architecture;
* the 32-bit form (``*_32bit``): the kernel's generic fallback built from
  32x32->64 multiplies, kept so that tests can prove it agrees with the
  reference form wherever the kernel relies on it (``shift <= 32``).

Layer: ``arith`` knows nothing of clocks or guests.
"""

from __future__ import annotations

U8_MAX = (1 << 8) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
S32_MAX = (1 << 31) - 1
S64_MAX = (1 << 63) - 1
S64_MIN = -(1 << 63)
ULLONG_MAX = U64_MAX
UINT_MAX = U32_MAX

NSEC_PER_USEC = 1_000
NSEC_PER_MSEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000
FSEC_PER_SEC = 1_000_000_000_000_000


def u32(x: int) -> int:
    """Truncate to an unsigned 32-bit value, as a C ``(u32)`` cast does."""
    return x & U32_MAX


def u64(x: int) -> int:
    """Truncate to an unsigned 64-bit value, as C's u64 arithmetic wraps."""
    return x & U64_MAX


def s32(x: int) -> int:
    """Reinterpret the low 32 bits as a two's-complement signed value."""
    x &= U32_MAX
    return x - (1 << 32) if x & (1 << 31) else x


def s64(x: int) -> int:
    """Reinterpret the low 64 bits as a two's-complement signed value."""
    x &= U64_MAX
    return x - (1 << 64) if x & (1 << 63) else x


def mask_bits(bits: int) -> int:
    """``CLOCKSOURCE_MASK(bits)``: ``bits`` low ones; all ones for 64.

    The kernel's ``GENMASK_ULL(bits - 1, 0)``; valid for 1 <= bits <= 64.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"counter width must be 1..64 bits, got {bits}")
    return (1 << bits) - 1


def fls64(x: int) -> int:
    """Position of the most significant set bit, 1-based; 0 for 0."""
    return u64(x).bit_length()


def ilog2(x: int) -> int:
    """``ilog2()`` of a non-zero u64: floor(log2(x)).

    The kernel leaves ilog2(0) undefined (it evaluates to -1 for the
    non-constant case); callers that can pass 0 must guard, as the kernel's
    do.
    """
    x = u64(x)
    if x == 0:
        raise ValueError("ilog2(0) is undefined")
    return x.bit_length() - 1


def do_div(n: int, base: int) -> tuple[int, int]:
    """``do_div(n, base)``: u64 dividend, u32 divisor; (quotient, remainder).

    The C macro divides in place and returns the remainder; here both come
    back as a tuple.  The divisor is truncated to u32 first, exactly as the
    macro's ``uint32_t __base`` does.  Division by zero is an error here, a
    trap in the kernel.
    """
    n = u64(n)
    base = u32(base)
    if base == 0:
        raise ZeroDivisionError("do_div by zero")
    return n // base, n % base


def div_u64(dividend: int, divisor: int) -> int:
    """``div_u64()``: u64 / u32, truncating."""
    return do_div(dividend, divisor)[0]


def div64_u64(dividend: int, divisor: int) -> int:
    """``div64_u64()``: u64 / u64, truncating."""
    divisor = u64(divisor)
    if divisor == 0:
        raise ZeroDivisionError("div64_u64 by zero")
    return u64(dividend) // divisor


def div64_s64(dividend: int, divisor: int) -> int:
    """``div64_s64()``: s64 / s64, truncating toward zero as C does.

    ``S64_MIN / -1`` does not fit an s64; x86's ``idiv`` traps on it, and so
    does this.
    """
    a, b = s64(dividend), s64(divisor)
    if b == 0:
        raise ZeroDivisionError("div64_s64 by zero")
    if a == S64_MIN and b == -1:
        raise OverflowError("div64_s64: S64_MIN / -1 overflows")
    q = abs(a) // abs(b)
    return s64(q if (a < 0) == (b < 0) else -q)


def mul_u32_u32(a: int, b: int) -> int:
    """``mul_u32_u32()``: full 64-bit product of two u32 values."""
    return u32(a) * u32(b)


# --- reference (exact) forms ---------------------------------------------


def mul_u64_u32_shr(a: int, mul: int, shift: int) -> int:
    """``mul_u64_u32_shr(a, mul, shift)``: ``(a * mul) >> shift`` to 64 bits.

    The product is taken exactly (96 bits), then shifted and truncated.
    Used by ``cycles_to_nsec_safe()`` (6.10+) and x86 ``cycles_2_ns()``.
    """
    _check_shift(shift, 64)
    return u64((u64(a) * u32(mul)) >> shift)


def mul_u64_u32_add_u64_shr(a: int, mul: int, b: int, shift: int) -> int:
    """``mul_u64_u32_add_u64_shr(a, mul, b, shift)``: ``(a*mul + b) >> shift``.

    The 6.10+ reader's slow path (``delta_to_ns_safe()``): the sum is taken
    exactly (at most 97 bits), shifted, then truncated to 64 bits.
    """
    _check_shift(shift, 64)
    return u64((u64(a) * u32(mul) + u64(b)) >> shift)


def mul_u64_u64_shr(a: int, b: int, shift: int) -> int:
    """``mul_u64_u64_shr(a, b, shift)``: ``(a * b) >> shift`` to 64 bits.

    The 128-bit product, as x86-64's ``mulq`` + ``shrd`` gives it.
    """
    _check_shift(shift, 128)
    return u64((u64(a) * u64(b)) >> shift)


# --- the kernel's 32-bit fallbacks ---------------------------------------
#
# These mirror the generic C bodies used where no 128-bit type exists.  They
# are exact (equal to the reference forms) for shift <= 32; a shift above 32
# is undefined behaviour in C ("<< (32 - shift)"), so they refuse it.


def mul_u64_u32_shr_32bit(a: int, mul: int, shift: int) -> int:
    """Generic ``mul_u64_u32_shr()`` from two 32x32 products (shift <= 32)."""
    _check_shift(shift, 32)
    a = u64(a)
    al, ah = a & U32_MAX, a >> 32
    ret = mul_u32_u32(al, mul) >> shift
    if ah:
        ret = u64(ret + u64(mul_u32_u32(ah, mul) << (32 - shift)))
    return ret


def mul_u64_u32_add_u64_shr_32bit(a: int, mul: int, b: int, shift: int) -> int:
    """Generic ``mul_u64_u32_add_u64_shr()`` with carry tracking (shift <= 32).

    The low product plus ``b`` may carry out of 64 bits; the carry is worth
    ``1 << (64 - shift)`` after the shift.
    """
    _check_shift(shift, 32)
    a = u64(a)
    al, ah = a & U32_MAX, a >> 32
    low_sum = mul_u32_u32(al, mul) + u64(b)
    carry = low_sum >> 64
    ret = u64(low_sum) >> shift
    if carry:
        ret = u64(ret + (1 << (64 - shift)))
    if ah:
        ret = u64(ret + u64(mul_u32_u32(ah, mul) << (32 - shift)))
    return ret


def mul_u64_u64_shr_32bit(a: int, b: int, shift: int) -> int:
    """Generic ``mul_u64_u64_shr()`` from four 32x32 partial products.

    Follows the schoolbook form of ``include/linux/math64.h``: the 128-bit
    product is assembled from u64 pieces with explicit carries, then
    shifted.  Valid for 0 <= shift < 128.
    """
    _check_shift(shift, 127)
    a, b = u64(a), u64(b)
    al, ah = a & U32_MAX, a >> 32
    bl, bh = b & U32_MAX, b >> 32
    rl = mul_u32_u32(al, bl)  # bits 0..63
    rm = mul_u32_u32(al, bh)  # bits 32..95
    rn = mul_u32_u32(ah, bl)  # bits 32..95
    rh = mul_u32_u32(ah, bh)  # bits 64..127
    # Middle column: high half of rl plus the low halves of rm and rn.
    mid = (rl >> 32) + (rm & U32_MAX) + (rn & U32_MAX)  # < 3 * 2**32, fits u64
    low64 = ((mid & U32_MAX) << 32) | (rl & U32_MAX)
    high64 = u64(rh + (rm >> 32) + (rn >> 32) + (mid >> 32))
    if shift == 0:
        return low64
    if shift < 64:
        return u64((high64 << (64 - shift)) | (low64 >> shift))
    return high64 >> (shift - 64)


def _check_shift(shift: int, limit: int) -> None:
    if not 0 <= shift <= limit:
        raise ValueError(f"shift must be 0..{limit}, got {shift}")
