"""ioctl request numbers against the values the C preprocessor gives from the uapi headers.

Expected values: ``printf("%#lx", KVM_...)`` compiled against
``include/uapi/linux/kvm.h`` (Linux 6.1 uapi, Debian linux-libc-dev
6.1.187) on x86-64. The numbers are ABI: unchanged in every later kernel.
"""

from __future__ import annotations

import pytest

from tsclab.kvm import ioctls

FROM_HEADERS = {
    "KVM_GET_API_VERSION": 0xAE00,
    "KVM_CREATE_VM": 0xAE01,
    "KVM_GET_MSR_INDEX_LIST": 0xC004AE02,
    "KVM_CHECK_EXTENSION": 0xAE03,
    "KVM_GET_VCPU_MMAP_SIZE": 0xAE04,
    "KVM_GET_SUPPORTED_CPUID": 0xC008AE05,
    "KVM_CREATE_VCPU": 0xAE41,
    "KVM_SET_USER_MEMORY_REGION": 0x4020AE46,
    "KVM_SET_TSS_ADDR": 0xAE47,
    "KVM_SET_IDENTITY_MAP_ADDR": 0x4008AE48,
    "KVM_SET_CLOCK": 0x4030AE7B,
    "KVM_GET_CLOCK": 0x8030AE7C,
    "KVM_RUN": 0xAE80,
    "KVM_GET_REGS": 0x8090AE81,
    "KVM_SET_REGS": 0x4090AE82,
    "KVM_GET_SREGS": 0x8138AE83,
    "KVM_SET_SREGS": 0x4138AE84,
    "KVM_GET_MSRS": 0xC008AE88,
    "KVM_SET_MSRS": 0x4008AE89,
    "KVM_SET_CPUID2": 0x4008AE90,
    "KVM_GET_CPUID2": 0xC008AE91,
    "KVM_SET_TSC_KHZ": 0xAEA2,
    "KVM_GET_TSC_KHZ": 0xAEA3,
    "KVM_KVMCLOCK_CTRL": 0xAEAD,
    "KVM_SET_DEVICE_ATTR": 0x4018AEE1,
    "KVM_GET_DEVICE_ATTR": 0x4018AEE2,
    "KVM_HAS_DEVICE_ATTR": 0x4018AEE3,
}


@pytest.mark.parametrize(("name", "number"), sorted(FROM_HEADERS.items()))
def test_request_number_matches_the_header(name: str, number: int) -> None:
    assert getattr(ioctls, name) == number, f"{name} = {getattr(ioctls, name):#x}, header says {number:#x}"


def test_every_request_defined_here_is_checked() -> None:
    defined = {name for name in dir(ioctls) if name.startswith("KVM_")}
    assert defined == set(FROM_HEADERS)


def test_encoding_fields() -> None:
    # _IOC: dir in bits 31-30, size 29-16, type 15-8, nr 7-0 (include/uapi/asm-generic/ioctl.h)
    assert ioctls.ioc(3, 0xAE, 0x05, 8) == 0xC008AE05
    assert ioctls.io(0x80) == 0xAE80
    with pytest.raises(ValueError, match="does not fit"):
        ioctls.ioc(1, 0xAE, 0, 1 << 14)
