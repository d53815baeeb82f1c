"""The facts about this host a migration depends on, each established by doing it.

A migration's outcome for the guest's TSC depends on whether KVM applies a
TSC offset (``KVM_VCPU_TSC_OFFSET``, ``Documentation/virt/kvm/devices/vcpu.rst``
section 4) and whether it can scale the TSC (``KVM_CAP_TSC_CONTROL``); the
kvmclock side needs ``KVM_CLOCK_REALTIME``/``KVM_CLOCK_HOST_TSC`` in
``KVM_CAP_ADJUST_CLOCK``. The offset is checked the way ``tsclab kvm probe``
checks it - written, then seen (or not) from inside the probe guest - but
with one second of cycles, so the check costs about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.clock import clocksource_is_tsc_based, wrapped_delta
from tsclab.kvm.host_info import host_info
from tsclab.kvm.probe_guest import GuestSample, ProbeGuest
from tsclab.kvm.system import Kvm

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot of this host (two VMMs with the same boot id run on one host)."""
    try:
        return path.read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class HostFacts:
    kernel: str
    clocksource: str | None
    backends: tuple[str, ...]
    boot_id: str
    tsc_khz: int  # KVM_GET_TSC_KHZ of a fresh vCPU
    tsc_scaling: bool  # KVM_CAP_TSC_CONTROL
    adjust_clock_flags: int  # KVM_CAP_ADJUST_CLOCK
    tsc_offset_effective: bool
    tsc_offset_detail: str

    @property
    def clocksource_tsc_based(self) -> bool:
        return clocksource_is_tsc_based(self.clocksource)

    @property
    def kvm_version(self) -> tuple[int, int]:
        """(major, minor) of the running kernel, whose KVM this is."""
        parts = self.kernel.split(".")
        try:
            return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
        except (IndexError, ValueError):
            return (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "clocksource": self.clocksource,
            "kvm_backends": list(self.backends),
            "boot_id": self.boot_id,
            "tsc_khz": self.tsc_khz,
            "tsc_scaling": self.tsc_scaling,
            "adjust_clock_flags": self.adjust_clock_flags,
            "tsc_offset_effective": self.tsc_offset_effective,
            "tsc_offset_detail": self.tsc_offset_detail,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> HostFacts:
        return cls(
            str(record["kernel"]),
            record["clocksource"],
            tuple(record["kvm_backends"]),
            str(record["boot_id"]),
            int(record["tsc_khz"]),
            bool(record["tsc_scaling"]),
            int(record["adjust_clock_flags"]),
            bool(record["tsc_offset_effective"]),
            str(record["tsc_offset_detail"]),
        )


def _midpoint_ns(sample: GuestSample) -> int:
    return (sample.before_ns + sample.after_ns) // 2


def check_tsc_offset(guest: ProbeGuest, khz: int) -> tuple[bool, str]:
    """Write +1 s of cycles to the offset of a started guest; does the guest's TSC move by it?"""
    vcpu = guest.vcpu
    if not vcpu.has_tsc_offset():
        return False, "no KVM_VCPU_TSC_OFFSET attribute (Linux < 5.16)"
    delta = khz * 1000
    first = guest.sample()
    initial = vcpu.get_tsc_offset()
    vcpu.set_tsc_offset(initial + delta)
    second = guest.sample()
    read_back = vcpu.get_tsc_offset()
    vcpu.set_tsc_offset(initial)
    elapsed = khz * (_midpoint_ns(second) - _midpoint_ns(first)) // 1_000_000
    moved = wrapped_delta(second.tsc, first.tsc) - elapsed
    effective = abs(moved - delta) <= khz  # within 1 ms of cycles
    verdict = "applied" if effective else "not applied"
    return effective, (
        f"offset +1 s ({delta} cycles) written, reads back {wrapped_delta(read_back, initial)} more; "
        f"the guest's TSC moved {moved} cycles beyond the time elapsed: {verdict}"
    )


def host_facts(kvm: Kvm, *, tsc_khz: int | None = None) -> HostFacts:
    """This host's facts; ``tsc_khz`` overrides the TSC frequency it advertises (a test's stand-in
    for a destination on other hardware - everything else stays real)."""
    info = host_info()
    with ProbeGuest.create(kvm) as guest:
        guest.start()
        khz = guest.vcpu.get_tsc_khz()
        effective, detail = check_tsc_offset(guest, khz)
    return HostFacts(
        kernel=info.kernel,
        clocksource=info.clocksource,
        backends=info.backends,
        boot_id=boot_id(),
        tsc_khz=khz if tsc_khz is None else tsc_khz,
        tsc_scaling=bool(kvm.check_extension(c.KVM_CAP_TSC_CONTROL)),
        adjust_clock_flags=kvm.check_extension(c.KVM_CAP_ADJUST_CLOCK),
        tsc_offset_effective=effective,
        tsc_offset_detail=detail,
    )
