"""Equivalents of the kernel's KVM clock selftests, run through this package's VMM and probe guest.

* ``kvm_clock_test`` (tools/testing/selftests/kvm/x86/kvm_clock_test.c):
  four cases of KVM_SET_CLOCK - kvmclock base 0 and 180 s, and base 0 with
  KVM_CLOCK_REALTIME 180 s in the past and in the future. For each,
  KVM_GET_CLOCK before and after a guest kvmclock reading must carry
  KVM_CLOCK_REALTIME|KVM_CLOCK_HOST_TSC and bracket the guest's value.
  Same preconditions as the kernel's: KVM_CAP_ADJUST_CLOCK includes
  KVM_CLOCK_REALTIME and the host clocksource is TSC-based. Added here
  (the kernel test only brackets): with realtime 180 s in the past KVM
  must have advanced kvmclock by at least 180 s, with realtime in the
  future it must not have moved it.
* ``system_counter_offset_test``
  (tools/testing/selftests/kvm/system_counter_offset_test.c): for TSC
  offsets 0 and +/-180 s of cycles (the kernel uses 180e9 cycles; here
  180 s at this host's TSC frequency), the guest's RDTSC lies between
  two host TSC reads plus the offset. The kernel test reads the host TSC
  with RDTSC; this Python VMM has no RDTSC and uses KVM_GET_CLOCK's
  ``host_tsc`` (KVM_CLOCK_HOST_TSC), read immediately before entering
  and after leaving the guest - the same bound, as tight as the two
  ioctls allow. It skips, as the kernel's does, when KVM lacks the
  KVM_VCPU_TSC_OFFSET attribute; and, unlike the kernel's, it skips a
  non-zero offset that KVM accepts but the guest's TSC ignores entirely
  (the host cannot offset the guest TSC), and says so - a partial or
  wrong effect still fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.clock import ClockData, clocksource_is_tsc_based, realtime_ns, wrapped_delta
from tsclab.kvm.errors import GuestError, KvmError
from tsclab.kvm.host_info import HostInfo, host_info
from tsclab.kvm.probe_guest import GuestSample, ProbeGuest
from tsclab.kvm.pvclock import PvclockBusyError
from tsclab.kvm.system import Kvm

PASS = "pass"
FAIL = "fail"
SKIP = "skip"

SECOND_NS = 1_000_000_000
U64 = 1 << 64
EXPECTED_FLAGS = c.KVM_CLOCK_REALTIME | c.KVM_CLOCK_HOST_TSC


@dataclass(frozen=True, slots=True)
class CaseResult:
    test: str
    case: str
    status: str  # pass | fail | skip
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.test} {self.case}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "case": self.case,
            "status": self.status,
            "detail": self.detail,
            "values": self.values,
        }


@dataclass(frozen=True, slots=True)
class SelftestReport:
    device: str
    host: HostInfo
    cases: tuple[CaseResult, ...]

    def count(self, status: str) -> int:
        return sum(1 for case in self.cases if case.status == status)

    @property
    def failed(self) -> bool:
        return self.count(FAIL) > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "host": self.host.to_dict(),
            "cases": [case.to_dict() for case in self.cases],
            "summary": {status: self.count(status) for status in (PASS, FAIL, SKIP)},
        }


# --- kvm_clock_test

KVM_CLOCK_TEST = "kvm_clock_test"
# (name, kvmclock base, realtime offset): the kernel test's test_cases[].
KVM_CLOCK_CASES: tuple[tuple[str, int, int], ...] = (
    ("base=0", 0, 0),
    ("base=180s", 180 * SECOND_NS, 0),
    ("base=0 realtime-180s", 0, -180 * SECOND_NS),
    ("base=0 realtime+180s", 0, 180 * SECOND_NS),
)
KVM_CLOCK_NAMES = [name for name, _, _ in KVM_CLOCK_CASES]


def _clock_case(guest: ProbeGuest, name: str, base: int, realtime_offset: int) -> CaseResult:
    data = ClockData(base)
    if realtime_offset:
        data = ClockData(base, c.KVM_CLOCK_REALTIME, realtime_ns() + realtime_offset)
    guest.vm.set_clock(data)
    sample = guest.sample()
    start, end, observed = sample.before, sample.after, sample.kvmclock
    values = {"start": start.clock, "end": end.clock, "guest": observed, "flags": start.flag_names}
    for when, got in (("start", start), ("end", end)):
        if got.flags & EXPECTED_FLAGS != EXPECTED_FLAGS:
            return CaseResult(
                KVM_CLOCK_TEST, name, FAIL, f"unexpected clock data flags at {when}: {got.flag_names}", values
            )
    if observed is None:
        return CaseResult(KVM_CLOCK_TEST, name, FAIL, "the guest's pvclock page is not filled", values)
    shown = f"guest kvmclock {observed} in [{start.clock}, {end.clock}] ns"
    if not start.clock <= observed <= end.clock:
        return CaseResult(KVM_CLOCK_TEST, name, FAIL, shown.replace(" in ", " NOT in "), values)
    if realtime_offset < 0 and start.clock < base - realtime_offset:
        why = f"realtime {-realtime_offset // SECOND_NS} s behind: kvmclock only reached {start.clock} ns"
        return CaseResult(KVM_CLOCK_TEST, name, FAIL, why, values)
    if realtime_offset > 0 and start.clock >= base + realtime_offset // 2:
        why = f"realtime in the future moved kvmclock to {start.clock} ns"
        return CaseResult(KVM_CLOCK_TEST, name, FAIL, why, values)
    return CaseResult(KVM_CLOCK_TEST, name, PASS, shown, values)


def kvm_clock_test(kvm: Kvm, host: HostInfo) -> list[CaseResult]:
    names = KVM_CLOCK_NAMES
    supported = kvm.check_extension(c.KVM_CAP_ADJUST_CLOCK)
    if not supported & c.KVM_CLOCK_REALTIME:
        why = f"KVM_CAP_ADJUST_CLOCK is {c.clock_flag_names(supported)}: no KVM_CLOCK_REALTIME"
        return [CaseResult(KVM_CLOCK_TEST, name, SKIP, why) for name in names]
    if not clocksource_is_tsc_based(host.clocksource):
        why = f"host clocksource is {host.clocksource}, not TSC-based: KVM cannot pair realtime with TSC"
        return [CaseResult(KVM_CLOCK_TEST, name, SKIP, why) for name in names]
    results = []
    with ProbeGuest.create(kvm) as guest:
        guest.start()
        page = guest.pvclock()
        if page is None or not page.enabled:
            why = "the probe guest's kvmclock is not enabled (KVM did not fill its pvclock page)"
            return [CaseResult(KVM_CLOCK_TEST, name, SKIP, why) for name in names]
        for name, base, offset in KVM_CLOCK_CASES:
            results.append(_guarded(KVM_CLOCK_TEST, name, partial(_clock_case, guest, name, base, offset)))
    return results


# --- system_counter_offset_test

SYSTEM_COUNTER_TEST = "system_counter_offset_test"
OFFSET_SECONDS = (0, 180, -180)
SYSTEM_COUNTER_NAMES = [f"offset={seconds:+d}s" if seconds else "offset=0" for seconds in OFFSET_SECONDS]


def _in_bracket(observed: int, start: int, end: int) -> bool:
    """start <= observed <= end on the u64 circle (values near 2^64 wrap, as in C)."""
    return wrapped_delta(observed, start) >= 0 and wrapped_delta(end, observed) >= 0


def _counter_case(guest: ProbeGuest, name: str, offset: int) -> CaseResult:
    written = offset % U64
    guest.vcpu.set_tsc_offset(written)
    sample: GuestSample = guest.sample()
    start = (sample.before.host_tsc + written) % U64
    end = (sample.after.host_tsc + written) % U64
    values = {"offset": offset, "start": start, "end": end, "guest": sample.tsc}
    shown = f"guest TSC {sample.tsc} in [{start}, {end}] (host TSC + offset)"
    if _in_bracket(sample.tsc, start, end):
        return CaseResult(SYSTEM_COUNTER_TEST, name, PASS, shown, values)
    if offset and _in_bracket(sample.tsc, sample.before.host_tsc, sample.after.host_tsc):
        read_back = guest.vcpu.get_tsc_offset()
        why = (
            f"KVM accepts KVM_VCPU_TSC_OFFSET {written} (reads back {read_back}) but the guest's TSC "
            "ignores it: this host cannot offset the guest's TSC"
        )
        return CaseResult(SYSTEM_COUNTER_TEST, name, SKIP, why, {**values, "read_back": read_back})
    return CaseResult(SYSTEM_COUNTER_TEST, name, FAIL, shown.replace(" in ", " NOT in "), values)


def system_counter_offset_test(kvm: Kvm) -> list[CaseResult]:
    names = SYSTEM_COUNTER_NAMES
    results = []
    with ProbeGuest.create(kvm) as guest:
        if not guest.vcpu.has_tsc_offset():
            why = "KVM_VCPU_TSC_OFFSET not supported (KVM_HAS_DEVICE_ATTR)"
            return [CaseResult(SYSTEM_COUNTER_TEST, name, SKIP, why) for name in names]
        guest.start()
        probe = guest.sample()
        if not (probe.before.has_host_tsc and probe.after.has_host_tsc):
            why = (
                f"KVM_GET_CLOCK returns no KVM_CLOCK_HOST_TSC here (flags {probe.before.flag_names}); "
                "without it this VMM has no host TSC read to bound the guest's"
            )
            return [CaseResult(SYSTEM_COUNTER_TEST, name, SKIP, why) for name in names]
        khz = guest.vcpu.get_tsc_khz()
        for name, seconds in zip(names, OFFSET_SECONDS, strict=True):
            offset = seconds * khz * 1000
            results.append(_guarded(SYSTEM_COUNTER_TEST, name, partial(_counter_case, guest, name, offset)))
    return results


def _guarded(test: str, name: str, run: Callable[[], CaseResult]) -> CaseResult:
    """The case's result; an ioctl or guest failure inside it is the case's failure."""
    try:
        return run()
    except (KvmError, GuestError, PvclockBusyError) as err:
        return CaseResult(test, name, FAIL, str(err))


def _or_skip(test: str, names: list[str], run: Callable[[], list[CaseResult]]) -> list[CaseResult]:
    """The test's results; if the probe guest cannot even be set up or started, every case skips."""
    try:
        return run()
    except (KvmError, GuestError, PvclockBusyError) as err:
        why = f"the probe guest cannot run on this KVM: {err}"
        return [CaseResult(test, name, SKIP, why) for name in names]


def selftest(kvm: Kvm, device: str, host: HostInfo | None = None) -> SelftestReport:
    """Both tests' cases, in the kernel's order."""
    info = host_info() if host is None else host
    clock = _or_skip(KVM_CLOCK_TEST, KVM_CLOCK_NAMES, partial(kvm_clock_test, kvm, info))
    counter = _or_skip(SYSTEM_COUNTER_TEST, SYSTEM_COUNTER_NAMES, partial(system_counter_offset_test, kvm))
    return SelftestReport(device, info, (*clock, *counter))
