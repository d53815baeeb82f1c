"""A vCPU's register state as bytes, to move a running guest to another VM (snapshot, migration).

Registers travel as the raw ``struct kvm_regs``/``struct kvm_sregs``
images (x86-64 layout, fixed by the ABI). A vCPU that exited for port
I/O has not finished the instruction until the next KVM_RUN
(api.rst, "5. The kvm_run structure": pending operations complete on
re-entry); :func:`complete_pending_io` re-enters with ``immediate_exit``
so the state is consistent before it is saved.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from tsclab.kvm import structs
from tsclab.kvm.errors import GuestError
from tsclab.kvm.exits import IntrExit
from tsclab.kvm.vcpu import Vcpu


@dataclass(frozen=True, slots=True)
class CpuState:
    regs: bytes
    sregs: bytes

    def to_dict(self) -> dict[str, str]:
        return {"regs": self.regs.hex(), "sregs": self.sregs.hex()}

    @classmethod
    def from_dict(cls, record: dict[str, str]) -> CpuState:
        return cls(bytes.fromhex(record["regs"]), bytes.fromhex(record["sregs"]))


def complete_pending_io(vcpu: Vcpu) -> None:
    """KVM_RUN with ``immediate_exit`` set: finish a pending in/out without running the guest further."""
    vcpu.immediate_exit = True
    try:
        exit_ = vcpu.run()
    finally:
        vcpu.immediate_exit = False
    if not isinstance(exit_, IntrExit):
        raise GuestError(f"completing pending I/O: expected KVM_EXIT_INTR, got {exit_.describe()}")


def save_cpu_state(vcpu: Vcpu) -> CpuState:
    return CpuState(bytes(vcpu.get_regs()), bytes(vcpu.get_sregs()))


def restore_cpu_state(vcpu: Vcpu, state: CpuState) -> None:
    """Set sregs (mode, paging) before regs, as KVM's own selftests restore state."""
    sregs = structs.KvmSregs()
    regs = structs.KvmRegs()
    for obj, raw in ((sregs, state.sregs), (regs, state.regs)):
        if len(raw) != ctypes.sizeof(obj):
            raise ValueError(f"{type(obj).__name__} image is {len(raw)} bytes, expected {ctypes.sizeof(obj)}")
        ctypes.memmove(ctypes.addressof(obj), raw, len(raw))
    vcpu.set_sregs(sregs)
    vcpu.set_regs(regs)
