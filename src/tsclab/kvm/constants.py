"""Numbers of the KVM ABI this package uses: capabilities, flags, exit reasons, MSRs, CPUID bits.

Sources (values checked against the Linux 6.1 uapi headers in
``tests/kvm/test_constants.py``):

* ``include/uapi/linux/kvm.h``: ``KVM_CAP_*``, ``KVM_CLOCK_*``, ``KVM_EXIT_*``,
  ``KVM_INTERNAL_ERROR_*``, ``KVM_SYSTEM_EVENT_*``;
* ``arch/x86/include/uapi/asm/kvm.h``: ``KVM_VCPU_TSC_CTRL``/``KVM_VCPU_TSC_OFFSET``;
* ``arch/x86/include/uapi/asm/kvm_para.h``: the KVM paravirt CPUID leaves,
  feature bits and MSRs;
* ``arch/x86/include/asm/msr-index.h``: architectural MSR numbers;
* ``arch/x86/include/asm/pvclock-abi.h``: the pvclock flag bits.
"""

from __future__ import annotations

KVM_API_VERSION = 12  # KVM_GET_API_VERSION must return this (api.rst 4.1)

# --- KVM_CHECK_EXTENSION capabilities.
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_SET_IDENTITY_MAP_ADDR = 37
KVM_CAP_ADJUST_CLOCK = 39  # returns the KVM_CLOCK_* flags KVM_GET/SET_CLOCK support
KVM_CAP_TSC_CONTROL = 60  # vCPU KVM_SET_TSC_KHZ with hardware TSC scaling
KVM_CAP_GET_TSC_KHZ = 61
KVM_CAP_TSC_DEADLINE_TIMER = 72
KVM_CAP_KVMCLOCK_CTRL = 76
KVM_CAP_CHECK_EXTENSION_VM = 105
KVM_CAP_VCPU_ATTRIBUTES = 127
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_VM_TSC_CONTROL = 214  # KVM_SET/GET_TSC_KHZ accepted on the VM fd

CAPABILITY_NAMES: dict[int, str] = {
    KVM_CAP_USER_MEMORY: "KVM_CAP_USER_MEMORY",
    KVM_CAP_SET_TSS_ADDR: "KVM_CAP_SET_TSS_ADDR",
    KVM_CAP_EXT_CPUID: "KVM_CAP_EXT_CPUID",
    KVM_CAP_SET_IDENTITY_MAP_ADDR: "KVM_CAP_SET_IDENTITY_MAP_ADDR",
    KVM_CAP_ADJUST_CLOCK: "KVM_CAP_ADJUST_CLOCK",
    KVM_CAP_TSC_CONTROL: "KVM_CAP_TSC_CONTROL",
    KVM_CAP_GET_TSC_KHZ: "KVM_CAP_GET_TSC_KHZ",
    KVM_CAP_TSC_DEADLINE_TIMER: "KVM_CAP_TSC_DEADLINE_TIMER",
    KVM_CAP_KVMCLOCK_CTRL: "KVM_CAP_KVMCLOCK_CTRL",
    KVM_CAP_CHECK_EXTENSION_VM: "KVM_CAP_CHECK_EXTENSION_VM",
    KVM_CAP_VCPU_ATTRIBUTES: "KVM_CAP_VCPU_ATTRIBUTES",
    KVM_CAP_IMMEDIATE_EXIT: "KVM_CAP_IMMEDIATE_EXIT",
    KVM_CAP_VM_TSC_CONTROL: "KVM_CAP_VM_TSC_CONTROL",
}

# --- struct kvm_clock_data flags. Bit 0 is never used: KVM_CHECK_EXTENSION
# returned 1 for KVM_CAP_ADJUST_CLOCK before the capability carried flags.
KVM_CLOCK_TSC_STABLE = 1 << 1
KVM_CLOCK_REALTIME = 1 << 2
KVM_CLOCK_HOST_TSC = 1 << 3

CLOCK_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (KVM_CLOCK_TSC_STABLE, "TSC_STABLE"),
    (KVM_CLOCK_REALTIME, "REALTIME"),
    (KVM_CLOCK_HOST_TSC, "HOST_TSC"),
)

# --- vCPU device attributes (arch/x86/include/uapi/asm/kvm.h, Linux 5.16+).
KVM_VCPU_TSC_CTRL = 0  # group: the timestamp counter
KVM_VCPU_TSC_OFFSET = 0  # attribute: the u64 TSC offset (guest_tsc = host_tsc + offset)

# --- KVM_RUN exit reasons.
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30
KVM_EXIT_X86_BUS_LOCK = 33
KVM_EXIT_NOTIFY = 37

EXIT_REASON_NAMES: dict[int, str] = {
    KVM_EXIT_UNKNOWN: "KVM_EXIT_UNKNOWN",
    KVM_EXIT_EXCEPTION: "KVM_EXIT_EXCEPTION",
    KVM_EXIT_IO: "KVM_EXIT_IO",
    KVM_EXIT_HYPERCALL: "KVM_EXIT_HYPERCALL",
    KVM_EXIT_DEBUG: "KVM_EXIT_DEBUG",
    KVM_EXIT_HLT: "KVM_EXIT_HLT",
    KVM_EXIT_MMIO: "KVM_EXIT_MMIO",
    KVM_EXIT_IRQ_WINDOW_OPEN: "KVM_EXIT_IRQ_WINDOW_OPEN",
    KVM_EXIT_SHUTDOWN: "KVM_EXIT_SHUTDOWN",
    KVM_EXIT_FAIL_ENTRY: "KVM_EXIT_FAIL_ENTRY",
    KVM_EXIT_INTR: "KVM_EXIT_INTR",
    KVM_EXIT_NMI: "KVM_EXIT_NMI",
    KVM_EXIT_INTERNAL_ERROR: "KVM_EXIT_INTERNAL_ERROR",
    KVM_EXIT_SYSTEM_EVENT: "KVM_EXIT_SYSTEM_EVENT",
    KVM_EXIT_X86_RDMSR: "KVM_EXIT_X86_RDMSR",
    KVM_EXIT_X86_WRMSR: "KVM_EXIT_X86_WRMSR",
    KVM_EXIT_X86_BUS_LOCK: "KVM_EXIT_X86_BUS_LOCK",
    KVM_EXIT_NOTIFY: "KVM_EXIT_NOTIFY",
}

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

INTERNAL_ERROR_NAMES: dict[int, str] = {
    1: "KVM_INTERNAL_ERROR_EMULATION",
    2: "KVM_INTERNAL_ERROR_SIMUL_EX",
    3: "KVM_INTERNAL_ERROR_DELIVERY_EV",
    4: "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON",
}

SYSTEM_EVENT_NAMES: dict[int, str] = {
    1: "KVM_SYSTEM_EVENT_SHUTDOWN",
    2: "KVM_SYSTEM_EVENT_RESET",
    3: "KVM_SYSTEM_EVENT_CRASH",
    4: "KVM_SYSTEM_EVENT_WAKEUP",
    5: "KVM_SYSTEM_EVENT_SUSPEND",
}

# --- MSRs.
MSR_IA32_TSC = 0x10
MSR_IA32_TSC_ADJUST = 0x3B
MSR_KVM_WALL_CLOCK_NEW = 0x4B564D00
MSR_KVM_SYSTEM_TIME_NEW = 0x4B564D01  # guest-physical address of a pvclock_vcpu_time_info | enable
KVM_MSR_ENABLED = 1  # bit 0 of MSR_KVM_SYSTEM_TIME(_NEW): kvmclock on

MSR_NAMES: dict[int, str] = {
    MSR_IA32_TSC: "IA32_TSC",
    MSR_IA32_TSC_ADJUST: "IA32_TSC_ADJUST",
    MSR_KVM_WALL_CLOCK_NEW: "KVM_WALL_CLOCK_NEW",
    MSR_KVM_SYSTEM_TIME_NEW: "KVM_SYSTEM_TIME_NEW",
}

# --- KVM paravirt CPUID (kvm_para.h). The base leaf may move to
# 0x40000100 when Hyper-V enlightenments sit at 0x40000000; KVM's
# KVM_GET_SUPPORTED_CPUID reports it at 0x40000000.
KVM_CPUID_SIGNATURE = 0x40000000
KVM_CPUID_FEATURES = 0x40000001
KVM_FEATURE_CLOCKSOURCE = 0  # MSR_KVM_SYSTEM_TIME (old MSRs)
KVM_FEATURE_CLOCKSOURCE2 = 3  # MSR_KVM_SYSTEM_TIME_NEW
KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 24  # the guest may trust PVCLOCK_TSC_STABLE_BIT

# --- pvclock_vcpu_time_info.flags (arch/x86/include/asm/pvclock-abi.h).
PVCLOCK_TSC_STABLE_BIT = 1 << 0
PVCLOCK_GUEST_STOPPED = 1 << 1


def clock_flag_names(flags: int) -> str:
    """``KVM_CLOCK_*`` flag bits as ``REALTIME|HOST_TSC`` (``0`` if none; unknown bits in hex)."""
    names = [name for bit, name in CLOCK_FLAG_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in CLOCK_FLAG_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
