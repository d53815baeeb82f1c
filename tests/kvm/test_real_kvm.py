"""The KVM layer on this host's real /dev/kvm (skipped, with the reason, where KVM does not work)."""

from __future__ import annotations

import errno
import time

import pytest

from tests.kvm.host_state import mapped, open_fds
from tsclab.kvm import constants as c
from tsclab.kvm import guest_code as g
from tsclab.kvm.clock import ClockData, wrapped_delta
from tsclab.kvm.clock_state import restore_kvmclock, restore_vcpu_clock, save_clock_state
from tsclab.kvm.cpu_state import restore_cpu_state, save_cpu_state
from tsclab.kvm.cpuid import kvm_signature
from tsclab.kvm.errors import GuestError, KvmError
from tsclab.kvm.exits import HltExit
from tsclab.kvm.probe import ERROR, NO, YES, ProbeReport
from tsclab.kvm.probe_guest import ProbeGuest
from tsclab.kvm.selftest import FAIL, selftest
from tsclab.kvm.system import DEVICE, Kvm


def test_system_ioctls(kvm: Kvm) -> None:
    assert kvm.get_api_version() == c.KVM_API_VERSION
    assert kvm.get_vcpu_mmap_size() >= 4096
    assert kvm.check_extension(c.KVM_CAP_USER_MEMORY) == 1
    cpuid = kvm.get_supported_cpuid()
    assert kvm_signature(cpuid) == "KVMKVMKVM"
    assert c.MSR_IA32_TSC in kvm.get_msr_index_list()


def test_open_and_close_leak_no_fd() -> None:
    before = open_fds()
    try:
        kvm = Kvm.open(DEVICE)
    except Exception as err:
        pytest.skip(f"no /dev/kvm: {err}")
    kvm.close()
    kvm.close()
    assert open_fds() == before


def test_vm_vcpu_and_memory_are_released_on_close(kvm: Kvm) -> None:
    before = open_fds()
    vm = kvm.create_vm()
    memory = vm.add_memory(0x10000)
    vcpu = vm.create_vcpu()
    address = memory.address
    assert len(open_fds()) == len(before) + 2  # the VM fd and the vCPU fd
    vm.close()
    assert vcpu.closed
    assert memory.closed
    assert not mapped(address)
    assert open_fds() == before


def test_failed_ioctls_leak_nothing_and_say_what_failed(kvm: Kvm) -> None:
    before = open_fds()
    with kvm.create_vm() as vm:
        vm.create_vcpu(0)
        with pytest.raises(KvmError) as duplicate:
            vm.create_vcpu(0)
        assert duplicate.value.ioctl == "KVM_CREATE_VCPU"
        assert duplicate.value.errno == errno.EEXIST
        assert str(duplicate.value) == "KVM_CREATE_VCPU failed: EEXIST (File exists): vCPU 0"
        with pytest.raises(KvmError) as bad_flags:  # bit 4: no KVM_CLOCK_* flag
            vm.set_clock(ClockData(0, 0x10))
        assert str(bad_flags.value) == "KVM_SET_CLOCK failed: EINVAL (Invalid argument): clock 0 flags 0x10"
    assert open_fds() == before


def test_a_failed_build_closes_the_vm(kvm: Kvm) -> None:
    before = open_fds()

    def fail(_vm: object) -> None:
        raise RuntimeError("stop before the vCPU")

    with pytest.raises(RuntimeError, match="stop before"):
        ProbeGuest.create(kvm, before_vcpu=fail)
    assert open_fds() == before


def test_probe_guest_reads_the_tsc_and_kvmclock_between_host_reads(kvm: Kvm) -> None:
    before = open_fds()
    with ProbeGuest.create(kvm) as guest:
        guest.start()
        assert guest.vcpu.get_msrs([c.MSR_KVM_SYSTEM_TIME_NEW]) == {
            c.MSR_KVM_SYSTEM_TIME_NEW: g.PVCLOCK_GPA | c.KVM_MSR_ENABLED
        }
        first = guest.sample()
        assert isinstance(guest.halt(), HltExit)
        second = guest.sample()
    assert open_fds() == before
    for sample in (first, second):
        assert sample.kvmclock is not None
        assert sample.before.clock <= sample.kvmclock <= sample.after.clock
        if sample.before.has_host_tsc:  # the guest's TSC against KVM's host TSC reads, offset included
            assert sample.before.host_tsc <= sample.after.host_tsc
    assert wrapped_delta(second.tsc, first.tsc) > 0
    assert second.kvmclock is not None
    assert first.kvmclock is not None
    assert second.kvmclock > first.kvmclock


def test_a_guest_that_never_exits_hits_the_deadline(kvm: Kvm) -> None:
    with ProbeGuest.create(kvm, timeout_s=0.3) as guest:
        guest.memory.write_gpa(g.CODE_GPA, b"\xeb\xfe")  # jmp $
        started = time.monotonic()
        with pytest.raises(GuestError, match=r"KVM_RUN did not return within 0\.3 s"):
            guest.start()
    assert time.monotonic() - started < 5


def test_msr_refusal_names_the_msr(kvm: Kvm) -> None:
    with ProbeGuest.create(kvm) as guest, pytest.raises(KvmError) as caught:
        guest.vcpu.get_msrs([c.MSR_IA32_TSC, 0xDEADBEEF])
    assert str(caught.value) == "KVM_GET_MSRS failed: MSR 0xdeadbeef refused: 1 of 2 read"


def test_kvmclock_ctrl_needs_kvmclock(kvm: Kvm) -> None:
    with ProbeGuest.create(kvm, kvmclock=False) as guest:
        guest.start()
        assert guest.pvclock() is None
        with pytest.raises(KvmError) as caught:
            guest.vcpu.kvmclock_ctrl()
    assert caught.value.ioctl == "KVM_KVMCLOCK_CTRL"
    assert caught.value.errno == errno.EINVAL


def test_clock_and_cpu_state_move_to_another_vm(kvm: Kvm) -> None:
    """What a migration does, on one host: park, save, restore into a fresh VM, continue."""
    before = open_fds()
    with ProbeGuest.create(kvm) as source:
        source.start()
        last = source.sample()
        source.park()
        ram = source.memory.read(0, source.memory.size)
        cpu = save_cpu_state(source.vcpu)
        clock = save_clock_state(source.vm)
    assert clock.clock.clock >= (last.kvmclock or 0)
    (vcpu_clock,) = clock.vcpus
    assert vcpu_clock.msrs[c.MSR_KVM_SYSTEM_TIME_NEW] == g.PVCLOCK_GPA | c.KVM_MSR_ENABLED
    with ProbeGuest.create(kvm) as destination:
        destination.memory.write(0, ram)
        restore_cpu_state(destination.vcpu, cpu)
        restore_vcpu_clock(destination.vcpu, vcpu_clock)
        if clock.clock.has_realtime:
            restored = restore_kvmclock(destination.vm, clock.clock, add_elapsed_realtime=True)
        else:
            restored = restore_kvmclock(destination.vm, clock.clock, add_elapsed_realtime=False)
        assert restored.clock >= clock.clock.clock
        destination.assume_parked()
        moved = destination.resume_sample()
        assert destination.vcpu.get_msrs([c.MSR_KVM_SYSTEM_TIME_NEW])[c.MSR_KVM_SYSTEM_TIME_NEW] == 0x5001
    assert open_fds() == before
    # The guest went on from its parked IN straight to RDTSC, in the other VM, and its kvmclock
    # continued: never behind the source's last reading, and equal to the destination KVM's.
    assert moved.kvmclock is not None
    assert last.kvmclock is not None
    assert moved.kvmclock >= last.kvmclock
    assert moved.before.clock <= moved.kvmclock <= moved.after.clock


def test_probe_report_is_complete_and_consistent(probe_report: ProbeReport) -> None:
    keys = [f.key for f in probe_report.features]
    assert len(keys) == len(set(keys)) == 15
    assert all(f.status in (YES, NO, ERROR) and f.detail and f.meaning for f in probe_report.features)
    assert probe_report.feature("api_version").status == YES
    assert probe_report.feature("probe_guest").status == YES
    if probe_report.feature("tsc_offset_effective").status == YES:
        assert probe_report.feature("tsc_offset_attr").status == YES


def test_tsc_offset_moves_the_guest_tsc_where_the_probe_says_it_does(
    kvm: Kvm, probe_report: ProbeReport
) -> None:
    """The documented equation, guest_tsc = host_tsc + offset, for an offset of one hour."""
    effective = probe_report.feature("tsc_offset_effective")
    if effective.status != YES:
        pytest.skip(f"this KVM cannot offset the guest's TSC: {effective.detail}")
    with ProbeGuest.create(kvm) as guest:
        guest.start()
        offset = (guest.vcpu.get_tsc_offset() + 3600 * guest.vcpu.get_tsc_khz() * 1000) % (1 << 64)
        guest.vcpu.set_tsc_offset(offset)
        assert guest.vcpu.get_tsc_offset() == offset
        sample = guest.sample()
    if not sample.before.has_host_tsc:
        pytest.skip(f"KVM_GET_CLOCK gives no host TSC here (flags {sample.before.flag_names})")
    start = (sample.before.host_tsc + offset) % (1 << 64)
    end = (sample.after.host_tsc + offset) % (1 << 64)
    assert wrapped_delta(sample.tsc, start) >= 0
    assert wrapped_delta(end, sample.tsc) >= 0


def test_selftest_has_no_failure(kvm: Kvm) -> None:
    report = selftest(kvm, DEVICE)
    assert len(report.cases) == 7
    failures = [f"{case.name}: {case.detail}" for case in report.cases if case.status == FAIL]
    assert not failures
