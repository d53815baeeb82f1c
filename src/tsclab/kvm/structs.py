"""ctypes layouts of the KVM uapi structs this package passes to ioctls.

Field names, types and order follow ``include/uapi/linux/kvm.h`` and
``arch/x86/include/uapi/asm/kvm.h`` (x86-64); the sizes and offsets are
checked in ``tests/kvm/test_structs.py`` against ``sizeof``/``offsetof``
from those headers. Variable-length structs (``kvm_msrs``,
``kvm_cpuid2``, ``kvm_msr_list``) are a fixed header here; the helpers
below build a buffer of header plus entries.
"""

from __future__ import annotations

import ctypes
from typing import Any

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

KVM_NR_INTERRUPTS = 256  # arch/x86/include/uapi/asm/kvm.h


def sizeof(kind: Any) -> int:
    """``sizeof`` of a ctypes type (typed wrapper for mypy)."""
    return int(ctypes.sizeof(kind))


class KvmClockData(ctypes.Structure):
    """``struct kvm_clock_data`` (KVM_GET_CLOCK / KVM_SET_CLOCK), 48 bytes.

    ``realtime`` and ``host_tsc`` were carved out of the old ``pad[9]`` by
    commit c68dc1b577ea ("KVM: x86: Report host tsc and realtime values in
    KVM_GET_CLOCK", Linux 5.16); they are valid only when ``flags`` has
    ``KVM_CLOCK_REALTIME`` / ``KVM_CLOCK_HOST_TSC``.
    """

    _fields_ = (
        ("clock", u64),
        ("flags", u32),
        ("pad0", u32),
        ("realtime", u64),
        ("host_tsc", u64),
        ("pad", u32 * 4),
    )


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region`` (KVM_SET_USER_MEMORY_REGION)."""

    _fields_ = (
        ("slot", u32),
        ("flags", u32),
        ("guest_phys_addr", u64),
        ("memory_size", u64),
        ("userspace_addr", u64),
    )


class KvmRegs(ctypes.Structure):
    """``struct kvm_regs`` (x86): the general registers, rip and rflags."""

    _fields_ = (
        ("rax", u64),
        ("rbx", u64),
        ("rcx", u64),
        ("rdx", u64),
        ("rsi", u64),
        ("rdi", u64),
        ("rsp", u64),
        ("rbp", u64),
        ("r8", u64),
        ("r9", u64),
        ("r10", u64),
        ("r11", u64),
        ("r12", u64),
        ("r13", u64),
        ("r14", u64),
        ("r15", u64),
        ("rip", u64),
        ("rflags", u64),
    )


class KvmSegment(ctypes.Structure):
    """``struct kvm_segment`` (x86)."""

    _fields_ = (
        ("base", u64),
        ("limit", u32),
        ("selector", u16),
        ("type", u8),
        ("present", u8),
        ("dpl", u8),
        ("db", u8),
        ("s", u8),
        ("l", u8),
        ("g", u8),
        ("avl", u8),
        ("unusable", u8),
        ("padding", u8),
    )


class KvmDtable(ctypes.Structure):
    """``struct kvm_dtable`` (x86): GDTR/IDTR."""

    _fields_ = (("base", u64), ("limit", u16), ("padding", u16 * 3))


class KvmSregs(ctypes.Structure):
    """``struct kvm_sregs`` (x86): segments, descriptor tables, control registers, EFER."""

    _fields_ = (
        ("cs", KvmSegment),
        ("ds", KvmSegment),
        ("es", KvmSegment),
        ("fs", KvmSegment),
        ("gs", KvmSegment),
        ("ss", KvmSegment),
        ("tr", KvmSegment),
        ("ldt", KvmSegment),
        ("gdt", KvmDtable),
        ("idt", KvmDtable),
        ("cr0", u64),
        ("cr2", u64),
        ("cr3", u64),
        ("cr4", u64),
        ("cr8", u64),
        ("efer", u64),
        ("apic_base", u64),
        ("interrupt_bitmap", u64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    )


class KvmMsrEntry(ctypes.Structure):
    """``struct kvm_msr_entry`` (x86)."""

    _fields_ = (("index", u32), ("reserved", u32), ("data", u64))


class KvmMsrsHeader(ctypes.Structure):
    """``struct kvm_msrs`` without its flexible ``entries[]``."""

    _fields_ = (("nmsrs", u32), ("pad", u32))


class KvmMsrListHeader(ctypes.Structure):
    """``struct kvm_msr_list`` without its flexible ``indices[]`` (``__u32`` each)."""

    _fields_ = (("nmsrs", u32),)


class KvmCpuidEntry2(ctypes.Structure):
    """``struct kvm_cpuid_entry2`` (x86)."""

    _fields_ = (
        ("function", u32),
        ("index", u32),
        ("flags", u32),
        ("eax", u32),
        ("ebx", u32),
        ("ecx", u32),
        ("edx", u32),
        ("padding", u32 * 3),
    )


class KvmCpuid2Header(ctypes.Structure):
    """``struct kvm_cpuid2`` without its flexible ``entries[]``."""

    _fields_ = (("nent", u32), ("padding", u32))


class KvmDeviceAttr(ctypes.Structure):
    """``struct kvm_device_attr`` (KVM_{HAS,GET,SET}_DEVICE_ATTR); ``addr`` points at the value."""

    _fields_ = (("flags", u32), ("group", u32), ("attr", u64), ("addr", u64))


# --- struct kvm_run: the fixed head and the exit-reason union members decoded here.


class KvmRunIo(ctypes.Structure):
    """``kvm_run.io`` (KVM_EXIT_IO): the data sits at ``data_offset`` bytes into the run page."""

    _fields_ = (("direction", u8), ("size", u8), ("port", u16), ("count", u32), ("data_offset", u64))


class KvmRunMmio(ctypes.Structure):
    """``kvm_run.mmio`` (KVM_EXIT_MMIO)."""

    _fields_ = (("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8))


class KvmRunFailEntry(ctypes.Structure):
    """``kvm_run.fail_entry`` (KVM_EXIT_FAIL_ENTRY)."""

    _fields_ = (("hardware_entry_failure_reason", u64), ("cpu", u32))


class KvmRunInternal(ctypes.Structure):
    """``kvm_run.internal`` (KVM_EXIT_INTERNAL_ERROR)."""

    _fields_ = (("suberror", u32), ("ndata", u32), ("data", u64 * 16))


class KvmRunHw(ctypes.Structure):
    """``kvm_run.hw`` (KVM_EXIT_UNKNOWN)."""

    _fields_ = (("hardware_exit_reason", u64),)


class KvmRunEx(ctypes.Structure):
    """``kvm_run.ex`` (KVM_EXIT_EXCEPTION)."""

    _fields_ = (("exception", u32), ("error_code", u32))


class KvmRunSystemEvent(ctypes.Structure):
    """``kvm_run.system_event`` (KVM_EXIT_SYSTEM_EVENT): type, ndata, then flags/data[]."""

    _fields_ = (("type", u32), ("ndata", u32), ("data", u64 * 16))


class KvmRunExitUnion(ctypes.Union):
    """The 256-byte exit union of ``struct kvm_run`` (only the members decoded here)."""

    _fields_ = (
        ("hw", KvmRunHw),
        ("fail_entry", KvmRunFailEntry),
        ("ex", KvmRunEx),
        ("io", KvmRunIo),
        ("mmio", KvmRunMmio),
        ("internal", KvmRunInternal),
        ("system_event", KvmRunSystemEvent),
        ("padding", ctypes.c_char * 256),
    )


class KvmRun(ctypes.Structure):
    """The head of ``struct kvm_run`` up to and including the exit union (288 bytes).

    The vCPU fd's mmap is larger (KVM_GET_VCPU_MMAP_SIZE: sync regs, then
    the PIO data page); only this head is viewed through the struct.
    """

    _fields_ = (
        ("request_interrupt_window", u8),
        ("immediate_exit", u8),
        ("padding1", u8 * 6),
        ("exit_reason", u32),
        ("ready_for_interrupt_injection", u8),
        ("if_flag", u8),
        ("flags", u16),
        ("cr8", u64),
        ("apic_base", u64),
        ("exit", KvmRunExitUnion),
    )


def msrs_buffer(entries: list[tuple[int, int]]) -> ctypes.Array[ctypes.c_char]:
    """A ``struct kvm_msrs`` with ``entries`` as (index, data) pairs, as a byte buffer."""
    header = KvmMsrsHeader(nmsrs=len(entries))
    buf = ctypes.create_string_buffer(sizeof(KvmMsrsHeader) + len(entries) * sizeof(KvmMsrEntry))
    ctypes.memmove(buf, ctypes.addressof(header), sizeof(KvmMsrsHeader))
    for i, (index, data) in enumerate(entries):
        entry = msr_entry_at(buf, i)
        entry.index = index
        entry.data = data
    return buf


def msr_entry_at(buf: ctypes.Array[ctypes.c_char], i: int) -> KvmMsrEntry:
    """A view of entry ``i`` of a ``struct kvm_msrs`` buffer."""
    return KvmMsrEntry.from_buffer(buf, sizeof(KvmMsrsHeader) + i * sizeof(KvmMsrEntry))


def cpuid_buffer(capacity: int) -> ctypes.Array[ctypes.c_char]:
    """A ``struct kvm_cpuid2`` with room for ``capacity`` entries and ``nent = capacity``."""
    buf = ctypes.create_string_buffer(sizeof(KvmCpuid2Header) + capacity * sizeof(KvmCpuidEntry2))
    KvmCpuid2Header.from_buffer(buf).nent = capacity
    return buf


def cpuid_entry_at(buf: ctypes.Array[ctypes.c_char], i: int) -> KvmCpuidEntry2:
    """A view of entry ``i`` of a ``struct kvm_cpuid2`` buffer."""
    return KvmCpuidEntry2.from_buffer(buf, sizeof(KvmCpuid2Header) + i * sizeof(KvmCpuidEntry2))
