"""The policies' steps on a real VM: the names of ``tsclab.host.vmm_policies``, each one small function.

The model (``tsclab.host.vmm_steps.StepRunner``) performs a policy's steps
on its KVM; :class:`StepRunner` here performs the same names on a real
:class:`~tsclab.kvm.vm.Vm` through this package's ioctls, carrying values
in a :class:`~tsclab.kvm.carried.CarriedState`. Every step is recorded
(:class:`StepRecord`) with its host realtime window and duration, and
with what happened:

* ``done`` - performed, and where a write can be read back, it read back;
* ``ineffective`` - KVM accepted a write that reading back shows it did
  not apply (this host's TSC offset and ``MSR_IA32_TSC``);
* ``cannot`` - the host cannot do it (a capability or a flag missing, an
  ioctl that does not exist upstream), with the reason; where a fallback
  was taken the detail says which;
* ``failed`` - an ioctl failed; the runner carries on, as the model does
  and as QEMU does with its "TSC frequency mismatch" warning.

Steps whose ioctls never reached Linux are emulated with the upstream ones
and flagged ``emulated``: the seed's ``KVM_{GET|SET}_TSC_STATE`` (v2, never
merged) with ``KVM_GET_CLOCK`` (one instant's realtime and host TSC,
``kvm_get_walltime_and_clockread()``) and ``KVM_VCPU_TSC_OFFSET``; the
proposed ``KVM_VCPU_TSC_SCALE`` (David Woodhouse's RFC) as the ratio of
``KVM_GET_TSC_KHZ`` to the host's frequency.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.carried import TSC_STATE_TIMESTAMP_VALID, TSC_STATE_TSC_ADJUST_VALID, CarriedState, TscState
from tsclab.kvm.clock import ClockData, realtime_ns, wrapped_delta
from tsclab.kvm.errors import KvmError
from tsclab.kvm.vcpu import Vcpu
from tsclab.kvm.vm import Vm

DONE = "done"
INEFFECTIVE = "ineffective"
CANNOT = "cannot"
FAILED = "failed"

U64 = 1 << 64
TSC_KHZ_TOLERANCE_PPM = 250  # Firecracker's (and QEMU's freq_within_bounds) tolerance
PAIRED = c.KVM_CLOCK_REALTIME | c.KVM_CLOCK_HOST_TSC


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step as performed: what, when (host CLOCK_REALTIME window), how long, with what result.

    ``kvm_realtime`` is the host realtime KVM paired with the step's own
    KVM_GET_CLOCK (``KVM_CLOCK_REALTIME``), the step's exact instant where
    it has one.
    """

    step: str
    phase: str
    side: str
    status: str
    detail: str
    ioctls: tuple[str, ...]
    emulated: bool
    start_realtime: int
    end_realtime: int
    duration_ns: int
    kvm_realtime: int | None = None
    act_window: tuple[int, int] | None = None

    def _window(self) -> tuple[int, int]:
        return self.act_window if self.act_window is not None else (self.start_realtime, self.end_realtime)

    @property
    def instant(self) -> int:
        """The step's instant on host realtime: KVM's own where known, else the middle of the realtime
        reads around the ioctl that decides it (or around the whole step)."""
        if self.kvm_realtime is not None:
            return self.kvm_realtime
        low, high = self._window()
        return (low + high) // 2

    @property
    def half_width(self) -> int:
        """How far :attr:`instant` may be from when KVM acted (0 when KVM said when)."""
        if self.kvm_realtime is not None:
            return 0
        low, high = self._window()
        return (high - low + 1) // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "phase": self.phase,
            "side": self.side,
            "status": self.status,
            "detail": self.detail,
            "ioctls": list(self.ioctls),
            "emulated": self.emulated,
            "start_realtime": self.start_realtime,
            "end_realtime": self.end_realtime,
            "duration_ns": self.duration_ns,
            "kvm_realtime": self.kvm_realtime,
            "act_window": None if self.act_window is None else list(self.act_window),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> StepRecord:
        return cls(
            str(record["step"]),
            str(record["phase"]),
            str(record["side"]),
            str(record["status"]),
            str(record["detail"]),
            tuple(record["ioctls"]),
            bool(record["emulated"]),
            int(record["start_realtime"]),
            int(record["end_realtime"]),
            int(record["duration_ns"]),
            None if record.get("kvm_realtime") is None else int(record["kvm_realtime"]),
            None
            if record.get("act_window") is None
            else (int(record["act_window"][0]), int(record["act_window"][1])),
        )


@dataclass(slots=True)
class Outcome:
    """What a step function returns; the runner adds the timing."""

    status: str
    detail: str
    ioctls: list[str] = field(default_factory=list)
    emulated: bool = False
    kvm_realtime: int | None = None
    act_window: tuple[int, int] | None = None  # host realtime just around the ioctl that decides the step


class StepRunner:
    """Performs named policy steps on one real VM (all its vCPUs), recording each.

    ``tsc_khz`` is this VM's vCPU frequency (``KVM_GET_TSC_KHZ``, read when
    the VM was built); ``tsc_scaling`` whether KVM can scale
    (``KVM_CAP_TSC_CONTROL``); ``clock_realtime`` is QEMU's and
    Firecracker's opt-in to ``KVM_CLOCK_REALTIME`` for
    ``set-clock-or-realtime`` (off, as their defaults).
    """

    def __init__(
        self,
        vm: Vm,
        state: CarriedState,
        *,
        side: str,
        tsc_khz: int,
        tsc_scaling: bool,
        clock_realtime: bool = False,
    ) -> None:
        self.vm = vm
        self.state = state
        self.side = side
        self.tsc_khz = tsc_khz
        self.tsc_scaling = tsc_scaling
        self.clock_realtime = clock_realtime
        self.records: list[StepRecord] = []

    @property
    def vcpus(self) -> list[Vcpu]:
        return self.vm.vcpus

    def run(self, phase: str, steps: Sequence[str]) -> list[StepRecord]:
        """Perform ``steps`` in order; returns their records (also kept in :attr:`records`)."""
        done: list[StepRecord] = []
        for name in steps:
            step = STEPS.get(name)
            start_rt = realtime_ns()
            start = time.perf_counter_ns()
            try:
                outcome = (
                    Outcome(CANNOT, f"no real implementation of step {name!r}")
                    if step is None
                    else step(self)
                )
            except KvmError as err:
                outcome = Outcome(FAILED, f"{err}; carrying on", [err.ioctl])
            end = time.perf_counter_ns()
            end_rt = realtime_ns()
            record = StepRecord(
                name,
                phase,
                self.side,
                outcome.status,
                outcome.detail,
                tuple(outcome.ioctls),
                outcome.emulated,
                start_rt,
                end_rt,
                end - start,
                outcome.kvm_realtime,
                outcome.act_window,
            )
            done.append(record)
        self.records.extend(done)
        return done

    # --- shared helpers

    def saved_clock(self) -> ClockData:
        if self.state.clock is None:
            raise KvmError("KVM_SET_CLOCK", errno.EINVAL, "the policy sets a clock it never read")
        return self.state.clock

    def ratio(self, vcpu: Vcpu) -> tuple[int, int]:
        """The vCPU's TSC ratio (guest kHz, host kHz): 1 without scaling hardware."""
        if not self.tsc_scaling:
            return (1, 1)
        return (vcpu.get_tsc_khz(), self.tsc_khz)

    def guest_tsc_instant(
        self, vcpu: Vcpu, ioctls: list[str], offset: int | None = None
    ) -> tuple[int, int, int, int]:
        """(host realtime, guest TSC, host TSC, error ns) of one instant on this vCPU.

        KVM_GET_CLOCK with REALTIME|HOST_TSC pairs realtime and host TSC
        exactly; the guest TSC is then the host TSC scaled plus the offset
        KVM reports (``offset``, if the caller has just read it). Without
        them (no masterclock yet), the guest TSC is read as ``MSR_IA32_TSC``
        between two host realtime reads, the error half their distance, and
        the host TSC returned is -1.
        """
        clock = self.vm.get_clock()
        ioctls.append("KVM_GET_CLOCK")
        if clock.flags & PAIRED == PAIRED:
            num, den = self.ratio(vcpu)
            if offset is None:
                offset = vcpu.get_tsc_offset() if vcpu.has_tsc_offset() else 0
                ioctls += ["KVM_HAS_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR"]
            guest = (clock.host_tsc * num // den + offset) % U64
            return clock.realtime, guest, clock.host_tsc, 0
        before = realtime_ns()
        value = vcpu.get_msrs([c.MSR_IA32_TSC])[c.MSR_IA32_TSC]
        after = realtime_ns()
        ioctls.append("KVM_GET_MSRS")
        return (before + after) // 2, value, -1, (after - before + 1) // 2

    def warm_up(self) -> None:
        """Every read-only ioctl the steps use, once, before the stop: Python's first call of a ctypes
        path costs tens of microseconds that a compiled VMM does not pay; the stop should measure
        the ioctls. Changes no state."""
        self.vm.get_clock()
        for vcpu in self.vcpus:
            vcpu.get_msrs([c.MSR_IA32_TSC, c.MSR_IA32_TSC_ADJUST, c.MSR_KVM_SYSTEM_TIME_NEW])
            vcpu.get_tsc_khz()
            if vcpu.has_tsc_offset():
                vcpu.get_tsc_offset()
        CarriedState.from_dict(self.state.to_dict())
        realtime_ns()

    def cycles(self, ns: int, khz: int | None = None) -> int:
        """``nsec_to_cycles()``: ns at ``khz`` (default this VM's), floored toward zero."""
        rate = self.tsc_khz if khz is None else khz
        return ns * rate // 1_000_000 if ns >= 0 else -(-ns * rate // 1_000_000)


Step = Callable[[StepRunner], Outcome]


def _set_kvmclock(r: StepRunner, data: ClockData) -> tuple[int, int]:
    """KVM_SET_CLOCK between two host realtime reads: the window in which KVM took its instant."""
    before = realtime_ns()
    r.vm.set_clock(data)
    return before, realtime_ns()


def _set_offset_checked(vcpu: Vcpu, offset: int, ioctls: list[str]) -> tuple[bool, str]:
    """KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET), then read it back."""
    written = offset % U64
    vcpu.set_tsc_offset(written)
    back = vcpu.get_tsc_offset()
    ioctls += ["KVM_SET_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR"]
    if back == written:
        return True, f"vCPU {vcpu.vcpu_id} offset {wrapped_delta(written, 0)}"
    return False, (
        f"vCPU {vcpu.vcpu_id} offset {wrapped_delta(written, 0)} written, reads back "
        f"{wrapped_delta(back, 0)}: this KVM does not apply KVM_VCPU_TSC_OFFSET"
    )


def _offsets_outcome(results: list[tuple[bool, str]], ioctls: list[str], prefix: str, **kw: Any) -> Outcome:
    ok = all(applied for applied, _ in results)
    detail = prefix + "; ".join(text for _, text in results)
    return Outcome(DONE if ok else INEFFECTIVE, detail, ioctls, **kw)


# --- kvmclock (QEMU hw/i386/kvm/clock.c kvmclock_vm_state_change(); api.rst KVM_GET/SET_CLOCK)


def get_clock(r: StepRunner) -> Outcome:
    """KVM_GET_CLOCK: the documented algorithm's S1 (kvmclock, host realtime and TSC of one instant)."""
    before = realtime_ns()
    clock = r.vm.get_clock()
    window = (before, realtime_ns())
    r.state.clock = clock
    paired = clock.realtime if clock.has_realtime else None
    detail = f"kvmclock {clock.clock} ns, flags {clock.flag_names}"
    return Outcome(DONE, detail, ["KVM_GET_CLOCK"], False, paired, window)


def set_clock(r: StepRunner) -> Outcome:
    """KVM_SET_CLOCK to the saved value without KVM_CLOCK_REALTIME (QEMU): the stop is hidden."""
    saved = r.saved_clock()
    window = _set_kvmclock(r, ClockData(saved.clock, 0))
    return Outcome(
        DONE,
        f"kvmclock set to the saved {saved.clock} ns without KVM_CLOCK_REALTIME: the time since it was read "
        "does not count",
        ["KVM_SET_CLOCK"],
        act_window=window,
    )


def set_clock_realtime(r: StepRunner) -> Outcome:
    """D4: KVM_SET_CLOCK with KVM_CLOCK_REALTIME - KVM adds the realtime elapsed since the save."""
    saved = r.saved_clock()
    if not saved.has_realtime:
        outcome = set_clock(r)
        return Outcome(
            CANNOT,
            f"the saved KVM_GET_CLOCK has no KVM_CLOCK_REALTIME (flags {saved.flag_names}): {outcome.detail}",
            outcome.ioctls,
            act_window=outcome.act_window,
        )
    window = _set_kvmclock(r, ClockData(saved.clock, c.KVM_CLOCK_REALTIME, saved.realtime, 0))
    return Outcome(
        DONE,
        f"kvmclock {saved.clock} ns with KVM_CLOCK_REALTIME {saved.realtime}: KVM adds the host realtime "
        "elapsed since the save",
        ["KVM_SET_CLOCK"],
        act_window=window,
    )


def set_clock_or_realtime(r: StepRunner) -> Outcome:
    """QEMU/Firecracker: KVM_CLOCK_REALTIME only when the VMM was asked for it (default: not)."""
    return set_clock_realtime(r) if r.clock_realtime else set_clock(r)


def kvmclock_ctrl(r: StepRunner) -> Outcome:
    """KVM_KVMCLOCK_CTRL on every vCPU: PVCLOCK_GUEST_STOPPED at the next guest entry (api.rst 4.70)."""
    told: list[str] = []
    refused: list[str] = []
    for vcpu in r.vcpus:
        try:
            vcpu.kvmclock_ctrl()
            told.append(str(vcpu.vcpu_id))
        except KvmError as err:
            if err.errno != errno.EINVAL:
                raise
            refused.append(str(vcpu.vcpu_id))
    ioctls = ["KVM_KVMCLOCK_CTRL"] * len(r.vcpus)
    if refused:
        return Outcome(CANNOT, f"EINVAL on vCPU {', '.join(refused)}: kvmclock not enabled there", ioctls)
    return Outcome(DONE, f"vCPU {', '.join(told)} told it was stopped (PVCLOCK_GUEST_STOPPED)", ioctls)


def enable_pvclock(r: StepRunner) -> Outcome:
    """Restore MSR_KVM_SYSTEM_TIME_NEW and MSR_KVM_WALL_CLOCK_NEW (kvm_write_system_time())."""
    written: list[str] = []
    for vcpu in r.vcpus:
        msrs = r.state.pvclock_msrs.get(vcpu.vcpu_id, {})
        values = {i: v for i, v in msrs.items() if i in (c.MSR_KVM_SYSTEM_TIME_NEW, c.MSR_KVM_WALL_CLOCK_NEW)}
        if not values.get(c.MSR_KVM_SYSTEM_TIME_NEW, 0) & c.KVM_MSR_ENABLED:
            continue  # the guest had kvmclock off: nothing to enable
        vcpu.set_msrs(values)
        written.append(f"vCPU {vcpu.vcpu_id} KVM_SYSTEM_TIME_NEW {values[c.MSR_KVM_SYSTEM_TIME_NEW]:#x}")
    if not written:
        return Outcome(DONE, "no vCPU had kvmclock enabled", [])
    return Outcome(DONE, "; ".join(written), ["KVM_SET_MSRS"] * len(written))


# --- TSC by value (QEMU target/i386/kvm/kvm.c kvm_get_tsc(), kvm_put_msrs())


def get_tsc_msrs(r: StepRunner) -> Outcome:
    """KVM_GET_MSRS of MSR_IA32_TSC and MSR_IA32_TSC_ADJUST on every vCPU."""
    for vcpu in r.vcpus:
        values = vcpu.get_msrs([c.MSR_IA32_TSC, c.MSR_IA32_TSC_ADJUST])
        r.state.tsc[vcpu.vcpu_id] = values[c.MSR_IA32_TSC]
        r.state.tsc_adjust[vcpu.vcpu_id] = values[c.MSR_IA32_TSC_ADJUST]
    detail = "; ".join(f"vCPU {v} TSC {t}" for v, t in sorted(r.state.tsc.items()))
    return Outcome(DONE, detail, ["KVM_GET_MSRS"] * len(r.vcpus))


def set_tsc_msrs(r: StepRunner) -> Outcome:
    """Host writes of MSR_IA32_TSC (and TSC_ADJUST), through kvm_synchronize_tsc(); read back."""
    ioctls: list[str] = []
    results: list[tuple[bool, str]] = []
    for vcpu in r.vcpus:
        vid = vcpu.vcpu_id
        if vid not in r.state.tsc:
            raise KvmError("KVM_SET_MSRS", errno.EINVAL, f"no saved MSR_IA32_TSC for vCPU {vid}")
        wanted = r.state.tsc[vid]
        values = {c.MSR_IA32_TSC: wanted}
        if vid in r.state.tsc_adjust:
            values[c.MSR_IA32_TSC_ADJUST] = r.state.tsc_adjust[vid]
        start = time.perf_counter_ns()
        vcpu.set_msrs(values)
        back = vcpu.get_msrs([c.MSR_IA32_TSC])[c.MSR_IA32_TSC]
        elapsed = r.cycles(time.perf_counter_ns() - start)
        ioctls += ["KVM_SET_MSRS", "KVM_GET_MSRS"]
        moved = wrapped_delta(back, wanted)
        if abs(moved - elapsed) <= r.cycles(1_000_000):  # within 1 ms of cycles
            results.append((True, f"vCPU {vid} TSC {wanted}"))
        else:
            results.append(
                (
                    False,
                    f"vCPU {vid} TSC {wanted} written, reads back {moved} cycles away: this KVM does not "
                    "apply host writes of MSR_IA32_TSC",
                )
            )
    return _offsets_outcome(results, ioctls, "")


# --- TSC rate (KVM_GET/SET_TSC_KHZ; QEMU kvm_arch_set_tsc_khz(), Firecracker's 250 ppm)


def get_tsc_khz(r: StepRunner) -> Outcome:
    """S3: KVM_GET_TSC_KHZ of vCPU 0."""
    try:
        r.state.tsc_khz = r.vcpus[0].get_tsc_khz()
    except KvmError as err:
        return Outcome(CANNOT, f"{err} (the host TSC is unstable)", ["KVM_GET_TSC_KHZ"])
    return Outcome(DONE, f"{r.state.tsc_khz} kHz", ["KVM_GET_TSC_KHZ"])


def set_tsc_khz_or_warn(r: StepRunner) -> Outcome:
    """The source's rate on each vCPU that differs; a refusal is QEMU's "TSC frequency mismatch" warning."""
    wanted = r.state.tsc_khz
    if wanted is None:
        return Outcome(DONE, "no saved rate: nothing to set", [])
    ioctls: list[str] = []
    notes: list[str] = []
    status = DONE
    for vcpu in r.vcpus:
        here = vcpu.get_tsc_khz()
        ioctls.append("KVM_GET_TSC_KHZ")
        if here == wanted:
            notes.append(f"vCPU {vcpu.vcpu_id} already at {wanted} kHz")
            continue
        ioctls.append("KVM_SET_TSC_KHZ")
        try:
            vcpu.set_tsc_khz(wanted)
        except KvmError as err:
            status = CANNOT
            notes.append(f"vCPU {vcpu.vcpu_id}: TSC frequency mismatch ({here} kHz here), carrying on: {err}")
            continue
        if not r.tsc_scaling:
            status = INEFFECTIVE
            notes.append(
                f"vCPU {vcpu.vcpu_id}: {wanted} kHz accepted without KVM_CAP_TSC_CONTROL (catch-up at best: "
                "the guest's TSC keeps the host's rate)"
            )
        else:
            notes.append(f"vCPU {vcpu.vcpu_id}: {here} -> {wanted} kHz")
    return Outcome(status, "; ".join(notes), ioctls)


def set_tsc_khz_beyond_250ppm(r: StepRunner) -> Outcome:
    """Firecracker: set the rate only when it is more than 250 ppm off."""
    wanted = r.state.tsc_khz
    if wanted is None:
        return Outcome(DONE, "no saved rate: nothing to set", [])
    here = r.vcpus[0].get_tsc_khz()
    if abs(here - wanted) * 1_000_000 <= TSC_KHZ_TOLERANCE_PPM * wanted:
        return Outcome(DONE, f"{here} kHz is within 250 ppm of {wanted} kHz: left alone", ["KVM_GET_TSC_KHZ"])
    outcome = set_tsc_khz_or_warn(r)
    outcome.ioctls.insert(0, "KVM_GET_TSC_KHZ")
    return outcome


# --- TSC by offset (Documentation/virt/kvm/devices/vcpu.rst section 4, steps S2 and D5-D7)


def get_tsc_offsets(r: StepRunner) -> Outcome:
    """S2: each vCPU's KVM_VCPU_TSC_OFFSET, and its ratio (KVM_VCPU_TSC_SCALE emulated)."""
    ioctls: list[str] = []
    for vcpu in r.vcpus:
        if not vcpu.has_tsc_offset():
            return Outcome(CANNOT, "no KVM_VCPU_TSC_OFFSET attribute (Linux < 5.16)", ["KVM_HAS_DEVICE_ATTR"])
        r.state.offsets[vcpu.vcpu_id] = vcpu.get_tsc_offset()
        r.state.scale[vcpu.vcpu_id] = r.ratio(vcpu)
        ioctls += ["KVM_HAS_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR"]
    offsets = "; ".join(f"vCPU {v} offset {wrapped_delta(o, 0)}" for v, o in sorted(r.state.offsets.items()))
    scale = "ratio 1 (no TSC scaling here)" if not r.tsc_scaling else "ratio guest kHz / host kHz"
    return Outcome(
        DONE,
        f"{offsets}; {scale}: KVM_VCPU_TSC_SCALE (RFC, never merged) emulated",
        ioctls,
        emulated=True,
    )


def _d5(r: StepRunner, ioctls: list[str]) -> ClockData | None:
    now = r.vm.get_clock()
    ioctls.append("KVM_GET_CLOCK")
    return now if now.has_host_tsc else None


def _elapsed_cycles(r: StepRunner, now: ClockData) -> int:
    """``(guest_dst - guest_src) * freq``, freq in kHz and kvmclock in ns."""
    return (now.clock - r.saved_clock().clock) * (r.state.tsc_khz or 0) // 1_000_000


def set_tsc_offsets_doc(r: StepRunner) -> Outcome:
    """D5-D7: ``ofs_dst = ofs_src + (guest_dst - guest_src) * freq + (tsc_src - tsc_dst)``, unscaled."""
    src = r.saved_clock()
    ioctls: list[str] = []
    now = _d5(r, ioctls)
    if now is None or not src.has_host_tsc:
        return Outcome(
            CANNOT, "KVM_GET_CLOCK without KVM_CLOCK_HOST_TSC on one side: D6 cannot be computed", ioctls
        )
    cycles = _elapsed_cycles(r, now)
    results = [
        _set_offset_checked(
            vcpu, r.state.offsets.get(vcpu.vcpu_id, 0) + cycles + src.host_tsc - now.host_tsc, ioctls
        )
        for vcpu in r.vcpus
    ]
    return _offsets_outcome(
        results, ioctls, f"kvmclock advanced {now.clock - src.clock} ns = {cycles} cycles: "
    )


def set_tsc_offsets_scaled(r: StepRunner) -> Outcome:
    """The scale-aware steps: guest TSCs from scaled host TSCs on both sides (dwmw2's correction)."""
    src = r.saved_clock()
    ioctls: list[str] = []
    now = _d5(r, ioctls)
    if now is None or not src.has_host_tsc:
        return Outcome(
            CANNOT, "KVM_GET_CLOCK without KVM_CLOCK_HOST_TSC on one side: offsets not computed", ioctls
        )
    cycles = _elapsed_cycles(r, now)
    results = []
    for vcpu in r.vcpus:
        num, den = r.state.scale.get(vcpu.vcpu_id, (1, 1))
        guest_src = src.host_tsc * num // den + r.state.offsets.get(vcpu.vcpu_id, 0)
        num_dst, den_dst = r.ratio(vcpu)
        results.append(
            _set_offset_checked(vcpu, guest_src + cycles - now.host_tsc * num_dst // den_dst, ioctls)
        )
    return _offsets_outcome(
        results, ioctls, f"kvmclock advanced {now.clock - src.clock} ns = {cycles} cycles: ", emulated=True
    )


def per_vcpu_tsc_offsets(r: StepRunner) -> Outcome:
    """Cloud Hypervisor #8383: each vCPU's saved TSC as an offset from a host TSC read just before.

    Cloud Hypervisor reads the host TSC with ``rdtsc``; Python cannot, so
    the read is KVM_GET_CLOCK's ``host_tsc`` (one ioctl per vCPU, as far
    apart as the original's reads).
    """
    ioctls: list[str] = []
    results = []
    for vcpu in r.vcpus:
        if not vcpu.has_tsc_offset():
            return Outcome(CANNOT, "no KVM_VCPU_TSC_OFFSET attribute (Linux < 5.16)", ["KVM_HAS_DEVICE_ATTR"])
        current = vcpu.get_tsc_offset()
        ioctls.append("KVM_GET_DEVICE_ATTR")
        _realtime, guest_now, _host, _error = r.guest_tsc_instant(vcpu, ioctls, current)
        # offset = saved TSC - scaled host TSC, the scaled host TSC being the guest's now less its offset
        results.append(
            _set_offset_checked(vcpu, r.state.tsc.get(vcpu.vcpu_id, 0) - (guest_now - current), ioctls)
        )
    return _offsets_outcome(
        results, ioctls, "host TSC from KVM_GET_CLOCK or MSR_IA32_TSC (for rdtsc): ", emulated=True
    )


def equalize_tsc_offsets(r: StepRunner) -> Outcome:
    """Cloud Hypervisor #8437: vCPU 0's offset written to every vCPU (one generation, all matched)."""
    ioctls = ["KVM_GET_DEVICE_ATTR"]
    offset = r.vcpus[0].get_tsc_offset()
    results = [_set_offset_checked(vcpu, offset, ioctls) for vcpu in r.vcpus]
    return _offsets_outcome(results, ioctls, "vCPU 0's offset on all: ")


# --- the seed's KVM_{GET|SET}_TSC_STATE (v2, <20201203171118.372391-2-mlevitsk@redhat.com>), emulated


def get_tsc_state(r: StepRunner) -> Outcome:
    """KVM_GET_TSC_STATE, emulated: realtime and guest TSC of one instant, and IA32_TSC_ADJUST.

    The seed read them with ``kvm_get_walltime_and_clockread()`` inside
    KVM; upstream, KVM_GET_CLOCK returns the same pair (REALTIME|HOST_TSC)
    and the guest TSC is the host TSC plus KVM_VCPU_TSC_OFFSET.
    """
    ioctls: list[str] = []
    notes: list[str] = []
    for vcpu in r.vcpus:
        nsec, tsc, _host, error = r.guest_tsc_instant(vcpu, ioctls)
        adjust = vcpu.get_msrs([c.MSR_IA32_TSC_ADJUST])[c.MSR_IA32_TSC_ADJUST]
        ioctls.append("KVM_GET_MSRS")
        flags = TSC_STATE_TIMESTAMP_VALID | TSC_STATE_TSC_ADJUST_VALID
        r.state.tsc_state[vcpu.vcpu_id] = TscState(flags, nsec, tsc, adjust, error)
        how = "paired by KVM_GET_CLOCK" if error == 0 else f"MSR_IA32_TSC within +/-{error} ns"
        notes.append(f"vCPU {vcpu.vcpu_id} TSC {tsc} at realtime {nsec} ({how})")
    return Outcome(
        DONE,
        "; ".join(notes) + " - KVM_GET_TSC_STATE was never merged: emulated with KVM_GET_CLOCK and "
        "KVM_VCPU_TSC_OFFSET",
        ioctls,
        emulated=True,
    )


def set_tsc_state(r: StepRunner) -> Outcome:
    """KVM_SET_TSC_STATE, emulated: the TSC moved on by ``nsec_to_cycles(now_real - nsec)``, as an offset.

    The seed wrote the offset with ``kvm_vcpu_write_tsc_offset()``,
    bypassing KVM's TSC-matching generations; KVM_VCPU_TSC_OFFSET goes
    through ``__kvm_synchronize_tsc()`` instead - the one difference.
    """
    ioctls: list[str] = []
    results: list[tuple[bool, str]] = []
    worst = 0
    for vcpu in r.vcpus:
        saved = r.state.tsc_state.get(vcpu.vcpu_id)
        if saved is None:
            raise KvmError("KVM_SET_TSC_STATE", errno.EINVAL, f"no saved TSC state for vCPU {vcpu.vcpu_id}")
        if not vcpu.has_tsc_offset():
            return Outcome(CANNOT, "no KVM_VCPU_TSC_OFFSET attribute to write the TSC with", ioctls, True)
        current = vcpu.get_tsc_offset()
        ioctls += ["KVM_HAS_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR"]
        now, guest_now, _host, error = r.guest_tsc_instant(vcpu, ioctls, current)
        worst = max(worst, error + saved.error_ns)
        new_tsc = saved.tsc
        if saved.flags & TSC_STATE_TIMESTAMP_VALID:
            new_tsc += r.cycles(now - saved.nsec, r.state.tsc_khz)
        results.append(_set_offset_checked(vcpu, current + new_tsc - guest_now, ioctls))
        if saved.flags & TSC_STATE_TSC_ADJUST_VALID:
            vcpu.set_msrs({c.MSR_IA32_TSC_ADJUST: saved.tsc_adjust})
            ioctls.append("KVM_SET_MSRS")
    return _offsets_outcome(
        results,
        ioctls,
        f"TSC moved on by the realtime since the save (emulated with KVM_VCPU_TSC_OFFSET; the instants "
        f"paired within +/-{worst} ns): ",
        emulated=True,
    )


STEPS: dict[str, Step] = {
    "get-clock": get_clock,
    "set-clock": set_clock,
    "set-clock-realtime": set_clock_realtime,
    "set-clock-or-realtime": set_clock_or_realtime,
    "kvmclock-ctrl": kvmclock_ctrl,
    "get-tsc-msrs": get_tsc_msrs,
    "set-tsc-msrs": set_tsc_msrs,
    "get-tsc-khz": get_tsc_khz,
    "set-tsc-khz-or-warn": set_tsc_khz_or_warn,
    "set-tsc-khz-beyond-250ppm": set_tsc_khz_beyond_250ppm,
    "enable-pvclock": enable_pvclock,
    "get-tsc-offsets": get_tsc_offsets,
    "set-tsc-offsets-doc": set_tsc_offsets_doc,
    "set-tsc-offsets-scaled": set_tsc_offsets_scaled,
    "per-vcpu-tsc-offsets": per_vcpu_tsc_offsets,
    "equalize-tsc-offsets": equalize_tsc_offsets,
    "get-tsc-state": get_tsc_state,
    "set-tsc-state": set_tsc_state,
}
