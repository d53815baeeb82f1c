"""Save and restore a VM's clock state: the building blocks a migration or snapshot policy uses.

What a VMM can read and write about guest time through KVM, per
``Documentation/virt/kvm/api.rst`` (KVM_GET/SET_CLOCK, KVM_GET/SET_MSRS,
KVM_GET/SET_TSC_KHZ) and ``Documentation/virt/kvm/devices/vcpu.rst``
section 4 (KVM_VCPU_TSC_OFFSET and its migration algorithm):

* VM-wide: kvmclock, with host realtime and host TSC of the same instant
  (:class:`ClockData`, source step 1 of the documented algorithm);
* per vCPU: the TSC offset (step 2), the TSC frequency (step 3) and the
  MSRs that carry guest time (IA32_TSC, IA32_TSC_ADJUST, the kvmclock
  MSRs).

Policies (which of these to restore, in what order, with what
arithmetic - QEMU's, the documented one, the seed's) live above this
layer; these functions only read and write, and say what they could
not do. All values are plain ints so that a state travels as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.clock import ClockData
from tsclab.kvm.errors import KvmError
from tsclab.kvm.vcpu import Vcpu
from tsclab.kvm.vm import Vm

# The MSRs that carry a vCPU's time (a subset of KVM_GET_MSR_INDEX_LIST).
CLOCK_MSRS: tuple[int, ...] = (
    c.MSR_IA32_TSC,
    c.MSR_IA32_TSC_ADJUST,
    c.MSR_KVM_SYSTEM_TIME_NEW,
    c.MSR_KVM_WALL_CLOCK_NEW,
)


@dataclass(frozen=True, slots=True)
class VcpuClockState:
    """One vCPU's time state. ``tsc_offset``/``tsc_khz`` are None where KVM cannot report them."""

    vcpu_id: int
    tsc_offset: int | None
    tsc_khz: int | None
    msrs: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vcpu_id": self.vcpu_id,
            "tsc_offset": self.tsc_offset,
            "tsc_khz": self.tsc_khz,
            "msrs": {f"{index:#x}": value for index, value in sorted(self.msrs.items())},
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> VcpuClockState:
        return cls(
            int(record["vcpu_id"]),
            None if record["tsc_offset"] is None else int(record["tsc_offset"]),
            None if record["tsc_khz"] is None else int(record["tsc_khz"]),
            {int(index, 16): int(value) for index, value in record["msrs"].items()},
        )


@dataclass(frozen=True, slots=True)
class VmClockState:
    """A VM's time state at one save: KVM_GET_CLOCK, then every vCPU."""

    clock: ClockData
    vcpus: tuple[VcpuClockState, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.clock.to_dict(), "vcpus": [v.to_dict() for v in self.vcpus]}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> VmClockState:
        return cls(
            ClockData.from_dict(record["clock"]), tuple(VcpuClockState.from_dict(v) for v in record["vcpus"])
        )


def save_vcpu_clock(vcpu: Vcpu, msrs: Sequence[int] = CLOCK_MSRS) -> VcpuClockState:
    """The vCPU's TSC offset (if the attribute exists), TSC kHz (if readable) and clock MSRs."""
    offset = vcpu.get_tsc_offset() if vcpu.has_tsc_offset() else None
    try:
        khz: int | None = vcpu.get_tsc_khz()
    except KvmError:
        khz = None
    return VcpuClockState(vcpu.vcpu_id, offset, khz, vcpu.get_msrs(list(msrs)))


def save_clock_state(vm: Vm, msrs: Sequence[int] = CLOCK_MSRS) -> VmClockState:
    """KVM_GET_CLOCK first (the instant the documented algorithm pairs with the offsets), then each vCPU."""
    clock = vm.get_clock()
    return VmClockState(clock, tuple(save_vcpu_clock(vcpu, msrs) for vcpu in vm.vcpus))


def restore_kvmclock(vm: Vm, saved: ClockData, *, add_elapsed_realtime: bool) -> ClockData:
    """KVM_SET_CLOCK to ``saved.clock``; KVM_GET_CLOCK right after, returned.

    With ``add_elapsed_realtime`` (and ``saved`` carrying KVM_CLOCK_REALTIME)
    KVM itself adds host realtime elapsed since ``saved.realtime`` - the
    documented algorithm's step 4; without, kvmclock resumes where it was
    saved (QEMU's pause, which hides the downtime from kvmclock).
    """
    if add_elapsed_realtime and not saved.has_realtime:
        raise ValueError("the saved clock has no KVM_CLOCK_REALTIME value to add elapsed time from")
    flags = c.KVM_CLOCK_REALTIME if add_elapsed_realtime else 0
    vm.set_clock(ClockData(saved.clock, flags, saved.realtime if add_elapsed_realtime else 0, 0))
    return vm.get_clock()


def restore_vcpu_clock(
    vcpu: Vcpu,
    state: VcpuClockState,
    *,
    tsc_offset: int | None = None,
    msrs: Sequence[int] = (c.MSR_IA32_TSC_ADJUST, c.MSR_KVM_SYSTEM_TIME_NEW, c.MSR_KVM_WALL_CLOCK_NEW),
) -> None:
    """Write a vCPU's clock MSRs (those of ``msrs`` that were saved), then its TSC offset if given.

    IA32_TSC is left out by default: a host write of it goes through KVM's
    1-second synchronization heuristic (``kvm_synchronize_tsc``), which is
    a policy's choice (QEMU's path), not a default. The offset (the
    documented algorithm's step 7) is written last, after anything that
    could move it.
    """
    values = {index: state.msrs[index] for index in msrs if index in state.msrs}
    if values:
        vcpu.set_msrs(values)
    if tsc_offset is not None:
        vcpu.set_tsc_offset(tsc_offset)
