"""ioctl request numbers of ``/dev/kvm`` and its VM and vCPU fds.

Each number is built here from the ``_IO``/``_IOR``/``_IOW``/``_IOWR``
encoding of ``include/uapi/asm-generic/ioctl.h`` (x86: 8 bits number,
8 bits type, 14 bits size, 2 bits direction; ``_IOC_WRITE = 1``,
``_IOC_READ = 2``) with the type ``KVMIO = 0xAE`` and the numbers and
argument structs that ``include/uapi/linux/kvm.h`` gives each ioctl.
The resulting values are checked in ``tests/kvm/test_ioctls.py`` against
the numbers the C preprocessor produces from those headers (Linux 6.1
uapi, Debian ``linux-libc-dev``); the numbers are ABI and do not change.

Which fd each ioctl is issued on (system, VM or vCPU) is in
``Documentation/virt/kvm/api.rst`` under each ioctl's "Type:" line.
"""

from __future__ import annotations

from tsclab.kvm import structs

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2

KVMIO = 0xAE


def ioc(direction: int, kind: int, number: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)`` of ``include/uapi/asm-generic/ioctl.h``."""
    if not 0 <= size < 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument size {size} does not fit {_IOC_SIZEBITS} bits")
    return (
        (direction << _IOC_DIRSHIFT)
        | (size << _IOC_SIZESHIFT)
        | (kind << _IOC_TYPESHIFT)
        | (number << _IOC_NRSHIFT)
    )


def io(number: int) -> int:
    """``_IO(KVMIO, nr)``: no argument struct (an integer argument or none)."""
    return ioc(_IOC_NONE, KVMIO, number, 0)


def ior(number: int, size: int) -> int:
    """``_IOR(KVMIO, nr, type)``: the kernel writes a struct of ``size`` bytes."""
    return ioc(_IOC_READ, KVMIO, number, size)


def iow(number: int, size: int) -> int:
    """``_IOW(KVMIO, nr, type)``: the kernel reads a struct of ``size`` bytes."""
    return ioc(_IOC_WRITE, KVMIO, number, size)


def iowr(number: int, size: int) -> int:
    """``_IOWR(KVMIO, nr, type)``: read and written."""
    return ioc(_IOC_READ | _IOC_WRITE, KVMIO, number, size)


# System fd (/dev/kvm).
KVM_GET_API_VERSION = io(0x00)
KVM_CREATE_VM = io(0x01)
KVM_GET_MSR_INDEX_LIST = iowr(0x02, structs.sizeof(structs.KvmMsrListHeader))
KVM_CHECK_EXTENSION = io(0x03)  # also accepted on a VM fd (KVM_CAP_CHECK_EXTENSION_VM)
KVM_GET_VCPU_MMAP_SIZE = io(0x04)
KVM_GET_SUPPORTED_CPUID = iowr(0x05, structs.sizeof(structs.KvmCpuid2Header))

# VM fd.
KVM_CREATE_VCPU = io(0x41)
KVM_SET_USER_MEMORY_REGION = iow(0x46, structs.sizeof(structs.KvmUserspaceMemoryRegion))
KVM_SET_TSS_ADDR = io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = iow(0x48, 8)  # __u64
KVM_SET_CLOCK = iow(0x7B, structs.sizeof(structs.KvmClockData))
KVM_GET_CLOCK = ior(0x7C, structs.sizeof(structs.KvmClockData))

# vCPU fd (KVM_SET/GET_TSC_KHZ: also a VM ioctl with KVM_CAP_VM_TSC_CONTROL).
KVM_RUN = io(0x80)
KVM_GET_REGS = ior(0x81, structs.sizeof(structs.KvmRegs))
KVM_SET_REGS = iow(0x82, structs.sizeof(structs.KvmRegs))
KVM_GET_SREGS = ior(0x83, structs.sizeof(structs.KvmSregs))
KVM_SET_SREGS = iow(0x84, structs.sizeof(structs.KvmSregs))
KVM_GET_MSRS = iowr(0x88, structs.sizeof(structs.KvmMsrsHeader))
KVM_SET_MSRS = iow(0x89, structs.sizeof(structs.KvmMsrsHeader))
KVM_SET_CPUID2 = iow(0x90, structs.sizeof(structs.KvmCpuid2Header))
KVM_GET_CPUID2 = iowr(0x91, structs.sizeof(structs.KvmCpuid2Header))
KVM_SET_TSC_KHZ = io(0xA2)
KVM_GET_TSC_KHZ = io(0xA3)
KVM_KVMCLOCK_CTRL = io(0xAD)
KVM_SET_DEVICE_ATTR = iow(0xE1, structs.sizeof(structs.KvmDeviceAttr))
KVM_GET_DEVICE_ATTR = iow(0xE2, structs.sizeof(structs.KvmDeviceAttr))
KVM_HAS_DEVICE_ATTR = iow(0xE3, structs.sizeof(structs.KvmDeviceAttr))
