"""The hand-assembled probe guest: encodings, jump targets, layout, page tables."""

from __future__ import annotations

import struct

import pytest

from tsclab.kvm import constants as c
from tsclab.kvm import guest_code as g


def offsets() -> list[int]:
    out, at = [], 0
    for ins in g.instructions():
        out.append(at)
        at += len(ins.code)
    return out


def test_program_is_33_bytes_and_fits_its_page() -> None:
    code = g.assemble()
    assert len(code) == 33
    assert g.CODE_GPA + len(code) <= g.PVCLOCK_GPA


def test_wrmsr_loads_the_kvmclock_msr_and_the_page_address() -> None:
    code = g.assemble(0x5000)
    assert code[0] == 0xB9
    assert struct.unpack_from("<I", code, 1)[0] == c.MSR_KVM_SYSTEM_TIME_NEW
    assert code[5] == 0xB8
    assert struct.unpack_from("<I", code, 6)[0] == 0x5000 | c.KVM_MSR_ENABLED
    assert code[10:14] == b"\x31\xd2\x0f\x30"  # xor edx, edx; wrmsr
    assert struct.unpack_from("<I", g.assemble(None), 6)[0] == 0  # kvmclock left off


def test_labels_and_jump_targets() -> None:
    code, at = g.assemble(), offsets()
    texts = [ins.asm for ins in g.instructions()]
    assert at[texts.index(next(t for t in texts if t.startswith("in al")))] == g.LOOP_OFFSET
    assert at[texts.index(next(t for t in texts if t.startswith("hlt")))] == g.HALT_OFFSET
    # rel8 targets: the byte after the instruction plus the signed displacement.
    for offset in at:
        opcode = code[offset]
        if opcode in (0x74, 0xEB):
            target = offset + 2 + struct.unpack_from("<b", code, offset + 1)[0]
            expected = g.HALT_OFFSET if opcode == 0x74 else g.LOOP_OFFSET
            assert target == expected, f"jump at +{offset} lands on +{target}"


def test_ports_and_port_io_encodings() -> None:
    code = g.assemble()
    assert code[g.LOOP_OFFSET : g.LOOP_OFFSET + 2] == bytes((0xE4, g.REQUEST_PORT))  # in al, imm8
    assert bytes((0xE7, g.TSC_LOW_PORT)) in code
    assert bytes((0xE7, g.TSC_HIGH_PORT)) in code
    assert b"\x0f\x31" in code  # rdtsc
    assert code[g.HALT_OFFSET] == 0xF4  # hlt


def test_listing_shows_every_instruction_at_its_address() -> None:
    lines = g.listing().splitlines()
    assert len(lines) == len(g.instructions())
    assert lines[0].startswith("0x4000  b9 01 4d 56 4b")
    assert lines[-1].startswith(f"{g.CODE_GPA + 31:#06x}  eb ed")


def test_identity_page_tables() -> None:
    tables = g.page_tables()
    assert struct.unpack("<Q", tables[g.PML4_GPA])[0] == g.PDPT_GPA | 3
    assert struct.unpack("<Q", tables[g.PDPT_GPA])[0] == g.PD_GPA | 3
    assert struct.unpack("<Q", tables[g.PD_GPA])[0] == 0x83  # 2 MiB page at 0, present, writable


def test_pvclock_page_address_must_fit_eax() -> None:
    with pytest.raises(ValueError, match="below 4 GiB"):
        g.assemble(1 << 32)
