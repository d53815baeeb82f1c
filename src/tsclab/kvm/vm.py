"""A VM fd: guest memory, vCPUs, and the VM-wide clock (kvmclock) and TSC frequency.

One method per ioctl, named after it (style of rust-vmm ``kvm-ioctls``
``VmFd``); semantics per ``Documentation/virt/kvm/api.rst``. The VM owns
the vCPUs and guest memory it creates and closes them with itself:
vCPUs first, then the VM fd, then the memory (KVM pins nothing once the
VM is gone).
"""

from __future__ import annotations

import ctypes
import os
from types import TracebackType

from tsclab.kvm import ioctls, libc, structs
from tsclab.kvm.clock import ClockData
from tsclab.kvm.memory import GuestMemory
from tsclab.kvm.vcpu import Vcpu


class Vm:
    """An open VM. Created by :meth:`tsclab.kvm.system.Kvm.create_vm`."""

    def __init__(self, fd: int, vcpu_mmap_size: int) -> None:
        self._fd: int | None = fd
        self._vcpu_mmap_size = vcpu_mmap_size
        self.vcpus: list[Vcpu] = []
        self.memory: list[GuestMemory] = []

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError("the VM is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Close the vCPUs, the VM fd, then unmap guest memory (once; errors re-raised after all)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        errors: list[BaseException] = []
        for vcpu in reversed(self.vcpus):
            try:
                vcpu.close()
            except Exception as err:  # keep closing the rest
                errors.append(err)
        try:
            os.close(fd)
        except OSError as err:
            errors.append(err)
        for memory in self.memory:
            try:
                memory.close()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def __enter__(self) -> Vm:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- capabilities

    def check_extension(self, capability: int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd (KVM_CAP_CHECK_EXTENSION_VM): this VM's answer."""
        return libc.ioctl(self.fd, ioctls.KVM_CHECK_EXTENSION, capability, "KVM_CHECK_EXTENSION")

    # --- memory and vCPUs

    def set_user_memory_region(
        self, slot: int, guest_phys_addr: int, memory_size: int, userspace_addr: int, flags: int = 0
    ) -> None:
        """KVM_SET_USER_MEMORY_REGION: back guest-physical memory with host memory (size 0 deletes)."""
        region = structs.KvmUserspaceMemoryRegion(
            slot=slot,
            flags=flags,
            guest_phys_addr=guest_phys_addr,
            memory_size=memory_size,
            userspace_addr=userspace_addr,
        )
        libc.ioctl(
            self.fd,
            ioctls.KVM_SET_USER_MEMORY_REGION,
            ctypes.addressof(region),
            "KVM_SET_USER_MEMORY_REGION",
            f"slot {slot}: {memory_size:#x} bytes at guest-physical {guest_phys_addr:#x}",
        )

    def add_memory(self, size: int, base: int = 0) -> GuestMemory:
        """Map ``size`` bytes of anonymous memory and give it to the guest at ``base`` (next free slot)."""
        memory = GuestMemory(size, base)
        try:
            self.set_user_memory_region(len(self.memory), base, size, memory.address)
        except BaseException:
            memory.close()
            raise
        self.memory.append(memory)
        return memory

    def create_vcpu(self, vcpu_id: int | None = None) -> Vcpu:
        """KVM_CREATE_VCPU, and mmap its ``kvm_run``; the VM owns the vCPU."""
        vid = len(self.vcpus) if vcpu_id is None else vcpu_id
        fd = libc.ioctl(self.fd, ioctls.KVM_CREATE_VCPU, vid, "KVM_CREATE_VCPU", f"vCPU {vid}")
        os.set_inheritable(fd, False)
        vcpu = Vcpu(fd, vid, self._vcpu_mmap_size)
        self.vcpus.append(vcpu)
        return vcpu

    def set_tss_addr(self, address: int) -> None:
        """KVM_SET_TSS_ADDR: three guest-physical pages (below 4 GiB, outside any slot) Intel VMX
        needs to emulate real mode without unrestricted guest."""
        libc.ioctl(self.fd, ioctls.KVM_SET_TSS_ADDR, address, "KVM_SET_TSS_ADDR", f"{address:#x}")

    def set_identity_map_addr(self, address: int) -> None:
        """KVM_SET_IDENTITY_MAP_ADDR: the page for VMX's real-mode identity map (must precede vCPUs)."""
        value = ctypes.c_uint64(address)
        libc.ioctl(
            self.fd,
            ioctls.KVM_SET_IDENTITY_MAP_ADDR,
            ctypes.addressof(value),
            "KVM_SET_IDENTITY_MAP_ADDR",
            f"{address:#x}",
        )

    # --- clocks

    def get_clock(self) -> ClockData:
        """KVM_GET_CLOCK: kvmclock now, with host realtime and TSC of the same instant when flagged."""
        data = structs.KvmClockData()
        libc.ioctl_ptr(self.fd, ioctls.KVM_GET_CLOCK, data, "KVM_GET_CLOCK")
        return ClockData.from_struct(data)

    def set_clock(self, data: ClockData) -> None:
        """KVM_SET_CLOCK: set kvmclock to ``data.clock``; with KVM_CLOCK_REALTIME, plus the realtime
        that elapsed since ``data.realtime`` (if positive). Unknown flag bits give EINVAL (see
        :class:`~tsclab.kvm.clock.ClockData` for which bits each kernel accepts)."""
        raw = data.to_struct()
        libc.ioctl(
            self.fd,
            ioctls.KVM_SET_CLOCK,
            ctypes.addressof(raw),
            "KVM_SET_CLOCK",
            f"clock {data.clock} flags {data.flag_names}",
        )

    def get_tsc_khz(self) -> int:
        """KVM_GET_TSC_KHZ on the VM fd (KVM_CAP_VM_TSC_CONTROL): the default for new vCPUs."""
        return libc.ioctl(self.fd, ioctls.KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ", "on the VM fd")

    def set_tsc_khz(self, khz: int) -> None:
        """KVM_SET_TSC_KHZ on the VM fd (KVM_CAP_VM_TSC_CONTROL): only before any vCPU exists."""
        libc.ioctl(self.fd, ioctls.KVM_SET_TSC_KHZ, khz, "KVM_SET_TSC_KHZ", f"{khz} kHz on the VM fd")
