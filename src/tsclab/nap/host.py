"""The host's side of the nap protocol (docs/nap-protocol.md section 2): what it writes, when."""

from __future__ import annotations

from tsclab.nap.page import (
    FLAG_NEW_HOST,
    FLAG_TSC_MOVED,
    FLAG_TSC_RATE_CHANGED,
    FLAG_UNACKED,
    NAP_REQUESTED,
    NAPPING,
    WOKEN,
    NapPage,
)

# Reasons by scenario action.
REASONS = {"pause": 1, "snapshot": 2, "migrate": 3, "host-suspend": 4}
ACK_DEADLINE_NS = 100_000_000  # how long the host waits for the guest to park
PARK_NS = 50_000  # the nap interrupt, the work item and stop_machine's rendezvous, on a responsive guest


def _write(page: NapPage, **fields: int) -> None:
    """Host fields under ``seq``: odd while writing, even after."""
    page.seq += 1
    for name, value in fields.items():
        setattr(page, name, value)
    page.seq += 1


def request(page: NapPage, action: str, expected_ns: int) -> int:
    """Step 1: a new generation, the reason and the deadline; returns the generation."""
    generation = page.generation + 1
    _write(
        page,
        generation=generation,
        reason=REASONS[action],
        flags=0,
        expected_ns=expected_ns,
        ack_deadline_ns=ACK_DEADLINE_NS,
        host_state=NAP_REQUESTED,
    )
    return generation


def acked(page: NapPage) -> bool:
    return page.acked_generation == page.generation


def freeze(page: NapPage, tsc_at_freeze: int) -> None:
    """Step 3: napping, acknowledged or not (Andy Lutomirski's condition)."""
    flags = page.flags | (0 if acked(page) else FLAG_UNACKED)
    _write(page, host_state=NAPPING, flags=flags, tsc_at_freeze=tsc_at_freeze)


def wake(
    page: NapPage,
    *,
    nap_ns: int,
    realtime_error_ns: int,
    tsc_at_wake: int,
    tsc_khz: int,
    rate_changed: bool,
    new_host: bool,
) -> None:
    """Step 5: what changed, then ``WOKEN`` - the GO bit - before the vCPUs run.

    The running totals grow by this nap whether or not the guest applied
    the previous one: a guest that missed a wake-up applies both at once.
    """
    flags = page.flags
    if tsc_at_wake != page.tsc_at_freeze:
        flags |= FLAG_TSC_MOVED
    if rate_changed:
        flags |= FLAG_TSC_RATE_CHANGED
    if new_host:
        flags |= FLAG_NEW_HOST
    _write(
        page,
        nap_ns=nap_ns,
        realtime_error_ns=realtime_error_ns,
        tsc_at_wake=tsc_at_wake,
        tsc_khz=tsc_khz,
        flags=flags,
        host_state=WOKEN,
        slept_ns=page.slept_ns + nap_ns,
        slept_tsc=page.slept_tsc + max(tsc_at_wake - page.tsc_at_freeze, 0),
        slept_error_ns=page.slept_error_ns + realtime_error_ns,
        woken_generation=page.generation,
    )
