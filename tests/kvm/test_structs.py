"""Struct sizes and field offsets against ``sizeof``/``offsetof`` from the uapi headers.

Expected values compiled from ``include/uapi/linux/kvm.h`` and
``arch/x86/include/uapi/asm/kvm.h`` (Linux 6.1 uapi, x86-64);
``pvclock_vcpu_time_info`` from ``arch/x86/include/asm/pvclock-abi.h``
("32 bytes", packed).
"""

from __future__ import annotations

import ctypes

import pytest

from tsclab.kvm import structs
from tsclab.kvm.pvclock import PVCLOCK_SIZE, PvclockTimeInfo

SIZES = {
    structs.KvmClockData: 48,
    structs.KvmUserspaceMemoryRegion: 32,
    structs.KvmRegs: 144,
    structs.KvmSregs: 312,
    structs.KvmSegment: 24,
    structs.KvmDtable: 16,
    structs.KvmMsrEntry: 16,
    structs.KvmMsrsHeader: 8,
    structs.KvmMsrListHeader: 4,
    structs.KvmCpuidEntry2: 40,
    structs.KvmCpuid2Header: 8,
    structs.KvmDeviceAttr: 24,
}

OFFSETS = [
    (structs.KvmClockData, "clock", 0),
    (structs.KvmClockData, "flags", 8),
    (structs.KvmClockData, "realtime", 16),
    (structs.KvmClockData, "host_tsc", 24),
    (structs.KvmUserspaceMemoryRegion, "guest_phys_addr", 8),
    (structs.KvmUserspaceMemoryRegion, "memory_size", 16),
    (structs.KvmUserspaceMemoryRegion, "userspace_addr", 24),
    (structs.KvmRegs, "rip", 128),
    (structs.KvmRegs, "rflags", 136),
    (structs.KvmSregs, "ldt", 168),
    (structs.KvmSregs, "gdt", 192),
    (structs.KvmSregs, "idt", 208),
    (structs.KvmSregs, "cr0", 224),
    (structs.KvmSregs, "cr8", 256),
    (structs.KvmSregs, "efer", 264),
    (structs.KvmSregs, "apic_base", 272),
    (structs.KvmSregs, "interrupt_bitmap", 280),
    (structs.KvmSegment, "limit", 8),
    (structs.KvmSegment, "selector", 12),
    (structs.KvmSegment, "type", 14),
    (structs.KvmSegment, "l", 19),
    (structs.KvmSegment, "padding", 23),
    (structs.KvmMsrEntry, "data", 8),
    (structs.KvmCpuidEntry2, "flags", 8),
    (structs.KvmCpuidEntry2, "eax", 12),
    (structs.KvmCpuidEntry2, "padding", 28),
    (structs.KvmDeviceAttr, "group", 4),
    (structs.KvmDeviceAttr, "attr", 8),
    (structs.KvmDeviceAttr, "addr", 16),
    (structs.KvmRun, "immediate_exit", 1),
    (structs.KvmRun, "exit_reason", 8),
    (structs.KvmRun, "ready_for_interrupt_injection", 12),
    (structs.KvmRun, "cr8", 16),
    (structs.KvmRun, "apic_base", 24),
    (structs.KvmRun, "exit", 32),
]

# Offsets inside struct kvm_run's exit union (the header's offsetof(struct kvm_run, io.port) etc.,
# less the union's offset 32).
UNION_OFFSETS = [
    (structs.KvmRunIo, "direction", 0),
    (structs.KvmRunIo, "size", 1),
    (structs.KvmRunIo, "port", 2),
    (structs.KvmRunIo, "count", 4),
    (structs.KvmRunIo, "data_offset", 8),
    (structs.KvmRunMmio, "data", 8),
    (structs.KvmRunMmio, "len", 16),
    (structs.KvmRunMmio, "is_write", 20),
    (structs.KvmRunFailEntry, "cpu", 8),
    (structs.KvmRunInternal, "ndata", 4),
    (structs.KvmRunInternal, "data", 8),
    (structs.KvmRunEx, "error_code", 4),
]


@pytest.mark.parametrize(("kind", "size"), SIZES.items(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_size(kind: type, size: int) -> None:
    assert ctypes.sizeof(kind) == size


@pytest.mark.parametrize(("kind", "name", "offset"), OFFSETS + UNION_OFFSETS)
def test_offset(kind: type, name: str, offset: int) -> None:
    assert getattr(kind, name).offset == offset


def test_kvm_run_head_ends_where_kvm_valid_regs_starts() -> None:
    # offsetof(struct kvm_run, kvm_valid_regs) == 288: the exit union is 256 bytes from 32.
    assert ctypes.sizeof(structs.KvmRun) == 288


def test_msrs_buffer_holds_its_entries() -> None:
    buf = structs.msrs_buffer([(0x10, 1), (0x4B564D01, 0x5001)])
    assert ctypes.sizeof(buf) == 8 + 2 * 16
    assert structs.KvmMsrsHeader.from_buffer(buf).nmsrs == 2
    assert (structs.msr_entry_at(buf, 1).index, structs.msr_entry_at(buf, 1).data) == (0x4B564D01, 0x5001)


def test_cpuid_buffer_capacity() -> None:
    buf = structs.cpuid_buffer(3)
    assert ctypes.sizeof(buf) == 8 + 3 * 40
    assert structs.KvmCpuid2Header.from_buffer(buf).nent == 3


def test_pvclock_layout_is_32_packed_bytes() -> None:
    info = PvclockTimeInfo(7, 0x1122334455667788, 0x0102030405060708, 0xDEADBEEF, -1, 3)
    raw = info.pack()
    assert len(raw) == PVCLOCK_SIZE == 32
    # version @0, tsc_timestamp @8, system_time @16, tsc_to_system_mul @24, tsc_shift @28, flags @29
    assert raw[0:4] == (7).to_bytes(4, "little")
    assert raw[8:16] == (0x1122334455667788).to_bytes(8, "little")
    assert raw[16:24] == (0x0102030405060708).to_bytes(8, "little")
    assert raw[24:28] == (0xDEADBEEF).to_bytes(4, "little")
    assert raw[28] == 0xFF
    assert raw[29] == 3
    assert PvclockTimeInfo.parse(raw) == info
