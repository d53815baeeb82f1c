"""Why KVM_RUN returned: the ``struct kvm_run`` exit, decoded into small immutable records.

The exit reasons and their union members are described in
``Documentation/virt/kvm/api.rst`` section "5. The kvm_run structure".
For ``KVM_EXIT_IO`` the data bytes sit in the run mapping at
``io.data_offset``: for ``out`` the guest's bytes are copied out here;
for ``in`` the VMM writes the answer there before the next KVM_RUN
(:meth:`tsclab.kvm.vcpu.Vcpu.answer_in`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.kvm import constants as c
from tsclab.kvm.memory import Mapping
from tsclab.kvm.structs import KvmRun


@dataclass(frozen=True, slots=True)
class IoExit:
    """KVM_EXIT_IO: an ``in``/``out`` of ``size`` bytes x ``count`` on ``port``."""

    is_in: bool
    port: int
    size: int
    count: int
    data_offset: int
    data: bytes  # the guest's bytes for out; empty for in

    @property
    def value(self) -> int:
        """The first item the guest wrote (``out``), little-endian."""
        return int.from_bytes(self.data[: self.size], "little")

    def describe(self) -> str:
        if self.is_in:
            return f"KVM_EXIT_IO in port {self.port:#x} size {self.size}"
        return f"KVM_EXIT_IO out port {self.port:#x} size {self.size} value {self.value:#x}"


@dataclass(frozen=True, slots=True)
class MmioExit:
    """KVM_EXIT_MMIO: a guest access to a guest-physical address no memory slot backs."""

    phys_addr: int
    data: bytes
    length: int
    is_write: bool

    def describe(self) -> str:
        kind = "write" if self.is_write else "read"
        return f"KVM_EXIT_MMIO {kind} of {self.length} bytes at {self.phys_addr:#x}"


@dataclass(frozen=True, slots=True)
class HltExit:
    """KVM_EXIT_HLT: the guest executed HLT (no in-kernel local APIC to wait in)."""

    def describe(self) -> str:
        return "KVM_EXIT_HLT"


@dataclass(frozen=True, slots=True)
class ShutdownExit:
    """KVM_EXIT_SHUTDOWN: a triple fault (or a shutdown the CPU entered)."""

    def describe(self) -> str:
        return "KVM_EXIT_SHUTDOWN (triple fault)"


@dataclass(frozen=True, slots=True)
class FailEntryExit:
    """KVM_EXIT_FAIL_ENTRY: the hardware refused the guest state at VM entry."""

    hardware_entry_failure_reason: int
    cpu: int

    def describe(self) -> str:
        return (
            f"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason "
            f"{self.hardware_entry_failure_reason:#x} on cpu {self.cpu}"
        )


@dataclass(frozen=True, slots=True)
class InternalErrorExit:
    """KVM_EXIT_INTERNAL_ERROR: KVM could not go on (e.g. an instruction it cannot emulate)."""

    suberror: int
    data: tuple[int, ...]

    def describe(self) -> str:
        name = c.INTERNAL_ERROR_NAMES.get(self.suberror, f"suberror {self.suberror}")
        extra = " ".join(f"{d:#x}" for d in self.data)
        return f"KVM_EXIT_INTERNAL_ERROR {name}" + (f" data {extra}" if extra else "")


@dataclass(frozen=True, slots=True)
class ExceptionExit:
    """KVM_EXIT_EXCEPTION: a guest exception KVM hands to userspace."""

    exception: int
    error_code: int

    def describe(self) -> str:
        return f"KVM_EXIT_EXCEPTION vector {self.exception} error code {self.error_code:#x}"


@dataclass(frozen=True, slots=True)
class IntrExit:
    """KVM_EXIT_INTR: a signal interrupted KVM_RUN (the run's deadline, or Ctrl-C)."""

    def describe(self) -> str:
        return "KVM_EXIT_INTR (interrupted by a signal)"


@dataclass(frozen=True, slots=True)
class SystemEventExit:
    """KVM_EXIT_SYSTEM_EVENT: shutdown/reset/crash requested by the guest."""

    type: int

    def describe(self) -> str:
        return f"KVM_EXIT_SYSTEM_EVENT {c.SYSTEM_EVENT_NAMES.get(self.type, str(self.type))}"


@dataclass(frozen=True, slots=True)
class OtherExit:
    """Any exit reason not decoded above."""

    reason: int

    def describe(self) -> str:
        return c.EXIT_REASON_NAMES.get(self.reason, f"exit reason {self.reason}")


VcpuExit = (
    IoExit
    | MmioExit
    | HltExit
    | ShutdownExit
    | FailEntryExit
    | InternalErrorExit
    | ExceptionExit
    | IntrExit
    | SystemEventExit
    | OtherExit
)


def decode_exit(run: KvmRun, page: Mapping) -> VcpuExit:
    """The exit ``run`` (a view of ``page``, the vCPU's run mapping) reports."""
    reason = int(run.exit_reason)
    union = run.exit
    if reason == c.KVM_EXIT_IO:
        io = union.io
        is_in = int(io.direction) == c.KVM_EXIT_IO_IN
        length = int(io.size) * int(io.count)
        data = b"" if is_in else page.read(int(io.data_offset), length)
        return IoExit(is_in, int(io.port), int(io.size), int(io.count), int(io.data_offset), data)
    if reason == c.KVM_EXIT_MMIO:
        mmio = union.mmio
        length = int(mmio.len)
        return MmioExit(int(mmio.phys_addr), bytes(mmio.data)[:length], length, bool(mmio.is_write))
    if reason == c.KVM_EXIT_HLT:
        return HltExit()
    if reason == c.KVM_EXIT_SHUTDOWN:
        return ShutdownExit()
    if reason == c.KVM_EXIT_FAIL_ENTRY:
        fail = union.fail_entry
        return FailEntryExit(int(fail.hardware_entry_failure_reason), int(fail.cpu))
    if reason == c.KVM_EXIT_INTERNAL_ERROR:
        internal = union.internal
        count = min(int(internal.ndata), len(internal.data))
        return InternalErrorExit(int(internal.suberror), tuple(int(d) for d in internal.data[:count]))
    if reason == c.KVM_EXIT_EXCEPTION:
        return ExceptionExit(int(union.ex.exception), int(union.ex.error_code))
    if reason == c.KVM_EXIT_INTR:
        return IntrExit()
    if reason == c.KVM_EXIT_SYSTEM_EVENT:
        return SystemEventExit(int(union.system_event.type))
    return OtherExit(reason)
