"""A vCPU fd and its mmapped ``struct kvm_run``: run it, read and write its state.

One method per ioctl, named after it (style of rust-vmm ``kvm-ioctls``
``VcpuFd``); semantics per ``Documentation/virt/kvm/api.rst`` and, for
the TSC attribute, ``Documentation/virt/kvm/devices/vcpu.rst`` section
"4. GROUP: KVM_VCPU_TSC_CTRL".
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingType
from types import TracebackType

from tsclab.kvm import constants as c
from tsclab.kvm import ioctls, libc, structs
from tsclab.kvm.cpuid import CpuidEntry
from tsclab.kvm.errors import KvmError
from tsclab.kvm.exits import IntrExit, IoExit, VcpuExit, decode_exit
from tsclab.kvm.memory import Mapping


class Vcpu:
    """vCPU ``vcpu_id`` of a VM: owns its fd and its run mapping; :meth:`close` releases both.

    Created by :meth:`tsclab.kvm.vm.Vm.create_vcpu`, which closes it with the VM.
    """

    def __init__(self, fd: int, vcpu_id: int, mmap_size: int) -> None:
        self.vcpu_id = vcpu_id
        self._fd: int | None = fd
        try:
            self._page = Mapping(mmap_size, fd, what=f"kvm_run of vCPU {vcpu_id}")
        except BaseException:
            os.close(fd)
            self._fd = None
            raise
        self._run = structs.KvmRun.from_address(self._page.address)

    # --- lifetime

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"vCPU {self.vcpu_id} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Unmap the run page, then close the fd (once)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self._page.close()
        finally:
            os.close(fd)

    def __enter__(self) -> Vcpu:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- running

    def run(self) -> VcpuExit:
        """KVM_RUN until the guest exits to userspace; the decoded exit.

        A signal during the run (see :mod:`tsclab.kvm.deadline`) gives
        :class:`~tsclab.kvm.exits.IntrExit` rather than an error.
        """
        try:
            libc.ioctl(self.fd, ioctls.KVM_RUN, 0, "KVM_RUN")
        except KvmError as err:
            if err.errno == errno.EINTR:
                return IntrExit()
            raise
        return decode_exit(self._run, self._page)

    def answer_in(self, exit_: IoExit, value: int) -> None:
        """Give the guest's pending ``in`` its value (written where KVM reads it on the next KVM_RUN)."""
        if not exit_.is_in:
            raise ValueError(f"not an in: {exit_.describe()}")
        item = value.to_bytes(exit_.size, "little")
        self._page.write(exit_.data_offset, item * exit_.count)

    @property
    def immediate_exit(self) -> bool:
        """``kvm_run.immediate_exit`` (KVM_CAP_IMMEDIATE_EXIT): KVM_RUN returns EINTR at once."""
        return bool(self._run.immediate_exit)

    @immediate_exit.setter
    def immediate_exit(self, value: bool) -> None:
        self._run.immediate_exit = int(value)

    # --- registers

    def get_regs(self) -> structs.KvmRegs:
        regs = structs.KvmRegs()
        libc.ioctl_ptr(self.fd, ioctls.KVM_GET_REGS, regs, "KVM_GET_REGS")
        return regs

    def set_regs(self, regs: structs.KvmRegs) -> None:
        libc.ioctl_ptr(self.fd, ioctls.KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> structs.KvmSregs:
        sregs = structs.KvmSregs()
        libc.ioctl_ptr(self.fd, ioctls.KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: structs.KvmSregs) -> None:
        libc.ioctl_ptr(self.fd, ioctls.KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    # --- MSRs (KVM_GET_MSRS / KVM_SET_MSRS return how many entries they processed)

    def get_msrs(self, indices: Sequence[int]) -> dict[int, int]:
        """The values of MSRs ``indices`` as the host sees them (host-initiated reads)."""
        buf = structs.msrs_buffer([(index, 0) for index in indices])
        done = libc.ioctl_ptr(self.fd, ioctls.KVM_GET_MSRS, buf, "KVM_GET_MSRS")
        if done < len(indices):
            raise KvmError("KVM_GET_MSRS", None, _msr_stop(indices, done, "read"))
        return {index: int(structs.msr_entry_at(buf, i).data) for i, index in enumerate(indices)}

    def set_msrs(self, values: MappingType[int, int]) -> None:
        """Write MSRs as the host (host-initiated writes: e.g. IA32_TSC goes through the sync heuristic)."""
        entries = list(values.items())
        buf = structs.msrs_buffer(entries)
        done = libc.ioctl_ptr(self.fd, ioctls.KVM_SET_MSRS, buf, "KVM_SET_MSRS")
        if done < len(entries):
            raise KvmError("KVM_SET_MSRS", None, _msr_stop([i for i, _ in entries], done, "written"))

    # --- CPUID

    def set_cpuid2(self, entries: Iterable[CpuidEntry]) -> None:
        """KVM_SET_CPUID2: the CPUID the guest sees (KVM allows it only before the first KVM_RUN)."""
        items = list(entries)
        buf = structs.cpuid_buffer(len(items))
        for i, e in enumerate(items):
            entry = structs.cpuid_entry_at(buf, i)
            entry.function, entry.index, entry.flags = e.function, e.index, e.flags
            entry.eax, entry.ebx, entry.ecx, entry.edx = e.eax, e.ebx, e.ecx, e.edx
        libc.ioctl_ptr(self.fd, ioctls.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2")

    # --- device attributes (KVM_CAP_VCPU_ATTRIBUTES)

    def _attr(self, request: int, name: str, group: int, attr: int, value: ctypes.c_uint64 | None) -> None:
        arg = structs.KvmDeviceAttr(
            flags=0, group=group, attr=attr, addr=0 if value is None else ctypes.addressof(value)
        )
        libc.ioctl(self.fd, request, ctypes.addressof(arg), name, f"group {group} attr {attr}")

    def has_device_attr(self, group: int, attr: int) -> bool:
        """KVM_HAS_DEVICE_ATTR: True if supported; ENXIO (or no attribute support) means no."""
        try:
            self._attr(ioctls.KVM_HAS_DEVICE_ATTR, "KVM_HAS_DEVICE_ATTR", group, attr, None)
        except KvmError as err:
            if err.errno in (errno.ENXIO, errno.ENOTTY, errno.EINVAL):
                return False
            raise
        return True

    def get_device_attr_u64(self, group: int, attr: int) -> int:
        value = ctypes.c_uint64()
        self._attr(ioctls.KVM_GET_DEVICE_ATTR, "KVM_GET_DEVICE_ATTR", group, attr, value)
        return int(value.value)

    def set_device_attr_u64(self, group: int, attr: int, data: int) -> None:
        value = ctypes.c_uint64(data % (1 << 64))
        self._attr(ioctls.KVM_SET_DEVICE_ATTR, "KVM_SET_DEVICE_ATTR", group, attr, value)

    def has_tsc_offset(self) -> bool:
        """Whether KVM offers the KVM_VCPU_TSC_OFFSET attribute (Linux 5.16+, commit 828ca89628bf)."""
        return self.has_device_attr(c.KVM_VCPU_TSC_CTRL, c.KVM_VCPU_TSC_OFFSET)

    def get_tsc_offset(self) -> int:
        """The vCPU's L1 TSC offset, u64 (documented: ``guest_tsc = host_tsc + offset``, no scaling)."""
        return self.get_device_attr_u64(c.KVM_VCPU_TSC_CTRL, c.KVM_VCPU_TSC_OFFSET)

    def set_tsc_offset(self, offset: int) -> None:
        """Write the TSC offset (u64; negative offsets wrap). KVM also re-syncs the VM's TSC matching."""
        self.set_device_attr_u64(c.KVM_VCPU_TSC_CTRL, c.KVM_VCPU_TSC_OFFSET, offset)

    # --- clocks

    def kvmclock_ctrl(self) -> None:
        """KVM_KVMCLOCK_CTRL: mark the vCPU paused by the host (PVCLOCK_GUEST_STOPPED on next update).

        KVM returns EINVAL when the guest has not enabled kvmclock (api.rst 4.70).
        """
        libc.ioctl(self.fd, ioctls.KVM_KVMCLOCK_CTRL, 0, "KVM_KVMCLOCK_CTRL")

    def get_tsc_khz(self) -> int:
        """KVM_GET_TSC_KHZ: the vCPU's virtual TSC frequency (EIO when the host TSC is unstable)."""
        return libc.ioctl(self.fd, ioctls.KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ")

    def set_tsc_khz(self, khz: int) -> None:
        """KVM_SET_TSC_KHZ: the guest's TSC frequency (hardware scaling, or catch-up when faster)."""
        libc.ioctl(self.fd, ioctls.KVM_SET_TSC_KHZ, khz, "KVM_SET_TSC_KHZ", f"{khz} kHz")


def _msr_stop(indices: Sequence[int], done: int, verb: str) -> str:
    index = indices[done]
    name = c.MSR_NAMES.get(index, "")
    return f"MSR {index:#x}{f' ({name})' if name else ''} refused: {done} of {len(indices)} {verb}"
