"""The system fd, ``/dev/kvm``: API version, capabilities, supported CPUID, new VMs.

One method per ioctl (style of rust-vmm ``kvm-ioctls`` ``Kvm``);
semantics per ``Documentation/virt/kvm/api.rst``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from types import TracebackType

from tsclab.kvm import constants as c
from tsclab.kvm import ioctls, libc, structs
from tsclab.kvm.cpuid import CpuidEntry
from tsclab.kvm.errors import KvmError, KvmUnavailableError
from tsclab.kvm.vm import Vm

DEVICE = "/dev/kvm"


class Kvm:
    """An open ``/dev/kvm``. VMs it creates are independent fds (each closed by its :class:`Vm`)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def open(cls, path: str = DEVICE) -> Kvm:
        """Open ``path`` read-write and check the API version; :class:`KvmUnavailableError` says why not."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise KvmUnavailableError(f"{path}: {err.strerror}") from None
        kvm = cls(fd)
        try:
            version = kvm.get_api_version()
        except KvmError as err:
            kvm.close()
            raise KvmUnavailableError(f"{path} is not a KVM device: {err}") from None
        if version != c.KVM_API_VERSION:
            kvm.close()
            raise KvmUnavailableError(f"{path}: KVM API version {version}, expected {c.KVM_API_VERSION}")
        return kvm

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError("/dev/kvm is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> Kvm:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_api_version(self) -> int:
        """KVM_GET_API_VERSION (12 on every KVM since 2.6.22)."""
        return libc.ioctl(self.fd, ioctls.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")

    def check_extension(self, capability: int) -> int:
        """KVM_CHECK_EXTENSION: 0 if unsupported, else 1 or a capability-specific value."""
        name = c.CAPABILITY_NAMES.get(capability, str(capability))
        return libc.ioctl(self.fd, ioctls.KVM_CHECK_EXTENSION, capability, "KVM_CHECK_EXTENSION", name)

    def get_vcpu_mmap_size(self) -> int:
        """KVM_GET_VCPU_MMAP_SIZE: bytes to mmap from a vCPU fd (kvm_run + PIO page + ...)."""
        return libc.ioctl(self.fd, ioctls.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")

    def create_vm(self, vm_type: int = 0) -> Vm:
        """KVM_CREATE_VM (type 0: the default x86 VM)."""
        size = self.get_vcpu_mmap_size()
        fd = libc.ioctl(self.fd, ioctls.KVM_CREATE_VM, vm_type, "KVM_CREATE_VM")
        os.set_inheritable(fd, False)
        return Vm(fd, size)

    def get_supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        """KVM_GET_SUPPORTED_CPUID: every leaf KVM can offer a guest (grown on E2BIG)."""
        capacity = 128
        while True:
            buf = structs.cpuid_buffer(capacity)
            try:
                libc.ioctl_ptr(self.fd, ioctls.KVM_GET_SUPPORTED_CPUID, buf, "KVM_GET_SUPPORTED_CPUID")
            except KvmError as err:
                if err.errno == errno.E2BIG and capacity < 4096:
                    capacity *= 2
                    continue
                raise
            count = int(structs.KvmCpuid2Header.from_buffer(buf).nent)
            return tuple(_entry(structs.cpuid_entry_at(buf, i)) for i in range(count))

    def get_msr_index_list(self) -> tuple[int, ...]:
        """KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves/restores for a vCPU (grown on E2BIG)."""
        capacity = 256
        while True:
            header = structs.sizeof(structs.KvmMsrListHeader)
            buf = ctypes.create_string_buffer(header + 4 * capacity)
            structs.KvmMsrListHeader.from_buffer(buf).nmsrs = capacity
            try:
                libc.ioctl_ptr(self.fd, ioctls.KVM_GET_MSR_INDEX_LIST, buf, "KVM_GET_MSR_INDEX_LIST")
            except KvmError as err:
                if err.errno == errno.E2BIG and capacity < 65536:
                    capacity = max(capacity * 2, int(structs.KvmMsrListHeader.from_buffer(buf).nmsrs))
                    continue
                raise
            count = int(structs.KvmMsrListHeader.from_buffer(buf).nmsrs)
            return tuple((ctypes.c_uint32 * count).from_buffer(buf, header))


def _entry(raw: structs.KvmCpuidEntry2) -> CpuidEntry:
    return CpuidEntry(
        int(raw.function),
        int(raw.index),
        int(raw.flags),
        int(raw.eax),
        int(raw.ebx),
        int(raw.ecx),
        int(raw.edx),
    )
