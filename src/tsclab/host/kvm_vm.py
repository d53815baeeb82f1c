"""One KVM VM's clock state: TSC offsets, the master clock and the kvmclock pages.

Models ``arch/x86/kvm/x86.c`` from KVM 5.10 to the 6.x trees, with the
behaviour boundaries that matter to guest time chosen by the host's KVM
version (``HostSpec.kvm``):

* 5.14: the PM notifier (``kvm_arch_suspend_notifier()``, commit
  7d62874f69d7) marks every kvmclock vCPU paused when the host suspends;
* 5.16: Oliver Upton's series: ``KVM_CLOCK_REALTIME``/``KVM_CLOCK_HOST_TSC``
  in ``KVM_GET_CLOCK``/``KVM_SET_CLOCK`` (c68dc1b577ea) and the
  ``KVM_VCPU_TSC_OFFSET`` vCPU attribute (828ca89628bf);
* 6.7: ``kvm->arch.user_set_tsc`` (bf328e22e472): the 1-second
  synchronisation slop applies only once userspace has written a TSC;
* 6.8: ``kvm_track_tsc_matching()`` requests a master clock update only when
  the master clock must toggle or a new generation starts (c52ffadc65e2);
  before, every TSC write did while the master clock was on or possible.

What is modelled, per VM (``kvm->arch``): the TSC-write generations and the
matching count (``cur_tsc_*``, ``last_tsc_*``, ``nr_vcpus_matched_tsc``), the
master clock snapshot (``use_master_clock``, ``master_kernel_ns``,
``master_cycle_now``, ``backwards_tsc_observed``) and ``kvmclock_offset``;
per vCPU: the rate (``virtual_tsc_khz``, its ns-to-cycles scale, the scaling
ratio, catch-up), ``l1_tsc_offset``, the pending requests, KVM's private
``hv_clock`` and the pvclock page in guest memory.

What is not: the host TSC is reliable and synchronised (``check_tsc_unstable()``
is false, so no per-``vcpu_load`` catch-up and no "KVM discovered backwards
TSC"); vCPUs do not move between physical CPUs (``KVM_REQ_MIGRATE_TIMER`` and
the cpu-change clock requests of ``kvm_arch_vcpu_load()``); nested guests;
Xen and Hyper-V clock pages; the old ``MSR_KVM_SYSTEM_TIME`` (so
``boot_vcpu_runs_old_kvmclock`` stays false); ``kvmclock_update_work``'s
100 ms delay (its clock update requests are made at once).

Every method takes the true time ``t_ns`` (ns since the guest booted) at
which it happens; the host clocks are read from :class:`HostClock` at that
instant, which stands for the kernel's ``rdtsc()`` and
``get_kvmclock_base_ns()``.

Layer: ``host`` uses ``arith``, ``clocksource``, ``kernel.vdso`` (the pvclock
page type) and ``scenario.model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsclab.arith import mul_u64_u64_shr, s64, u32, u64
from tsclab.clocksource.pvclock import kvm_tsc_scale, pvclock_scale_delta
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_tsc import (
    AMD_SVM,
    INTEL_VMX,
    TscScalingCaps,
    kvm_compute_l1_tsc_offset,
    kvm_read_l1_tsc,
    kvm_scale_tsc,
    nsec_to_cycles,
    set_tsc_khz,
)
from tsclab.kernel.vdso import (
    PVCLOCK_GUEST_STOPPED,
    PVCLOCK_TSC_STABLE_BIT,
    PvclockVcpuTimeInfo,
    pvclock_read_cycles,
)

# --- uapi (include/uapi/linux/kvm.h) ------------------------------------------

KVM_CLOCK_TSC_STABLE = 2  # "Do not use 1, KVM_CHECK_EXTENSION returned it before we had flags."
KVM_CLOCK_REALTIME = 1 << 2
KVM_CLOCK_HOST_TSC = 1 << 3
#: ``KVM_CLOCK_VALID_FLAGS`` (arch/x86/include/asm/kvm_host.h, 5.16+).
KVM_CLOCK_VALID_FLAGS = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC

# The seed thread's proposed (never merged) v2 ABI, virtualization-time.md 1.1.
KVM_TSC_STATE_TIMESTAMP_VALID = 1
KVM_TSC_STATE_TSC_ADJUST_VALID = 2

# --- vCPU requests (arch/x86/include/asm/kvm_host.h) -------------------------

KVM_REQ_MASTERCLOCK_UPDATE = "KVM_REQ_MASTERCLOCK_UPDATE"
KVM_REQ_GLOBAL_CLOCK_UPDATE = "KVM_REQ_GLOBAL_CLOCK_UPDATE"
KVM_REQ_CLOCK_UPDATE = "KVM_REQ_CLOCK_UPDATE"

# --- behaviour boundaries (KVM versions) ---------------------------------------

KVM_PM_NOTIFIER_SINCE = (5, 14)
KVM_CLOCK_REALTIME_SINCE = (5, 16)
KVM_VCPU_TSC_OFFSET_SINCE = (5, 16)
KVM_USER_SET_TSC_SINCE = (6, 7)
KVM_MASTERCLOCK_TOGGLE_ONLY_SINCE = (6, 8)

#: ``kvm_caps.max_guest_tsc_khz`` is capped so the rate fits an int.
_MAX_GUEST_TSC_KHZ_CAP = 0x7FFF_FFFF

_SCALING_CAPS: dict[str, TscScalingCaps | None] = {"vmx": INTEL_VMX, "svm": AMD_SVM, "none": None}


# --- data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KvmClockData:
    """``struct kvm_clock_data``: kvmclock ns, flags, and (5.16+) host realtime and TSC."""

    clock: int
    flags: int
    realtime: int = 0
    host_tsc: int = 0


@dataclass(frozen=True, slots=True)
class KvmTscState:
    """``struct kvm_tsc_state`` of the seed's v2 (``KVM_{GET,SET}_TSC_STATE``, never merged)."""

    flags: int
    nsec: int
    tsc: int
    tsc_adjust: int = 0


class KvmError(Exception):
    """An ioctl failed: ``str()`` reads ``"KVM_SET_TSC_KHZ: EINVAL (detail)"``."""

    def __init__(self, ioctl: str, errno_name: str, detail: str) -> None:
        super().__init__(f"{ioctl}: {errno_name} ({detail})")
        self.ioctl = ioctl
        self.errno_name = errno_name
        self.detail = detail


def _empty_pvti() -> PvclockVcpuTimeInfo:
    """A zeroed ``struct pvclock_vcpu_time_info`` (the dataclass defaults flags to TSC_STABLE)."""
    return PvclockVcpuTimeInfo(
        version=0, tsc_timestamp=0, system_time=0, tsc_to_system_mul=0, tsc_shift=0, flags=0
    )


@dataclass(slots=True)
class _Vcpu:
    """The ``struct kvm_vcpu_arch`` fields that concern time."""

    index: int
    l1_tsc_scaling_ratio: int
    virtual_tsc_khz: int = 0
    virtual_tsc_mult: int = 0
    virtual_tsc_shift: int = 0
    # tsc_catchup and tsc_always_catchup: set together by set_tsc_khz() and
    # never cleared (a stable host TSC never sets tsc_catchup alone).
    tsc_always_catchup: bool = False
    l1_tsc_offset: int = 0
    this_tsc_generation: int = 0
    this_tsc_nsec: int = 0
    this_tsc_write: int = 0
    last_guest_tsc: int = 0
    ia32_tsc_adjust_msr: int = 0
    pv_time_active: bool = False
    pvclock_set_guest_stopped_request: bool = False
    hw_tsc_khz: int = 0
    hv_clock: PvclockVcpuTimeInfo = field(default_factory=_empty_pvti)
    requests: set[str] = field(default_factory=set)


# --- the VM --------------------------------------------------------------------


class KvmVm:
    """Model of one KVM VM's clock state (``arch/x86/kvm/x86.c``, KVM 5.10 to 6.x)."""

    def __init__(
        self,
        host: HostClock,
        nr_vcpus: int,
        t_ns: int,
        *,
        tsc_khz: int | None = None,
        ignores_tsc_writes: bool = False,
    ) -> None:
        """``KVM_CREATE_VM`` then ``KVM_CREATE_VCPU`` for each vCPU, all at ``t_ns``.

        ``ignores_tsc_writes`` models a KVM that is not upstream's: one whose
        guests read the host's TSC (``kvm_pvm`` runs RDTSC natively in ring
        3; ``tsclab kvm probe`` finds it).  Every vCPU's offset is 0 from
        creation on, and ``KVM_VCPU_TSC_OFFSET``, host ``MSR_IA32_TSC`` and
        TSC-state writes are accepted and ignored; kvmclock, the master
        clock and the pvclock pages are upstream's.

        ``kvm_arch_init_vm()``: ``kvmclock_offset = -get_kvmclock_base_ns()``
        (kvmclock starts at 0) and a first ``pvclock_update_vm_gtod_copy()``
        (no vCPUs yet, so no master clock).  A ``tsc_khz`` is applied as the
        VM-wide ``KVM_SET_TSC_KHZ`` (``kvm->arch.default_tsc_khz``), so each
        vCPU is created at that rate by ``kvm_arch_vcpu_create()``; a rate
        the vCPU ioctl would refuse (above ``max_guest_tsc_khz``, or outside
        the 250 ppm band without scaling hardware and slower than the host)
        raises :class:`KvmError` here rather than leaving the vCPU unscaled
        as the VM-wide path silently would.  Then
        ``kvm_arch_vcpu_postcreate()`` writes TSC 0 through
        ``kvm_synchronize_tsc()``, ``online_vcpus`` already counting the vCPU.
        """
        if nr_vcpus < 1:
            raise ValueError(f"a VM needs at least one vCPU, got {nr_vcpus}")
        self.host: HostClock = host
        self.nr_vcpus: int = nr_vcpus
        self.version: tuple[int, int] = host.spec.kvm
        self.pvti: list[PvclockVcpuTimeInfo | None] = [None] * nr_vcpus
        self.log: list[tuple[int, str, str]] = []
        self._caps = _SCALING_CAPS[host.spec.scaling]
        # Whose fixed point the ratios are in; without scaling hardware the
        # ratio is always the default, i.e. the identity.
        self._fixed_point: TscScalingCaps = self._caps if self._caps is not None else INTEL_VMX
        self._require_host_running(t_ns, "KVM_CREATE_VM")

        # kvm->arch, as kvm_arch_init_vm() leaves it.
        self._kvmclock_offset = s64(-host.boot_ns(t_ns))
        self._last_tsc_nsec = 0
        self._last_tsc_write = 0
        self._last_tsc_khz = 0
        self._last_tsc_offset = 0
        self._cur_tsc_generation = 0
        self._cur_tsc_nsec = 0
        self._cur_tsc_write = 0
        self._cur_tsc_offset = 0
        self._nr_vcpus_matched_tsc = 0
        self._user_set_tsc = False
        self._use_master_clock = False
        self._master_kernel_ns = 0
        self._master_cycle_now = 0
        self._backwards_tsc_observed = False
        self._online_vcpus = 0
        self._created_ns = t_ns
        self._resumes_seen: set[int] = set()
        self._vcpus: list[_Vcpu] = []
        self._log(t_ns, "KVM_CREATE_VM", f"host {host.name}, KVM {self.version[0]}.{self.version[1]}")
        self._pvclock_update_vm_gtod_copy(t_ns)

        default_khz = self._vm_default_tsc_khz(tsc_khz, t_ns)
        for index in range(nr_vcpus):
            self._create_vcpu(index, default_khz, t_ns)
        self.ignores_tsc_writes = ignores_tsc_writes
        if ignores_tsc_writes:
            # The guest reads the host's TSC: postcreate's write of TSC 0 never took effect.
            for v in self._vcpus:
                v.l1_tsc_offset = 0
            self._cur_tsc_offset = self._last_tsc_offset = 0

    def _ignored_tsc_write(self, t_ns: int, ioctl: str, vcpu: int) -> bool:
        """On a KVM that ignores TSC writes: log the write as accepted and ignored, and say so."""
        if not self.ignores_tsc_writes:
            return False
        self._vcpu(vcpu)
        self._log(t_ns, ioctl, f"vcpu{vcpu}: accepted and ignored - this host's guests read the host's TSC")
        return True

    # --- state the rest of tsclab reads ------------------------------------

    @property
    def use_master_clock(self) -> bool:
        """``kvm->arch.use_master_clock`` as last computed by ``pvclock_update_vm_gtod_copy()``."""
        return self._use_master_clock

    @property
    def backwards_tsc_observed(self) -> bool:
        """``kvm->arch.backwards_tsc_observed``: set for good after a host TSC reset."""
        return self._backwards_tsc_observed

    @property
    def kvmclock_offset(self) -> int:
        """``kvm->arch.kvmclock_offset`` (s64): kvmclock minus the kvmclock base."""
        return self._kvmclock_offset

    def pending_requests(self, vcpu: int) -> frozenset[str]:
        """The ``KVM_REQ_*`` time requests pending on a vCPU."""
        return frozenset(self._vcpu(vcpu).requests)

    def pvclock_active(self, vcpu: int) -> bool:
        """``vcpu->arch.pv_time.active``: the guest enabled kvmclock on this vCPU."""
        return self._vcpu(vcpu).pv_time_active

    # --- guest-facing state ---------------------------------------------------

    def enable_pvclock(self, vcpu: int, t_ns: int) -> None:
        """``MSR_KVM_SYSTEM_TIME_NEW`` written with the enable bit: ``kvm_write_system_time()``.

        The guest kernel's kvmclock init, or the VMM restoring the MSR.  The
        page becomes active and ``KVM_REQ_GLOBAL_CLOCK_UPDATE`` is requested
        (all KVM versions modelled).
        """
        v = self._vcpu(vcpu)
        v.pv_time_active = True
        v.requests.add(KVM_REQ_GLOBAL_CLOCK_UPDATE)
        self._log(t_ns, "MSR_KVM_SYSTEM_TIME_NEW", f"vcpu{vcpu}: kvmclock enabled")

    def set_guest_memory_pvti(self, vcpu: int, page: PvclockVcpuTimeInfo | None) -> None:
        """Guest memory restored from a snapshot: the pvclock page is whatever was saved.

        A copy is stored (the snapshot stays untouched); if the guest already
        has a page object, its fields are overwritten in place so that
        whoever holds it (the guest's vDSO data) sees the restored memory.
        It stays stale until the next ``kvm_guest_time_update()``.
        """
        self._vcpu(vcpu)
        current = self.pvti[vcpu]
        if page is None:
            self.pvti[vcpu] = None
        elif current is None:
            self.pvti[vcpu] = _copy_pvti(page)
        else:
            _store_pvti(current, page)

    def vcpu_run(self, vcpu: int, t_ns: int) -> None:
        """``KVM_RUN`` up to the VM entry: ``vcpu_enter_guest()``'s time requests, in its order.

        ``KVM_REQ_MASTERCLOCK_UPDATE`` (``kvm_update_masterclock()``), then
        ``KVM_REQ_GLOBAL_CLOCK_UPDATE`` (``kvm_gen_kvmclock_update()``), then
        ``KVM_REQ_CLOCK_UPDATE`` (``kvm_guest_time_update()``, which writes
        the pvclock page).  A catch-up vCPU (``tsc_always_catchup``) gets a
        clock update on every entry: KVM requests one on each VM exit.
        """
        self._require_host_running(t_ns, "KVM_RUN")
        v = self._vcpu(vcpu)
        if v.tsc_always_catchup:
            v.requests.add(KVM_REQ_CLOCK_UPDATE)
        done: list[str] = []
        if _check_request(v, KVM_REQ_MASTERCLOCK_UPDATE):
            self._kvm_update_masterclock(t_ns)
            done.append("masterclock " + ("on" if self._use_master_clock else "off"))
        if _check_request(v, KVM_REQ_GLOBAL_CLOCK_UPDATE):
            self._kvm_gen_kvmclock_update(v)
            done.append("global clock update")
        if _check_request(v, KVM_REQ_CLOCK_UPDATE):
            self._kvm_guest_time_update(v, t_ns)
            done.append("clock update")
        self._log(t_ns, "KVM_RUN", f"vcpu{vcpu}" + (": " + ", ".join(done) if done else ""))

    def guest_tsc(self, vcpu: int, t_ns: int) -> int:
        """The guest's RDTSC at ``t_ns``: ``kvm_read_l1_tsc(host TSC)`` with the vCPU's offset and ratio."""
        v = self._vcpu(vcpu)
        host_tsc = self.host.tsc(t_ns)
        return kvm_read_l1_tsc(host_tsc, v.l1_tsc_offset, v.l1_tsc_scaling_ratio, self._fixed_point)

    def true_time_at_guest_tsc(self, vcpu: int, target: int, not_before_ns: int) -> int | None:
        """Smallest ``t >= not_before_ns`` with ``guest_tsc(vcpu, t) >= target`` (TSC-deadline expiry).

        Exact for the vCPU's current offset and ratio (a later offset write
        or catch-up moves it).  The guest TSC is ``offset + scale(host)``
        modulo 2**64; within the current wrap of that sum it grows with the
        host TSC, so the answer is the first host TSC value ``h`` with
        ``scale(h) >= target + wraps * 2**64 - offset``, i.e.
        ``h = ceil(need * 2**frac_bits / ratio)``, handed to
        :meth:`HostClock.true_time_at_tsc`.  ``None`` if a host TSC reset
        comes first.
        """
        v = self._vcpu(vcpu)
        start = self.host.next_running_ns(not_before_ns)
        scaled_now = kvm_scale_tsc(self.host.tsc(start), v.l1_tsc_scaling_ratio, self._fixed_point)
        wraps = (v.l1_tsc_offset + scaled_now) >> 64
        need = u64(target) + (wraps << 64) - v.l1_tsc_offset
        if need <= scaled_now:
            return start
        if v.l1_tsc_scaling_ratio == self._fixed_point.default_ratio:
            host_target = need
        else:
            host_target = -(-(need << self._fixed_point.frac_bits) // v.l1_tsc_scaling_ratio)
        return self.host.true_time_at_tsc(host_target, start)

    def kvmclock_ns(self, vcpu: int, t_ns: int) -> int:
        """What the guest's kvmclock read returns now: ``__pvclock_read_cycles()`` on its page."""
        page = self.pvti[vcpu]
        if page is None:
            raise ValueError(f"vcpu{vcpu}: no pvclock page in guest memory")
        return pvclock_read_cycles(page, self.guest_tsc(vcpu, t_ns))

    # --- VM ioctls ------------------------------------------------------------

    def get_clock(self, t_ns: int) -> KvmClockData:
        """``KVM_GET_CLOCK``: ``kvm_vm_ioctl_get_clock()`` / ``__get_kvmclock()``.

        With the master clock: the kvmclock of the master snapshot read at
        the current host TSC, scaled at the host's ``tsc_khz`` (not the
        guest's rate), flag ``KVM_CLOCK_TSC_STABLE``; from 5.16, on a
        TSC-based host, also the host's realtime and TSC of the same instant
        with ``KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC`` (only in the master
        clock branch, as in the kernel).  Without: base ns plus
        ``kvmclock_offset``, flags 0.
        """
        self._require_host_running(t_ns, "KVM_GET_CLOCK")
        if not self._use_master_clock:
            data = KvmClockData(clock=u64(self.host.boot_ns(t_ns) + self._kvmclock_offset), flags=0)
        else:
            host_tsc = self.host.tsc(t_ns)
            flags, realtime = KVM_CLOCK_TSC_STABLE, 0
            if self._has(KVM_CLOCK_REALTIME_SINCE) and self._host_clocksource_is_tsc:
                flags |= KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC
                realtime = u64(self.host.realtime_ns(t_ns))
            scale = kvm_tsc_scale(self.host.tsc_khz)
            master = PvclockVcpuTimeInfo(
                tsc_timestamp=self._master_cycle_now,
                system_time=u64(self._master_kernel_ns + self._kvmclock_offset),
                tsc_to_system_mul=scale.tsc_to_system_mul,
                tsc_shift=scale.tsc_shift,
                flags=0,
            )
            clock = pvclock_read_cycles(master, host_tsc)
            reported_tsc = host_tsc if flags & KVM_CLOCK_HOST_TSC else 0
            data = KvmClockData(clock=clock, flags=flags, realtime=realtime, host_tsc=reported_tsc)
        self._log(t_ns, "KVM_GET_CLOCK", f"clock={data.clock} flags={data.flags:#x}")
        return data

    def set_clock(self, data: KvmClockData, t_ns: int) -> None:
        """``KVM_SET_CLOCK``: ``kvm_vm_ioctl_set_clock()``.

        Flags: before 5.16 any flag is ``EINVAL``; from 5.16 anything outside
        ``KVM_CLOCK_VALID_FLAGS`` is (the 2022+ trees accept KVM_GET_CLOCK's
        flags back; the v7 posting accepted only ``KVM_CLOCK_REALTIME``), and
        ``KVM_CLOCK_REALTIME`` adds ``now_real - data.realtime`` to the clock
        when positive ("Avoid stepping the kvmclock backwards").  The master
        clock is refreshed first, then ``kvmclock_offset = clock - now_raw``
        with ``now_raw`` the fresh ``master_kernel_ns`` (master clock) or the
        base ns; every vCPU gets ``KVM_REQ_CLOCK_UPDATE``.
        """
        self._require_host_running(t_ns, "KVM_SET_CLOCK")
        allowed = KVM_CLOCK_VALID_FLAGS if self._has(KVM_CLOCK_REALTIME_SINCE) else 0
        if data.flags & ~allowed:
            raise self._fail(t_ns, "KVM_SET_CLOCK", "EINVAL", f"flags {data.flags:#x} not accepted")
        self._pvclock_update_vm_gtod_copy(t_ns)
        clock = u64(data.clock)
        added = 0
        if data.flags & KVM_CLOCK_REALTIME:
            now_real = u64(self.host.realtime_ns(t_ns))
            if now_real > u64(data.realtime):
                added = now_real - u64(data.realtime)
                clock = u64(clock + added)
        now_raw = self._master_kernel_ns if self._use_master_clock else self.host.boot_ns(t_ns)
        self._kvmclock_offset = s64(clock - now_raw)
        self._request_all(KVM_REQ_CLOCK_UPDATE)
        self._log(t_ns, "KVM_SET_CLOCK", f"clock={clock} (+{added} realtime) offset={self._kvmclock_offset}")

    # --- vCPU ioctls ----------------------------------------------------------

    def kvmclock_ctrl(self, vcpu: int, t_ns: int) -> None:
        """``KVM_KVMCLOCK_CTRL``: ``kvm_set_guest_paused()``.

        Only sets ``pvclock_set_guest_stopped_request`` and requests a clock
        update: ``PVCLOCK_GUEST_STOPPED`` reaches guest memory at the vCPU's
        next ``kvm_guest_time_update()``, i.e. its next :meth:`vcpu_run`.
        ``EINVAL`` if the vCPU has not enabled kvmclock.
        """
        self._require_host_running(t_ns, "KVM_KVMCLOCK_CTRL")
        v = self._vcpu(vcpu)
        if not self._kvm_set_guest_paused(v):
            raise self._fail(t_ns, "KVM_KVMCLOCK_CTRL", "EINVAL", f"vcpu{vcpu}: kvmclock not enabled")
        self._log(t_ns, "KVM_KVMCLOCK_CTRL", f"vcpu{vcpu}: guest-stopped request pending")

    def get_tsc_khz(self, vcpu: int) -> int:
        """``KVM_GET_TSC_KHZ`` (vCPU): ``virtual_tsc_khz``."""
        return self._vcpu(vcpu).virtual_tsc_khz

    def set_tsc_khz(self, vcpu: int, khz: int, t_ns: int) -> None:
        """``KVM_SET_TSC_KHZ`` (vCPU): ``kvm_set_tsc_khz()``.

        ``EINVAL`` at or above ``max_guest_tsc_khz`` with scaling hardware,
        or when ``kvm_set_tsc_khz()`` fails (which has then already set
        ``virtual_tsc_khz`` and its ns-to-cycles scale, but not the ratio).
        0 means the host's rate.  The offset is left alone, so a new ratio
        moves the guest TSC at once; VMMs write the TSC afterwards.
        """
        self._require_host_running(t_ns, "KVM_SET_TSC_KHZ")
        v = self._vcpu(vcpu)
        khz = u32(khz)
        limit = self._max_guest_tsc_khz()
        if limit is not None and khz >= limit:
            raise self._fail(t_ns, "KVM_SET_TSC_KHZ", "EINVAL", f"{khz} kHz >= max_guest_tsc_khz {limit}")
        if khz == 0:
            khz = self.host.tsc_khz
        error = self._kvm_set_tsc_khz(v, khz)
        if error is not None:
            raise self._fail(t_ns, "KVM_SET_TSC_KHZ", "EINVAL", f"vcpu{vcpu} {khz} kHz: {error}")
        self._log(t_ns, "KVM_SET_TSC_KHZ", f"vcpu{vcpu}: {khz} kHz, ratio {v.l1_tsc_scaling_ratio:#x}")

    def get_tsc_offset(self, vcpu: int) -> int:
        """``KVM_GET_DEVICE_ATTR`` ``KVM_VCPU_TSC_OFFSET`` (5.16+): ``l1_tsc_offset``; ``ENXIO`` before."""
        if not self._has(KVM_VCPU_TSC_OFFSET_SINCE):
            raise KvmError("KVM_GET_DEVICE_ATTR", "ENXIO", "KVM_VCPU_TSC_OFFSET needs KVM 5.16")
        return self._vcpu(vcpu).l1_tsc_offset  # 0 throughout when the KVM ignores TSC writes

    def set_tsc_offset(self, vcpu: int, offset: int, t_ns: int) -> None:
        """``KVM_SET_DEVICE_ATTR`` ``KVM_VCPU_TSC_OFFSET``: ``kvm_arch_tsc_set_attr()`` (5.16+).

        The write counts as matched when the rate equals the last write's and
        the offset equals ``last_tsc_offset``; either way it goes through
        ``__kvm_synchronize_tsc()`` with the TSC it implies now, so writing
        one offset to every vCPU puts them in one generation and lets the
        master clock back on.  From 6.7 it also sets ``user_set_tsc``.
        ``ENXIO`` before 5.16.
        """
        self._require_host_running(t_ns, "KVM_SET_DEVICE_ATTR")
        if not self._has(KVM_VCPU_TSC_OFFSET_SINCE):
            raise self._fail(t_ns, "KVM_SET_DEVICE_ATTR", "ENXIO", "KVM_VCPU_TSC_OFFSET needs KVM 5.16")
        if self._ignored_tsc_write(t_ns, "KVM_SET_DEVICE_ATTR", vcpu):
            return
        v = self._vcpu(vcpu)
        offset = u64(offset)
        matched = (
            v.virtual_tsc_khz != 0
            and self._last_tsc_khz == v.virtual_tsc_khz
            and self._last_tsc_offset == offset
        )
        tsc = u64(kvm_scale_tsc(self.host.tsc(t_ns), v.l1_tsc_scaling_ratio, self._fixed_point) + offset)
        ns = u64(self.host.boot_ns(t_ns))
        if self._has(KVM_USER_SET_TSC_SINCE):
            self._user_set_tsc = True
        self.__kvm_synchronize_tsc(v, offset, tsc, ns, matched=matched)
        outcome = "matched" if matched else "new generation"
        detail = f"KVM_VCPU_TSC_OFFSET vcpu{vcpu}: offset {s64(offset)}, {outcome}"
        self._log(t_ns, "KVM_SET_DEVICE_ATTR", detail)

    def get_tsc_scale(self, vcpu: int) -> tuple[int, int]:
        """(ratio, frac_bits) as the proposed ``KVM_VCPU_TSC_SCALE`` attribute would report them.

        David Woodhouse's RFC (Sep 2023, never merged): ``guest_tsc =
        ((host_tsc * tsc_ratio) >> tsc_frac_bits) + offset``.  Reported for
        every version, as if the attribute existed.
        """
        return self._vcpu(vcpu).l1_tsc_scaling_ratio, self._fixed_point.frac_bits

    def get_msr_tsc(self, vcpu: int, t_ns: int) -> int:
        """Host-initiated ``KVM_GET_MSRS`` of ``MSR_IA32_TSC``: L1's TSC now."""
        self._require_host_running(t_ns, "KVM_GET_MSRS")
        value = self.guest_tsc(vcpu, t_ns)
        self._log(t_ns, "KVM_GET_MSRS", f"vcpu{vcpu} MSR_IA32_TSC={value}")
        return value

    def set_msr_tsc(self, vcpu: int, value: int, t_ns: int) -> None:
        """Host-initiated ``KVM_SET_MSRS`` of ``MSR_IA32_TSC``: ``kvm_synchronize_tsc(vcpu, &value)``.

        A value within one second (of virtual cycles) of what the last write
        would read now is taken for an attempt to synchronise and snaps to
        the current generation's offset.  From 6.7 that slop applies only
        once userspace has written a TSC (``user_set_tsc``), so the first
        restore write is kept as written (bugzilla 217423).
        """
        self._require_host_running(t_ns, "KVM_SET_MSRS")
        if self._ignored_tsc_write(t_ns, "KVM_SET_MSRS", vcpu):
            return
        v = self._vcpu(vcpu)
        outcome = self._kvm_synchronize_tsc(v, u64(value), t_ns)
        self._log(t_ns, "KVM_SET_MSRS", f"vcpu{vcpu} MSR_IA32_TSC={u64(value)}: {outcome}")

    def get_tsc_state(self, vcpu: int, t_ns: int) -> KvmTscState:
        """The seed's v2 ``KVM_GET_TSC_STATE`` (never merged; modelled for every version).

        One instant's host ``CLOCK_REALTIME`` and the guest TSC, plus
        ``IA32_TSC_ADJUST`` (the guest is taken to have the CPUID bit).
        """
        self._require_host_running(t_ns, "KVM_GET_TSC_STATE")
        v = self._vcpu(vcpu)
        state = KvmTscState(
            flags=KVM_TSC_STATE_TIMESTAMP_VALID | KVM_TSC_STATE_TSC_ADJUST_VALID,
            nsec=u64(self.host.realtime_ns(t_ns)),
            tsc=self.guest_tsc(vcpu, t_ns),
            tsc_adjust=v.ia32_tsc_adjust_msr,
        )
        self._log(t_ns, "KVM_GET_TSC_STATE", f"vcpu{vcpu} tsc={state.tsc} nsec={state.nsec}")
        return state

    def set_tsc_state(self, vcpu: int, state: KvmTscState, t_ns: int) -> None:
        """The seed's v2 ``KVM_SET_TSC_STATE`` (never merged; modelled for every version).

        With ``KVM_TSC_STATE_TIMESTAMP_VALID`` the TSC moves by
        ``nsec_to_cycles(|now_real - nsec|)``, forwards or backwards by the
        s64 sign of the difference; then the offset is written directly
        (``kvm_vcpu_write_tsc_offset()``), bypassing the generation tracking
        and so leaving the master clock's matching state as it was.
        """
        self._require_host_running(t_ns, "KVM_SET_TSC_STATE")
        if self._ignored_tsc_write(t_ns, "KVM_SET_TSC_STATE", vcpu):
            return
        v = self._vcpu(vcpu)
        new_tsc = u64(state.tsc)
        if state.flags & KVM_TSC_STATE_TIMESTAMP_VALID:
            diff = s64(u64(self.host.realtime_ns(t_ns)) - u64(state.nsec))
            if diff >= 0:
                new_tsc = u64(new_tsc + self._nsec_to_cycles(v, diff))
            else:
                new_tsc = u64(new_tsc - self._nsec_to_cycles(v, -diff))
        v.l1_tsc_offset = kvm_compute_l1_tsc_offset(
            self.host.tsc(t_ns), new_tsc, v.l1_tsc_scaling_ratio, self._fixed_point
        )
        if state.flags & KVM_TSC_STATE_TSC_ADJUST_VALID:
            v.ia32_tsc_adjust_msr = u64(state.tsc_adjust)
        self._log(t_ns, "KVM_SET_TSC_STATE", f"vcpu{vcpu} tsc={new_tsc}")

    # --- host events ----------------------------------------------------------

    def suspend_notifier(self, t_ns: int) -> None:
        """Host ``PM_SUSPEND_PREPARE``: ``kvm_arch_suspend_notifier()`` (KVM 5.14+).

        ``kvm_set_guest_paused()`` on every vCPU with kvmclock enabled; the
        flag reaches the guest at each vCPU's next clock update.  Before 5.14
        KVM has no PM notifier and nothing happens.  (Runs before the host
        sleeps, so it is not refused while the host is suspending.)
        """
        if not self._has(KVM_PM_NOTIFIER_SINCE):
            self._log(t_ns, "PM_SUSPEND_PREPARE", "no KVM PM notifier before 5.14")
            return
        paused = [v.index for v in self._vcpus if v.pv_time_active and self._kvm_set_guest_paused(v)]
        self._log(t_ns, "PM_SUSPEND_PREPARE", f"guest-stopped request on vcpus {paused}")

    def host_resumed(self, t_ns: int) -> None:
        """Host resume: ``kvm_arch_hardware_enable()`` (later ``kvm_arch_enable_virtualization_cpu()``).

        KVM compares each vCPU's ``last_host_tsc`` (the host TSC when its
        thread last left the vCPU) with the TSC now.  The maximum is over
        every vCPU of every VM on the host, and vCPU threads are frozen as
        the host suspends, so the model takes the host TSC at the start of
        the sleep that just ended.  If the TSC went backwards (an S3 reset):
        ``delta = max - now`` is added to every vCPU's offset (scaled by its
        ratio; KVM defers this to the next ``vcpu_load``, which precedes any
        guest instruction or vCPU ioctl, so it is applied here), so each
        guest TSC continues from where it stopped; ``backwards_tsc_observed``
        is set, which keeps the master clock off for the VM's life;
        ``last_tsc_nsec``/``last_tsc_write`` are zeroed; every vCPU gets
        ``KVM_REQ_MASTERCLOCK_UPDATE`` and ``KVM_REQ_CLOCK_UPDATE``.  A
        nonstop TSC did not go backwards: nothing happens.
        """
        self._require_host_running(t_ns, "resume")
        sleep = self.host.last_suspend_ended_by(t_ns)
        # A sleep the VM did not live through, or one already compensated, changes nothing.
        if sleep is None or sleep.start_ns < self._created_ns or sleep.start_ns in self._resumes_seen:
            self._log(t_ns, "resume", "no host sleep to compensate")
            return
        self._resumes_seen.add(sleep.start_ns)
        local_tsc = self.host.tsc(t_ns)
        max_tsc = self.host.tsc(sleep.start_ns)
        if max_tsc <= local_tsc:
            self._log(t_ns, "resume", f"host TSC {local_tsc} did not go backwards")
            return
        delta_cyc = u64(max_tsc - local_tsc)
        self._backwards_tsc_observed = True
        for v in self._vcpus:
            adjustment = kvm_scale_tsc(delta_cyc, v.l1_tsc_scaling_ratio, self._fixed_point)
            v.l1_tsc_offset = u64(v.l1_tsc_offset + adjustment)  # adjust_tsc_offset_host()
            v.requests.update((KVM_REQ_MASTERCLOCK_UPDATE, KVM_REQ_CLOCK_UPDATE))
        # "We have to disable TSC offset matching": the next write starts afresh.
        self._last_tsc_nsec = 0
        self._last_tsc_write = 0
        self._log(t_ns, "resume", f"backwards host TSC: offsets += {delta_cyc} cycles, master clock disabled")

    def kvmclock_periodic_sync(self, t_ns: int) -> None:
        """``kvmclock_sync_fn()``, every 300 s: ``kvmclock_update_fn()`` asks all vCPUs for a clock update."""
        self._request_all(KVM_REQ_CLOCK_UPDATE)
        self._log(t_ns, "kvmclock_sync_fn", "clock update requested on all vcpus")

    # --- kvm_arch_vcpu_create / postcreate -----------------------------------

    def _vm_default_tsc_khz(self, tsc_khz: int | None, t_ns: int) -> int:
        """``kvm->arch.default_tsc_khz``: the host's rate, or a VM-wide ``KVM_SET_TSC_KHZ``."""
        if tsc_khz is None:
            return self.host.tsc_khz
        khz = u32(tsc_khz)
        limit = self._max_guest_tsc_khz()
        if limit is not None and khz >= limit:
            raise self._fail(t_ns, "KVM_SET_TSC_KHZ", "EINVAL", f"{khz} kHz >= max_guest_tsc_khz {limit}")
        if khz == 0:
            khz = self.host.tsc_khz
        trial = set_tsc_khz(khz, self.host.tsc_khz, self._caps, vendor=self._fixed_point)
        if not trial.ok:
            raise self._fail(t_ns, "KVM_SET_TSC_KHZ", "EINVAL", f"{khz} kHz: {trial.error}")
        self._log(t_ns, "KVM_SET_TSC_KHZ", f"VM default {khz} kHz")
        return khz

    def _create_vcpu(self, index: int, default_khz: int, t_ns: int) -> None:
        v = _Vcpu(index=index, l1_tsc_scaling_ratio=self._fixed_point.default_ratio)
        self._kvm_set_tsc_khz(v, default_khz)  # kvm_arch_vcpu_create(); its result is ignored
        self._vcpus.append(v)
        self._online_vcpus += 1
        outcome = self._kvm_synchronize_tsc(v, None, t_ns)  # kvm_arch_vcpu_postcreate()
        self._log(t_ns, "KVM_CREATE_VCPU", f"vcpu{index}: {v.virtual_tsc_khz} kHz, TSC write 0: {outcome}")

    def _kvm_set_tsc_khz(self, v: _Vcpu, khz: int) -> str | None:
        """``kvm_set_tsc_khz()`` + ``set_tsc_khz()`` on one vCPU; the error, if any.

        ``virtual_tsc_khz`` and its ns-to-cycles scale are stored before the
        tolerance test, so they change even when the ratio cannot.
        """
        setting = set_tsc_khz(khz, self.host.tsc_khz, self._caps, vendor=self._fixed_point)
        if setting.virtual_tsc_mult is None or setting.virtual_tsc_shift is None:
            v.l1_tsc_scaling_ratio = setting.ratio  # user_tsc_khz 0: "set tsc_scaling_ratio to a safe value"
            return setting.error
        v.virtual_tsc_khz = u32(khz)
        v.virtual_tsc_mult = setting.virtual_tsc_mult
        v.virtual_tsc_shift = setting.virtual_tsc_shift
        if setting.ok:
            v.l1_tsc_scaling_ratio = setting.ratio
            v.tsc_always_catchup = v.tsc_always_catchup or setting.catchup
        return setting.error

    def _max_guest_tsc_khz(self) -> int | None:
        """``kvm_caps.max_guest_tsc_khz``; ``None`` without scaling hardware (not checked then)."""
        if self._caps is None:
            return None
        scaled_max = mul_u64_u64_shr(self.host.tsc_khz, self._caps.max_ratio, self._caps.frac_bits)
        return min(_MAX_GUEST_TSC_KHZ_CAP, scaled_max)

    # --- TSC writes and generations ------------------------------------------

    def _kvm_synchronize_tsc(self, v: _Vcpu, user_value: int | None, t_ns: int) -> str:
        """``kvm_synchronize_tsc()``: a host-side TSC write, with the 1-second heuristic.

        ``user_value`` ``None`` is the kernel's NULL (the post-create write of
        0, 6.7+; before 6.7 the call passed 0 and no user flag existed).
        Returns a short account for the log.
        """
        data = 0 if user_value is None else u64(user_value)
        host_tsc = self.host.tsc(t_ns)
        offset = kvm_compute_l1_tsc_offset(host_tsc, data, v.l1_tsc_scaling_ratio, self._fixed_point)
        ns = u64(self.host.boot_ns(t_ns))
        elapsed = u64(ns - self._last_tsc_nsec)
        synchronizing = False
        if v.virtual_tsc_khz:
            if data == 0:
                # Vcpu creation (or userspace writing 0): always synchronise.
                synchronizing = True
            elif self._tsc_write_slop_applies():
                tsc_exp = u64(self._last_tsc_write + self._nsec_to_cycles(v, elapsed))
                tsc_hz = u64(v.virtual_tsc_khz * 1000)
                synchronizing = data < u64(tsc_exp + tsc_hz) and u64(data + tsc_hz) > tsc_exp
        if user_value is not None and self._has(KVM_USER_SET_TSC_SINCE):
            self._user_set_tsc = True
        matched = synchronizing and v.virtual_tsc_khz == self._last_tsc_khz
        if matched:
            # A reliable host TSC: take the generation's offset as it is.
            offset = self._cur_tsc_offset
        self.__kvm_synchronize_tsc(v, offset, data, ns, matched=matched)
        if matched:
            return f"synchronized to generation {self._cur_tsc_generation} (offset {s64(offset)})"
        return f"new generation {self._cur_tsc_generation} (offset {s64(offset)})"

    def _tsc_write_slop_applies(self) -> bool:
        """Whether a non-zero write is tested against the 1-second window (6.7+: only after a user write)."""
        return not self._has(KVM_USER_SET_TSC_SINCE) or self._user_set_tsc

    def __kvm_synchronize_tsc(self, v: _Vcpu, offset: int, tsc: int, ns: int, *, matched: bool) -> None:
        """``__kvm_synchronize_tsc()`` (5.16+; the same steps inline before): record and apply a write.

        ``last_tsc_*`` remember this write; an unmatched one opens a new
        generation (``cur_tsc_*``) and resets the matched count; a matched
        one counts the vCPU once per generation.
        """
        self._last_tsc_nsec = ns
        self._last_tsc_write = tsc
        self._last_tsc_khz = v.virtual_tsc_khz
        self._last_tsc_offset = offset
        v.last_guest_tsc = tsc
        v.l1_tsc_offset = offset  # kvm_vcpu_write_tsc_offset()
        if not matched:
            self._cur_tsc_generation += 1
            self._cur_tsc_nsec = ns
            self._cur_tsc_write = tsc
            self._cur_tsc_offset = offset
            self._nr_vcpus_matched_tsc = 0
        elif v.this_tsc_generation != self._cur_tsc_generation:
            self._nr_vcpus_matched_tsc += 1
        v.this_tsc_generation = self._cur_tsc_generation
        v.this_tsc_nsec = self._cur_tsc_nsec
        v.this_tsc_write = self._cur_tsc_write
        self._kvm_track_tsc_matching(v, new_generation=not matched)

    def _kvm_track_tsc_matching(self, v: _Vcpu, *, new_generation: bool) -> None:
        """``kvm_track_tsc_matching()``: ask for a master clock update when it may change.

        6.8+: when the master clock must toggle, or a new generation starts
        while it is on.  Before: whenever it is on, or could be switched on.
        ("+1": the matched count leaves out the generation's first vCPU.)
        """
        vcpus_matched = self._nr_vcpus_matched_tsc + 1 == self._online_vcpus
        could_use = vcpus_matched and self._host_clocksource_is_tsc
        if self._has(KVM_MASTERCLOCK_TOGGLE_ONLY_SINCE):
            request = (self._use_master_clock and new_generation) or self._use_master_clock != could_use
        else:
            request = self._use_master_clock or could_use
        if request:
            v.requests.add(KVM_REQ_MASTERCLOCK_UPDATE)

    # --- master clock and kvmclock pages ----------------------------------------

    @property
    def _host_clocksource_is_tsc(self) -> bool:
        """``gtod_is_based_on_tsc()`` of the host's current clocksource."""
        return self.host.spec.clocksource == "tsc"

    def _pvclock_update_vm_gtod_copy(self, t_ns: int) -> None:
        """``pvclock_update_vm_gtod_copy()``: decide the master clock and snapshot it.

        On a TSC-based host ``kvm_get_time_and_clockread()`` takes
        (``get_kvmclock_base_ns()``, host TSC) of one instant; otherwise the
        old snapshot stays and the master clock is off.
        """
        vcpus_matched = self._nr_vcpus_matched_tsc + 1 == self._online_vcpus
        if self._host_clocksource_is_tsc:
            self._master_kernel_ns = self.host.boot_ns(t_ns)
            self._master_cycle_now = self.host.tsc(t_ns)
        self._use_master_clock = (
            self._host_clocksource_is_tsc and vcpus_matched and not self._backwards_tsc_observed
        )

    def _kvm_update_masterclock(self, t_ns: int) -> None:
        """``kvm_update_masterclock()``: a fresh snapshot, then a clock update on every vCPU."""
        self._pvclock_update_vm_gtod_copy(t_ns)
        self._request_all(KVM_REQ_CLOCK_UPDATE)  # kvm_end_pvclock_update()

    def _kvm_gen_kvmclock_update(self, v: _Vcpu) -> None:
        """``kvm_gen_kvmclock_update()``: this vCPU now, the others by ``kvmclock_update_work``.

        KVM runs the work 100 ms later; its requests are made at once here.
        """
        v.requests.add(KVM_REQ_CLOCK_UPDATE)
        self._request_all(KVM_REQ_CLOCK_UPDATE)

    def _kvm_set_guest_paused(self, v: _Vcpu) -> bool:
        """``kvm_set_guest_paused()``: false (``-EINVAL``) without kvmclock."""
        if not v.pv_time_active:
            return False
        v.pvclock_set_guest_stopped_request = True
        v.requests.add(KVM_REQ_CLOCK_UPDATE)
        return True

    def _kvm_guest_time_update(self, v: _Vcpu, t_ns: int) -> None:
        """``kvm_guest_time_update()``: compute the vCPU's ``hv_clock`` and publish it.

        Master clock: the shared (``master_cycle_now``, ``master_kernel_ns``)
        snapshot and ``PVCLOCK_TSC_STABLE_BIT``; otherwise the host TSC and
        base ns of now, no flag.  ``tsc_timestamp`` is the guest TSC at that
        host TSC; a catch-up vCPU's offset is first advanced to
        ``compute_guest_tsc()`` if that is ahead.  The scale targets the
        host's ``tsc_khz`` run through the vCPU's ratio when there is scaling
        hardware (``kvm_caps.has_tsc_control``), so a catch-up vCPU's
        kvmclock runs at the host rate.
        """
        if self._use_master_clock:
            use_master_clock = True
            host_tsc, kernel_ns = self._master_cycle_now, self._master_kernel_ns
        else:
            use_master_clock = False
            host_tsc, kernel_ns = self.host.tsc(t_ns), self.host.boot_ns(t_ns)
        tsc_timestamp = kvm_read_l1_tsc(host_tsc, v.l1_tsc_offset, v.l1_tsc_scaling_ratio, self._fixed_point)
        if v.tsc_always_catchup:
            tsc = self._compute_guest_tsc(v, kernel_ns)
            if tsc > tsc_timestamp:
                v.l1_tsc_offset = u64(v.l1_tsc_offset + (tsc - tsc_timestamp))  # adjust_tsc_offset_guest()
                tsc_timestamp = tsc

        tgt_tsc_khz = self.host.tsc_khz
        if self._caps is not None:
            tgt_tsc_khz = kvm_scale_tsc(tgt_tsc_khz, v.l1_tsc_scaling_ratio, self._caps)
        if v.hw_tsc_khz != tgt_tsc_khz:
            scale = kvm_tsc_scale(tgt_tsc_khz)
            v.hv_clock.tsc_shift = scale.tsc_shift
            v.hv_clock.tsc_to_system_mul = scale.tsc_to_system_mul
            v.hw_tsc_khz = tgt_tsc_khz

        v.hv_clock.tsc_timestamp = tsc_timestamp
        v.hv_clock.system_time = u64(kernel_ns + self._kvmclock_offset)
        v.last_guest_tsc = tsc_timestamp
        v.hv_clock.flags = PVCLOCK_TSC_STABLE_BIT if use_master_clock else 0
        if v.pv_time_active:
            self._kvm_setup_guest_pvclock(v)

    def _compute_guest_tsc(self, v: _Vcpu, kernel_ns: int) -> int:
        """``compute_guest_tsc()``: the generation's TSC advanced at the vCPU's rate to ``kernel_ns``."""
        elapsed = u64(kernel_ns - v.this_tsc_nsec)
        return u64(v.this_tsc_write + pvclock_scale_delta(elapsed, v.virtual_tsc_mult, v.virtual_tsc_shift))

    def _kvm_setup_guest_pvclock(self, v: _Vcpu) -> None:
        """``kvm_setup_guest_pvclock()`` (``kvm_setup_pvclock_page()`` before 5.18): write guest memory.

        The version goes odd from the guest's copy (``(version + 1) | 1``),
        then even once the body is written: +2 from an even version.  A
        ``PVCLOCK_GUEST_STOPPED`` already in guest memory is kept (only the
        guest clears it), and a pending guest-stopped request adds it.
        """
        page = self.pvti[v.index]
        if page is None:
            page = _empty_pvti()  # guest memory the guest zeroed
            self.pvti[v.index] = page
        v.hv_clock.version = u32((page.version + 1) | 1)
        v.hv_clock.flags |= page.flags & PVCLOCK_GUEST_STOPPED
        if v.pvclock_set_guest_stopped_request:
            v.hv_clock.flags |= PVCLOCK_GUEST_STOPPED
            v.pvclock_set_guest_stopped_request = False
        v.hv_clock.version = u32(v.hv_clock.version + 1)
        _store_pvti(page, v.hv_clock)

    # --- helpers ------------------------------------------------------------------

    def _nsec_to_cycles(self, v: _Vcpu, ns: int) -> int:
        return nsec_to_cycles(ns, v.virtual_tsc_mult, v.virtual_tsc_shift)

    def _request_all(self, request: str) -> None:
        for v in self._vcpus:
            v.requests.add(request)

    def _has(self, since: tuple[int, int]) -> bool:
        return self.version >= since

    def _vcpu(self, vcpu: int) -> _Vcpu:
        if not 0 <= vcpu < len(self._vcpus):
            raise ValueError(f"no vcpu{vcpu}: the VM has {len(self._vcpus)} vCPUs")
        return self._vcpus[vcpu]

    def _require_host_running(self, t_ns: int, what: str) -> None:
        if self.host.suspended_at(t_ns):
            raise ValueError(f"{what} at {t_ns} ns: host {self.host.name} is suspended")

    def _log(self, t_ns: int, name: str, detail: str) -> None:
        self.log.append((t_ns, name, detail))

    def _fail(self, t_ns: int, ioctl: str, errno_name: str, detail: str) -> KvmError:
        self._log(t_ns, ioctl, f"{errno_name}: {detail}")
        return KvmError(ioctl, errno_name, detail)


def _check_request(v: _Vcpu, request: str) -> bool:
    """``kvm_check_request()``: test and clear."""
    if request in v.requests:
        v.requests.discard(request)
        return True
    return False


def _copy_pvti(page: PvclockVcpuTimeInfo) -> PvclockVcpuTimeInfo:
    copy = _empty_pvti()
    _store_pvti(copy, page)
    return copy


def _store_pvti(dst: PvclockVcpuTimeInfo, src: PvclockVcpuTimeInfo) -> None:
    """Copy the 32-byte page field by field (a ``memcpy``), keeping the destination object."""
    dst.version = u32(src.version)
    dst.tsc_timestamp = u64(src.tsc_timestamp)
    dst.system_time = u64(src.system_time)
    dst.tsc_to_system_mul = u32(src.tsc_to_system_mul)
    dst.tsc_shift = src.tsc_shift
    dst.flags = src.flags & 0xFF
