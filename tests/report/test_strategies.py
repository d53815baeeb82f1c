"""The nap and the thread's alternatives side by side: runs, table, JSON, and each one's outcome."""

from __future__ import annotations

import pytest

from tsclab.check.verdict import RunResult, Verdict
from tsclab.report.strategies import STRATEGIES, Runs, render_strategies, run_strategies, strategies_record
from tsclab.scenario.library import load_builtin
from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload
from tsclab.sim.trace import RunTrace

S = 1_000_000_000
NAMES = [st.name for st in STRATEGIES]


def _result(ids: tuple[str, ...] = (), skipped: str = "") -> RunResult:
    trace = RunTrace("s", "k", "v", 0, 1, 0, skipped=skipped)
    return RunResult(trace, tuple(Verdict(vid, 0, None, None, 1, "ns", vid) for vid in ids))


def _scenario(name: str, *events: Event) -> Scenario:
    guest = GuestSpec(
        1, "tsc", ("linux-6.13",), watchdog="none", workload=(Workload("reader", 0, every_ns=S // 10),)
    )
    return Scenario(name, "", guest, (HostSpec("host", 2_500_000),), ("qemu",), events, settle_ns=S)


def test_the_strategies_are_the_nap_the_four_alternatives_and_two_baselines() -> None:
    assert NAMES == ["nap", "resume-irq", "max-sane", "guest-s3", "vmclock", "qemu", "upstream-doc"]
    assert [st.label for st in STRATEGIES] == [
        "nap x nap",
        "resume-irq x resume-irq",
        "max-sane x max-sane",
        "linux-6.13 x guest-s3",
        "vmclock x vmclock",
        "linux-6.13 x qemu@7.2",
        "linux-6.13 x upstream-doc",
    ]
    assert [st.key[1] for st in STRATEGIES] == [
        "nap@1",
        "resume-irq@1",
        "max-sane@1",
        "guest-s3@1",
        "vmclock@1",
        "qemu@7.2",
        "upstream-doc@5.16",
    ]


def test_the_table_stacks_each_cell_s_ids_and_counts_the_clean_runs() -> None:
    a, b = _scenario("alpha"), _scenario("beta")
    alpha = [
        _result(),
        *(_result(("softlockup", "ntp-maxerror")) for _ in range(5)),
        _result(skipped="no hpet"),
    ]
    beta = [_result() for _ in STRATEGIES]
    text = render_strategies([(a, alpha), (b, beta)])
    lines = text.splitlines()
    header = lines[2].split()
    assert header == ["scenario", *NAMES]
    row = lines.index(next(line for line in lines if line.startswith("alpha")))
    # IDs in report order (ntp-maxerror before softlockup), one a line; a blank line between scenarios.
    assert lines[row].split() == ["alpha", "ok", *["ntp-maxerror"] * 5, "n/a"]
    assert lines[row + 1].split() == ["softlockup"] * 5
    assert lines[row + 2] == ""
    assert lines[row + 3].split() == ["beta", *["ok"] * 7]
    clean = next(line for line in lines if line.startswith("clean runs"))
    assert clean.split()[2:] == ["2", "of", "2", *["1", "of", "2"] * 6]
    assert lines[-1] == "n/a under upstream-doc: e.g. no hpet"
    assert "guest-s3      linux-6.13 x guest-s3: Paolo Bonzini, 10 Dec 2020: put the guest in S3" in lines


def test_runs_come_back_in_strategy_order_and_known_results_are_not_run_again() -> None:
    scenarios = [
        _scenario("short-pause", Event(S, "pause", 2 * S)),
        _scenario("short-stop", Event(S, "stop", 2 * S)),
    ]
    first = run_strategies(scenarios, jobs=1)
    assert [s.name for s, _ in first] == ["short-pause", "short-stop"]
    for _s, results in first:
        assert [(r.trace.kernel, r.trace.vmm) for r in results] == [st.key for st in STRATEGIES]
    known = {("short-pause", *STRATEGIES[0].key): first[0][1][0]}
    seen: list[RunResult] = []
    again = run_strategies(scenarios, jobs=2, known=known, progress=seen.append)
    assert len(seen) == 2 * len(STRATEGIES) - 1
    assert again[0][1][0] is first[0][1][0]
    # Deterministic: the same verdicts whichever process ran them.
    assert [[r.ids for r in results] for _s, results in again] == [
        [r.ids for r in results] for _s, results in first
    ]


def test_the_record_names_the_strategies_and_holds_every_run() -> None:
    a = _scenario("alpha")
    record = strategies_record([(a, [_result() for _ in STRATEGIES])], 0)
    assert [s["name"] for s in record["strategies"]] == NAMES
    assert record["strategies"][3] == {
        "name": "guest-s3",
        "kernel": "linux-6.13",
        "vmm": "guest-s3",
        "source": "Paolo Bonzini, 10 Dec 2020: put the guest in S3",
    }
    (scenario,) = record["runs"]["scenarios"]
    assert scenario["name"] == "alpha"
    assert len(scenario["combinations"]) == len(STRATEGIES)


# --- each strategy's outcome on the built-in scenarios ---------------------------------------------


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, RunResult]]:
    names = ("seed-1200s-migration", "weekend-snapshot", "host-suspend-overnight")
    runs: Runs = run_strategies([load_builtin(n) for n in names], jobs=2)
    return {s.name: dict(zip(NAMES, results, strict=True)) for s, results in runs}


def test_the_nap_comes_through_all_three_clean(outcomes: dict[str, dict[str, RunResult]]) -> None:
    for name, results in outcomes.items():
        assert results["nap"].ids == set(), name


def test_resume_irq_on_the_1200_s_migration_no_garbage_but_monotonic_jumps(
    outcomes: dict[str, dict[str, RunResult]],
) -> None:
    result = outcomes["seed-1200s-migration"]["resume-irq"]
    assert "overflow-garbage" not in result.ids
    assert {"monotonic-jump", "ntp-maxerror"} == result.ids  # watchdogs quiet, REALTIME and BOOTTIME right
    jump = next(v for v in result.verdicts if v.id == "monotonic-jump")
    assert abs(jump.magnitude - 1200 * S) < S


def test_max_sane_no_garbage_but_realtime_and_boottime_stay_wrong_under_qemu(
    outcomes: dict[str, dict[str, RunResult]],
) -> None:
    for name in ("seed-1200s-migration", "weekend-snapshot"):
        result = outcomes[name]["max-sane"]
        assert "overflow-garbage" not in result.ids
        assert {"realtime-error", "boottime-missing-nap"} <= result.ids, name
        assert result.ids == outcomes[name]["qemu"].ids, name


def test_guest_s3_fixes_the_weekend_snapshot_not_the_migration(
    outcomes: dict[str, dict[str, RunResult]],
) -> None:
    weekend = outcomes["weekend-snapshot"]["guest-s3"]
    assert weekend.ids == set()  # kvm_get_wallclock() measured the weekend, to the ns; NTP kept
    assert [e.kind for e in weekend.trace.events if e.kind.startswith("guest-s3")] == [
        "guest-s3-request",
        "guest-s3-wake",
    ]
    migration = outcomes["seed-1200s-migration"]
    assert migration["guest-s3"].ids == migration["qemu"].ids == {"realtime-error", "boottime-missing-nap"}


def test_vmclock_corrects_realtime_late_and_boottime_never(outcomes: dict[str, dict[str, RunResult]]) -> None:
    for name in ("seed-1200s-migration", "weekend-snapshot"):
        result = outcomes[name]["vmclock"]
        assert {"realtime-error", "boottime-missing-nap", "ntp-unsync"} <= result.ids, name
        trace = result.trace
        (step,) = [e for e in trace.events if e.kind == "vmclock-step"]
        late = [s for s in trace.samples if s.clock == "REALTIME" and s.t_ns > step.t_ns]
        assert late
        assert all(abs(trace.error_ns(s)) < S for s in late), name


def test_only_the_nap_survives_a_host_suspend_that_reset_the_tsc(
    outcomes: dict[str, dict[str, RunResult]],
) -> None:
    results = outcomes["host-suspend-overnight"]
    for name in ("resume-irq", "max-sane", "guest-s3", "vmclock", "qemu"):
        assert {"realtime-error", "boottime-missing-nap"} <= results[name].ids, name
    assert results["upstream-doc"].trace.skipped  # no HPET for the clocksource watchdog
