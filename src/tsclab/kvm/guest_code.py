"""The probe guest: 33 bytes of hand-assembled x86-64 code, its memory layout and page tables.

The guest runs in 64-bit long mode with one identity-mapped 2 MiB page.
Long mode rather than real mode: real mode needs the least setup on
VMX/SVM, but a KVM whose guests run in hardware ring 3 (the PVM
backend, ``kvm_pvm``) only runs 64-bit code - on such a host a real-mode
guest's KVM_RUN never returns - while long mode works on every x86 KVM.
Every instruction below either runs natively (RDTSC, register moves,
jumps) or traps to KVM once (WRMSR, IN, OUT, HLT), so a host that
emulates guest kernel-mode instructions stays fast.

Protocol (ports are I/O ports, no device model needed):

1. at entry the guest writes ``MSR_KVM_SYSTEM_TIME_NEW = pvclock_gpa | 1``
   (kvmclock on; 0 leaves it off);
2. it reads a request byte from :data:`REQUEST_PORT` (an ``in``: the VMM
   answers it);
3. request 0: ``hlt`` (KVM_EXIT_HLT), then back to 2; any other request:
   ``rdtsc``, then ``out`` EAX (TSC bits 0-31) to :data:`TSC_LOW_PORT` and
   EDX (bits 32-63) to :data:`TSC_HIGH_PORT`, then back to 2.

The code is assembled by hand - each instruction's bytes with its
mnemonic - so the project needs no assembler; ``tests/kvm/test_guest_code.py``
checks the encodings, the jump targets and the layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tsclab.kvm import constants as c

# --- guest-physical (= guest-virtual) layout
PML4_GPA = 0x1000
PDPT_GPA = 0x2000
PD_GPA = 0x3000
CODE_GPA = 0x4000
PVCLOCK_GPA = 0x5000  # one struct pvclock_vcpu_time_info, page-aligned (KVM needs it inside one page)
STACK_TOP = 0x7000  # unused by the code; a sane RSP all the same
MEMORY_SIZE = 0x200000  # the 2 MiB the one large page maps; all of it backed

# --- I/O ports of the protocol
REQUEST_PORT = 0xE0
TSC_LOW_PORT = 0xE4
TSC_HIGH_PORT = 0xE8
REQUEST_HALT = 0
REQUEST_TSC = 1

# Page-table entry bits (Intel SDM vol. 3, 4.5): present, writable, page size (2 MiB in a PDE).
PTE_PRESENT = 1 << 0
PTE_WRITABLE = 1 << 1
PTE_LARGE = 1 << 7

# Control bits for long mode (Intel SDM vol. 3, 2.5 and 9.8.5).
CR0_PE = 1 << 0
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
RFLAGS_FIXED = 1 << 1


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: its bytes, its assembly, and what it is for."""

    code: bytes
    asm: str
    note: str = ""


def instructions(pvclock_gpa: int | None = PVCLOCK_GPA) -> tuple[Instruction, ...]:
    """The program, instruction by instruction; ``pvclock_gpa`` None leaves kvmclock off."""
    msr_value = 0 if pvclock_gpa is None else pvclock_gpa | c.KVM_MSR_ENABLED
    if not 0 <= msr_value < 1 << 32:
        raise ValueError(f"pvclock address {pvclock_gpa:#x} must be below 4 GiB (the code loads EAX only)")
    msr = struct.pack("<I", c.MSR_KVM_SYSTEM_TIME_NEW)
    value = struct.pack("<I", msr_value)
    return (
        # +0  entry
        Instruction(b"\xb9" + msr, f"mov ecx, {c.MSR_KVM_SYSTEM_TIME_NEW:#x}", "MSR_KVM_SYSTEM_TIME_NEW"),
        Instruction(b"\xb8" + value, f"mov eax, {msr_value:#x}", "pvclock page address | enable (bit 0)"),
        Instruction(b"\x31\xd2", "xor edx, edx", "MSR bits 63..32 = 0"),
        Instruction(b"\x0f\x30", "wrmsr", "kvmclock on: KVM fills the pvclock page"),
        # +14 loop
        Instruction(bytes((0xE4, REQUEST_PORT)), f"in al, {REQUEST_PORT:#x}", "loop: wait for a request"),
        Instruction(b"\x84\xc0", "test al, al"),
        Instruction(b"\x74\x0a", "jz +10", "request 0 -> halt (+30)"),
        Instruction(b"\x0f\x31", "rdtsc", "EDX:EAX = the guest's TSC"),
        Instruction(bytes((0xE7, TSC_LOW_PORT)), f"out {TSC_LOW_PORT:#x}, eax", "TSC bits 31..0"),
        Instruction(b"\x89\xd0", "mov eax, edx"),
        Instruction(bytes((0xE7, TSC_HIGH_PORT)), f"out {TSC_HIGH_PORT:#x}, eax", "TSC bits 63..32"),
        Instruction(b"\xeb\xf0", "jmp -16", "-> loop (+14)"),
        # +30 halt
        Instruction(b"\xf4", "hlt", "halt: KVM_EXIT_HLT"),
        Instruction(b"\xeb\xed", "jmp -19", "-> loop (+14)"),
    )


LOOP_OFFSET = 14
HALT_OFFSET = 30


def assemble(pvclock_gpa: int | None = PVCLOCK_GPA) -> bytes:
    """The code bytes, to be copied to :data:`CODE_GPA`."""
    return b"".join(i.code for i in instructions(pvclock_gpa))


def listing(pvclock_gpa: int | None = PVCLOCK_GPA) -> str:
    """The code as an assembly listing: guest address, bytes, instruction."""
    lines = []
    address = CODE_GPA
    for ins in instructions(pvclock_gpa):
        note = f"; {ins.note}" if ins.note else ""
        lines.append(f"{address:#06x}  {ins.code.hex(' '):<15}  {ins.asm:<20}  {note}".rstrip())
        address += len(ins.code)
    return "\n".join(lines)


def page_tables() -> dict[int, bytes]:
    """Guest-physical address -> 8-byte entry: PML4[0] -> PDPT[0] -> PD[0] = the 2 MiB at 0, identity."""
    table = PTE_PRESENT | PTE_WRITABLE
    return {
        PML4_GPA: struct.pack("<Q", PDPT_GPA | table),
        PDPT_GPA: struct.pack("<Q", PD_GPA | table),
        PD_GPA: struct.pack("<Q", 0 | table | PTE_LARGE),
    }
