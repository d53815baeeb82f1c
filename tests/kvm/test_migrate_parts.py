"""The migration's parts that need no KVM: placing readings on realtime, the model's prediction,
the destination's admission check, the carried state, and the step table against the policies."""

from __future__ import annotations

from typing import Any

import pytest

from tsclab.host.kvm_vm import KvmVm
from tsclab.host.vmm_policies import POLICIES, resolve_policy
from tsclab.host.vmm_steps import StepRunner as ModelStepRunner
from tsclab.kvm.agreement import Timeline, agreement, model_host, run_model
from tsclab.kvm.carried import CarriedState, TscState
from tsclab.kvm.clock import ClockData
from tsclab.kvm.facts import HostFacts
from tsclab.kvm.measure import Measurement, Reading, place
from tsclab.kvm.steps import STEPS, StepRecord
from tsclab.kvm.vmm_destination import admission
from tsclab.kvm.vmm_process import MIGRATE_POLICIES, migrate_policy

KHZ = 2_000_000  # 2 cycles per ns
R0 = 1_800_000_000_000_000_000
T0 = 80_000_000_000_000
PAIRED = 2 | 4 | 8


def _sample(tsc: int, before: ClockData, after: ClockData, py: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    return {
        "tsc": tsc,
        "kvmclock": 5_000_000,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "before_realtime": py[0],
        "after_realtime": py[1],
        "pvclock": None,
    }


def test_a_reading_between_two_kvm_pairs_is_placed_on_the_tsc() -> None:
    before = ClockData(1000, PAIRED, R0, T0)
    after = ClockData(51_000, PAIRED, R0 + 50_000, T0 + 100_000)
    reading = place(_sample(T0 + 40_000, before, after), KHZ)
    assert (reading.realtime, reading.error_ns, reading.window_ns, reading.method) == (
        R0 + 20_000,
        1,
        50_000,
        "tsc",
    )


def test_realtime_straying_from_the_tsc_widens_the_error() -> None:
    before = ClockData(1000, PAIRED, R0, T0)
    after = ClockData(51_000, PAIRED, R0 + 50_010, T0 + 100_000)  # 10 ns more realtime than TSC
    assert place(_sample(T0 + 50_000, before, after), KHZ).error_ns == 11


def test_without_kvm_pairs_the_window_middle_and_half_its_width() -> None:
    before, after = ClockData(1000), ClockData(2000)
    reading = place(_sample(T0, before, after, (R0, R0 + 40_001)), KHZ)
    assert (reading.realtime, reading.error_ns, reading.method) == (R0 + 20_000, 20_001, "window")


def test_only_the_second_call_paired_extrapolates_back() -> None:
    before = ClockData(1000)  # before the masterclock was on
    after = ClockData(51_000, PAIRED, R0 + 50_000, T0 + 100_000)
    reading = place(_sample(T0 + 60_000, before, after, (R0 - 5, R0 + 50_005)), KHZ)
    assert (reading.realtime, reading.method) == (R0 + 30_000, "tsc")
    assert reading.error_ns == 3  # 100 ppm of 20 us, plus 1 ns


def test_measurement_figures() -> None:
    before = Reading(T0, 5_000_000, R0, 1, 40_000, "tsc", 1)
    after = Reading(T0 + 4_000_000_000, 5_400_000, R0 + 2_000_000_000, 2, 40_000, "tsc", 3)
    m = Measurement(before, after, KHZ)
    assert m.downtime_ns == 2_000_000_000
    assert m.kvmclock_discontinuity_ns == 400_000 - 2_000_000_000
    assert (m.tsc_advance_cycles, m.tsc_advance_ns, m.tsc_discontinuity_ns) == (
        4_000_000_000,
        2_000_000_000,
        0,
    )
    assert m.error_ns == 3
    assert not m.backwards


# --- the model's prediction on synthetic instants

FACTS = HostFacts(
    kernel="6.18.44",
    clocksource="tsc",
    backends=("kvm_pvm",),
    boot_id="x",
    tsc_khz=KHZ,
    tsc_scaling=False,
    adjust_clock_flags=14,
    tsc_offset_effective=False,
    tsc_offset_detail="not applied",
)


def _record(step: str, phase: str, side: str, at: int, *, kvm: bool = False, width: int = 0) -> StepRecord:
    window = (at - width // 2, at + width - width // 2)
    return StepRecord(
        step, phase, side, "done", "", (), False, at - 1000, at + 1000, 2000, at if kvm else None, window
    )


def _timeline(policy_name: str, stop: int, resume: int) -> Timeline:
    policy = resolve_policy(policy_name)
    src: list[StepRecord] = []
    at = R0 + stop
    for phase, names in (("pause", policy.pause), ("save", policy.save)):
        for name in names:
            at += 10_000
            src.append(_record(name, phase, "source", at, kvm=name == "get-clock"))
    dst: list[StepRecord] = []
    at = R0 + resume
    for phase, names in (("restore", policy.restore), ("restore_resume", policy.restore_resume)):
        for name in names:
            at += 10_000
            dst.append(_record(name, phase, "destination", at, width=2000))
    return Timeline(
        policy=policy,
        source_created=R0,
        source_started=R0 + 1_000_000,
        source_steps=tuple(src),
        destination_created=R0 + 50_000_000,
        destination_steps=tuple(dst),
        resumed_on="destination",
        drift_ppb=0,
    )


def _instant(timeline: Timeline, step: str) -> int:
    return next(r.instant for r in (*timeline.source_steps, *timeline.destination_steps) if r.step == step)


def _prediction(timeline: Timeline, before: int, after: int) -> int:
    run = run_model(timeline, FACTS, before, after, offsets_apply=False)
    return run.kvmclock_after - run.kvmclock_before - (after - before)


def test_the_model_hides_the_stop_for_qemu() -> None:
    timeline = _timeline("qemu", stop=100_000_000, resume=2_100_000_000)
    before, after = R0 + 99_000_000, R0 + 2_200_000_000
    hidden = (
        _instant(timeline, "set-clock-or-realtime")
        - [r for r in timeline.source_steps if r.step == "get-clock"][-1].instant
    )
    assert abs(_prediction(timeline, before, after) + hidden) <= 5


def test_the_model_counts_the_stop_for_upstream_doc_and_nap() -> None:
    for name in ("upstream-doc", "nap"):
        timeline = _timeline(name, stop=100_000_000, resume=2_100_000_000)
        assert abs(_prediction(timeline, R0 + 99_000_000, R0 + 2_200_000_000)) <= 5


def test_the_model_on_this_host_reads_the_host_tsc() -> None:
    timeline = _timeline("upstream-doc", stop=100_000_000, resume=2_100_000_000)
    before, after = R0 + 99_000_000, R0 + 2_200_000_000
    here = run_model(timeline, FACTS, before, after, offsets_apply=False)
    assert here.tsc_after - here.tsc_before == (after - before) * KHZ // 1_000_000
    vm = KvmVm(model_host(FACTS, 0, R0), 1, 0, ignores_tsc_writes=True)
    vm.set_tsc_offset(0, 12345, 10)
    vm.set_msr_tsc(0, 99, 20)
    assert vm.get_tsc_offset(0) == 0
    assert vm.guest_tsc(0, 30) == vm.host.tsc(30)


def test_qemu_would_hide_the_stop_from_the_tsc_where_offsets_apply() -> None:
    timeline = _timeline("qemu", stop=100_000_000, resume=2_100_000_000)
    before, after = R0 + 99_000_000, R0 + 2_200_000_000
    measured = Measurement(
        Reading(T0, 0, before, 1, 0, "tsc", 1),
        Reading(T0 + (after - before) * 2, 0, after, 1, 0, "tsc", 1),
        KHZ,
    )
    verdict = agreement(timeline, FACTS, measured)
    assert verdict.intended_tsc_discontinuity_ns < -1_900_000_000  # MSR writes keep the TSC where it was
    assert verdict.tsc_agrees  # ... but here the guest reads the host's TSC, as measured
    assert verdict.tsc_model == "host TSC"


def test_tolerance_counts_placements_and_clock_steps() -> None:
    timeline = _timeline("qemu", stop=0, resume=1_000_000)
    measured = Measurement(
        Reading(T0, 0, R0, 3, 0, "tsc", 1), Reading(T0 + 2_000_000, 1, R0 + 1_000_000, 4, 0, "tsc", 1), KHZ
    )
    verdict = agreement(timeline, FACTS, measured)
    records = len(timeline.source_steps) + len(timeline.destination_steps)
    assert verdict.tolerance_ns == 3 + 4 + 1000 + records + 2  # one set-clock, its 2 us window halved


# --- admission, carried state, the step table


def test_admission_refuses_another_frequency_without_scaling() -> None:
    assert admission(2_596_150, 2_596_150, scaling=False) is None
    assert admission(2_596_150, 2_596_700, scaling=False) is None  # 212 ppm
    assert admission(2_596_150, 2_000_000, scaling=True) is None
    assert admission(None, 2_000_000, scaling=False) is None
    reason = admission(2_596_150, 2_000_000, scaling=False)
    assert reason is not None
    assert "expected 2596150 kHz within 250 ppm" in reason
    assert "this destination's at 2000000 kHz" in reason


def test_carried_state_survives_json() -> None:
    state = CarriedState(
        clock=ClockData(5, 14, R0, T0),
        tsc={0: 7},
        tsc_adjust={0: 0},
        offsets={0: 2**64 - 5},
        scale={0: (3, 4)},
        tsc_khz=KHZ,
        tsc_state={0: TscState(3, R0, 9, 0, 12)},
        source_tsc_khz=KHZ,
        freeze_realtime=R0 + 1,
    )
    back = CarriedState.from_dict(state.to_dict())
    assert back == state


def test_every_policy_step_has_a_real_implementation() -> None:
    names = {
        step
        for versions in POLICIES.values()
        for policy in versions
        for phase in (policy.pause, policy.resume, policy.save, policy.restore, policy.restore_resume)
        for step in phase
    }
    assert names <= set(STEPS)
    assert set(STEPS) == set(ModelStepRunner(lambda *_: None).names)


def test_step_records_survive_json_and_say_when() -> None:
    record = _record("set-clock", "restore_resume", "destination", R0, width=3001)
    assert StepRecord.from_dict(record.to_dict()) == record
    assert (record.instant, record.half_width) == (R0, 1501)
    paired = _record("get-clock", "save", "source", R0, kvm=True)
    assert (paired.instant, paired.half_width) == (R0, 0)


def test_migrate_runs_the_four_policies_only() -> None:
    assert [migrate_policy(name).name for name in MIGRATE_POLICIES] == list(MIGRATE_POLICIES)
    assert migrate_policy("qemu@7.2").label == "qemu@7.2"
    for bad in ("firecracker", "nope", "qemu@1"):
        with pytest.raises(ValueError, match="expected one of: qemu, upstream-doc, tsc-state, nap"):
            migrate_policy(bad)
