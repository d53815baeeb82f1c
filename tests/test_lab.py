"""The lab: which combinations run, in what order, what each is expected to show, and that
running them in worker processes gives the same answer as running them one by one."""

from __future__ import annotations

from dataclasses import replace

import pytest

import tsclab.lab
from tsclab.check.run_checks import judge
from tsclab.check.verdict import RunResult, Verdict
from tsclab.lab import combinations, expected_for, run_one, run_scenario
from tsclab.scenario.model import Event, Expectation, GuestSpec, HostSpec, Scenario, Watchdog, Workload
from tsclab.sim.run import run_combination
from tsclab.sim.trace import RunTrace

S = 1_000_000_000
MS = 1_000_000
KERNELS = ("linux-6.1", "linux-6.13")
VMMS = ("qemu", "firecracker@1.12")


def make_scenario(*expect: Expectation, watchdog: Watchdog = "none") -> Scenario:
    """A 1-vCPU kvm-clock guest reading every 100 ms, paused 2 s at 1 s; 1 s of settle."""
    return Scenario(
        name="lab-test",
        description="a short pause",
        guest=GuestSpec(
            1,
            "kvm-clock",
            KERNELS,
            watchdog=watchdog,
            workload=(
                Workload("reader", 0, every_ns=100 * MS, clocks=("MONOTONIC", "REALTIME"), phase_ns=0),
            ),
        ),
        hosts=(HostSpec("host", 2_500_000),),
        vmms=VMMS,
        events=(Event(1 * S, "pause", 2 * S),),
        settle_ns=1 * S,
        expect=expect,
    )


def expectation(kernel: str, vmm: str, *verdicts: str) -> Expectation:
    return Expectation(kernel, vmm, frozenset(verdicts))


# --- combinations ---------------------------------------------------------------------------------


def test_combinations_kernels_outermost_in_the_scenarios_order() -> None:
    assert combinations(make_scenario()) == [
        ("linux-6.1", "qemu"),
        ("linux-6.1", "firecracker@1.12"),
        ("linux-6.13", "qemu"),
        ("linux-6.13", "firecracker@1.12"),
    ]


def test_combinations_overridden() -> None:
    scenario = make_scenario()
    assert combinations(scenario, kernels=["linux-6.10"]) == [
        ("linux-6.10", "qemu"),
        ("linux-6.10", "firecracker@1.12"),
    ]
    assert combinations(scenario, vmms=["tsc-state", "qemu"]) == [
        ("linux-6.1", "tsc-state"),
        ("linux-6.1", "qemu"),
        ("linux-6.13", "tsc-state"),
        ("linux-6.13", "qemu"),
    ]
    assert combinations(scenario, ["linux-5.10"], ["upstream-doc"]) == [("linux-5.10", "upstream-doc")]


# --- expected_for ---------------------------------------------------------------------------------


def test_expected_for_without_expectations_is_none() -> None:
    assert expected_for(make_scenario(), "linux-6.1", "qemu") is None


def test_expected_for_the_last_matching_expectation_wins() -> None:
    scenario = make_scenario(
        expectation("*", "*"),
        expectation("linux-6.1", "*", "softlockup"),
        expectation("*", "qemu", "realtime-error"),
    )
    assert expected_for(scenario, "linux-6.1", "qemu") == frozenset({"realtime-error"})
    assert expected_for(scenario, "linux-6.1", "firecracker@1.12") == frozenset({"softlockup"})
    assert expected_for(scenario, "linux-6.13", "firecracker@1.12") == frozenset()
    assert expected_for(scenario, "linux-6.13", "qemu") == frozenset({"realtime-error"})


def test_expected_for_an_earlier_specific_entry_is_overridden_by_a_later_wildcard() -> None:
    scenario = make_scenario(
        expectation("linux-6.1", "qemu", "softlockup"), expectation("*", "*", "hung-task")
    )
    assert expected_for(scenario, "linux-6.1", "qemu") == frozenset({"hung-task"})


def test_expected_for_matches_names_exactly() -> None:
    scenario = make_scenario(expectation("linux-6.1", "qemu", "softlockup"))
    assert expected_for(scenario, "linux-6.13", "qemu") is None
    assert expected_for(scenario, "linux-6.1", "qemu@7.2") is None  # written as in vmms, or not at all


# --- run_one --------------------------------------------------------------------------------------


def test_run_one_judges_the_trace_with_the_scenarios_timer_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = replace(make_scenario(expectation("*", "qemu", "realtime-error")), timer_late_bound_ns=7 * MS)
    seen: list[tuple[str, int]] = []
    verdict = Verdict("softlockup", 1, 0, None, 1, "s", "stuck")

    def fake_judge(trace: RunTrace, *, timer_late_bound_ns: int) -> tuple[Verdict, ...]:
        seen.append((trace.kernel, timer_late_bound_ns))
        return (verdict,)

    monkeypatch.setattr(tsclab.lab, "judge", fake_judge)
    result = run_one(scenario, "linux-6.13", "qemu", 3)
    assert seen == [("linux-6.13", 7 * MS)]
    assert result.verdicts == (verdict,)
    assert result.expected == frozenset({"realtime-error"})
    assert result.trace == run_combination(scenario, "linux-6.13", "qemu", 3)
    assert result.trace.seed == 3


def test_run_one_result() -> None:
    scenario = make_scenario(expectation("*", "qemu", "realtime-error"))
    result = run_one(scenario, "linux-6.13", "qemu", 0)
    trace = run_combination(scenario, "linux-6.13", "qemu", 0)
    assert result == RunResult(
        trace, judge(trace, timer_late_bound_ns=scenario.timer_late_bound_ns), frozenset({"realtime-error"})
    )
    # QEMU freezes kvmclock across the 2 s pause: REALTIME ends 2 s behind, past the 1 s bound.
    assert result.ids == frozenset({"realtime-error"})
    assert result.check == "pass"


# --- run_scenario ---------------------------------------------------------------------------------


def test_run_scenario_serial_and_parallel_agree_in_combination_order() -> None:
    # With an HPET watchdog, Firecracker (no emulated timers) is skipped: a mixed bag of results.
    scenario = make_scenario(
        expectation("*", "qemu", "realtime-error"),
        expectation("linux-6.1", "qemu", "softlockup"),
        watchdog="hpet",
    )
    serial_progress: list[RunResult] = []
    serial = run_scenario(scenario, seed=5, jobs=1, progress=serial_progress.append)
    parallel_progress: list[RunResult] = []
    parallel = run_scenario(scenario, seed=5, jobs=2, progress=parallel_progress.append)
    assert parallel == serial
    assert serial_progress == serial
    assert parallel_progress == parallel
    assert [(r.trace.kernel, r.trace.vmm) for r in serial] == [
        ("linux-6.1", "qemu@7.2"),
        ("linux-6.1", "firecracker@1.12"),
        ("linux-6.13", "qemu@7.2"),
        ("linux-6.13", "firecracker@1.12"),
    ]
    assert [r.check for r in serial] == ["fail", "skipped", "pass", "skipped"]
    assert all(r.trace.seed == 5 for r in serial)


def test_run_scenario_with_overrides_and_nothing_to_run() -> None:
    scenario = make_scenario()
    results = run_scenario(scenario, kernels=["linux-6.13"], vmms=["tsc-state"], jobs=1)
    assert [(r.trace.kernel, r.trace.vmm, r.expected) for r in results] == [
        ("linux-6.13", "tsc-state@v2", None)
    ]
    assert run_scenario(replace(scenario, vmms=()), jobs=4) == []
