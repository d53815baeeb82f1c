"""The nap profile under the nap policy, through whole runs of the seed's scenarios.

docs/nap-protocol.md section 5: with the guest answering, no time goes
backwards, nothing overflows, BOOTTIME counts the nap, REALTIME stays within
the published bound and no watchdog speaks (properties 1-5); with the guest
not answering, time still never goes backwards (property 8).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tsclab.arith import NSEC_PER_SEC
from tsclab.check.verdict import RunResult
from tsclab.lab import run_one
from tsclab.nap.page import FLAG_UNACKED, GUEST_RUNNING, RUNNING, WOKEN
from tsclab.scenario.library import load_builtin
from tsclab.scenario.model import Scenario
from tsclab.sim.run import Run
from tsclab.sim.trace import Sample

SEED_SCENARIOS = (
    "seed-200s-migration",
    "seed-1200s-migration",
    "host-suspend-overnight",
    "weekend-snapshot",
)
WATCHDOGS = {"softlockup", "rcu-stall", "hung-task", "clocksource-unstable"}


def _unresponsive(scenario: Scenario) -> Scenario:
    return replace(scenario, events=tuple(replace(e, unresponsive=True) for e in scenario.events))


@pytest.mark.parametrize("name", SEED_SCENARIOS)
def test_an_answering_guest_sees_nothing_wrong(name: str) -> None:
    result = run_one(load_builtin(name), "nap", "nap", 0)
    assert result.ids == frozenset(), [v.event for v in result.verdicts]


@pytest.mark.parametrize("name", SEED_SCENARIOS)
def test_the_same_scenarios_without_the_protocol_go_wrong(name: str) -> None:
    # The nap policy asks; a 6.13 guest without the protocol never answers.
    assert run_one(load_builtin(name), "linux-6.13", "nap", 0).ids


@pytest.mark.parametrize("name", SEED_SCENARIOS)
def test_an_unresponsive_guest_never_sees_time_go_backwards(name: str) -> None:
    result = run_one(_unresponsive(load_builtin(name)), "nap", "nap", 0)
    assert not {"time-backwards", "overflow-garbage"} & result.ids
    assert not WATCHDOGS & result.ids


def test_the_parked_guest_counts_the_nap_in_boottime_not_in_monotonic() -> None:
    run = Run(load_builtin("seed-1200s-migration"), "nap", "nap", 0)
    trace = run.execute()
    (cut,) = trace.interruptions
    mono = [s for s in trace.samples if s.clock == "MONOTONIC" and s.vcpu == 0]
    boot = [s for s in trace.samples if s.clock == "BOOTTIME" and s.vcpu == 0]

    def across(samples: list[Sample]) -> int:
        before = max((s for s in samples if s.t_ns <= cut.start_ns), key=lambda s: s.t_ns)
        after = min((s for s in samples if s.t_ns >= cut.end_ns), key=lambda s: s.t_ns)
        return after.value_ns - before.value_ns - (after.t_ns - before.t_ns)

    # MONOTONIC: the run time only - behind true time by the whole nap.
    assert abs(across(mono) + (cut.end_ns - cut.start_ns)) < 1_000_000
    # BOOTTIME: the nap injected, to the host's realtime (within 1 ms of true time).
    assert abs(across(boot)) < 1_000_000
    page = run.guest.nap_page
    assert (page.host_state, page.guest_state) == (WOKEN, GUEST_RUNNING) or page.host_state == RUNNING
    assert page.applied_generation == page.acked_generation == page.generation == 1
    assert not page.flags & FLAG_UNACKED
    assert abs(page.nap_ns - 1200 * NSEC_PER_SEC) < 1_000_000


def test_an_unanswered_request_costs_the_host_the_deadline_and_is_flagged() -> None:
    run = Run(_unresponsive(load_builtin("seed-200s-migration")), "nap", "nap", 0)
    trace = run.execute()
    kinds = [(e.t_ns, e.kind) for e in trace.events if e.kind.startswith("nap")]
    request, deadline = kinds[0], kinds[1]
    assert request[1] == "nap-request"
    assert deadline == (request[0] + 100_000_000, "nap-deadline")
    assert run.guest.nap_page.flags & FLAG_UNACKED
    assert run.guest.nap_page.applied_generation == 1  # applied late, at the first update
    assert any(m.kind == "nap" for m in trace.messages)


def test_a_host_without_tsc_scaling_is_survived_by_reregistering_the_tsc() -> None:
    scenario = load_builtin("tsc-frequency-mismatch")
    no_scaling = replace(scenario, hosts=(scenario.hosts[0], replace(scenario.hosts[1], scaling="none")))
    nap: RunResult = run_one(no_scaling, "nap", "nap", 0)
    plain = run_one(no_scaling, "linux-6.13", "nap", 0)
    assert "realtime-error" in plain.ids  # 3.0 GHz read as 2.5 GHz
    assert nap.ids == frozenset()
    assert "clocksource: Switched to clocksource tsc" in [m.text for m in nap.trace.messages]
