"""What this host's KVM offers for guest timekeeping, each feature verified by doing it.

A KVM may accept a request and ignore it (a TSC offset written and read
back as 0, a TSC frequency "set" while the guest's TSC keeps the host's
rate), so every feature here is exercised and its effect read back -
from KVM, and where it matters from inside the probe guest - and each
result says what it means for carrying guest time across a pause or a
migration. Each probe runs in a fresh VM so that one probe's writes
cannot change the next one's result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.clock import ClockData, clocksource_is_tsc_based, monotonic_raw_ns, realtime_ns, wrapped_delta
from tsclab.kvm.cpuid import CpuidEntry, has_kvm_feature, kvm_signature
from tsclab.kvm.errors import GuestError, KvmError
from tsclab.kvm.host_info import HostInfo, host_info
from tsclab.kvm.probe_guest import GuestSample, ProbeGuest
from tsclab.kvm.pvclock import PvclockBusyError, pvclock_tsc_khz
from tsclab.kvm.system import Kvm

YES = "yes"
NO = "no"
ERROR = "error"

SECOND_NS = 1_000_000_000
CLOCK_TOLERANCE_NS = 1_000_000  # slack on host-side clock bounds (KVM's and our clock reads)
RATE_INTERVAL_S = 0.2  # host time between the two readings of a rate measurement
RATE_TOLERANCE = 0.005  # a TSC rate "is" a frequency within 0.5 %
OFFSET_SECONDS = 180  # as the kernel's system_counter_offset_test


@dataclass(frozen=True, slots=True)
class Feature:
    """One probed feature: did it work, what was seen, what it means for migration fidelity."""

    key: str
    title: str
    status: str  # yes | no | error
    detail: str
    meaning: str
    errno: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "errno": self.errno,
            "detail": self.detail,
            "meaning": self.meaning,
            "values": self.values,
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    device: str
    host: HostInfo
    features: tuple[Feature, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "host": self.host.to_dict(),
            "features": [f.to_dict() for f in self.features],
        }

    def feature(self, key: str) -> Feature:
        for f in self.features:
            if f.key == key:
                return f
        raise KeyError(key)


class _NotAvailableError(Exception):
    """Raised inside a probe to end it with a status (keeps each probe a straight line)."""

    def __init__(self, status: str, detail: str, values: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.values = values or {}


@dataclass(frozen=True, slots=True)
class _Spec:
    key: str
    title: str
    if_yes: str
    if_no: str
    run: Callable[[_Context], tuple[str, dict[str, Any]]]  # returns (detail, values) on success


class _Context:
    """What several probes share: the open /dev/kvm and facts read once."""

    def __init__(self, kvm: Kvm, host: HostInfo) -> None:
        self.kvm = kvm
        self.host = host
        self._cpuid: tuple[CpuidEntry, ...] | None = None
        self._khz: int | None = None

    @property
    def cpuid(self) -> tuple[CpuidEntry, ...]:
        if self._cpuid is None:
            self._cpuid = self.kvm.get_supported_cpuid()
        return self._cpuid

    def guest(self, **kwargs: Any) -> ProbeGuest:
        guest = ProbeGuest.create(self.kvm, cpuid=self.cpuid, **kwargs)
        try:
            guest.start()
        except BaseException:
            guest.close()
            raise
        return guest

    @property
    def tsc_khz(self) -> int:
        """KVM_GET_TSC_KHZ of a fresh vCPU: KVM's host TSC frequency (the default guest frequency)."""
        if self._khz is None:
            with ProbeGuest.create(self.kvm, cpuid=self.cpuid) as guest:
                self._khz = guest.vcpu.get_tsc_khz()
        return self._khz


def _tsc_shift(first: GuestSample, second: GuestSample, khz: int) -> int:
    """How far the guest's TSC moved between two samples beyond what ``khz`` over the host time explains."""
    elapsed_ns = (second.before_ns + second.after_ns) // 2 - (first.before_ns + first.after_ns) // 2
    return wrapped_delta(second.tsc, first.tsc) - khz * elapsed_ns // 1_000_000


def _rate_khz(guest: ProbeGuest) -> tuple[int, GuestSample, GuestSample]:
    """The guest's TSC rate over :data:`RATE_INTERVAL_S` of host CLOCK_MONOTONIC_RAW, in kHz."""
    first = guest.sample()
    time.sleep(RATE_INTERVAL_S)
    second = guest.sample()
    mid_first = (first.before_ns + first.after_ns) // 2
    mid_second = (second.before_ns + second.after_ns) // 2
    return wrapped_delta(second.tsc, first.tsc) * 1_000_000 // (mid_second - mid_first), first, second


# --- the probes, in report order. Each returns (detail, values) when the feature works and
# raises _NotAvailableError(NO, ...) when it does not; KvmError/GuestError become "error".


def _api_version(ctx: _Context) -> tuple[str, dict[str, Any]]:
    version = ctx.kvm.get_api_version()
    if version != c.KVM_API_VERSION:
        raise _NotAvailableError(NO, f"KVM_GET_API_VERSION returned {version}", {"api_version": version})
    return f"KVM_GET_API_VERSION = {version}", {"api_version": version}


def _probe_guest(ctx: _Context) -> tuple[str, dict[str, Any]]:
    with ctx.guest() as guest:
        guest.halt()
        sample = guest.sample()
    return (
        "64-bit long-mode guest ran: WRMSR, IN, RDTSC, OUT and HLT exits decoded",
        {"guest_tsc": sample.tsc},
    )


def _clock_get_set(ctx: _Context) -> tuple[str, dict[str, Any]]:
    with ctx.guest() as guest:
        vm = guest.vm
        first = vm.get_clock()
        target = first.clock + 1000 * SECOND_NS
        start = monotonic_raw_ns()
        vm.set_clock(ClockData(target))
        back = vm.get_clock()
        elapsed = monotonic_raw_ns() - start
    moved = back.clock - target
    values = {"set": target, "read_back": back.clock, "host_elapsed_ns": elapsed}
    if not 0 <= moved <= elapsed + CLOCK_TOLERANCE_NS:
        raise _NotAvailableError(
            NO, f"set kvmclock to {target} ns, read back {back.clock} ns ({moved:+} ns)", values
        )
    return f"set kvmclock to +1000 s, read back {moved} ns later (host: {elapsed} ns elapsed)", values


def _clock_flag(flag: int, name: str) -> Callable[[_Context], tuple[str, dict[str, Any]]]:
    def probe(ctx: _Context) -> tuple[str, dict[str, Any]]:
        supported = ctx.kvm.check_extension(c.KVM_CAP_ADJUST_CLOCK)
        with ProbeGuest.create(ctx.kvm, cpuid=ctx.cpuid) as guest:
            unrun = guest.vm.get_clock()
            guest.start()
            data = guest.vm.get_clock()
        values = {
            "adjust_clock_cap": c.clock_flag_names(supported),
            "get_clock_flags": data.flag_names,
            "get_clock_flags_before_first_run": unrun.flag_names,
            "host_clocksource": ctx.host.clocksource,
        }
        detail = (
            f"KVM_GET_CLOCK flags {data.flag_names} once the vCPU has run ({unrun.flag_names} before); "
            f"KVM_CAP_ADJUST_CLOCK {c.clock_flag_names(supported)}; host clocksource {ctx.host.clocksource}"
        )
        if not data.flags & flag:
            why = "" if clocksource_is_tsc_based(ctx.host.clocksource) else " (KVM needs a TSC-based one)"
            raise _NotAvailableError(NO, f"no {name}: {detail}{why}", values)
        return detail, values

    return probe


def _set_clock_realtime(ctx: _Context) -> tuple[str, dict[str, Any]]:
    back_by = 10 * SECOND_NS
    with ctx.guest() as guest:
        vm = guest.vm
        base = vm.get_clock().clock
        start = monotonic_raw_ns()
        try:
            vm.set_clock(ClockData(base, c.KVM_CLOCK_REALTIME, realtime_ns() - back_by))
        except KvmError as err:
            raise _NotAvailableError(NO, f"KVM_SET_CLOCK with KVM_CLOCK_REALTIME refused: {err}") from None
        after = vm.get_clock()
        elapsed = monotonic_raw_ns() - start
    added = after.clock - base
    values = {"realtime_behind_ns": back_by, "kvmclock_added_ns": added, "host_elapsed_ns": elapsed}
    if not back_by <= added <= back_by + elapsed + CLOCK_TOLERANCE_NS:
        raise _NotAvailableError(
            NO, f"accepted, but kvmclock moved {added} ns for realtime 10 s in the past", values
        )
    return f"realtime 10 s in the past: KVM added {added} ns to kvmclock", values


def _guest_kvmclock(ctx: _Context) -> tuple[str, dict[str, Any]]:
    clocksource2 = has_kvm_feature(ctx.cpuid, c.KVM_FEATURE_CLOCKSOURCE2)
    stable = has_kvm_feature(ctx.cpuid, c.KVM_FEATURE_CLOCKSOURCE_STABLE_BIT)
    values: dict[str, Any] = {
        "cpuid_signature": kvm_signature(ctx.cpuid),
        "cpuid_clocksource2": clocksource2,
        "cpuid_stable_bit": stable,
    }
    with ctx.guest() as guest:
        sample = guest.sample()
    page = sample.pvclock
    if page is None or not page.enabled or sample.kvmclock is None:
        raise _NotAvailableError(
            NO, "the guest wrote MSR_KVM_SYSTEM_TIME_NEW but KVM never filled its page", values
        )
    values.update(
        {
            "guest_kvmclock_ns": sample.kvmclock,
            "get_clock_before_ns": sample.before.clock,
            "get_clock_after_ns": sample.after.clock,
            "pvclock_tsc_khz": pvclock_tsc_khz(page),
            "pvclock_flags": page.flags,
        }
    )
    within = sample.before.clock <= sample.kvmclock <= sample.after.clock
    bracket = f"{sample.kvmclock} ns, KVM_GET_CLOCK around it [{sample.before.clock}, {sample.after.clock}]"
    if not within:
        raise _NotAvailableError(NO, f"guest kvmclock {bracket}: outside", values)
    cpuid = f"CPUID {'offers' if clocksource2 else 'lacks'} KVM_FEATURE_CLOCKSOURCE2"
    return f"guest kvmclock {bracket}; {cpuid}; pvclock scale {pvclock_tsc_khz(page)} kHz", values


def _kvmclock_tsc_stable(ctx: _Context) -> tuple[str, dict[str, Any]]:
    with ctx.guest() as guest:
        sample = guest.sample()
    page = sample.pvclock
    if page is None or not page.enabled:
        raise _NotAvailableError(NO, "no pvclock page (guest kvmclock not enabled)")
    values = {"pvclock_flags": page.flags, "get_clock_flags": sample.before.flag_names}
    if not page.tsc_stable:
        raise _NotAvailableError(NO, f"pvclock flags {page.flags:#x}: PVCLOCK_TSC_STABLE_BIT clear", values)
    return f"pvclock flags {page.flags:#x}; KVM_GET_CLOCK flags {sample.before.flag_names}", values


def _tsc_offset_attr(ctx: _Context) -> tuple[str, dict[str, Any]]:
    with ctx.guest() as guest:
        if not guest.vcpu.has_tsc_offset():
            raise _NotAvailableError(
                NO, "KVM_HAS_DEVICE_ATTR(KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET): not supported"
            )
        initial = guest.vcpu.get_tsc_offset()
        written = (initial + OFFSET_SECONDS * ctx.tsc_khz * 1000) % (1 << 64)
        guest.vcpu.set_tsc_offset(written)
        back = guest.vcpu.get_tsc_offset()
    values = {"initial": initial, "written": written, "read_back": back}
    if back != written:
        raise _NotAvailableError(
            NO, f"present, write accepted, but reads back {back} (wrote {written})", values
        )
    return f"present; offset {initial} -> wrote {written}, read back the same", values


def _tsc_offset_effective(ctx: _Context) -> tuple[str, dict[str, Any]]:
    khz = ctx.tsc_khz
    with ctx.guest() as guest:
        if not guest.vcpu.has_tsc_offset():
            raise _NotAvailableError(NO, "no KVM_VCPU_TSC_OFFSET attribute to write")
        delta = OFFSET_SECONDS * khz * 1000
        first = guest.sample()
        initial = guest.vcpu.get_tsc_offset()
        guest.vcpu.set_tsc_offset(initial + delta)
        second = guest.sample()
        read_back = guest.vcpu.get_tsc_offset()
    moved = _tsc_shift(first, second, khz)
    values = {"offset_delta": delta, "guest_tsc_moved": moved, "offset_read_back": read_back}
    if abs(moved - delta) > khz:  # 1 ms worth of cycles
        raise _NotAvailableError(
            NO,
            f"offset +{OFFSET_SECONDS} s ({delta} cycles) accepted; the guest's TSC moved {moved} cycles "
            f"(offset reads back {read_back})",
            values,
        )
    return f"offset +{OFFSET_SECONDS} s ({delta} cycles): the guest's TSC moved {moved} cycles", values


def _tsc_msr_write(ctx: _Context) -> tuple[str, dict[str, Any]]:
    khz = ctx.tsc_khz
    with ctx.guest() as guest:
        delta = OFFSET_SECONDS * khz * 1000
        first = guest.sample()
        kvm_view = guest.vcpu.get_msrs([c.MSR_IA32_TSC])[c.MSR_IA32_TSC]
        guest.vcpu.set_msrs({c.MSR_IA32_TSC: kvm_view + delta})
        second = guest.sample()
        kvm_after = guest.vcpu.get_msrs([c.MSR_IA32_TSC])[c.MSR_IA32_TSC]
    moved = _tsc_shift(first, second, khz)
    kvm_moved = wrapped_delta(kvm_after, kvm_view)
    values = {"written_delta": delta, "guest_tsc_moved": moved, "kvm_msr_moved": kvm_moved}
    if abs(moved - delta) > khz:
        raise _NotAvailableError(
            NO,
            f"MSR_IA32_TSC +{OFFSET_SECONDS} s accepted (KVM's MSR moved {kvm_moved} cycles); "
            f"the guest's TSC moved {moved} cycles",
            values,
        )
    return f"MSR_IA32_TSC +{OFFSET_SECONDS} s: the guest's TSC moved {moved} cycles", values


def _tsc_frequency(numerator: int, denominator: int) -> Callable[[_Context], tuple[str, dict[str, Any]]]:
    def probe(ctx: _Context) -> tuple[str, dict[str, Any]]:
        host_khz = ctx.tsc_khz
        target = host_khz * numerator // denominator
        caps = {
            "tsc_control_cap": ctx.kvm.check_extension(c.KVM_CAP_TSC_CONTROL),
            "vm_tsc_control_cap": ctx.kvm.check_extension(c.KVM_CAP_VM_TSC_CONTROL),
        }
        with ProbeGuest.create(ctx.kvm, cpuid=ctx.cpuid) as guest:
            try:
                guest.vcpu.set_tsc_khz(target)
            except KvmError as err:
                raise _NotAvailableError(
                    NO, f"KVM_SET_TSC_KHZ {target} kHz refused: {err.errno_name}", caps
                ) from None
            read_back = guest.vcpu.get_tsc_khz()
            guest.start()
            rate, first, second = _rate_khz(guest)
        kvmclock_ok = all(
            s.kvmclock is not None and s.before.clock <= s.kvmclock <= s.after.clock for s in (first, second)
        )
        values = {
            **caps,
            "host_khz": host_khz,
            "target_khz": target,
            "read_back_khz": read_back,
            "guest_rate_khz": rate,
            "guest_kvmclock_consistent": kvmclock_ok,
        }
        seen = f"KVM_SET_TSC_KHZ {target} kHz accepted (reads back {read_back}); guest TSC runs at {rate} kHz"
        if abs(rate - target) > target * RATE_TOLERANCE:
            if not kvmclock_ok:
                seen += "; and the guest's kvmclock no longer agrees with KVM_GET_CLOCK"
            raise _NotAvailableError(NO, seen, values)
        return seen, values

    return probe


def _kvmclock_ctrl(ctx: _Context) -> tuple[str, dict[str, Any]]:
    with ctx.guest() as guest:
        before = guest.sample().pvclock
        guest.vcpu.kvmclock_ctrl()
        after = guest.sample().pvclock
    if before is None or after is None:
        raise _NotAvailableError(NO, "no pvclock page (guest kvmclock not enabled)")
    values = {"flags_before": before.flags, "flags_after": after.flags}
    if not after.guest_stopped:
        raise _NotAvailableError(
            NO, f"accepted; pvclock flags {after.flags:#x} after the next entry: no GUEST_STOPPED"
        )
    return f"pvclock flags {before.flags:#x} -> {after.flags:#x} after the next entry (GUEST_STOPPED)", values


def _host_tsc_khz(ctx: _Context) -> tuple[str, dict[str, Any]]:
    khz = ctx.tsc_khz
    with ctx.guest() as guest:
        vm = guest.vm
        first, first_ns = vm.get_clock(), monotonic_raw_ns()
        time.sleep(RATE_INTERVAL_S)
        second, second_ns = vm.get_clock(), monotonic_raw_ns()
    values: dict[str, Any] = {"kvm_tsc_khz": khz}
    detail = f"KVM_GET_TSC_KHZ {khz} kHz"
    if first.has_host_tsc and first.has_realtime and second.has_host_tsc and second.has_realtime:
        # KVM reads host TSC and realtime at one instant: no read-gap jitter in the rate.
        measured = (second.host_tsc - first.host_tsc) * 1_000_000 // (second.realtime - first.realtime)
        values["measured_khz"] = measured
        detail += f"; host TSC measured at {measured} kHz against host realtime over {RATE_INTERVAL_S:g} s"
    elif first.has_host_tsc and second.has_host_tsc:
        measured = (second.host_tsc - first.host_tsc) * 1_000_000 // (second_ns - first_ns)
        values["measured_khz"] = measured
        detail += f"; host TSC measured at {measured} kHz over {RATE_INTERVAL_S:g} s"
    return detail, values


PROBES: tuple[_Spec, ...] = (
    _Spec(
        "api_version",
        "KVM API version",
        "the ioctl ABI this VMM speaks",
        "an unknown KVM ABI: nothing else can be trusted",
        _api_version,
    ),
    _Spec(
        "probe_guest",
        "probe guest runs (64-bit)",
        "guest-visible clocks can be measured here, not only KVM's side",
        "only host-side ioctls can be checked; what a guest sees cannot be measured",
        _probe_guest,
    ),
    _Spec(
        "clock_get_set",
        "KVM_GET/SET_CLOCK round trip",
        "kvmclock can be saved and restored (QEMU's pause and migration path)",
        "kvmclock cannot be carried across a pause or migration: it restarts from KVM's value",
        _clock_get_set,
    ),
    _Spec(
        "clock_realtime_flag",
        "KVM_GET_CLOCK returns KVM_CLOCK_REALTIME",
        "kvmclock and host realtime come from one instant: downtime is measured without a racy extra read",
        "downtime needs a separate clock_gettime beside KVM_GET_CLOCK; the gap between them is error",
        _clock_flag(c.KVM_CLOCK_REALTIME, "KVM_CLOCK_REALTIME"),
    ),
    _Spec(
        "clock_host_tsc_flag",
        "KVM_GET_CLOCK returns KVM_CLOCK_HOST_TSC",
        "kvmclock and host TSC of one instant: the documented offset formula (step 6) is exact",
        "the documented TSC-offset arithmetic needs a separate host TSC read: its result is off by the gap",
        _clock_flag(c.KVM_CLOCK_HOST_TSC, "KVM_CLOCK_HOST_TSC"),
    ),
    _Spec(
        "set_clock_realtime",
        "KVM_SET_CLOCK with KVM_CLOCK_REALTIME",
        "KVM adds the realtime elapsed since the save (upstream-doc policy; needs hosts' realtime in sync)",
        "the VMM must add the downtime itself before KVM_SET_CLOCK, racing the ioctl",
        _set_clock_realtime,
    ),
    _Spec(
        "guest_kvmclock",
        "guest kvmclock enabled and equal to KVM's",
        "what the VMM saves and restores with KVM_GET/SET_CLOCK is what the guest reads",
        "the guest's kvmclock is not KVM_GET_CLOCK's: restoring KVM's clock does not restore the guest's",
        _guest_kvmclock,
    ),
    _Spec(
        "kvmclock_tsc_stable",
        "pvclock PVCLOCK_TSC_STABLE_BIT (masterclock)",
        "one kvmclock for all vCPUs, usable by the guest's vDSO",
        "no masterclock: per-vCPU kvmclock, guests clamp to a global last value; vCPUs cannot agree exactly",
        _kvmclock_tsc_stable,
    ),
    _Spec(
        "tsc_offset_attr",
        "KVM_VCPU_TSC_OFFSET attribute present",
        "each vCPU's TSC offset can be read and set idempotently (Linux 5.16+ migration controls)",
        "guest TSC can only be restored through MSR_IA32_TSC writes and KVM's 1-second sync heuristic",
        _tsc_offset_attr,
    ),
    _Spec(
        "tsc_offset_effective",
        "TSC offset moves the guest's TSC",
        "the guest's TSC can be continued exactly across migration (guest_tsc = host_tsc + offset)",
        "the guest reads this host's TSC whatever the VMM writes: on migration its TSC jumps by the hosts' "
        "TSC difference; only kvmclock can be kept continuous",
        _tsc_offset_effective,
    ),
    _Spec(
        "tsc_msr_write",
        "host write of MSR_IA32_TSC moves the guest's TSC",
        "QEMU-style TSC restore (MSR write, KVM's sync heuristic) reaches the guest",
        "MSR_IA32_TSC restores (QEMU's path) do not reach the guest's TSC",
        _tsc_msr_write,
    ),
    _Spec(
        "tsc_scaling",
        "TSC scaling (KVM_SET_TSC_KHZ to 3/4 of the host's)",
        "a guest can move to a host with another TSC frequency and keep its TSC rate",
        "a destination with another TSC frequency changes the guest's TSC rate: guests on the tsc "
        "clocksource drift; VMMs refuse such restores (Firecracker: beyond 250 ppm)",
        _tsc_frequency(3, 4),
    ),
    _Spec(
        "tsc_catchup",
        "faster guest TSC (KVM_SET_TSC_KHZ to 5/4, catch-up)",
        "a slower source host's guest keeps its TSC rate here",
        "accepted or not, the guest TSC keeps this host's rate; KVM's idea of the guest TSC may drift from "
        "the guest's",
        _tsc_frequency(5, 4),
    ),
    _Spec(
        "kvmclock_ctrl",
        "KVM_KVMCLOCK_CTRL sets PVCLOCK_GUEST_STOPPED",
        "the guest is told it was paused: its watchdogs do not fire after a long pause",
        "the guest cannot be told it was paused: soft-lockup and RCU stall reports after long pauses",
        _kvmclock_ctrl,
    ),
    _Spec(
        "host_tsc_khz",
        "host TSC frequency",
        "the frequency a destination must match (or scale to) for the guest's TSC rate to survive",
        "the guest's TSC frequency cannot be read, so it cannot be carried to a destination",
        _host_tsc_khz,
    ),
)


def _run_probe(spec: _Spec, ctx: _Context) -> Feature:
    try:
        detail, values = spec.run(ctx)
    except _NotAvailableError as outcome:
        meaning = spec.if_yes if outcome.status == YES else spec.if_no
        return Feature(spec.key, spec.title, outcome.status, outcome.detail, meaning, None, outcome.values)
    except KvmError as err:
        return Feature(spec.key, spec.title, ERROR, str(err), spec.if_no, err.errno_name)
    except (GuestError, PvclockBusyError) as err:
        return Feature(spec.key, spec.title, ERROR, str(err), spec.if_no)
    return Feature(spec.key, spec.title, YES, detail, spec.if_yes, None, values)


def probe(kvm: Kvm, device: str, host: HostInfo | None = None) -> ProbeReport:
    """Run every probe on ``kvm``, in order."""
    ctx = _Context(kvm, host_info() if host is None else host)
    return ProbeReport(device, ctx.host, tuple(_run_probe(spec, ctx) for spec in PROBES))
