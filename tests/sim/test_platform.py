"""The guest's platform: the VMM's device clock, stopped intervals, counters, the VM underneath."""

from __future__ import annotations

from tsclab.clocksource.counters import ACPI_PM_HZ
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import KvmVm
from tsclab.scenario.model import HostSpec
from tsclab.sim.platform import DeviceClock, Platform

S = 1_000_000_000
EPOCH = 1_767_225_600 * S
HPET_HZ, HPET_MASK = 100_000_000, 0xFFFF_FFFF  # QEMU's HPET: 10 ns period, 32 bits
ACPI_PM_MASK = 0xFF_FFFF  # 24 bits


def make_vm(khz: int = 2_500_000, uptime_ns: int = S, t_ns: int = 0) -> KvmVm:
    vm = KvmVm(HostClock(HostSpec("h", khz, uptime_ns=uptime_ns), EPOCH), 2, t_ns)
    for v in range(2):
        vm.enable_pvclock(v, t_ns)
        vm.vcpu_run(v, t_ns)
    return vm


# --- the device clock --------------------------------------------------------------------


def test_device_clock_runs_with_true_time_until_stopped() -> None:
    clock = DeviceClock()
    assert [clock.ns(t) for t in (0, 5, 10 * S)] == [0, 5, 10 * S]


def test_device_clock_stands_still_while_stopped_and_resumes_from_there() -> None:
    clock = DeviceClock()
    clock.stop(3 * S)
    assert clock.ns(3 * S) == clock.ns(10 * S) == 3 * S
    clock.start(7 * S)
    # 3 s before the stop, plus 3 s since the start at 7 s.
    assert clock.ns(10 * S) == 6 * S


def test_device_clock_stop_and_start_are_idempotent() -> None:
    clock = DeviceClock()
    clock.start(1 * S)  # already running: no effect
    assert clock.ns(2 * S) == 2 * S
    clock.stop(3 * S)
    clock.stop(5 * S)  # already stopped: the first stop stands
    clock.start(7 * S)
    clock.start(8 * S)  # already running: the first start stands
    assert clock.ns(10 * S) == 6 * S


def test_device_clock_accumulates_several_stops() -> None:
    clock = DeviceClock()
    for stop, start in ((1 * S, 2 * S), (4 * S, 7 * S)):
        clock.stop(stop)
        clock.start(start)
    # 10 s of true time less 1 s and 3 s stopped.
    assert clock.ns(10 * S) == 6 * S


# --- stopped intervals -----------------------------------------------------------------


def test_stopped_intervals_are_recorded_when_the_vcpus_run_again() -> None:
    platform = Platform(make_vm())
    assert platform.running
    platform.stop_vcpus(1 * S)
    assert not platform.running
    assert platform.stopped == []  # not closed yet
    platform.stop_vcpus(2 * S)  # already stopped: the interval still starts at 1 s
    platform.start_vcpus(3 * S)
    platform.start_vcpus(4 * S)  # already running: nothing added
    assert platform.running
    assert platform.stopped == [(1 * S, 3 * S)]


def test_stopped_ns_between_counts_the_overlap_half_open() -> None:
    platform = Platform(make_vm())
    for stop, start in ((1, 3), (5, 9)):
        platform.stop_vcpus(stop)
        platform.start_vcpus(start)
    assert platform.stopped_ns_between(0, 10) == 2 + 4
    assert platform.stopped_ns_between(2, 6) == 1 + 1
    assert platform.stopped_ns_between(3, 5) == 0  # between the two
    assert platform.stopped_ns_between(8, 100) == 1
    assert platform.stopped_ns_between(10, 20) == 0
    assert platform.stopped_ns_between(6, 6) == 0


# --- counters -----------------------------------------------------------------------------


def test_device_counter_is_the_device_clock_at_the_rate_masked() -> None:
    platform = Platform(make_vm())
    # HPET at 43 s: 4.3e9 ticks, one wrap of 2**32 gone: 4_300_000_000 - 4_294_967_296.
    assert platform.device_counter(HPET_HZ, HPET_MASK, 43 * S) == 5_032_704
    # ACPI PM at 5 s: 17_897_725 ticks, less one 2**24 wrap.
    assert platform.device_counter(ACPI_PM_HZ, ACPI_PM_MASK, 5 * S) == 17_897_725 - (1 << 24)
    # Floored: 279 ns is 0.9987 of an ACPI PM tick, 280 ns 1.0023.
    assert platform.device_counter(ACPI_PM_HZ, ACPI_PM_MASK, 279) == 0
    assert platform.device_counter(ACPI_PM_HZ, ACPI_PM_MASK, 280) == 1


def test_device_counter_stands_still_with_the_device_clock() -> None:
    platform = Platform(make_vm())
    platform.devices.stop(43 * S)
    assert platform.device_counter(HPET_HZ, HPET_MASK, 53 * S) == 5_032_704
    platform.devices.start(53 * S)
    assert platform.device_counter(HPET_HZ, HPET_MASK, 53 * S + 10) == 5_032_705


def test_vcpu_stops_do_not_stop_the_device_clock() -> None:
    """A SIGSTOPped VMM: the vCPUs do not run, the devices' clock counts on."""
    platform = Platform(make_vm())
    platform.stop_vcpus(1 * S)
    platform.start_vcpus(5 * S)
    assert platform.device_counter(HPET_HZ, HPET_MASK, 6 * S) == 600_000_000


def test_guest_tsc_and_pvti_are_the_current_vms() -> None:
    first = make_vm()
    platform = Platform(first)
    # Created at 0: the guest TSC counts 2.5 cycles a ns from 0.
    assert platform.guest_tsc(1, 1_000_000) == first.guest_tsc(1, 1_000_000) == 2_500_000
    assert platform.pvti(0) is first.pvti[0]
    second = make_vm(khz=3_000_000, t_ns=10 * S)
    platform.attach(second)
    assert platform.kvm is second
    # The new VM was created at 10 s: its guest TSC counts 3 cycles a ns from there.
    assert platform.guest_tsc(0, 11 * S) == 3_000_000_000
    assert platform.pvti(1) is second.pvti[1]


def test_pvti_is_none_before_the_guest_enables_kvmclock() -> None:
    vm = KvmVm(HostClock(HostSpec("h", 2_500_000), EPOCH), 1, 0)
    assert Platform(vm).pvti(0) is None


# --- the VMCLOCK device and the wall clock ----------------------------------------------------------


def test_a_vmclock_marker_moves_on_at_each_load_and_survives_a_new_vm() -> None:
    platform = Platform(make_vm(), vmclock=True)
    assert (platform.vmclock_present, platform.vmclock_marker) == (True, 0)
    assert platform.vmclock_post_load() == 1
    platform.attach(make_vm(t_ns=10 * S))
    assert platform.vmclock_post_load() == 2
    assert not Platform(make_vm()).vmclock_present


def test_the_wall_clock_is_the_current_host_s_realtime() -> None:
    platform = Platform(make_vm())
    assert platform.wallclock_ns(5 * S) == EPOCH + 5 * S
    behind = KvmVm(HostClock(HostSpec("late", 2_500_000, realtime_error_ns=-2 * S), EPOCH), 2, 10 * S)
    platform.attach(behind)
    assert platform.wallclock_ns(11 * S) == EPOCH + 9 * S
