"""The guest's kvmclock, computed by the VMM from the pvclock page in guest memory.

KVM publishes a ``struct pvclock_vcpu_time_info`` (32 bytes, layout in
``arch/x86/include/asm/pvclock-abi.h``) at the guest-physical address
the guest wrote to ``MSR_KVM_SYSTEM_TIME_NEW``. A Linux guest turns a
TSC reading into kvmclock ns with ``pvclock_clocksource_read()``; the
functions here do the same arithmetic in the same integer widths, so
the VMM can say exactly what the guest's kvmclock read for a TSC value
the guest reported.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from tsclab.kvm import constants as c

U64_MASK = (1 << 64) - 1
U32_MASK = (1 << 32) - 1
PVCLOCK_SIZE = 32
# version, pad0, tsc_timestamp, system_time, tsc_to_system_mul, tsc_shift (s8), flags, pad[2]
_LAYOUT = struct.Struct("<IIQQIbB2x")


class PvclockBusyError(Exception):
    """The page kept changing (odd or moving version) while being read."""


@dataclass(frozen=True, slots=True)
class PvclockTimeInfo:
    """``struct pvclock_vcpu_time_info``: kvmclock = system_time + scale(tsc - tsc_timestamp)."""

    version: int
    tsc_timestamp: int
    system_time: int
    tsc_to_system_mul: int
    tsc_shift: int  # signed 8-bit
    flags: int

    @classmethod
    def parse(cls, raw: bytes) -> PvclockTimeInfo:
        if len(raw) != PVCLOCK_SIZE:
            raise ValueError(f"pvclock_vcpu_time_info is {PVCLOCK_SIZE} bytes, got {len(raw)}")
        version, _pad, tsc_timestamp, system_time, mul, shift, flags = _LAYOUT.unpack(raw)
        return cls(version, tsc_timestamp, system_time, mul, shift, flags)

    def pack(self) -> bytes:
        return _LAYOUT.pack(
            self.version,
            0,
            self.tsc_timestamp,
            self.system_time,
            self.tsc_to_system_mul,
            self.tsc_shift,
            self.flags,
        )

    @property
    def enabled(self) -> bool:
        """KVM has written the page at least once (a fresh page is all zeroes)."""
        return self.version != 0 and self.tsc_to_system_mul != 0

    @property
    def tsc_stable(self) -> bool:
        """PVCLOCK_TSC_STABLE_BIT: KVM's masterclock is on; readings agree across vCPUs."""
        return bool(self.flags & c.PVCLOCK_TSC_STABLE_BIT)

    @property
    def guest_stopped(self) -> bool:
        """PVCLOCK_GUEST_STOPPED: the host paused the vCPU (KVM_KVMCLOCK_CTRL), not yet acknowledged."""
        return bool(self.flags & c.PVCLOCK_GUEST_STOPPED)


def pvclock_scale_delta(delta: int, mul_frac: int, shift: int) -> int:
    """``pvclock_scale_delta()`` of ``arch/x86/include/asm/pvclock.h`` (x86-64 branch, Linux 6.x).

    ``delta`` is a u64; a negative ``shift`` shifts it right, a positive one
    left *in 64 bits* (high bits are lost); then ``mulq`` by the 32-bit
    ``mul_frac`` and ``shrd $32``: the low 64 bits of the 96-bit product
    shifted right by 32.
    """
    delta &= U64_MASK
    delta = delta >> -shift if shift < 0 else (delta << shift) & U64_MASK
    return ((delta * (mul_frac & U32_MASK)) >> 32) & U64_MASK


def pvclock_read_cycles(info: PvclockTimeInfo, tsc: int) -> int:
    """``__pvclock_read_cycles(src, tsc)`` (arch/x86/include/asm/pvclock.h, Linux 6.x): kvmclock ns.

    ``delta = tsc - tsc_timestamp`` in u64 (a TSC behind the timestamp
    wraps to a huge delta, as in C), scaled, added to ``system_time`` in u64.
    """
    delta = (tsc - info.tsc_timestamp) & U64_MASK
    return (info.system_time + pvclock_scale_delta(delta, info.tsc_to_system_mul, info.tsc_shift)) & U64_MASK


def read_consistent(read: Callable[[], bytes], max_tries: int = 1000) -> PvclockTimeInfo:
    """A consistent snapshot of the page, retried as ``pvclock_read_begin``/``pvclock_read_retry`` do.

    The guest takes ``version & ~1`` first, reads the fields, then retries
    if ``version`` changed (an odd version means KVM is mid-update, so the
    masked value cannot match it). ``read`` returns the page's 32 bytes.
    """
    for _ in range(max_tries):
        info = PvclockTimeInfo.parse(read())
        begin = info.version & ~1
        if PvclockTimeInfo.parse(read()).version == begin:
            return info
    raise PvclockBusyError(f"pvclock page still changing after {max_tries} reads")


@dataclass(frozen=True, slots=True)
class PvclockReading:
    """What ``pvclock_clocksource_read()`` returned for one TSC value, and the state it leaves."""

    ns: int
    flags: int
    last_value: int


def pvclock_clocksource_read(
    info: PvclockTimeInfo, tsc: int, *, last_value: int = 0, stable_bit_valid: bool = True
) -> PvclockReading:
    """``__pvclock_clocksource_read(src, dowd)`` (arch/x86/kernel/pvclock.c, Linux 6.x).

    After the version loop (:func:`read_consistent`) the guest returns the
    value as is when ``PVCLOCK_TSC_STABLE_BIT`` is both valid (the guest
    saw ``KVM_FEATURE_CLOCKSOURCE_STABLE_BIT`` in CPUID) and set; otherwise
    it clamps to the global ``last_value`` so that it never goes back
    (the cmpxchg loop). Clearing ``PVCLOCK_GUEST_STOPPED`` and touching
    watchdogs are guest side effects the VMM does not perform.
    """
    ns = pvclock_read_cycles(info, tsc)
    if stable_bit_valid and info.tsc_stable:
        return PvclockReading(ns, info.flags, last_value)
    if ns <= last_value:
        return PvclockReading(last_value, info.flags, last_value)
    return PvclockReading(ns, info.flags, ns)


def pvclock_tsc_khz(info: PvclockTimeInfo) -> int:
    """``pvclock_tsc_khz()`` (arch/x86/kernel/pvclock.c): the TSC frequency the page's scale implies."""
    if info.tsc_to_system_mul == 0:
        raise ValueError("pvclock page not written (tsc_to_system_mul is 0)")
    khz = (1_000_000 << 32) // info.tsc_to_system_mul
    return (khz << -info.tsc_shift) & U64_MASK if info.tsc_shift < 0 else khz >> info.tsc_shift
