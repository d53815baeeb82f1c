"""x86 pvclock scaling: how KVM turns TSC cycles into kvm-clock nanoseconds.

The host publishes, per vCPU, ``tsc_to_system_mul`` (a u32 binary fraction)
and ``tsc_shift`` (an s8); the guest computes
``ns = ((delta << shift or >> -shift) * mul) >> 32`` and can recover the TSC
frequency from the same pair.

Models:

* ``kvm_get_time_scale()`` - ``arch/x86/kvm/x86.c``, unchanged from 2.6.3x
  to the 2026 trees (a 2026 patch renamed its locals, no functional change).
  KVM calls it as ``kvm_get_time_scale(NSEC_PER_SEC, tsc_khz * 1000LL, ...)``;
* ``pvclock_scale_delta()`` - ``arch/x86/include/asm/pvclock.h``: x86-64
  ``mulq`` + ``shrd $32``, i.e. bits 32..95 of the 96-bit product.  The left
  shift of the delta is a plain u64 shift and can wrap;
* ``pvclock_tsc_khz()`` - ``arch/x86/kernel/pvclock.c``: how a KVM guest
  learns ``tsc_khz`` (kvm-clock guests skip TSC calibration).
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_SEC, U32_MAX, U64_MAX, do_div, u32, u64

_HIGH32 = U64_MAX ^ U32_MAX  # 0xffffffff00000000


@dataclass(frozen=True, slots=True)
class PvclockScale:
    """The (shift, mul) pair of ``struct pvclock_vcpu_time_info``."""

    tsc_shift: int  # s8
    tsc_to_system_mul: int  # u32


def div_frac(dividend: int, divisor: int) -> int:
    """``div_frac()``: ``(dividend << 32) / divisor`` with 32-bit operands.

    x86's ``divl`` faults unless the quotient fits 32 bits, i.e. unless
    ``dividend < divisor``; ``kvm_get_time_scale()`` guarantees that.
    """
    dividend, divisor = u32(dividend), u32(divisor)
    if divisor == 0 or dividend >= divisor:
        raise ValueError(f"div_frac({dividend}, {divisor}): quotient does not fit 32 bits")
    return (dividend << 32) // divisor


def kvm_get_time_scale(scaled_hz: int, base_hz: int) -> PvclockScale:
    """``kvm_get_time_scale(scaled_hz, base_hz, &shift, &mul)``.

    Finds shift and mul with ``scaled = (base_cycles << shift) * mul >> 32``:
    first shifts the base rate down until it fits 32 bits and is at most
    twice the target, then doubles the base (or halves the target) until
    the base exceeds the target, so that ``mul < 2**32``.
    """
    scaled64 = u64(scaled_hz)
    base64 = u64(base_hz)
    if base64 == 0 or scaled64 == 0:
        raise ValueError("kvm_get_time_scale: rates must be non-zero")
    shift = 0
    while base64 > u64(scaled64 * 2) or base64 & _HIGH32:
        base64 >>= 1
        shift -= 1

    base32 = u32(base64)
    while base32 <= scaled64 or scaled64 & _HIGH32:
        if scaled64 & _HIGH32 or base32 & 0x8000_0000:
            scaled64 >>= 1
        else:
            base32 = u32(base32 << 1)
        shift += 1

    return PvclockScale(tsc_shift=shift, tsc_to_system_mul=div_frac(scaled64, base32))


def kvm_tsc_scale(tsc_khz: int) -> PvclockScale:
    """The scale KVM publishes for a guest TSC of ``tsc_khz`` (4.x+ callers)."""
    return kvm_get_time_scale(NSEC_PER_SEC, u64(tsc_khz * 1000))


def pvclock_scale_delta(delta: int, mul_frac: int, shift: int) -> int:
    """``pvclock_scale_delta(delta, mul_frac, shift)`` on x86-64."""
    delta = u64(delta)
    delta = delta >> -shift if shift < 0 else u64(delta << shift)
    return u64((delta * u32(mul_frac)) >> 32)


def pvclock_tsc_khz(scale: PvclockScale) -> int:
    """``pvclock_tsc_khz()``: the TSC frequency a guest derives from the scale."""
    khz, _ = do_div(10**6 << 32, scale.tsc_to_system_mul)
    if scale.tsc_shift < 0:
        return u64(khz << -scale.tsc_shift)
    return khz >> scale.tsc_shift
