"""Every policy step on real VMs: what each does here, and what the host cannot do, with the reason."""

from __future__ import annotations

import pytest

from tests.kvm.host_state import all_zero_offsets, open_fds
from tsclab.kvm import constants as c
from tsclab.kvm.carried import CarriedState
from tsclab.kvm.clock import ClockData
from tsclab.kvm.cpu_state import restore_cpu_state, save_cpu_state
from tsclab.kvm.probe_guest import ProbeGuest
from tsclab.kvm.steps import CANNOT, DONE, FAILED, INEFFECTIVE, STEPS, StepRunner
from tsclab.kvm.system import Kvm

GETS = ("get-clock", "get-tsc-msrs", "get-tsc-khz", "get-tsc-offsets", "get-tsc-state")
SETS = (
    "set-tsc-khz-or-warn",
    "set-tsc-khz-beyond-250ppm",
    "set-tsc-msrs",
    "per-vcpu-tsc-offsets",
    "enable-pvclock",
    "set-clock",
    "set-clock-or-realtime",
    "set-clock-realtime",
    "set-tsc-offsets-doc",
    "set-tsc-offsets-scaled",
    "equalize-tsc-offsets",
    "set-tsc-state",
    "kvmclock-ctrl",
)
# Steps that move the guest's TSC (equalize-tsc-offsets writes back what it reads: always "done").
TSC_WRITES = {
    "set-tsc-msrs",
    "per-vcpu-tsc-offsets",
    "set-tsc-offsets-doc",
    "set-tsc-offsets-scaled",
    "set-tsc-state",
}


def _runner(guest: ProbeGuest, state: CarriedState, side: str, kvm: Kvm) -> StepRunner:
    scaling = bool(kvm.check_extension(c.KVM_CAP_TSC_CONTROL))
    return StepRunner(guest.vm, state, side=side, tsc_khz=guest.vcpu.get_tsc_khz(), tsc_scaling=scaling)


def _offsets_apply(guest: ProbeGuest) -> bool:
    vcpu = guest.vcpu
    vcpu.set_tsc_offset(12345)
    applied = vcpu.get_tsc_offset() == 12345
    vcpu.set_tsc_offset(0)
    return applied


def test_every_step_on_a_real_source_and_destination(kvm: Kvm) -> None:
    assert set(GETS) | set(SETS) == set(STEPS)
    before = open_fds()
    state = CarriedState()
    with ProbeGuest.create(kvm) as source:
        source.start()
        last = source.sample()
        source.park()
        saved = _runner(source, state, "source", kvm).run("save", GETS)
        cpu = save_cpu_state(source.vcpu)
        ram = source.memory.read(0, source.memory.size)
        state.pvclock_msrs[0] = source.vcpu.get_msrs([c.MSR_KVM_SYSTEM_TIME_NEW, c.MSR_KVM_WALL_CLOCK_NEW])
    assert [r.status for r in saved] == [DONE] * len(GETS), [r.detail for r in saved]
    assert state.clock is not None
    assert state.clock.has_realtime
    assert state.tsc_state[0].error_ns == 0  # KVM_GET_CLOCK paired realtime and the host TSC
    assert next(r for r in saved if r.step == "get-tsc-state").emulated
    with ProbeGuest.create(kvm) as destination:
        destination.memory.write(0, ram)
        restore_cpu_state(destination.vcpu, cpu)
        applied = _offsets_apply(destination)
        records = _runner(destination, state, "destination", kvm).run("restore", SETS)
        destination.assume_parked()
        moved = destination.resume_sample()
    assert open_fds() == before
    for record in records:
        assert record.side == "destination"
        assert record.phase == "restore"
        assert record.duration_ns > 0
        assert record.start_realtime <= record.instant <= record.end_realtime
        if record.step in TSC_WRITES:
            assert record.status == (DONE if applied or all_zero_offsets(record.detail) else INEFFECTIVE), (
                record.detail
            )
        else:
            assert record.status == DONE, record.detail
    assert moved.kvmclock is not None
    assert last.kvmclock is not None
    assert moved.kvmclock >= last.kvmclock
    assert moved.pvclock is not None
    assert moved.pvclock.guest_stopped  # kvmclock-ctrl, the last step


def test_what_the_host_cannot_do_is_recorded_with_the_reason(kvm: Kvm) -> None:
    with ProbeGuest.create(kvm, kvmclock=False) as guest:
        guest.start()
        state = CarriedState(clock=ClockData(1_000_000))  # saved without KVM_CLOCK_REALTIME
        runner = _runner(guest, state, "destination", kvm)
        khz = runner.tsc_khz
        (realtime,) = runner.run("restore", ["set-clock-realtime"])
        assert realtime.status == CANNOT
        assert "has no KVM_CLOCK_REALTIME (flags 0)" in realtime.detail
        assert "without KVM_CLOCK_REALTIME" in realtime.detail  # the fallback it took
        (ctrl,) = runner.run("restore_resume", ["kvmclock-ctrl"])
        assert ctrl.status == CANNOT
        assert "kvmclock not enabled" in ctrl.detail
        (unknown,) = runner.run("restore", ["warp-drive"])
        assert (unknown.status, unknown.detail) == (CANNOT, "no real implementation of step 'warp-drive'")
        runner.state = CarriedState()
        (never_read,) = runner.run("restore_resume", ["set-clock"])
        assert never_read.status == FAILED
        assert "the policy sets a clock it never read; carrying on" in never_read.detail
        if runner.tsc_scaling:
            pytest.skip("this KVM scales the TSC: other rates are taken")
        runner.state = CarriedState(tsc_khz=khz * 3 // 4)
        (slower,) = runner.run("restore", ["set-tsc-khz-or-warn"])
        assert slower.status == CANNOT
        assert "TSC frequency mismatch" in slower.detail
        assert "EINVAL" in slower.detail
    with ProbeGuest.create(kvm) as guest:  # a faster rate is taken as catch-up, in a VM of its own
        runner = _runner(guest, CarriedState(tsc_khz=khz * 5 // 4), "destination", kvm)
        (faster,) = runner.run("restore", ["set-tsc-khz-or-warn"])
        assert faster.status == INEFFECTIVE
        assert "without KVM_CAP_TSC_CONTROL" in faster.detail
