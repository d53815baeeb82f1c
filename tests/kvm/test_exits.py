"""Decoding struct kvm_run exits, on a run page filled by hand (no KVM needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tsclab.kvm import constants as c
from tsclab.kvm.exits import (
    ExceptionExit,
    FailEntryExit,
    HltExit,
    InternalErrorExit,
    IntrExit,
    IoExit,
    MmioExit,
    OtherExit,
    ShutdownExit,
    SystemEventExit,
    decode_exit,
)
from tsclab.kvm.memory import Mapping
from tsclab.kvm.structs import KvmRun


@pytest.fixture
def page() -> Iterator[tuple[KvmRun, Mapping]]:
    with Mapping(8192, what="fake kvm_run") as mapping:
        yield KvmRun.from_address(mapping.address), mapping


def test_io_out_carries_the_guests_bytes(page: tuple[KvmRun, Mapping]) -> None:
    run, mapping = page
    run.exit_reason = c.KVM_EXIT_IO
    io = run.exit.io
    io.direction, io.size, io.port, io.count, io.data_offset = c.KVM_EXIT_IO_OUT, 4, 0xE4, 1, 4096
    mapping.write(4096, (0xDEADBEEF).to_bytes(4, "little"))
    exit_ = decode_exit(run, mapping)
    assert exit_ == IoExit(False, 0xE4, 4, 1, 4096, (0xDEADBEEF).to_bytes(4, "little"))
    assert isinstance(exit_, IoExit)
    assert exit_.value == 0xDEADBEEF
    assert exit_.describe() == "KVM_EXIT_IO out port 0xe4 size 4 value 0xdeadbeef"


def test_io_in_has_no_data_yet(page: tuple[KvmRun, Mapping]) -> None:
    run, mapping = page
    run.exit_reason = c.KVM_EXIT_IO
    io = run.exit.io
    io.direction, io.size, io.port, io.count, io.data_offset = c.KVM_EXIT_IO_IN, 1, 0xE0, 1, 4096
    exit_ = decode_exit(run, mapping)
    assert exit_ == IoExit(True, 0xE0, 1, 1, 4096, b"")
    assert exit_.describe() == "KVM_EXIT_IO in port 0xe0 size 1"


def test_mmio(page: tuple[KvmRun, Mapping]) -> None:
    run, mapping = page
    run.exit_reason = c.KVM_EXIT_MMIO
    mmio = run.exit.mmio
    mmio.phys_addr, mmio.len, mmio.is_write = 0xFEE00000, 4, 1
    for i, b in enumerate(b"\x01\x02\x03\x04"):
        mmio.data[i] = b
    exit_ = decode_exit(run, mapping)
    assert exit_ == MmioExit(0xFEE00000, b"\x01\x02\x03\x04", 4, True)
    assert exit_.describe() == "KVM_EXIT_MMIO write of 4 bytes at 0xfee00000"


def test_fail_entry_and_internal_error(page: tuple[KvmRun, Mapping]) -> None:
    run, mapping = page
    run.exit_reason = c.KVM_EXIT_FAIL_ENTRY
    run.exit.fail_entry.hardware_entry_failure_reason = 0x80000021
    run.exit.fail_entry.cpu = 1
    exit_ = decode_exit(run, mapping)
    assert exit_ == FailEntryExit(0x80000021, 1)
    assert "reason 0x80000021 on cpu 1" in exit_.describe()

    run.exit_reason = c.KVM_EXIT_INTERNAL_ERROR
    run.exit.internal.suberror = 1
    run.exit.internal.ndata = 2
    run.exit.internal.data[0], run.exit.internal.data[1] = 0x10, 0x4000
    exit_ = decode_exit(run, mapping)
    assert exit_ == InternalErrorExit(1, (0x10, 0x4000))
    assert exit_.describe() == "KVM_EXIT_INTERNAL_ERROR KVM_INTERNAL_ERROR_EMULATION data 0x10 0x4000"


@pytest.mark.parametrize(
    ("reason", "expected", "text"),
    [
        (c.KVM_EXIT_HLT, HltExit(), "KVM_EXIT_HLT"),
        (c.KVM_EXIT_SHUTDOWN, ShutdownExit(), "KVM_EXIT_SHUTDOWN (triple fault)"),
        (c.KVM_EXIT_INTR, IntrExit(), "KVM_EXIT_INTR (interrupted by a signal)"),
        (c.KVM_EXIT_EXCEPTION, ExceptionExit(0, 0), "KVM_EXIT_EXCEPTION vector 0 error code 0x0"),
        (c.KVM_EXIT_SYSTEM_EVENT, SystemEventExit(0), "KVM_EXIT_SYSTEM_EVENT 0"),
        (c.KVM_EXIT_X86_RDMSR, OtherExit(c.KVM_EXIT_X86_RDMSR), "KVM_EXIT_X86_RDMSR"),
        (99, OtherExit(99), "exit reason 99"),
    ],
)
def test_other_reasons(page: tuple[KvmRun, Mapping], reason: int, expected: object, text: str) -> None:
    run, mapping = page
    run.exit_reason = reason
    exit_ = decode_exit(run, mapping)
    assert exit_ == expected
    assert exit_.describe() == text
