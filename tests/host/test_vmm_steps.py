"""VMM steps: what each does to a KVM VM, when (one IOCTL_NS per ioctl), and failures carried through.

Unless a test says otherwise a host runs a 2.5 GHz TSC without drift, had
been up 1 s when the VM was created at t = 0 (its TSC reads
``2.5 * (t + 1e9)``), and KVM is 6.8 with VMX scaling.  A VM created at
``t0`` has offset ``-host_tsc(t0)`` on every vCPU, so its guest TSC reads
``2.5 * (t - t0)`` cycles; its kvmclock starts at 0.  At 2.5 GHz one ioctl
(IOCTL_NS = 10 us) is 25000 cycles.
"""

from __future__ import annotations

import pytest

from tsclab.arith import u64
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import (
    KVM_CLOCK_HOST_TSC,
    KVM_CLOCK_REALTIME,
    KVM_CLOCK_TSC_STABLE,
    KvmVm,
)
from tsclab.host.vmm_steps import IOCTL_NS, SavedState, StepRunner
from tsclab.kernel.vdso import PVCLOCK_GUEST_STOPPED
from tsclab.scenario.model import HostSpec, Scaling

S = 1_000_000_000
US = 1_000
EPOCH = 1_767_225_600 * S
KHZ = 2_500_000
CYCLES_PER_IOCTL = 25_000  # 10 us at 2.5 GHz


class Log:
    """The runner's log callback, kept."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []

    def __call__(self, t_ns: int, actor: str, text: str) -> None:
        self.lines.append((t_ns, actor, text))


def make_vm(
    *,
    name: str = "src",
    khz: int = KHZ,
    vcpus: int = 2,
    t_ns: int = 0,
    uptime_ns: int = S,
    kvm: tuple[int, int] = (6, 8),
    scaling: Scaling = "vmx",
    realtime_error_ns: int = 0,
    enable: bool = True,
) -> KvmVm:
    """A VM created at ``t_ns``; with ``enable`` its guest enabled kvmclock and entered on every vCPU."""
    spec = HostSpec(
        name, khz, uptime_ns=uptime_ns, kvm=kvm, scaling=scaling, realtime_error_ns=realtime_error_ns
    )
    vm = KvmVm(HostClock(spec, EPOCH), vcpus, t_ns)
    if enable:
        for v in range(vcpus):
            vm.enable_pvclock(v, t_ns)
            vm.vcpu_run(v, t_ns)
    return vm


def kvm_calls(vm: KvmVm, since_ns: int = 1) -> list[tuple[int, str]]:
    """(time, ioctl) of the VM's log from ``since_ns`` on (creation at 0 left out)."""
    return [(t, name) for t, name, _ in vm.log if t >= since_ns]


def test_step_names() -> None:
    assert StepRunner(Log()).names == {
        "get-clock",
        "set-clock",
        "set-clock-realtime",
        "set-clock-or-realtime",
        "kvmclock-ctrl",
        "get-tsc-msrs",
        "set-tsc-msrs",
        "get-tsc-khz",
        "set-tsc-khz-or-warn",
        "set-tsc-khz-beyond-250ppm",
        "enable-pvclock",
        "get-tsc-offsets",
        "set-tsc-offsets-doc",
        "set-tsc-offsets-scaled",
        "per-vcpu-tsc-offsets",
        "equalize-tsc-offsets",
        "get-tsc-state",
        "set-tsc-state",
    }


def test_steps_run_in_order_one_ioctl_ns_apart() -> None:
    vm = make_vm()
    saved = SavedState()
    t0 = 5 * S
    done = StepRunner(Log()).run(("get-clock", "get-tsc-msrs", "kvmclock-ctrl"), vm, saved, t0)
    # 1 + 2 vCPUs + 2 vCPUs = 5 ioctls.
    assert done == t0 + 5 * IOCTL_NS
    assert kvm_calls(vm) == [
        (t0, "KVM_GET_CLOCK"),
        (t0 + 1 * IOCTL_NS, "KVM_GET_MSRS"),
        (t0 + 2 * IOCTL_NS, "KVM_GET_MSRS"),
        (t0 + 3 * IOCTL_NS, "KVM_KVMCLOCK_CTRL"),
        (t0 + 4 * IOCTL_NS, "KVM_KVMCLOCK_CTRL"),
    ]
    # Each vCPU's TSC as read at its own ioctl: 2.5 cycles a ns since creation at 0.
    assert saved.tsc == {0: 12_500_025_000, 1: 12_500_050_000}
    assert saved.tsc[1] - saved.tsc[0] == CYCLES_PER_IOCTL


def test_an_empty_step_list_takes_no_time() -> None:
    assert StepRunner(Log()).run((), make_vm(), SavedState(), 7 * S) == 7 * S


def test_unknown_step_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        StepRunner(Log()).run(("set-clok",), make_vm(), SavedState(), 0)


# --- kvmclock -------------------------------------------------------------------------


def test_get_clock_saves_kvm_get_clock() -> None:
    vm = make_vm()
    saved = SavedState()
    StepRunner(Log()).run(("get-clock",), vm, saved, 2 * S)
    assert saved.clock == vm.get_clock(2 * S)
    assert saved.clock is not None
    # KVM 6.8 with a master clock: host realtime and TSC come along; kvmclock started at 0 at t=0.
    assert saved.clock.flags == KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC
    assert saved.clock.realtime == EPOCH + 2 * S
    assert saved.clock.host_tsc == 7_500_000_000  # 2.5 * (2 s + 1 s of uptime)
    assert abs(saved.clock.clock - 2 * S) <= 1  # the pvclock scale truncates a little


def test_a_failing_step_is_logged_and_the_rest_run() -> None:
    """set-clock before any get-clock: KVM_SET_CLOCK refused, logged, and get-clock still runs."""
    vm = make_vm()
    saved = SavedState()
    log = Log()
    done = StepRunner(log).run(("set-clock", "get-clock"), vm, saved, 3 * S)
    assert log.lines == [
        (
            3 * S,
            "vmm",
            "set-clock failed, carrying on: KVM_SET_CLOCK: EINVAL (the policy sets a clock it never read)",
        )
    ]
    # The refused step took no time: get-clock ran at 3 s.
    assert kvm_calls(vm) == [(3 * S, "KVM_GET_CLOCK")]
    assert done == 3 * S + IOCTL_NS
    assert saved.clock is not None


def saved_clock_at(t_ns: int, kvm: tuple[int, int] = (6, 8)) -> SavedState:
    saved = SavedState()
    StepRunner(Log()).run(("get-clock",), make_vm(kvm=kvm), saved, t_ns)
    return saved


def test_set_clock_writes_the_saved_kvmclock_frozen() -> None:
    saved = saved_clock_at(2 * S)
    assert saved.clock is not None
    dst = make_vm(name="dst", t_ns=5 * S, uptime_ns=9 * S)
    StepRunner(Log()).run(("set-clock",), dst, saved, 7 * S)
    # KVM_SET_CLOCK refreshes the master clock at 7 s, so a read at that instant gives the value back.
    assert dst.get_clock(7 * S).clock == saved.clock.clock


@pytest.mark.parametrize("clock_realtime", [False, True])
def test_set_clock_or_realtime_honours_clock_realtime(clock_realtime: bool) -> None:
    t0, t1 = 2 * S, 7 * S
    saved = saved_clock_at(t0)
    assert saved.clock is not None
    dst = make_vm(name="dst", t_ns=5 * S, uptime_ns=9 * S)
    StepRunner(Log(), clock_realtime=clock_realtime).run(("set-clock-or-realtime",), dst, saved, t1)
    # With clock_realtime, KVM adds the host realtime elapsed since the save: 7 s - 2 s.
    added = t1 - t0 if clock_realtime else 0
    assert dst.get_clock(t1).clock == saved.clock.clock + added


def test_set_clock_realtime_adds_the_destination_hosts_realtime_error() -> None:
    t0, t1 = 2 * S, 7 * S
    saved = saved_clock_at(t0)
    assert saved.clock is not None
    # The destination's CLOCK_REALTIME is 3 ms ahead of the source's.
    dst = make_vm(name="dst", t_ns=5 * S, realtime_error_ns=3_000_000)
    StepRunner(Log()).run(("set-clock-realtime",), dst, saved, t1)
    assert dst.get_clock(t1).clock == saved.clock.clock + (t1 - t0) + 3_000_000


def test_set_clock_realtime_without_a_source_realtime_sets_the_clock_as_saved() -> None:
    # KVM 5.10 gives no KVM_CLOCK_REALTIME: the step falls back to a plain set-clock.
    saved = saved_clock_at(2 * S, kvm=(5, 10))
    assert saved.clock is not None
    assert saved.clock.flags == KVM_CLOCK_TSC_STABLE
    dst = make_vm(name="dst", t_ns=5 * S)
    StepRunner(Log()).run(("set-clock-realtime",), dst, saved, 7 * S)
    assert dst.get_clock(7 * S).clock == saved.clock.clock


def test_kvmclock_ctrl_on_every_vcpu_a_refusal_logged_per_vcpu() -> None:
    vm = make_vm(enable=False)
    vm.enable_pvclock(0, 0)  # vCPU 1 never enabled kvmclock
    vm.vcpu_run(0, 0)
    log = Log()
    done = StepRunner(log).run(("kvmclock-ctrl",), vm, SavedState(), 1 * S)
    assert done == 1 * S + 2 * IOCTL_NS
    assert log.lines == [
        (
            1 * S + 2 * IOCTL_NS,
            "vmm",
            "KVM_KVMCLOCK_CTRL on vCPU 1: KVM_KVMCLOCK_CTRL: EINVAL (vcpu1: kvmclock not enabled)",
        )
    ]
    # vCPU 0's request reaches its pvclock page at its next entry.
    vm.vcpu_run(0, 2 * S)
    page = vm.pvti[0]
    assert page is not None
    assert page.flags & PVCLOCK_GUEST_STOPPED


def test_enable_pvclock_skips_vcpus_without_a_page_in_guest_memory() -> None:
    vm = make_vm(enable=False)
    page = make_vm().pvti[0]  # a page the guest had on vCPU 0; none on vCPU 1
    saved = SavedState(pvti=[page, None])
    done = StepRunner(Log()).run(("enable-pvclock",), vm, saved, 1 * S)
    assert done == 1 * S + IOCTL_NS
    assert (vm.pvclock_active(0), vm.pvclock_active(1)) == (True, False)


def test_enable_pvclock_without_saved_pages_enables_every_vcpu() -> None:
    vm = make_vm(enable=False)
    done = StepRunner(Log()).run(("enable-pvclock",), vm, SavedState(), 1 * S)
    assert done == 1 * S + 2 * IOCTL_NS
    assert (vm.pvclock_active(0), vm.pvclock_active(1)) == (True, True)


# --- TSC by value ----------------------------------------------------------------------


def test_tsc_msrs_round_trip_with_kvms_one_second_sync() -> None:
    src = make_vm()
    saved = SavedState()
    runner = StepRunner(Log())
    runner.run(("get-tsc-msrs",), src, saved, 2 * S)
    dst = make_vm(name="dst", t_ns=5 * S, uptime_ns=9 * S)
    t1 = 6 * S
    done = runner.run(("set-tsc-msrs",), dst, saved, t1)
    assert done == t1 + 2 * IOCTL_NS
    # KVM 6.8: the first user write is kept as written ...
    assert dst.guest_tsc(0, t1) == saved.tsc[0]
    # ... and vCPU 1's, within a second of it, snaps to the same offset (one generation).
    assert dst.get_tsc_offset(1) == dst.get_tsc_offset(0)


def test_tsc_state_moves_the_tsc_on_by_the_realtime_elapsed() -> None:
    src = make_vm(vcpus=1)
    saved = SavedState()
    runner = StepRunner(Log())
    runner.run(("get-tsc-state",), src, saved, 2 * S)
    assert saved.tsc_state[0].tsc == 5_000_000_000  # 2 s at 2.5 GHz
    dst = make_vm(name="dst", vcpus=1, t_ns=5 * S, uptime_ns=9 * S)
    runner.run(("set-tsc-state",), dst, saved, 7 * S)
    # 5 s of realtime passed: the TSC reads as if it had counted through, 2.5 GHz * 7 s.
    assert dst.guest_tsc(0, 7 * S) == 17_500_000_000


# --- TSC rate ------------------------------------------------------------------------------


def test_get_tsc_khz_saves_vcpu_0s_rate_in_one_ioctl() -> None:
    saved = SavedState()
    done = StepRunner(Log()).run(("get-tsc-khz",), make_vm(khz=2_100_000), saved, 0)
    assert saved.tsc_khz == 2_100_000
    assert done == IOCTL_NS  # KVM_GET_TSC_KHZ is an ioctl like any other


def test_set_tsc_khz_or_warn_sets_a_different_rate_on_every_vcpu() -> None:
    dst = make_vm(name="dst", khz=3_000_000)
    done = StepRunner(Log()).run(("set-tsc-khz-or-warn",), dst, SavedState(tsc_khz=KHZ), 1 * S)
    # Per vCPU: KVM_GET_TSC_KHZ (3 GHz, not the saved 2.5 GHz), then KVM_SET_TSC_KHZ: 2 x 2 ioctls.
    assert done == 1 * S + 4 * IOCTL_NS
    assert kvm_calls(dst) == [
        (1 * S + IOCTL_NS, "KVM_SET_TSC_KHZ"),
        (1 * S + 3 * IOCTL_NS, "KVM_SET_TSC_KHZ"),
    ]
    assert (dst.get_tsc_khz(0), dst.get_tsc_khz(1)) == (KHZ, KHZ)


@pytest.mark.parametrize(
    ("saved_khz", "reads"),
    [
        (None, 0),  # nothing saved: not even a read
        (KHZ, 2),  # each vCPU's rate read (one KVM_GET_TSC_KHZ each) and found equal: nothing set
    ],
)
def test_set_tsc_khz_or_warn_sets_nothing_when_unknown_or_equal(saved_khz: int | None, reads: int) -> None:
    dst = make_vm(name="dst")
    done = StepRunner(Log()).run(("set-tsc-khz-or-warn",), dst, SavedState(tsc_khz=saved_khz), 1 * S)
    assert done == 1 * S + reads * IOCTL_NS
    assert kvm_calls(dst) == []


def test_set_tsc_khz_refused_without_scaling_is_a_warning_and_the_restore_goes_on() -> None:
    # A 2.5 GHz host without TSC scaling cannot give a guest a slower 2.0 GHz TSC.
    dst = make_vm(name="dst", vcpus=1, scaling="none", t_ns=5 * S)
    saved = SavedState(tsc_khz=2_000_000, tsc={0: 123_456_789_000})
    log = Log()
    done = StepRunner(log).run(("set-tsc-khz-or-warn", "set-tsc-msrs"), dst, saved, 6 * S)
    # KVM_GET_TSC_KHZ at 6 s, the refused KVM_SET_TSC_KHZ at 6 s + 10 us; the warning once it returned.
    assert kvm_calls(dst, 6 * S) == [
        (6 * S + IOCTL_NS, "KVM_SET_TSC_KHZ"),
        (6 * S + 2 * IOCTL_NS, "KVM_SET_MSRS"),
    ]
    assert log.lines == [
        (
            6 * S + 2 * IOCTL_NS,
            "vmm",
            "TSC frequency mismatch on vCPU 0, carrying on: KVM_SET_TSC_KHZ: EINVAL "
            "(vcpu0 2000000 kHz: user requested TSC rate below hardware speed)",
        )
    ]
    # The get, the refused set, the MSR write: 3 ioctls.
    assert done == 6 * S + 3 * IOCTL_NS
    assert dst.guest_tsc(0, 6 * S + 2 * IOCTL_NS) == 123_456_789_000  # the TSC write went through


def test_set_tsc_khz_or_warn_asks_every_vcpu_after_a_refusal() -> None:
    # Two vCPUs, no scaling, 2.0 GHz asked of a 2.5 GHz host: vCPU 0 refused, vCPU 1 asked all the same.
    dst = make_vm(name="dst", scaling="none", t_ns=5 * S)
    log = Log()
    t0 = 6 * S
    done = StepRunner(log).run(("set-tsc-khz-or-warn",), dst, SavedState(tsc_khz=2_000_000), t0)
    refusal = "KVM_SET_TSC_KHZ: EINVAL (vcpu{} 2000000 kHz: user requested TSC rate below hardware speed)"
    # vCPU 0: get at t0, set at t0 + 10 us, warned at t0 + 20 us; vCPU 1: get at t0 + 20 us, set at
    # t0 + 30 us, warned at t0 + 40 us.
    assert log.lines == [
        (t0 + 2 * IOCTL_NS, "vmm", "TSC frequency mismatch on vCPU 0, carrying on: " + refusal.format(0)),
        (t0 + 4 * IOCTL_NS, "vmm", "TSC frequency mismatch on vCPU 1, carrying on: " + refusal.format(1)),
    ]
    assert kvm_calls(dst, t0) == [(t0 + IOCTL_NS, "KVM_SET_TSC_KHZ"), (t0 + 3 * IOCTL_NS, "KVM_SET_TSC_KHZ")]
    assert done == t0 + 4 * IOCTL_NS


@pytest.mark.parametrize(
    ("saved_khz", "after"),
    [
        # |here - saved| * 1e6 <= 250 * saved leaves the rate alone:
        (KHZ + 625, KHZ),  # 625e6 <= 250 * 2_500_625 = 625_156_250
        (KHZ - 624, KHZ),  # 624e6 <= 250 * 2_499_376 = 624_844_000
        (KHZ + 1_000, KHZ + 1_000),  # 1e9 > 625_250_000: set
        (KHZ - 625, KHZ - 625),  # 625e6 > 250 * 2_499_375 = 624_843_750: set
    ],
)
def test_set_tsc_khz_beyond_250ppm(saved_khz: int, after: int) -> None:
    dst = make_vm(name="dst")
    done = StepRunner(Log()).run(("set-tsc-khz-beyond-250ppm",), dst, SavedState(tsc_khz=saved_khz), 1 * S)
    assert (dst.get_tsc_khz(0), dst.get_tsc_khz(1)) == (after, after)
    # vCPU 0's rate read first (one ioctl); beyond the tolerance, set-tsc-khz-or-warn's get and set on
    # each of the 2 vCPUs follow (4 more).
    assert done == 1 * S + (1 if after == KHZ else 5) * IOCTL_NS


# --- TSC by offset ------------------------------------------------------------------------------


def test_get_tsc_offsets_one_ioctl_per_vcpu() -> None:
    vm = make_vm()
    saved = SavedState()
    done = StepRunner(Log()).run(("get-tsc-offsets",), vm, saved, 2 * S)
    assert done == 2 * S + 2 * IOCTL_NS
    # Created at 0 with the host TSC at 2.5e9: offset -2.5e9 (as u64); identity ratio, 48 fraction bits.
    assert saved.offsets == {0: u64(-2_500_000_000), 1: u64(-2_500_000_000)}
    assert saved.scale == {0: (1 << 48, 48), 1: (1 << 48, 48)}


def test_get_tsc_offsets_before_kvm_5_16_fails_and_the_save_goes_on() -> None:
    vm = make_vm(kvm=(5, 10))
    saved = SavedState()
    log = Log()
    StepRunner(log).run(("get-tsc-offsets", "get-tsc-khz"), vm, saved, 2 * S)
    assert log.lines == [
        (
            2 * S + IOCTL_NS,
            "vmm",
            "get-tsc-offsets failed, carrying on: "
            "KVM_GET_DEVICE_ATTR: ENXIO (KVM_VCPU_TSC_OFFSET needs KVM 5.16)",
        )
    ]
    assert saved.offsets == {}
    assert saved.tsc_khz == KHZ


def documented_restore(dst_khz: int, restore: tuple[str, ...]) -> tuple[KvmVm, KvmVm, SavedState, int, int]:
    """Save at 2 s on a 2.5 GHz source; restore on a destination created at 5 s (up 7 s).

    Returns (source, destination, saved, t0 of the save's get-clock, t1 of the
    offset step's own KVM_GET_CLOCK).
    """
    src = make_vm()
    saved = SavedState()
    runner = StepRunner(Log())
    t0 = 2 * S
    runner.run(("get-clock", "get-tsc-offsets", "get-tsc-khz"), src, saved, t0)
    dst = make_vm(name="dst", khz=dst_khz, t_ns=5 * S, uptime_ns=7 * S)
    t1 = runner.run(restore[:-1], dst, saved, 5 * S)
    runner.run(restore[-1:], dst, saved, t1)
    return src, dst, saved, t0, t1


def test_set_tsc_offsets_doc_advances_the_tsc_by_the_kvmclock_advance() -> None:
    src, dst, saved, t0, t1 = documented_restore(
        KHZ, ("enable-pvclock", "set-clock-realtime", "set-tsc-offsets-doc")
    )
    assert saved.clock is not None
    # The step read kvmclock at t1 (KVM_GET_CLOCK is a pure read, so reading it again gives the same).
    now = dst.get_clock(t1)
    kvmclock_advance = now.clock - saved.clock.clock
    # The guest TSC at the step's clock read is the source's at the save plus advance * khz / 1e6, exactly.
    assert dst.guest_tsc(0, t1) - src.guest_tsc(0, t0) == kvmclock_advance * KHZ // 1_000_000
    # And kvmclock advanced by the realtime between the two reads (t1 - t0), give or take the pvclock's
    # truncation: so the TSC counted the downtime at 2.5 GHz.
    assert abs(kvmclock_advance - (t1 - t0)) <= 2
    assert abs(dst.guest_tsc(0, t1) - src.guest_tsc(0, t0) - (t1 - t0) * 5 // 2) <= 5
    # Every vCPU gets the same offset.
    assert dst.get_tsc_offset(0) == dst.get_tsc_offset(1)


def test_set_tsc_offsets_doc_ignores_scaling_so_a_faster_host_runs_the_guest_fast() -> None:
    _, dst, _, _, t1 = documented_restore(
        3_000_000, ("enable-pvclock", "set-clock-realtime", "set-tsc-offsets-doc")
    )
    # No rate set: one second later the guest TSC has counted the destination's 3e9 cycles.
    assert dst.guest_tsc(0, t1 + S) - dst.guest_tsc(0, t1) == 3_000_000_000


def test_set_tsc_offsets_scaled_keeps_the_source_rate_and_the_identity() -> None:
    src, dst, saved, t0, t1 = documented_restore(
        3_000_000, ("set-tsc-khz-or-warn", "enable-pvclock", "set-clock-realtime", "set-tsc-offsets-scaled")
    )
    assert saved.clock is not None
    now = dst.get_clock(t1)
    assert dst.guest_tsc(0, t1) - src.guest_tsc(0, t0) == (now.clock - saved.clock.clock) * KHZ // 1_000_000
    # Scaled to 2.5 GHz on the 3 GHz host: a second later 2.5e9 cycles (less one for the ratio's floor).
    assert dst.guest_tsc(0, t1 + S) - dst.guest_tsc(0, t1) in (2_499_999_999, 2_500_000_000)
    assert dst.get_tsc_offset(0) == dst.get_tsc_offset(1)


def per_vcpu_offsets_restore() -> tuple[KvmVm, int, int]:
    """Cloud Hypervisor's restore: MSRs read an ioctl apart on the source, then per-vCPU offsets."""
    src = make_vm()
    saved = SavedState()
    runner = StepRunner(Log())
    runner.run(("get-tsc-msrs",), src, saved, 2 * S)
    dst = make_vm(name="dst", t_ns=5 * S, uptime_ns=7 * S)
    t1 = 6 * S
    done = runner.run(("per-vcpu-tsc-offsets",), dst, saved, t1)
    return dst, t1, done


def test_per_vcpu_tsc_offsets_end_up_an_ioctl_apart() -> None:
    dst, t1, done = per_vcpu_offsets_restore()
    # Per vCPU: the VMM's rdtsc, then the offset write.
    assert done == t1 + 4 * IOCTL_NS
    assert kvm_calls(dst, t1) == [
        (t1 + IOCTL_NS, "KVM_SET_DEVICE_ATTR"),
        (t1 + 3 * IOCTL_NS, "KVM_SET_DEVICE_ATTR"),
    ]
    # The saved TSCs were read an ioctl apart on the source (vCPU 1's 25000 cycles higher); here the host
    # TSC is read two steps apart (t1 and t1 + 20 us: 50000 cycles), so vCPU 1's offset is
    # 50000 - 25000 = 25000 cycles lower, and its TSC that much behind vCPU 0's.
    assert u64(dst.get_tsc_offset(0) - dst.get_tsc_offset(1)) == CYCLES_PER_IOCTL
    assert dst.guest_tsc(0, done) - dst.guest_tsc(1, done) == CYCLES_PER_IOCTL
    # The vCPUs no longer match: KVM drops its master clock.
    for v in range(2):
        dst.vcpu_run(v, done)
    assert not dst.use_master_clock


def test_equalize_tsc_offsets_gives_every_vcpu_vcpu_0s_offset() -> None:
    dst, _, done = per_vcpu_offsets_restore()
    vcpu0 = dst.get_tsc_offset(0)
    after = StepRunner(Log()).run(("equalize-tsc-offsets",), dst, SavedState(), done)
    # The read of vCPU 0's offset (one ioctl), then a write to every vCPU, vCPU 0 included (two more).
    assert after == done + 3 * IOCTL_NS
    assert kvm_calls(dst, done) == [
        (done + IOCTL_NS, "KVM_SET_DEVICE_ATTR"),
        (done + 2 * IOCTL_NS, "KVM_SET_DEVICE_ATTR"),
    ]
    assert dst.get_tsc_offset(1) == dst.get_tsc_offset(0) == vcpu0
    assert dst.guest_tsc(0, after) == dst.guest_tsc(1, after)


def test_equalize_tsc_offsets_brings_the_master_clock_back() -> None:
    dst, _, done = per_vcpu_offsets_restore()
    for v in range(2):
        dst.vcpu_run(v, done)
    assert not dst.use_master_clock  # the per-vCPU offsets differ (see above)
    after = StepRunner(Log()).run(("equalize-tsc-offsets",), dst, SavedState(), done)
    # vCPU 0's write differs from the last one written (vCPU 1's offset): a new generation; vCPU 1's,
    # the same offset again, matches it. Both vCPUs in one generation: KVM 6.8 asks for a master
    # clock update, and the next entry turns it on.
    details = [detail for t, name, detail in dst.log if t > done and name == "KVM_SET_DEVICE_ATTR"]
    assert [d.rsplit(", ", 1)[1] for d in details] == ["new generation", "matched"]
    for v in range(2):
        dst.vcpu_run(v, after)
    assert dst.use_master_clock


def test_equalize_on_one_vcpu_rewrites_its_own_offset() -> None:
    vm = make_vm(vcpus=1)
    offset = vm.get_tsc_offset(0)
    # The read, then the write of the same offset back to vCPU 0: 2 ioctls, and nothing changes.
    assert StepRunner(Log()).run(("equalize-tsc-offsets",), vm, SavedState(), 3 * S) == 3 * S + 2 * IOCTL_NS
    assert kvm_calls(vm) == [(3 * S + IOCTL_NS, "KVM_SET_DEVICE_ATTR")]
    assert vm.get_tsc_offset(0) == offset
