"""``tsclab explore`` proves the nap protocol's properties in its scopes, and catches each missing step.

docs/nap-protocol.md section 6 states the scopes; every one of them must
be explored completely (no frontier at the command's default depth) with
no property violated, the host never stuck (property 7), and each
negative control must break the property its missing step exists for.
"""

from __future__ import annotations

import pytest

from tsclab.cli.explore_cmd import DEFAULT_DEPTH
from tsclab.nap.explore_model import (
    CLOCKS,
    NAP_CONTROLS,
    NAP_MODELS,
    SAFETY,
    Scope,
    boot,
    nap_model,
    tk_nap_resume,
    tk_suspend,
)
from tsclab.sim.explore import explore
from tsclab.sim.explore_models import HOUR


@pytest.mark.parametrize("name", list(NAP_MODELS))
def test_every_scope_is_explored_completely_and_violates_nothing(name: str) -> None:
    model = NAP_MODELS[name]()
    result = explore(model, max_depth=DEFAULT_DEPTH, reduction=True)
    assert result.complete, f"{name}: {result.frontier} states at the depth bound"
    assert result.repairs == 0
    # Property 7 is the host's liveness: no deadlock:host or livelock:host either.
    assert result.violated == frozenset(), [cx.property for cx in result.violations]
    assert result.schedules is not None
    assert result.schedules > 1000


def test_the_scopes_check_every_numbered_property() -> None:
    names = {name for name, _ in nap_model().properties}
    assert names == {*SAFETY, "P6-timers", "P8-unresponsive-recovers", "P9-once-per-nap"}
    assert {p.split("-")[0] for p in names} | {"P7"} == {f"P{i}" for i in range(1, 10)}


@pytest.mark.parametrize("name", list(NAP_CONTROLS))
def test_each_negative_control_breaks_its_property(name: str) -> None:
    build, expected = NAP_CONTROLS[name]
    result = explore(build(), max_depth=DEFAULT_DEPTH, reduction=True)
    assert result.complete
    assert expected in result.violated, sorted(result.violated)


def test_without_halting_the_fast_timekeeper_an_nmi_reads_the_nap_then_steps_back() -> None:
    build, _ = NAP_CONTROLS["nap-control-no-halt-fast"]
    cx = explore(build(), max_depth=DEFAULT_DEPTH, reduction=True).counterexample("P1-no-time-backwards")
    labels = [f"{step.process}: {step.label}" for step in cx.steps]
    wake = next(i for i, label in enumerate(labels) if label.startswith("host: wake"))
    rebase = next(i for i, label in enumerate(labels) if "re-base" in label)
    assert any(label.startswith("nmi:") for label in labels[wake:rebase])
    assert labels[-1].startswith("nmi:")


def test_a_host_that_waits_for_a_silent_guest_is_held_forever() -> None:
    build, _ = NAP_CONTROLS["nap-control-no-deadline"]
    result = explore(build(), max_depth=DEFAULT_DEPTH, reduction=True)
    cx = result.counterexample("deadlock:host")
    assert cx.steps[0].label.startswith("request")
    assert "host_state=NAP_REQUESTED" in cx.final_state


def test_only_the_last_nap_fields_lose_a_nap_taken_before_the_first_was_applied() -> None:
    build, _ = NAP_CONTROLS["nap-control-last-nap-only"]
    cx = explore(build(), max_depth=DEFAULT_DEPTH, reduction=True).counterexample("P9-once-per-nap")
    hosts = [step.label for step in cx.steps if step.process == "host"]
    assert [label.split(":")[0] for label in hosts][:2] == ["request", "deadline passed"]
    assert sum(label.startswith("wake") for label in hosts) == 2


@pytest.mark.parametrize(
    "scope",
    [
        Scope(answers="late", naps=2, readers=(), nmi_reads=0, clock_steps=0, watchdogs=True),
        Scope(answers="never", readers=("REALTIME",), tsc="frozen", timers=True),
    ],
    ids=["two-naps-watchdogs", "unresponsive-frozen-timers"],
)
def test_the_reduction_is_sound_here_and_visits_the_same_states(scope: Scope) -> None:
    reduced = explore(nap_model(scope), max_depth=DEFAULT_DEPTH, reduction=True, check_footprints=True)
    plain = explore(nap_model(scope), max_depth=DEFAULT_DEPTH, reduction=False)
    assert reduced.states == plain.states
    assert reduced.violated == plain.violated == frozenset()
    assert reduced.transitions < plain.transitions
    assert reduced.repairs == 0


def test_the_re_base_keeps_run_time_and_drops_exactly_the_nap() -> None:
    tk = boot("nap")
    parked = tk_suspend(tk, 4_000_000, "nap", 0)
    woken = tk_nap_resume(parked, 4_000_000 + 2 * HOUR + 3_000, 2 * HOUR, 2 * HOUR + 500, "nap", 1)
    counter = 4_000_000 + 2 * HOUR + 3_000
    assert woken.mono.cycle_last == counter
    # 4 ms before the park, 3 us after the nap: MONOTONIC has both and nothing of the nap.
    assert woken.read("MONOTONIC", counter, "nap") == 4_003_000
    assert woken.read("BOOTTIME", counter, "nap") == 4_003_000 + 2 * HOUR + 500
    assert woken.read("REALTIME", counter, "nap") == 4_003_000 + 2 * HOUR + 500
    assert CLOCKS == ("MONOTONIC", "BOOTTIME", "REALTIME")
