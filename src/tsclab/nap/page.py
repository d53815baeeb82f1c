"""The nap page: the 160 bytes host and guest share, version 1 (docs/nap-protocol.md section 1).

A plain mutable record in guest memory; :func:`pack` and :func:`unpack`
give its fixed little-endian layout, the ABI a real implementation would
share.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0x3150414E  # "NAP1" little-endian
VERSION = 1
SIZE = 160

# host_state
RUNNING, NAP_REQUESTED, NAPPING, WOKEN = 0, 1, 2, 3
# guest_state
GUEST_RUNNING, GUEST_PARKED, GUEST_RESUMING = 0, 1, 2
# reason
REASON_PAUSE, REASON_SNAPSHOT, REASON_MIGRATION, REASON_HOST_SUSPEND = 1, 2, 3, 4
# flags
FLAG_UNACKED = 1 << 0
FLAG_TSC_MOVED = 1 << 1
FLAG_TSC_RATE_CHANGED = 1 << 2
FLAG_NEW_HOST = 1 << 3

# magic, version, size, seq, host_state, generation, reason, flags, expected_ns,
# ack_deadline_ns, nap_ns, realtime_error_ns, tsc_at_freeze, tsc_at_wake,
# tsc_khz, pad, max_sane_delta, guest_state, pad, acked_generation,
# applied_generation, slept_ns, slept_tsc, slept_error_ns, woken_generation, reserved
_LAYOUT = struct.Struct("<IHHII Q II Q Q Q Q Q Q I4x Q I4x Q Q Q Q Q Q 8x")
assert _LAYOUT.size == SIZE


@dataclass
class NapPage:
    """The page's fields; each side writes only its own."""

    seq: int = 0
    host_state: int = RUNNING
    generation: int = 0
    reason: int = 0
    flags: int = 0
    expected_ns: int = 0
    ack_deadline_ns: int = 0
    nap_ns: int = 0
    realtime_error_ns: int = 0
    tsc_at_freeze: int = 0
    tsc_at_wake: int = 0
    tsc_khz: int = 0
    max_sane_delta: int = 0
    guest_state: int = GUEST_RUNNING
    acked_generation: int = 0
    applied_generation: int = 0
    # Running totals over every nap since the page was registered: a guest
    # that missed a nap's wake-up (or two) applies the difference, once.
    slept_ns: int = 0
    slept_tsc: int = 0
    slept_error_ns: int = 0
    woken_generation: int = 0  # the generation of the last wake-up: what the guest has to apply


def pack(page: NapPage) -> bytes:
    """The page as the guest's memory holds it."""
    return _LAYOUT.pack(
        MAGIC,
        VERSION,
        SIZE,
        page.seq,
        page.host_state,
        page.generation,
        page.reason,
        page.flags,
        page.expected_ns,
        page.ack_deadline_ns,
        page.nap_ns,
        page.realtime_error_ns,
        page.tsc_at_freeze,
        page.tsc_at_wake,
        page.tsc_khz,
        page.max_sane_delta,
        page.guest_state,
        page.acked_generation,
        page.applied_generation,
        page.slept_ns,
        page.slept_tsc,
        page.slept_error_ns,
        page.woken_generation,
    )


class NapPageError(ValueError):
    """Bytes that are not a version-1 nap page."""


def unpack(data: bytes) -> NapPage:
    """A page read back from guest memory; refuses a wrong size, magic or version."""
    if len(data) != SIZE:
        raise NapPageError(f"nap page: expected {SIZE} bytes, got {len(data)}")
    fields = _LAYOUT.unpack(data)
    magic, version, size = fields[:3]
    if magic != MAGIC or version != VERSION or size != SIZE:
        raise NapPageError(f"nap page: magic {magic:#x}, version {version}, size {size}: not NAP1 v1")
    return NapPage(*fields[3:])
