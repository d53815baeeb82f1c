"""The steps VMM policies are made of: each one KVM ioctl, or a loop of them over the vCPUs.

A policy (:mod:`tsclab.host.vmm_policies`) names steps; :class:`StepRunner`
performs them on a :class:`KvmVm` in order, each ioctl taking
``IOCTL_NS`` of true time - so which step comes first, and how far apart
two per-vCPU writes land, matters as it does on a real host.  What a
source captures goes into :class:`SavedState`, which is what a snapshot
file or the migration stream carries.

Where an ioctl fails the way a VMM tolerates (no TSC scaling on the
destination, an old KVM without the offset attribute) the step logs the
error and the VMM carries on, as QEMU does with its "TSC frequency
mismatch" warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tsclab.arith import mul_u64_u64_shr, u64
from tsclab.host.kvm_vm import KVM_CLOCK_REALTIME, KvmClockData, KvmError, KvmTscState, KvmVm
from tsclab.kernel.vdso import PvclockVcpuTimeInfo

IOCTL_NS = 10_000  # a KVM ioctl's cost in true time: it orders the steps and spaces per-vCPU writes
TSC_KHZ_TOLERANCE_PPM = 250  # Firecracker's (and QEMU's) threshold for setting the rate


@dataclass
class SavedState:
    """What a VMM carries from source to destination."""

    clock: KvmClockData | None = None
    tsc: dict[int, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    scale: dict[int, tuple[int, int]] = field(default_factory=dict)  # (ratio, fractional bits)
    tsc_khz: int | None = None
    tsc_state: dict[int, KvmTscState] = field(default_factory=dict)
    pvti: list[PvclockVcpuTimeInfo | None] = field(default_factory=list)  # guest memory


Log = Callable[[int, str, str], None]


class StepRunner:
    """Performs named steps on a VM, advancing true time by one ``IOCTL_NS`` per ioctl."""

    def __init__(self, log: Log, *, clock_realtime: bool = False) -> None:
        self.log = log
        self.clock_realtime = clock_realtime
        self.t = 0
        self._steps: dict[str, Callable[[KvmVm, SavedState], None]] = {
            "get-clock": self._get_clock,
            "set-clock": self._set_clock,
            "set-clock-realtime": self._set_clock_realtime,
            "set-clock-or-realtime": self._set_clock_or_realtime,
            "kvmclock-ctrl": self._kvmclock_ctrl,
            "get-tsc-msrs": self._get_tsc_msrs,
            "set-tsc-msrs": self._set_tsc_msrs,
            "get-tsc-khz": self._get_tsc_khz,
            "set-tsc-khz-or-warn": self._set_tsc_khz_or_warn,
            "set-tsc-khz-beyond-250ppm": self._set_tsc_khz_beyond_tolerance,
            "enable-pvclock": self._enable_pvclock,
            "get-tsc-offsets": self._get_tsc_offsets,
            "set-tsc-offsets-doc": self._set_tsc_offsets_doc,
            "set-tsc-offsets-scaled": self._set_tsc_offsets_scaled,
            "per-vcpu-tsc-offsets": self._per_vcpu_tsc_offsets,
            "equalize-tsc-offsets": self._equalize_tsc_offsets,
            "get-tsc-state": self._get_tsc_state,
            "set-tsc-state": self._set_tsc_state,
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._steps)

    def run(self, steps: tuple[str, ...], kvm: KvmVm, saved: SavedState, t_ns: int) -> int:
        """Perform ``steps`` from ``t_ns``; return the true time they finished."""
        self.t = t_ns
        for step in steps:
            try:
                self._steps[step](kvm, saved)
            except KvmError as err:
                self.log(self.t, "vmm", f"{step} failed, carrying on: {err}")
        return self.t

    def _tick(self) -> int:
        now = self.t
        self.t += IOCTL_NS
        return now

    # --- kvmclock ------------------------------------------------------

    def _get_clock(self, kvm: KvmVm, saved: SavedState) -> None:
        saved.clock = kvm.get_clock(self._tick())

    def _saved_clock(self, saved: SavedState) -> KvmClockData:
        if saved.clock is None:
            raise KvmError("KVM_SET_CLOCK", "EINVAL", "the policy sets a clock it never read")
        return saved.clock

    def _set_clock(self, kvm: KvmVm, saved: SavedState) -> None:
        kvm.set_clock(KvmClockData(self._saved_clock(saved).clock, 0), self._tick())

    def _set_clock_realtime(self, kvm: KvmVm, saved: SavedState) -> None:
        """``KVM_SET_CLOCK`` with ``KVM_CLOCK_REALTIME`` when the source could give a realtime."""
        clock = self._saved_clock(saved)
        if clock.flags & KVM_CLOCK_REALTIME:
            kvm.set_clock(
                KvmClockData(clock.clock, KVM_CLOCK_REALTIME, realtime=clock.realtime), self._tick()
            )
        else:
            self._set_clock(kvm, saved)

    def _set_clock_or_realtime(self, kvm: KvmVm, saved: SavedState) -> None:
        if self.clock_realtime:
            self._set_clock_realtime(kvm, saved)
        else:
            self._set_clock(kvm, saved)

    def _kvmclock_ctrl(self, kvm: KvmVm, _saved: SavedState) -> None:
        for vcpu in range(kvm.nr_vcpus):
            try:
                kvm.kvmclock_ctrl(vcpu, self._tick())
            except KvmError as err:
                self.log(self.t, "vmm", f"KVM_KVMCLOCK_CTRL on vCPU {vcpu}: {err}")

    def _enable_pvclock(self, kvm: KvmVm, saved: SavedState) -> None:
        """Restoring ``MSR_KVM_SYSTEM_TIME_NEW``: the guest's pvclock pages are live again."""
        for vcpu in range(kvm.nr_vcpus):
            if vcpu < len(saved.pvti) and saved.pvti[vcpu] is None:
                continue
            kvm.enable_pvclock(vcpu, self._tick())

    # --- TSC by value --------------------------------------------------

    def _get_tsc_msrs(self, kvm: KvmVm, saved: SavedState) -> None:
        for vcpu in range(kvm.nr_vcpus):
            saved.tsc[vcpu] = kvm.get_msr_tsc(vcpu, self._tick())

    def _set_tsc_msrs(self, kvm: KvmVm, saved: SavedState) -> None:
        for vcpu in range(kvm.nr_vcpus):
            kvm.set_msr_tsc(vcpu, saved.tsc[vcpu], self._tick())

    def _get_tsc_state(self, kvm: KvmVm, saved: SavedState) -> None:
        for vcpu in range(kvm.nr_vcpus):
            saved.tsc_state[vcpu] = kvm.get_tsc_state(vcpu, self._tick())

    def _set_tsc_state(self, kvm: KvmVm, saved: SavedState) -> None:
        for vcpu in range(kvm.nr_vcpus):
            kvm.set_tsc_state(vcpu, saved.tsc_state[vcpu], self._tick())

    # --- TSC rate --------------------------------------------------------

    def _get_tsc_khz(self, kvm: KvmVm, saved: SavedState) -> None:
        self._tick()
        saved.tsc_khz = kvm.get_tsc_khz(0)

    def _set_tsc_khz_or_warn(self, kvm: KvmVm, saved: SavedState) -> None:
        """Ask for the source's rate on each vCPU where it differs; a refusal is a warning (QEMU)."""
        if saved.tsc_khz is None:
            return
        for vcpu in range(kvm.nr_vcpus):
            self._tick()
            if kvm.get_tsc_khz(vcpu) == saved.tsc_khz:
                continue
            try:
                kvm.set_tsc_khz(vcpu, saved.tsc_khz, self._tick())
            except KvmError as err:
                self.log(self.t, "vmm", f"TSC frequency mismatch on vCPU {vcpu}, carrying on: {err}")

    def _set_tsc_khz_beyond_tolerance(self, kvm: KvmVm, saved: SavedState) -> None:
        """Firecracker: set the rate only when it differs by more than 250 ppm."""
        if saved.tsc_khz is None:
            return
        self._tick()
        here = kvm.get_tsc_khz(0)
        if abs(here - saved.tsc_khz) * 1_000_000 <= TSC_KHZ_TOLERANCE_PPM * saved.tsc_khz:
            return
        self._set_tsc_khz_or_warn(kvm, saved)

    # --- TSC by offset ---------------------------------------------------

    def _get_tsc_offsets(self, kvm: KvmVm, saved: SavedState) -> None:
        """S2 of the documented algorithm (and the scale, for the scale-aware variant)."""
        for vcpu in range(kvm.nr_vcpus):
            self._tick()
            saved.offsets[vcpu] = kvm.get_tsc_offset(vcpu)
            saved.scale[vcpu] = kvm.get_tsc_scale(vcpu)

    def _elapsed_cycles(self, saved: SavedState, now: KvmClockData) -> int:
        """``(guest_dst - guest_src) * freq``, with freq in kHz and kvmclock in ns."""
        src = self._saved_clock(saved)
        khz = saved.tsc_khz or 0
        return (now.clock - src.clock) * khz // 1_000_000

    def _set_tsc_offsets_doc(self, kvm: KvmVm, saved: SavedState) -> None:
        """D5-D7: ``ofs_dst = ofs_src + (guest_dst - guest_src) * freq + (tsc_src - tsc_dst)``.

        As documented: host TSCs unscaled, so wrong when either side scales.
        """
        src = self._saved_clock(saved)
        now = kvm.get_clock(self._tick())
        cycles = self._elapsed_cycles(saved, now)
        for vcpu in range(kvm.nr_vcpus):
            offset = u64(saved.offsets[vcpu] + cycles + src.host_tsc - now.host_tsc)
            kvm.set_tsc_offset(vcpu, offset, self._tick())

    def _set_tsc_offsets_scaled(self, kvm: KvmVm, saved: SavedState) -> None:
        """The scale-aware steps: guest TSCs from scaled host TSCs on both sides."""
        src = self._saved_clock(saved)
        now = kvm.get_clock(self._tick())
        cycles = self._elapsed_cycles(saved, now)
        for vcpu in range(kvm.nr_vcpus):
            ratio, bits = saved.scale[vcpu]
            guest_src = u64(mul_u64_u64_shr(src.host_tsc, ratio, bits) + saved.offsets[vcpu])
            ratio_dst, bits_dst = kvm.get_tsc_scale(vcpu)
            raw_dst = mul_u64_u64_shr(now.host_tsc, ratio_dst, bits_dst)
            kvm.set_tsc_offset(vcpu, u64(guest_src + cycles - raw_dst), self._tick())

    def _per_vcpu_tsc_offsets(self, kvm: KvmVm, saved: SavedState) -> None:
        """Each vCPU's saved TSC value written as an offset from the host TSC read just before.

        The VMM reads the host TSC itself (``rdtsc`` in user space) for each
        vCPU in turn, an ioctl apart, so the offsets differ by the cycles
        between the reads: the vCPUs no longer match and KVM drops its
        master clock.
        """
        for vcpu in range(kvm.nr_vcpus):
            host_tsc = kvm.host.tsc(self._tick())
            ratio, bits = kvm.get_tsc_scale(vcpu)
            offset = u64(saved.tsc[vcpu] - mul_u64_u64_shr(host_tsc, ratio, bits))
            kvm.set_tsc_offset(vcpu, offset, self._tick())

    def _equalize_tsc_offsets(self, kvm: KvmVm, _saved: SavedState) -> None:
        """Cloud Hypervisor #8437 (and Firecracker #6200): vCPU 0's offset written to every vCPU.

        vCPU 0 included: KVM matches a write against the last one written, so
        the same value on every vCPU in turn is one generation, all matched.
        """
        self._tick()
        offset = kvm.get_tsc_offset(0)
        for vcpu in range(kvm.nr_vcpus):
            kvm.set_tsc_offset(vcpu, offset, self._tick())
