"""Capability numbers, flags, exit reasons, MSRs and CPUID bits against the uapi headers (Linux 6.1)."""

from __future__ import annotations

from tsclab.kvm import constants as c


def test_capabilities() -> None:
    # include/uapi/linux/kvm.h: #define KVM_CAP_...
    assert (c.KVM_CAP_USER_MEMORY, c.KVM_CAP_SET_TSS_ADDR, c.KVM_CAP_EXT_CPUID) == (3, 4, 7)
    assert (c.KVM_CAP_SET_IDENTITY_MAP_ADDR, c.KVM_CAP_ADJUST_CLOCK) == (37, 39)
    assert (c.KVM_CAP_TSC_CONTROL, c.KVM_CAP_GET_TSC_KHZ, c.KVM_CAP_TSC_DEADLINE_TIMER) == (60, 61, 72)
    assert (c.KVM_CAP_KVMCLOCK_CTRL, c.KVM_CAP_CHECK_EXTENSION_VM, c.KVM_CAP_VCPU_ATTRIBUTES) == (
        76,
        105,
        127,
    )
    assert (c.KVM_CAP_IMMEDIATE_EXIT, c.KVM_CAP_VM_TSC_CONTROL) == (136, 214)


def test_clock_flags() -> None:
    # "Do not use 1, KVM_CHECK_EXTENSION returned it before we had flags."
    assert (c.KVM_CLOCK_TSC_STABLE, c.KVM_CLOCK_REALTIME, c.KVM_CLOCK_HOST_TSC) == (2, 4, 8)
    assert c.clock_flag_names(14) == "TSC_STABLE|REALTIME|HOST_TSC"
    assert c.clock_flag_names(0) == "0"
    assert c.clock_flag_names(0x31) == "0x31"


def test_exit_reasons() -> None:
    assert (c.KVM_EXIT_UNKNOWN, c.KVM_EXIT_EXCEPTION, c.KVM_EXIT_IO, c.KVM_EXIT_HLT) == (0, 1, 2, 5)
    assert (c.KVM_EXIT_MMIO, c.KVM_EXIT_SHUTDOWN, c.KVM_EXIT_FAIL_ENTRY, c.KVM_EXIT_INTR) == (6, 8, 9, 10)
    assert (c.KVM_EXIT_INTERNAL_ERROR, c.KVM_EXIT_SYSTEM_EVENT) == (17, 24)
    assert (c.KVM_EXIT_IO_IN, c.KVM_EXIT_IO_OUT) == (0, 1)


def test_x86_attributes_msrs_and_cpuid() -> None:
    # arch/x86/include/uapi/asm/kvm.h, kvm_para.h; arch/x86/include/asm/msr-index.h
    assert (c.KVM_VCPU_TSC_CTRL, c.KVM_VCPU_TSC_OFFSET) == (0, 0)
    assert (c.MSR_IA32_TSC, c.MSR_IA32_TSC_ADJUST) == (0x10, 0x3B)
    assert (c.MSR_KVM_WALL_CLOCK_NEW, c.MSR_KVM_SYSTEM_TIME_NEW, c.KVM_MSR_ENABLED) == (
        0x4B564D00,
        0x4B564D01,
        1,
    )
    assert (c.KVM_CPUID_SIGNATURE, c.KVM_CPUID_FEATURES) == (0x40000000, 0x40000001)
    assert (c.KVM_FEATURE_CLOCKSOURCE2, c.KVM_FEATURE_CLOCKSOURCE_STABLE_BIT) == (3, 24)
    assert (c.PVCLOCK_TSC_STABLE_BIT, c.PVCLOCK_GUEST_STOPPED) == (1, 2)
