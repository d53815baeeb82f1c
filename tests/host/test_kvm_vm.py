"""KVM's per-VM clock state: TSC writes, the master clock, kvmclock pages and the clock ioctls.

Unless a test says otherwise the host runs a 3 GHz TSC without drift and had
been up 1 s when the VM was created at t = 0, so its TSC reads
``3 * (t + 1e9)`` and its kvmclock base ``t + 1e9``.  A vCPU created at 0 then
has offset ``-3e9`` and reads ``guest_tsc = 3 * t``; ``kvmclock_offset`` is
``-1e9``.  The pvclock scale for 3 GHz is shift -1, mul
``floor(2**32 * 2/3) = 2863311530``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tsclab.arith import U64_MAX, u64
from tsclab.clocksource.pvclock import kvm_get_time_scale
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import (
    KVM_CLOCK_HOST_TSC,
    KVM_CLOCK_REALTIME,
    KVM_CLOCK_TSC_STABLE,
    KVM_REQ_CLOCK_UPDATE,
    KVM_REQ_MASTERCLOCK_UPDATE,
    KVM_TSC_STATE_TIMESTAMP_VALID,
    KVM_TSC_STATE_TSC_ADJUST_VALID,
    KvmClockData,
    KvmError,
    KvmTscState,
    KvmVm,
)
from tsclab.kernel.vdso import PVCLOCK_GUEST_STOPPED, PVCLOCK_TSC_STABLE_BIT, PvclockVcpuTimeInfo
from tsclab.scenario.model import HostClocksource, HostSpec, Scaling, SuspendTsc

S = 1_000_000_000
MS = 1_000_000
EPOCH = 1_767_225_600 * S
MUL_3GHZ = 2863311530  # floor(2**32 * 1e9 / 1.5e9), shift -1
STABLE = PVCLOCK_TSC_STABLE_BIT
STOPPED = PVCLOCK_GUEST_STOPPED


def make_host(
    kvm: tuple[int, int] = (6, 8),
    *,
    scaling: Scaling = "vmx",
    clocksource: HostClocksource = "tsc",
    tsc_in_suspend: SuspendTsc = "reset",
    realtime_error_ns: int = 0,
) -> HostClock:
    spec = HostSpec(
        "h",
        3_000_000,
        uptime_ns=S,
        realtime_error_ns=realtime_error_ns,
        scaling=scaling,
        clocksource=clocksource,
        tsc_in_suspend=tsc_in_suspend,
        kvm=kvm,
    )
    return HostClock(spec, EPOCH)


def booted(host: HostClock, nr_vcpus: int = 2, *, tsc_khz: int | None = None) -> KvmVm:
    """Created at 0, kvmclock enabled on every vCPU at 0, every vCPU entered at 1 ms."""
    vm = KvmVm(host, nr_vcpus, 0, tsc_khz=tsc_khz)
    for vcpu in range(nr_vcpus):
        vm.enable_pvclock(vcpu, 0)
    for vcpu in range(nr_vcpus):
        vm.vcpu_run(vcpu, MS)
    return vm


def pvti(vm: KvmVm, vcpu: int) -> PvclockVcpuTimeInfo:
    page = vm.pvti[vcpu]
    assert page is not None
    return page


# --- creation and the first kvmclock page -----------------------------------------------


def test_vcpus_are_created_at_tsc_zero_in_one_generation() -> None:
    vm = KvmVm(make_host(), 2, 0)
    # Both creation writes of 0 give offset 0 - 3e9; the second matches the first's generation.
    assert vm.get_tsc_offset(0) == vm.get_tsc_offset(1) == u64(-3 * S)
    assert vm.guest_tsc(0, 0) == 0
    assert vm.guest_tsc(1, S) == 3 * S
    assert vm.get_tsc_khz(0) == 3_000_000
    assert vm.kvmclock_offset == -S
    # The master clock is decided at the first entry, not at creation.
    assert not vm.use_master_clock
    assert KVM_REQ_MASTERCLOCK_UPDATE in vm.pending_requests(0)
    assert [name for _, name, _ in vm.log] == ["KVM_CREATE_VM", "KVM_CREATE_VCPU", "KVM_CREATE_VCPU"]


def test_first_entry_publishes_a_stable_kvmclock_page() -> None:
    vm = booted(make_host())
    assert vm.use_master_clock
    # Master snapshot at 1 ms: kernel ns 1_001_000_000, host TSC 3_003_000_000.
    # tsc_timestamp = 3_003_000_000 - 3e9; system_time = 1_001_000_000 - 1e9; version 0 -> 2.
    expected = PvclockVcpuTimeInfo(
        version=2,
        tsc_timestamp=3_000_000,
        system_time=1_000_000,
        tsc_to_system_mul=MUL_3GHZ,
        tsc_shift=-1,
        flags=STABLE,
    )
    assert pvti(vm, 0) == expected
    assert pvti(vm, 1) == expected
    # At t = 2.001 s the guest TSC is 6_003_000_000: delta 6e9 -> (3e9 * 2863311530) >> 32
    # = 1_999_999_999 (the scale truncates: -0.23 ppm), + 1_000_000.
    assert vm.kvmclock_ns(0, 2_001_000_000) == 2_000_999_999


def test_without_a_tsc_host_clocksource_there_is_no_master_clock() -> None:
    vm = booted(make_host(clocksource="hpet"))
    assert not vm.use_master_clock
    # Same figures from the host's TSC and base ns of 1 ms, without TSC_STABLE.
    assert pvti(vm, 0).flags == 0
    assert (pvti(vm, 0).tsc_timestamp, pvti(vm, 0).system_time) == (3_000_000, 1_000_000)


def test_pvclock_page_needs_kvmclock_enabled() -> None:
    vm = KvmVm(make_host(), 1, 0)
    vm.vcpu_run(0, MS)
    assert vm.pvti[0] is None
    with pytest.raises(ValueError, match="no pvclock page"):
        vm.kvmclock_ns(0, MS)


def test_version_goes_up_by_two_and_recovers_from_an_odd_restore() -> None:
    vm = booted(make_host())
    vm.kvmclock_periodic_sync(2 * S)
    assert KVM_REQ_CLOCK_UPDATE in vm.pending_requests(1)
    vm.vcpu_run(1, 2 * S)
    assert pvti(vm, 1).version == 4
    # Memory saved mid-update (version 5): (5 + 1) | 1 = 7 while writing, 8 after.
    vm.set_guest_memory_pvti(1, replace(pvti(vm, 1), version=5))
    vm.kvmclock_periodic_sync(3 * S)
    vm.vcpu_run(1, 3 * S)
    assert pvti(vm, 1).version == 8


# --- KVM_GET_CLOCK / KVM_SET_CLOCK ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kvm", "flags", "realtime", "host_tsc"),
    [
        ((5, 15), KVM_CLOCK_TSC_STABLE, 0, 0),
        # 5.16+: the host's realtime and TSC at the same instant, 3 * (2.001e9 + 1e9).
        (
            (6, 8),
            KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC,
            EPOCH + 2_001 * MS,
            9_003 * MS,
        ),
    ],
)
def test_get_clock_by_version(kvm: tuple[int, int], flags: int, realtime: int, host_tsc: int) -> None:
    vm = booted(make_host(kvm))
    # The master snapshot read at host TSC 9_003_000_000: delta 6e9 -> 1_999_999_999, + 1 ms.
    expected = KvmClockData(clock=2_000_999_999, flags=flags, realtime=realtime, host_tsc=host_tsc)
    assert vm.get_clock(2_001 * MS) == expected


@pytest.mark.parametrize("kvm", [(5, 15), (6, 8)])
def test_get_clock_without_master_clock_has_no_flags(kvm: tuple[int, int]) -> None:
    vm = booted(make_host(kvm, clocksource="hpet"))
    # Base ns 3.001e9 + kvmclock_offset -1e9.
    assert vm.get_clock(2_001 * MS) == KvmClockData(clock=2_001 * MS, flags=0)


def test_set_clock_realtime_adds_the_elapsed_wall_time() -> None:
    vm = booted(make_host((6, 8)))
    saved = KvmClockData(clock=5 * S, flags=KVM_CLOCK_REALTIME, realtime=EPOCH + 10 * S)
    vm.set_clock(saved, 20 * S)
    # 10 s of host realtime passed since the save: 5e9 + 10e9.  The master snapshot is
    # refreshed at 20 s (base 21e9), so kvmclock_offset = 15e9 - 21e9.
    assert vm.kvmclock_offset == -6 * S
    assert vm.get_clock(20 * S).clock == 15 * S
    assert {KVM_REQ_CLOCK_UPDATE} <= vm.pending_requests(0)
    vm.vcpu_run(0, 20 * S)
    assert pvti(vm, 0).system_time == 15 * S
    assert pvti(vm, 0).tsc_timestamp == 60 * S  # 3 * (21e9) - 3e9


def test_set_clock_realtime_never_steps_backwards() -> None:
    vm = booted(make_host((6, 8)))
    # The saving host's clock was 5 s ahead: now_real < realtime, nothing is added.
    vm.set_clock(KvmClockData(clock=5 * S, flags=KVM_CLOCK_REALTIME, realtime=EPOCH + 25 * S), 20 * S)
    assert vm.get_clock(20 * S).clock == 5 * S


def test_set_clock_flags_by_version() -> None:
    old = booted(make_host((5, 15)))
    with pytest.raises(KvmError) as caught:
        old.set_clock(KvmClockData(clock=5 * S, flags=KVM_CLOCK_REALTIME, realtime=EPOCH), 20 * S)
    assert str(caught.value) == "KVM_SET_CLOCK: EINVAL (flags 0x4 not accepted)"
    assert old.log[-1] == (20 * S, "KVM_SET_CLOCK", "EINVAL: flags 0x4 not accepted")
    old.set_clock(KvmClockData(clock=5 * S, flags=0), 20 * S)
    assert old.get_clock(20 * S).clock == 5 * S

    new = booted(make_host((6, 8)))
    with pytest.raises(KvmError, match="EINVAL"):
        new.set_clock(KvmClockData(clock=5 * S, flags=1), 20 * S)
    # What KVM_GET_CLOCK returned may be passed back; only REALTIME acts.
    returned = new.get_clock(10 * S)
    new.set_clock(returned, 10 * S)
    assert new.get_clock(10 * S).clock == returned.clock


# --- MSR_IA32_TSC writes and the 1-second heuristic -------------------------------------------


@pytest.mark.parametrize(
    ("kvm", "guest_tsc", "outcome"),
    [
        # Expected TSC after 0.2 s at 3 GHz: 0 + nsec_to_cycles(2e8) = (8e8 * 0.75 * 2**32) >> 32 = 6e8.
        # 1.5e9 is within 3e9 cycles of it: "synchronised" back to the creation offset.
        ((6, 1), 600_000_000, "synchronized"),
        # 6.7+: no user write yet, so the restored value stays.
        ((6, 7), 1_500_000_000, "new generation"),
        ((6, 8), 1_500_000_000, "new generation"),
    ],
)
def test_restore_within_a_second_of_creation(kvm: tuple[int, int], guest_tsc: int, outcome: str) -> None:
    """Bugzilla 217423: a VM saved 0.5 s into its life, restored 0.2 s after creation."""
    vm = KvmVm(make_host(kvm), 1, 0)
    vm.set_msr_tsc(0, 1_500_000_000, 200 * MS)
    assert vm.guest_tsc(0, 200 * MS) == guest_tsc
    assert vm.get_msr_tsc(0, 200 * MS) == guest_tsc
    assert outcome in vm.log[-2][2]


def test_second_user_write_within_a_second_still_synchronises() -> None:
    vm = KvmVm(make_host((6, 8)), 2, 0)
    vm.set_msr_tsc(0, 1_500_000_000, 200 * MS)
    # 10 us later the first write is expected at 1.5e9 + (4e4 * 0.75) = 1_500_030_000; a write
    # of 1_500_037_777 is within the second, so vCPU 1 takes vCPU 0's offset (1.5e9 - 3.6e9).
    vm.set_msr_tsc(1, 1_500_037_777, 200 * MS + 10_000)
    assert vm.get_tsc_offset(1) == vm.get_tsc_offset(0) == u64(-2_100_000_000)
    assert vm.guest_tsc(1, 200 * MS + 10_000) == 1_500_030_000


def test_unmatched_writes_turn_the_master_clock_off_and_equal_offsets_turn_it_on() -> None:
    vm = booted(make_host((6, 8)))
    # A restore writing each vCPU's TSC separately, the values 100 s of cycles apart.
    vm.set_msr_tsc(0, 100 * S, 2 * S)
    vm.set_msr_tsc(1, 200 * S, 2 * S + 1_000)
    assert KVM_REQ_MASTERCLOCK_UPDATE in vm.pending_requests(0)
    assert KVM_REQ_MASTERCLOCK_UPDATE in vm.pending_requests(1)
    vm.vcpu_run(0, 3 * S)
    vm.vcpu_run(1, 3 * S)
    assert not vm.use_master_clock
    # vCPU 0's offset: 100e9 - 9e9; at 3 s it reads 91e9 + 12e9.  System time 4e9 - 1e9.
    assert (pvti(vm, 0).flags, pvti(vm, 0).tsc_timestamp, pvti(vm, 0).system_time) == (0, 103 * S, 3 * S)
    assert pvti(vm, 1).flags == 0

    # KVM_VCPU_TSC_OFFSET: vCPU 0's offset on both.  The first write opens a generation of one
    # (no request: the master clock stays off); the second matches it and asks to switch on.
    offset = vm.get_tsc_offset(0)
    vm.set_tsc_offset(0, offset, 4 * S)
    vm.set_tsc_offset(1, offset, 4 * S + 1_000)
    assert KVM_REQ_MASTERCLOCK_UPDATE not in vm.pending_requests(0)
    assert KVM_REQ_MASTERCLOCK_UPDATE in vm.pending_requests(1)
    vm.vcpu_run(1, 5 * S)
    vm.vcpu_run(0, 5 * S)
    assert vm.use_master_clock
    assert pvti(vm, 0).flags == pvti(vm, 1).flags == STABLE
    assert vm.guest_tsc(0, 6 * S) == vm.guest_tsc(1, 6 * S) == 112 * S  # 91e9 + 3 * 7e9


@pytest.mark.parametrize(("kvm", "requested"), [((6, 1), True), ((6, 8), False)])
def test_matched_write_requests_a_masterclock_update_before_6_8(
    kvm: tuple[int, int], requested: bool
) -> None:
    vm = booted(make_host(kvm))
    assert vm.pending_requests(1) == frozenset()
    vm.set_msr_tsc(1, 0, 2 * S)  # writing 0 always synchronises: same generation
    assert (KVM_REQ_MASTERCLOCK_UPDATE in vm.pending_requests(1)) is requested


def test_tsc_offset_attribute_needs_5_16() -> None:
    vm = KvmVm(make_host((5, 15)), 1, 0)
    with pytest.raises(KvmError) as caught:
        vm.get_tsc_offset(0)
    assert (caught.value.ioctl, caught.value.errno_name) == ("KVM_GET_DEVICE_ATTR", "ENXIO")
    with pytest.raises(KvmError, match=r"^KVM_SET_DEVICE_ATTR: ENXIO"):
        vm.set_tsc_offset(0, 0, S)


def test_tsc_offset_write_sets_user_set_tsc_from_6_7() -> None:
    vm = KvmVm(make_host((6, 8)), 2, 0)
    vm.set_tsc_offset(0, vm.get_tsc_offset(0), 100 * MS)
    # Now a later MSR write within a second of the expected value is synchronised:
    # expected at 0.2 s: 3e8 (the offset write at 0.1 s) + 3e8 = 6e8.
    vm.set_msr_tsc(1, 1_500_000_000, 200 * MS)
    assert vm.guest_tsc(1, 200 * MS) == 600_000_000


# --- KVM_KVMCLOCK_CTRL and the PM notifier --------------------------------------------------


def test_kvmclock_ctrl_needs_kvmclock() -> None:
    vm = KvmVm(make_host(), 1, 0)
    with pytest.raises(KvmError) as caught:
        vm.kvmclock_ctrl(0, S)
    assert str(caught.value) == "KVM_KVMCLOCK_CTRL: EINVAL (vcpu0: kvmclock not enabled)"


def test_guest_stopped_reaches_memory_at_the_next_entry() -> None:
    vm = booted(make_host())
    vm.kvmclock_ctrl(0, 2 * S)
    # A request only: guest memory is untouched until the vCPU enters.
    assert (pvti(vm, 0).version, pvti(vm, 0).flags) == (2, STABLE)
    vm.vcpu_run(0, 2 * S + 1)
    assert (pvti(vm, 0).version, pvti(vm, 0).flags) == (4, STABLE | STOPPED)
    # KVM keeps the flag on later updates until the guest clears it.
    vm.kvmclock_periodic_sync(3 * S)
    vm.vcpu_run(0, 3 * S)
    assert pvti(vm, 0).flags == STABLE | STOPPED
    pvti(vm, 0).flags &= ~STOPPED  # kvm_check_and_clear_guest_paused()
    vm.kvmclock_periodic_sync(4 * S)
    vm.vcpu_run(0, 4 * S)
    assert (pvti(vm, 0).version, pvti(vm, 0).flags) == (8, STABLE)


def test_request_on_a_discarded_vm_never_reaches_memory() -> None:
    host = make_host()
    source = booted(host)
    source.kvmclock_ctrl(0, 2 * S)  # after the pause: too late, memory is saved as it is
    snapshot = [None if p is None else replace(p) for p in source.pvti]
    del source

    restored = KvmVm(host, 2, 10 * S)
    restored.set_guest_memory_pvti(0, snapshot[0])
    assert restored.pvti[0] is not snapshot[0]
    restored.enable_pvclock(0, 10 * S)
    restored.vcpu_run(0, 10 * S)
    assert not pvti(restored, 0).flags & STOPPED
    assert pvti(restored, 0).version == 4  # 2 from the snapshot, + 2


@pytest.mark.parametrize(("kvm", "stopped"), [((5, 10), False), ((5, 14), True), ((6, 8), True)])
def test_suspend_notifier_by_version(kvm: tuple[int, int], stopped: bool) -> None:
    host = make_host(kvm, tsc_in_suspend="nonstop")
    vm = KvmVm(host, 2, 0)
    vm.enable_pvclock(0, 0)  # vCPU 1 never enables kvmclock: skipped, not an error
    vm.vcpu_run(0, MS)
    vm.vcpu_run(1, MS)
    vm.suspend_notifier(10 * S)
    host.suspend(10 * S, 60 * S)
    vm.host_resumed(70 * S)
    vm.vcpu_run(0, 70 * S)
    vm.vcpu_run(1, 70 * S)
    # vCPU 0 has a clock update pending either way (vCPU 1's first entry asked for it), so the
    # page is rewritten on every version; only the notifier adds the flag.
    assert pvti(vm, 0).version == 4
    assert bool(pvti(vm, 0).flags & STOPPED) is stopped
    assert vm.pvti[1] is None


# --- host resume ------------------------------------------------------------------------------


def test_guest_tsc_continues_across_a_host_tsc_reset() -> None:
    host = make_host((6, 8), tsc_in_suspend="reset")
    vm = booted(host)
    host.suspend(10 * S, 60 * S)
    assert vm.guest_tsc(0, 10 * S) == 30 * S  # 3 * 11e9 - 3e9, where it stops
    vm.host_resumed(70 * S)
    # Host TSC 0 at resume, last seen 33e9: offsets += 33e9, so 30e9 again.
    assert vm.guest_tsc(0, 70 * S) == vm.guest_tsc(1, 70 * S) == 30 * S
    assert vm.backwards_tsc_observed
    assert {KVM_REQ_MASTERCLOCK_UPDATE, KVM_REQ_CLOCK_UPDATE} <= vm.pending_requests(1)
    vm.vcpu_run(0, 70 * S)
    assert not vm.use_master_clock
    # kvmclock counts the 60 s asleep (base 71e9 - 1e9) while the TSC does not.
    assert (pvti(vm, 0).flags, pvti(vm, 0).tsc_timestamp, pvti(vm, 0).system_time) == (0, 30 * S, 70 * S)
    assert vm.kvmclock_ns(0, 71 * S) == 70 * S + 999_999_999
    assert vm.guest_tsc(0, 71 * S) == 33 * S
    # Resuming again is not compensated twice; equal offsets cannot bring the master clock back.
    vm.host_resumed(71 * S)
    assert vm.guest_tsc(0, 71 * S) == 33 * S
    vm.set_tsc_offset(0, vm.get_tsc_offset(1), 72 * S)
    vm.set_tsc_offset(1, vm.get_tsc_offset(1), 72 * S)
    vm.vcpu_run(1, 72 * S)
    assert not vm.use_master_clock


def test_nonstop_tsc_needs_no_compensation() -> None:
    host = make_host((6, 8), tsc_in_suspend="nonstop")
    vm = booted(host)
    host.suspend(10 * S, 60 * S)
    vm.host_resumed(70 * S)
    assert vm.guest_tsc(0, 70 * S) == 210 * S  # 3 * 71e9 - 3e9: the sleep counted
    assert not vm.backwards_tsc_observed
    assert vm.use_master_clock


@pytest.mark.parametrize("scaling", ["vmx", "svm"])
def test_scaled_guest_tsc_continues_exactly_across_a_reset(scaling: Scaling) -> None:
    host = make_host((6, 8), scaling=scaling)
    vm = booted(host, tsc_khz=2_000_000)
    host.suspend(10 * S, 60 * S)
    before = vm.guest_tsc(0, 10 * S)
    vm.host_resumed(70 * S)
    # offset + scale(33e9) before; offset + scale(33e9) + scale(0) after.
    assert vm.guest_tsc(0, 70 * S) == before


def test_no_vcpu_runs_while_the_host_sleeps() -> None:
    host = make_host()
    vm = booted(host)
    host.suspend(10 * S, 60 * S)
    with pytest.raises(ValueError, match="suspended"):
        vm.vcpu_run(0, 30 * S)


# --- TSC-deadline inverse -----------------------------------------------------------------------


def test_true_time_at_guest_tsc() -> None:
    host = make_host()
    vm = booted(host)
    assert vm.true_time_at_guest_tsc(0, 3 * S + 1, 0) == S + 1  # 3t >= 3e9 + 1
    assert vm.true_time_at_guest_tsc(0, 5, 2 * S) == 2 * S  # already passed
    host.suspend(10 * S, 60 * S)
    assert vm.true_time_at_guest_tsc(0, 30 * S - 3, 0) == 10 * S - 1
    assert vm.true_time_at_guest_tsc(0, 30 * S, 0) is None  # the host TSC resets first


@given(
    scaling=st.sampled_from(["vmx", "svm"]),
    guest_khz=st.integers(min_value=1_000_000, max_value=5_000_000),
    written=st.integers(min_value=0, max_value=U64_MAX),
    not_before=st.integers(min_value=0, max_value=10**12),
    ahead=st.integers(min_value=0, max_value=10**13),
)
def test_true_time_at_guest_tsc_is_the_exact_inverse(
    scaling: Scaling, guest_khz: int, written: int, not_before: int, ahead: int
) -> None:
    vm = KvmVm(make_host((6, 8), scaling=scaling), 1, 0, tsc_khz=guest_khz)
    vm.set_msr_tsc(0, written, 0)  # the first user write is kept: any offset, wrapping included
    target = vm.guest_tsc(0, not_before) + ahead
    assume(target <= U64_MAX)
    t = vm.true_time_at_guest_tsc(0, target, not_before)
    assert t is not None
    assert t >= not_before
    assert vm.guest_tsc(0, t) >= target
    assert t == not_before or vm.guest_tsc(0, t - 1) < target


# --- TSC scaling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scaling", "ratio", "frac_bits"),
    [
        ("vmx", 234_562_480_592_213, 48),  # floor(2**48 * 5/6)
        ("svm", 3_579_139_413, 32),  # floor(2**32 * 5/6)
    ],
)
def test_scaled_guest_runs_at_its_rate(scaling: Scaling, ratio: int, frac_bits: int) -> None:
    vm = booted(make_host(scaling=scaling), tsc_khz=2_500_000)
    assert vm.get_tsc_scale(0) == (ratio, frac_bits)
    assert vm.get_tsc_khz(0) == 2_500_000
    # scale(3e9) = 2_499_999_999 (both vendors) is the creation offset; scale(6e9) = 4_999_999_999.
    assert vm.guest_tsc(0, 0) == 0
    assert vm.guest_tsc(0, S) == 2_500_000_000
    # kvmclock's target rate is the host's 3e6 kHz through the ratio: floor(3e6 * 5/6 - e) = 2_499_999.
    scale = kvm_get_time_scale(S, 2_499_999_000)
    assert (pvti(vm, 0).tsc_to_system_mul, pvti(vm, 0).tsc_shift) == (scale.tsc_to_system_mul, -1)
    assert scale != kvm_get_time_scale(S, 2_500_000_000)


def test_without_scaling_a_slower_rate_fails() -> None:
    with pytest.raises(KvmError) as caught:
        KvmVm(make_host(scaling="none"), 1, 0, tsc_khz=2_500_000)
    assert (caught.value.ioctl, caught.value.errno_name) == ("KVM_SET_TSC_KHZ", "EINVAL")
    assert "below hardware" in caught.value.detail


def test_without_scaling_a_rate_within_250_ppm_runs_unscaled() -> None:
    # The band is [2_999_250, 3_000_750] kHz.
    vm = KvmVm(make_host(scaling="none"), 1, 0, tsc_khz=3_000_500)
    assert vm.get_tsc_khz(0) == 3_000_500
    assert vm.get_tsc_scale(0) == (1 << 48, 48)
    assert vm.guest_tsc(0, S) == 3 * S


def test_without_scaling_a_faster_rate_catches_up_on_entry() -> None:
    vm = KvmVm(make_host(scaling="none"), 1, 0, tsc_khz=3_300_000)
    vm.enable_pvclock(0, 0)
    assert vm.guest_tsc(0, S) == 3 * S  # between entries it runs at the host rate
    vm.vcpu_run(0, S)
    # compute_guest_tsc(): nsec_to_cycles(1e9) at 3.3 GHz = (4e9 * 3543348019) >> 32 = 3_299_999_999.
    assert vm.guest_tsc(0, S) == 3_299_999_999
    # No scaling hardware: kvmclock is scaled at the host's 3 GHz.
    assert (pvti(vm, 0).tsc_to_system_mul, pvti(vm, 0).tsc_shift) == (MUL_3GHZ, -1)
    assert pvti(vm, 0).tsc_timestamp == 3_299_999_999


def test_vcpu_set_tsc_khz() -> None:
    vm = booted(make_host(scaling="vmx"))
    vm.set_tsc_khz(0, 1_500_000, S)
    # Ratio 2**47 exactly; the offset stays at -3e9, so the guest TSC drops to 6e9 / 2 - 3e9.
    assert vm.get_tsc_scale(0) == (1 << 47, 48)
    assert vm.guest_tsc(0, S) == 0
    vm.set_tsc_khz(0, 0, S)  # 0: the host's rate
    assert vm.get_tsc_khz(0) == 3_000_000
    with pytest.raises(KvmError, match="max_guest_tsc_khz 2147483647"):
        vm.set_tsc_khz(0, 0x7FFF_FFFF, S)

    svm = booted(make_host(scaling="svm"))
    # floor(3e6 * 0xff_ffff_ffff / 2**32) = 767_999_999 kHz is the ceiling.
    with pytest.raises(KvmError, match="max_guest_tsc_khz 767999999"):
        svm.set_tsc_khz(0, 767_999_999, S)


# --- the seed's KVM_{GET,SET}_TSC_STATE -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "realtime_error_ns", "guest_tsc"),
    [
        # 15 s of realtime since the save: 15e9 + nsec_to_cycles(15e9) = 15e9 + 45e9.
        (KVM_TSC_STATE_TIMESTAMP_VALID, 0, 60 * S),
        # The destination's clock 20 s behind: -5 s, 15e9 - 15e9.
        (KVM_TSC_STATE_TIMESTAMP_VALID, -20 * S, 0),
        (0, 0, 15 * S),  # the value as given
    ],
)
def test_tsc_state_round_trip(flags: int, realtime_error_ns: int, guest_tsc: int) -> None:
    source = booted(make_host())
    state = source.get_tsc_state(0, 5 * S)
    both = KVM_TSC_STATE_TIMESTAMP_VALID | KVM_TSC_STATE_TSC_ADJUST_VALID
    assert state == KvmTscState(flags=both, nsec=EPOCH + 5 * S, tsc=15 * S, tsc_adjust=0)

    dest = KvmVm(make_host(realtime_error_ns=realtime_error_ns), 2, 20 * S)
    pending = dest.pending_requests(0)
    dest.set_tsc_state(0, replace(state, flags=flags), 20 * S)
    assert dest.guest_tsc(0, 20 * S) == guest_tsc
    # A direct offset write: no generation, no master clock request.
    assert dest.pending_requests(0) == pending


def test_kvm_error_text() -> None:
    assert str(KvmError("KVM_SET_TSC_KHZ", "EINVAL", "x")) == "KVM_SET_TSC_KHZ: EINVAL (x)"


def test_a_sleep_before_the_vm_existed_is_not_compensated() -> None:
    host = make_host((6, 8), tsc_in_suspend="reset")
    host.suspend(10 * S, 60 * S)
    vm = KvmVm(host, 1, 100 * S)
    offset = vm.get_tsc_offset(0)
    vm.host_resumed(100 * S)
    assert vm.get_tsc_offset(0) == offset
    assert not vm.backwards_tsc_observed


def test_a_kvm_that_ignores_tsc_writes_keeps_every_guest_on_the_host_tsc() -> None:
    host = make_host()
    vm = KvmVm(host, 2, 0, ignores_tsc_writes=True)
    upstream = KvmVm(host, 2, 0)
    t = 5 * S
    assert vm.guest_tsc(0, t) == vm.guest_tsc(1, t) == host.tsc(t)
    assert upstream.guest_tsc(0, t) < host.tsc(t)  # upstream: postcreate wrote TSC 0
    vm.set_tsc_offset(0, 180 * 3_000_000_000, t)
    vm.set_msr_tsc(1, 0, t)
    vm.set_tsc_state(0, KvmTscState(KVM_TSC_STATE_TIMESTAMP_VALID, 0, 0, 0), t)
    assert (vm.get_tsc_offset(0), vm.get_tsc_offset(1)) == (0, 0)
    assert vm.guest_tsc(0, 2 * t) == vm.guest_tsc(1, 2 * t) == host.tsc(2 * t)
    ignored = [entry for entry in vm.log if "accepted and ignored" in entry[2]]
    assert [ioctl for _t, ioctl, _text in ignored] == [
        "KVM_SET_DEVICE_ATTR",
        "KVM_SET_MSRS",
        "KVM_SET_TSC_STATE",
    ]
    # kvmclock is upstream's: the same on both.
    assert vm.get_clock(t).clock == upstream.get_clock(t).clock
