"""The host side of the nap protocol on a real VM: the nap page in guest memory (docs/nap-protocol.md).

The VMM reads and writes the 160-byte page (:mod:`tsclab.nap.page`) at a
guest-physical address the guest registered with ``MSR_KVM_NAP_PAGE``, with
the host's state machine of :mod:`tsclab.nap.host` (request, freeze,
wake). The probe guest is 33 bytes and does not implement the guest side:
it never writes the MSR and never parks. This VMM therefore *assumes* the
registration at :data:`NAP_GPA` (a free page of the probe guest's layout),
and every nap it takes is ``UNACKED`` after the acknowledgement deadline -
the protocol's unresponsive-guest path (docs/nap-protocol.md section 2,
step 3; property 7: the host is never held hostage). What the page says at
wake-up is read back from the destination's guest memory and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tsclab.kvm.clock import realtime_ns
from tsclab.kvm.memory import GuestMemory
from tsclab.kvm.steps import CANNOT, DONE, StepRecord
from tsclab.nap import host as nap_host
from tsclab.nap.page import SIZE, NapPage, pack, unpack

NAP_GPA = 0x6000  # between the pvclock page (0x5000) and the probe guest's stack top (0x7000)
PHASE = "nap"


def read_page(memory: GuestMemory) -> NapPage:
    return unpack(memory.read_gpa(NAP_GPA, SIZE))


def write_page(memory: GuestMemory, page: NapPage) -> None:
    memory.write_gpa(NAP_GPA, pack(page))


def _record(step: str, side: str, status: str, detail: str, start_rt: int, start: int) -> StepRecord:
    end = time.perf_counter_ns()
    return StepRecord(step, PHASE, side, status, detail, (), False, start_rt, realtime_ns(), end - start)


def register(memory: GuestMemory, side: str) -> StepRecord:
    """What the guest's ``MSR_KVM_NAP_PAGE`` write would make the host do: a fresh page, RUNNING."""
    start_rt, start = realtime_ns(), time.perf_counter_ns()
    write_page(memory, NapPage())
    return _record(
        "nap-register",
        side,
        CANNOT,
        f"the probe guest does not register a nap page (no MSR_KVM_NAP_PAGE write): the VMM assumes "
        f"{NAP_GPA:#x} and writes a fresh page there",
        start_rt,
        start,
    )


def request(
    memory: GuestMemory, side: str, expected_ns: int, keep_running: Callable[[], object]
) -> tuple[StepRecord, bool]:
    """Step 1-2: ask for a nap of ``expected_ns``, then run the guest until it acknowledges or the
    deadline passes; returns the record and whether it acknowledged."""
    start_rt, start = realtime_ns(), time.perf_counter_ns()
    page = read_page(memory)
    generation = nap_host.request(page, "migrate", expected_ns)
    write_page(memory, page)
    deadline = time.monotonic() + nap_host.ACK_DEADLINE_NS / 1e9
    acked = False
    while time.monotonic() < deadline:
        keep_running()  # the guest runs (pre-copy goes on meanwhile)
        if nap_host.acked(read_page(memory)):
            acked = True
            break
        time.sleep(0.001)
    waited_ms = (time.perf_counter_ns() - start) / 1e6
    detail = f"generation {generation}, reason migration, expected {expected_ns} ns; " + (
        "acknowledged" if acked else f"no acknowledgement in {waited_ms:.0f} ms (the probe guest never parks)"
    )
    return _record("nap-request", side, DONE, detail, start_rt, start), acked


def freeze(memory: GuestMemory, side: str, freeze_realtime: int, tsc_at_freeze: int) -> StepRecord:
    """Step 3: NAPPING, ``UNACKED`` unless the guest acknowledged; ``tsc_at_freeze`` recorded."""
    start_rt, start = realtime_ns(), time.perf_counter_ns()
    page = read_page(memory)
    nap_host.freeze(page, tsc_at_freeze)
    write_page(memory, page)
    unacked = "UNACKED" if not nap_host.acked(page) else "acknowledged"
    return _record(
        "nap-freeze",
        side,
        DONE,
        f"NAPPING ({unacked}); tsc_at_freeze {tsc_at_freeze}; host realtime at freeze {freeze_realtime}",
        start_rt,
        start,
    )


def wake(
    memory: GuestMemory,
    side: str,
    *,
    freeze_realtime: int,
    now_realtime: int,
    tsc_at_wake: int,
    tsc_khz: int,
    rate_changed: bool,
    new_host: bool,
) -> StepRecord:
    """Step 5: ``nap_ns`` (realtime now minus at freeze, one timeline), the totals, WOKEN - before the
    vCPUs run (KVMCLOCK_CTRL is the policy's next step)."""
    start_rt, start = realtime_ns(), time.perf_counter_ns()
    page = read_page(memory)
    nap_ns = max(now_realtime - freeze_realtime, 0)
    # Both VMMs run on this host: one CLOCK_REALTIME, no synchronisation error between two hosts.
    error_ns = 0
    nap_host.wake(
        page,
        nap_ns=nap_ns,
        realtime_error_ns=error_ns,
        tsc_at_wake=tsc_at_wake,
        tsc_khz=tsc_khz,
        rate_changed=rate_changed,
        new_host=new_host,
    )
    write_page(memory, page)
    status = DONE if not new_host else CANNOT
    note = "" if not new_host else "; another host: its realtime error bound is not known here, written as 0"
    return _record(
        "nap-wake",
        side,
        status,
        f"WOKEN: nap_ns {nap_ns}, realtime_error_ns {error_ns}, tsc_at_wake {tsc_at_wake}, "
        f"tsc_khz {tsc_khz}, woken_generation {page.woken_generation}{note}",
        start_rt,
        start,
    )


def page_dict(page: NapPage) -> dict[str, int]:
    """The page's fields as the report shows them."""
    return {
        "seq": page.seq,
        "host_state": page.host_state,
        "generation": page.generation,
        "reason": page.reason,
        "flags": page.flags,
        "expected_ns": page.expected_ns,
        "nap_ns": page.nap_ns,
        "realtime_error_ns": page.realtime_error_ns,
        "tsc_at_freeze": page.tsc_at_freeze,
        "tsc_at_wake": page.tsc_at_wake,
        "tsc_khz": page.tsc_khz,
        "guest_state": page.guest_state,
        "acked_generation": page.acked_generation,
        "applied_generation": page.applied_generation,
        "slept_ns": page.slept_ns,
        "slept_tsc": page.slept_tsc,
        "woken_generation": page.woken_generation,
    }
