"""KVM's guest-TSC arithmetic: scaling ratios, offsets and the TSC-rate setting.

A KVM guest reads its TSC as ``offset + scale(host_tsc)``, where ``scale``
multiplies by a fixed-point ratio whose fraction width is the vendor's:
48 bits on Intel VMX (the VMCS "TSC multiplier"), 32 bits on AMD SVM (the
``MSR_AMD64_TSC_RATIO``).  The ratio is chosen once per vCPU from the guest
rate userspace asks for (``KVM_SET_TSC_KHZ``, QEMU's ``tsc-frequency``), and
only when that rate lies outside a tolerance band around the host rate.

Models, from ``arch/x86/kvm/x86.c`` as of Linux 5.16+ (where
``kvm_scale_tsc()`` takes ``(tsc, ratio)`` and no vCPU; the formulas are
older):

* ``kvm_scale_tsc()`` / ``__scale_tsc()``: identity for the default ratio,
  else ``mul_u64_u64_shr(tsc, ratio, frac_bits)``;
* ``kvm_compute_l1_tsc_offset()`` and ``kvm_read_l1_tsc()``: the u64
  offset arithmetic.  The host TSC is a parameter here; the 5.16 offset
  helper reads ``rdtsc()`` itself (a 2024 patch series passes it in), with
  the same arithmetic;
* ``adjust_tsc_khz()``, ``kvm_set_tsc_khz()`` and ``set_tsc_khz()``: the
  tolerance test, catch-up mode and the ratio computation;
* ``nsec_to_cycles()`` (``arch/x86/kvm/x86.h``): nanoseconds to guest TSC
  cycles with the ``virtual_tsc_mult``/``virtual_tsc_shift`` pair;
* ``mul_u64_u32_div()`` (``include/linux/math64.h``).

Vendor constants: ``KVM_VMX_TSC_MULTIPLIER_MAX`` (``arch/x86/kvm/vmx/vmx.c``)
and ``SVM_TSC_RATIO_MAX`` / ``SVM_TSC_RATIO_DEFAULT``
(``arch/x86/include/asm/svm.h``); the fraction widths are those the vendor
modules' ``hardware_setup()`` store in ``kvm_caps.tsc_scaling_ratio_frac_bits``.

Layer: ``host`` uses ``arith`` and ``clocksource`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import (
    NSEC_PER_SEC,
    U32_MAX,
    U64_MAX,
    do_div,
    mul_u32_u32,
    mul_u64_u64_shr,
    s32,
    u32,
    u64,
)
from tsclab.clocksource.pvclock import kvm_get_time_scale, pvclock_scale_delta

#: ``tsc_tolerance_ppm`` module parameter default: half NTP's 500 ppm.
TSC_TOLERANCE_PPM = 250

ERR_ZERO_KHZ = "user_tsc_khz 0"
ERR_BELOW_HARDWARE = "user requested TSC rate below hardware speed"
ERR_INVALID_RATIO = "invalid TSC scaling ratio"


@dataclass(frozen=True, slots=True)
class TscScalingCaps:
    """A vendor's TSC-scaling hardware: ratio fraction width and ceiling.

    The kernel keeps these in ``kvm_caps.tsc_scaling_ratio_frac_bits`` and
    ``kvm_caps.max_tsc_scaling_ratio`` (module globals before 5.19's
    ``kvm_caps``); the default ratio, 1.0 in the vendor's fixed point, is
    ``kvm_caps.default_tsc_scaling_ratio``.
    """

    name: str
    frac_bits: int
    max_ratio: int

    def __post_init__(self) -> None:
        if not 1 <= self.frac_bits <= 63:
            raise ValueError(f"frac_bits must be 1..63, got {self.frac_bits}")
        if not 0 < self.max_ratio <= U64_MAX:
            raise ValueError(f"max_ratio must be a non-zero u64, got {self.max_ratio:#x}")

    @property
    def default_ratio(self) -> int:
        """1.0 in this vendor's fixed point: ``1ULL << frac_bits``."""
        return 1 << self.frac_bits


#: Intel VMX: 16.48 fixed point, any u64 accepted (``KVM_VMX_TSC_MULTIPLIER_MAX``).
INTEL_VMX = TscScalingCaps("vmx", 48, 0xFFFF_FFFF_FFFF_FFFF)
#: AMD SVM: 8.32 fixed point in 40 bits (``SVM_TSC_RATIO_MAX``; the default,
#: ``SVM_TSC_RATIO_DEFAULT``, is ``1 << 32``).
AMD_SVM = TscScalingCaps("svm", 32, 0x0000_00FF_FFFF_FFFF)


# --- scaling and offsets --------------------------------------------------


def kvm_scale_tsc(tsc: int, ratio: int, caps: TscScalingCaps) -> int:
    """``kvm_scale_tsc(tsc, ratio)``: a host TSC value in guest cycles.

    The default ratio short-circuits to the identity (a shortcut only:
    multiplying by 1.0 gives the same value); any other ratio goes
    through ``__scale_tsc()``, i.e. ``mul_u64_u64_shr(tsc, ratio, frac_bits)``:
    the 128-bit product shifted right, of which the low 64 bits are kept
    (a guest more than 1x faster wraps earlier than the host does).
    """
    tsc, ratio = u64(tsc), u64(ratio)
    if ratio == caps.default_ratio:
        return tsc
    return mul_u64_u64_shr(tsc, ratio, caps.frac_bits)


def kvm_compute_l1_tsc_offset(host_tsc: int, target_tsc: int, ratio: int, caps: TscScalingCaps) -> int:
    """``kvm_compute_l1_tsc_offset()``: the offset making the guest read ``target_tsc`` now.

    ``target - scale(host)`` in u64: when the guest is behind the (scaled)
    host, the result is a two's-complement negative number stored as a u64,
    which the hardware adds modulo 2**64 (read it with ``arith.s64``).
    """
    return u64(u64(target_tsc) - kvm_scale_tsc(host_tsc, ratio, caps))


def kvm_read_l1_tsc(host_tsc: int, offset: int, ratio: int, caps: TscScalingCaps) -> int:
    """``kvm_read_l1_tsc()``: what the (L1) guest's RDTSC returns at ``host_tsc``.

    ``offset + scale(host_tsc)``, wrapping modulo 2**64 as the hardware's
    addition does.
    """
    return u64(u64(offset) + kvm_scale_tsc(host_tsc, ratio, caps))


def nsec_to_cycles(ns: int, virtual_tsc_mult: int, virtual_tsc_shift: int) -> int:
    """``nsec_to_cycles()`` (``arch/x86/kvm/x86.h``): ns to guest TSC cycles.

    ``pvclock_scale_delta(ns, virtual_tsc_mult, virtual_tsc_shift)`` with the
    pair ``kvm_set_tsc_khz()`` computed (see ``TscRateSetting``).  Used by
    ``kvm_synchronize_tsc()`` to advance a matched TSC by the elapsed time;
    ``compute_guest_tsc()`` (catch-up) applies the same pair directly.
    """
    return pvclock_scale_delta(ns, virtual_tsc_mult, virtual_tsc_shift)


# --- choosing the ratio ---------------------------------------------------


def mul_u64_u32_div(a: int, mul: int, divisor: int) -> int:
    """``mul_u64_u32_div(a, mul, divisor)``: ``a * mul / divisor``, 96-bit product.

    The quotient is exact, then truncated to 64 bits, which is what the
    generic C body of ``include/linux/math64.h`` returns (see
    ``mul_u64_u32_div_32bit``).  On x86-64 the kernel uses ``mulq``/``divq``
    instead (``arch/x86/include/asm/div64.h``), which raises #DE when the
    quotient does not fit 64 bits; this model truncates there rather than
    trapping.  Division by zero raises ``ZeroDivisionError`` (a trap in C).
    """
    divisor = u32(divisor)
    if divisor == 0:
        raise ZeroDivisionError("mul_u64_u32_div by zero")
    return u64((u64(a) * u32(mul)) // divisor)


def mul_u64_u32_div_32bit(a: int, mul: int, divisor: int) -> int:
    """The generic ``mul_u64_u32_div()`` built from 32x32 products and ``do_div``.

    Long division in two 32-bit digits: the high half of ``a`` times
    ``mul`` (plus the carry out of the low product) is divided first; its
    remainder becomes the top half of the second dividend.  Only the low
    32 bits of the first quotient survive, so the result is the exact
    quotient modulo 2**64.  Kept so tests can prove ``mul_u64_u32_div``
    agrees with it.
    """
    a = u64(a)
    low = mul_u32_u32(a & U32_MAX, mul)
    high = mul_u32_u32(a >> 32, mul) + (low >> 32)  # < 2**64: no wrap
    q_high, rem = do_div(high, divisor)
    q_low, _ = do_div((rem << 32) | (low & U32_MAX), divisor)  # rem < divisor: q_low < 2**32
    return ((q_high & U32_MAX) << 32) | q_low


def adjust_tsc_khz(khz: int, ppm: int) -> int:
    """``adjust_tsc_khz(u32 khz, s32 ppm)``: ``khz * (1e6 + ppm) / 1e6``, as C computes it.

    ``1000000 + ppm`` is an ``int`` sum (it wraps, the kernel being built
    with ``-fno-strict-overflow``), converted to u64 for the product with
    ``(u64)khz``, so a factor below zero becomes a huge u64 and the
    product wraps modulo 2**64; ``do_div`` truncates and the u32 return
    type drops the high bits.
    """
    factor = s32(1_000_000 + s32(ppm))
    v = u64(u32(khz) * u64(factor))
    quotient, _ = do_div(v, 1_000_000)
    return u32(quotient)


@dataclass(frozen=True, slots=True)
class TscRateSetting:
    """The outcome of ``kvm_set_tsc_khz()`` for one vCPU.

    ``ratio`` is the scaling ratio the vCPU runs with, in the fixed point of
    the caps passed in.  On an error other than ``user_tsc_khz 0`` the kernel
    returns -1 without writing the ratio, so the vCPU keeps whatever it had;
    the model then reports the default ratio (what a vCPU that never had
    another rate runs with) and callers must look at ``error``.

    ``catchup`` is KVM's ``tsc_catchup``/``tsc_always_catchup``: no scaling
    hardware and a guest faster than the host, so KVM advances the guest
    TSC in software on entries.

    ``use_scaling`` records the tolerance test: the requested rate was
    outside ``[adjust_tsc_khz(host, -tol), adjust_tsc_khz(host, +tol)]``.

    ``virtual_tsc_mult``/``virtual_tsc_shift`` are the ns -> guest-cycles
    scale (``kvm_get_time_scale(user_khz * 1000, NSEC_PER_SEC)``) that
    ``nsec_to_cycles()`` uses; ``None`` when ``user_khz`` is 0, for which
    the kernel returns before computing them.
    """

    ratio: int
    catchup: bool
    error: str | None
    use_scaling: bool = False
    virtual_tsc_mult: int | None = None
    virtual_tsc_shift: int | None = None

    @property
    def ok(self) -> bool:
        """Whether ``kvm_set_tsc_khz()`` returned 0."""
        return self.error is None


def set_tsc_khz(
    user_khz: int,
    host_khz: int,
    caps: TscScalingCaps | None,
    *,
    tolerance_ppm: int = TSC_TOLERANCE_PPM,
    vendor: TscScalingCaps = INTEL_VMX,
) -> TscRateSetting:
    """``kvm_set_tsc_khz()`` followed by ``set_tsc_khz()``: pick the vCPU's TSC ratio.

    ``user_khz`` is the requested guest rate and ``host_khz`` the host's
    ``tsc_khz`` (both u32 in C, truncated here likewise).  ``caps`` is the
    TSC-scaling hardware (``kvm_caps.has_tsc_control``), ``None`` where there
    is none.  Steps, as in the kernel:

    1. ``user_khz == 0``: the ratio is reset to the default and -1 returned;
    2. the ns -> cycles scale for ``user_khz`` is computed;
    3. a rate inside ``[adjust_tsc_khz(host, -tol), adjust_tsc_khz(host, +tol)]``
       (inclusive) runs unscaled, with the default ratio;
    4. otherwise, without scaling hardware, a faster guest gets catch-up
       mode and a slower one an error;
    5. with scaling hardware, ``ratio = mul_u64_u32_div(1 << frac_bits,
       user_khz, host_khz)``, rejected when 0 or ``>= max_ratio``.

    ``vendor`` only matters when ``caps`` is ``None``: it says whose fixed
    point the reported default ratio is in (recent kernels' vendor modules
    set the fraction width even without scaling hardware; either way the
    default ratio is the identity).  ``tolerance_ppm``
    is the u32 module parameter; the kernel negates it as a u32 and passes
    it as an s32, which this reproduces.

    A ``host_khz`` of 0 with scaling hardware divides by zero
    (``ZeroDivisionError``); KVM's ioctl path does not reach that state.
    """
    user_khz, host_khz = u32(user_khz), u32(host_khz)
    fixed_point = caps if caps is not None else vendor
    default_ratio = fixed_point.default_ratio

    if user_khz == 0:
        return TscRateSetting(ratio=default_ratio, catchup=False, error=ERR_ZERO_KHZ)

    scale = kvm_get_time_scale(user_khz * 1000, NSEC_PER_SEC)
    mult, shift = scale.tsc_to_system_mul, scale.tsc_shift

    tol = u32(tolerance_ppm)
    thresh_lo = adjust_tsc_khz(host_khz, s32(u32(-tol)))
    thresh_hi = adjust_tsc_khz(host_khz, s32(tol))
    use_scaling = user_khz < thresh_lo or user_khz > thresh_hi

    def outcome(ratio: int, *, catchup: bool = False, error: str | None = None) -> TscRateSetting:
        return TscRateSetting(
            ratio=ratio,
            catchup=catchup,
            error=error,
            use_scaling=use_scaling,
            virtual_tsc_mult=mult,
            virtual_tsc_shift=shift,
        )

    if not use_scaling:
        return outcome(default_ratio)

    if caps is None:
        if user_khz > host_khz:
            return outcome(default_ratio, catchup=True)
        return outcome(default_ratio, error=ERR_BELOW_HARDWARE)

    ratio = mul_u64_u32_div(1 << caps.frac_bits, user_khz, host_khz)
    if ratio == 0 or ratio >= caps.max_ratio:
        return outcome(default_ratio, error=ERR_INVALID_RATIO)
    return outcome(ratio)
