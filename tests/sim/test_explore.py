"""The interleaving explorer on toy models: counts, reduction, minimal paths, liveness."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.sim.explore import (
    Action,
    FootprintError,
    Model,
    Step,
    action,
    explore,
    independent,
    render_counterexample,
    strongly_connected_components,
)

# --- toy models -----------------------------------------------------------------


def grid(steps: int = 2, processes: str = "AB") -> Model[tuple[int, ...]]:
    """Processes that each take ``steps`` private steps: fully independent."""

    def actions(s: tuple[int, ...]) -> list[Action[tuple[int, ...]]]:
        out = []
        for i, p in enumerate(processes):
            if s[i] < steps:
                nxt = (*s[:i], s[i] + 1, *s[i + 1 :])
                out.append(action(p, f"{p}{s[i]}", nxt, writes={p}))
        return out

    return Model(
        name="grid",
        initial=(0,) * len(processes),
        actions=actions,
        processes=tuple(processes),
        done=lambda s, p: s[processes.index(p)] == steps,
    )


# Racy increment: each process loads x, then stores its copy + 1 (the lost update).
Racy = tuple[int, int, int, int, int]  # x, pc A, pc B, copy A, copy B


def racy_increment() -> Model[Racy]:
    def actions(s: Racy) -> list[Action[Racy]]:
        x, pcs, copies = s[0], [s[1], s[2]], [s[3], s[4]]
        out = []
        for i, p in enumerate("AB"):
            if pcs[i] == 0:
                new_pcs, new_copies = list(pcs), list(copies)
                new_pcs[i], new_copies[i] = 1, x
                nxt: Racy = (x, new_pcs[0], new_pcs[1], new_copies[0], new_copies[1])
                out.append(action(p, "load x", nxt, reads={"x"}))
            elif pcs[i] == 1:
                new_pcs = list(pcs)
                new_pcs[i] = 2
                nxt = (copies[i] + 1, new_pcs[0], new_pcs[1], copies[0], copies[1])
                out.append(action(p, "store x", nxt, writes={"x"}))
        return out

    def no_lost_update(s: Racy) -> bool:
        return not (s[1] == s[2] == 2) or s[0] == 2

    return Model(
        name="racy",
        initial=(0, 0, 0, 0, 0),
        actions=actions,
        processes=("A", "B"),
        done=lambda s, p: s[1 + "AB".index(p)] == 2,
        properties=(("no-lost-update", no_lost_update),),
    )


Spin = tuple[str, bool]  # A's pc, flag


def spin_loop(*, helper: bool) -> Model[Spin]:
    """A spins until a flag is set; B (if ``helper``) sets it once."""

    def actions(s: Spin) -> list[Action[Spin]]:
        pc, flag = s
        out = []
        if pc == "check":
            nxt: Spin = ("out", flag) if flag else ("relax", flag)
            out.append(action("A", "test flag", nxt, reads={"flag"}))
        elif pc == "relax":
            out.append(action("A", "cpu_relax", ("check", flag)))
        if helper and not flag:
            out.append(action("B", "set flag", (pc, True), writes={"flag"}))
        return out

    return Model(
        name="spin",
        initial=("check", False),
        actions=actions,
        processes=("A", "B"),
        done=lambda s, p: p == "B" or s[0] == "out",
    )


def waits_forever() -> Model[int]:
    """A waits on a condition nobody makes true: no action at all."""
    return Model(name="stuck", initial=0, actions=lambda _s: [], processes=("A",), done=lambda _s, _p: False)


def replay(model: Model[Any], steps: tuple[Step, ...]) -> Any:
    """Follow ``steps`` from the initial state; fails if one is not enabled."""
    state = model.initial
    for step in steps:
        matching = [a for a in model.actions(state) if a.step == step]
        assert matching, f"{step} is not enabled in {state!r}"
        state = matching[0].next_state
    return state


def shortest_distance_to(model: Model[Any], bad: Callable[[Any], bool]) -> int:
    """Plain BFS over every enabled action, independent of the explorer."""
    dist = {model.initial: 0}
    queue = deque([model.initial])
    best = None
    while queue:
        s = queue.popleft()
        if bad(s) and best is None:
            best = dist[s]
        for a in model.actions(s):
            if a.next_state not in dist:
                dist[a.next_state] = dist[s] + 1
                queue.append(a.next_state)
    assert best is not None
    return best


# --- counts ---------------------------------------------------------------------


def test_two_process_grid_counts_are_exact() -> None:
    # 3 x 3 states; 12 edges (2 per row/column step); C(4, 2) = 6 interleavings.
    result = explore(grid(), max_depth=10, reduction=False)
    assert (result.states, result.transitions, result.enabled_transitions) == (9, 12, 12)
    assert result.schedules == 6
    assert result.complete
    assert result.repairs == 0
    assert not result.violations
    assert result.reduction_factor == 1.0


def test_sleep_sets_on_the_grid_keep_every_state_and_one_schedule() -> None:
    # Independent processes: a spanning tree of the 9 states (8 transitions), one trace.
    result = explore(grid(), max_depth=10, reduction=True, check_footprints=True)
    assert (result.states, result.transitions, result.enabled_transitions) == (9, 8, 12)
    assert result.schedules == 1
    assert result.reduction_factor == pytest.approx(12 / 8)


def test_three_processes_multinomial_schedules() -> None:
    full = explore(grid(processes="ABC"), max_depth=10, reduction=False)
    reduced = explore(grid(processes="ABC"), max_depth=10, reduction=True)
    assert full.states == reduced.states == 27
    assert full.schedules == 90  # 6! / (2! 2! 2!)
    assert reduced.transitions == 26 < full.transitions == 54


def test_racy_increment_counts_and_the_lost_update() -> None:
    result = explore(racy_increment(), max_depth=10, reduction=False)
    assert result.schedules == 6
    assert result.violated == frozenset({"no-lost-update"})


# --- reduction ------------------------------------------------------------------


@pytest.mark.parametrize("model", [grid(), grid(processes="ABC"), racy_increment(), spin_loop(helper=True)])
def test_reduction_keeps_states_and_violations_and_takes_fewer_transitions(model: Model[Any]) -> None:
    full = explore(model, max_depth=20, reduction=False)
    reduced = explore(model, max_depth=20, reduction=True, check_footprints=True)
    assert reduced.states == full.states
    assert reduced.violated == full.violated
    assert reduced.violations == full.violations  # same minimal counterexamples
    assert reduced.transitions <= full.transitions == reduced.enabled_transitions
    assert reduced.repairs == 0


def test_reduction_prunes_the_racy_model() -> None:
    full = explore(racy_increment(), max_depth=10, reduction=False)
    reduced = explore(racy_increment(), max_depth=10, reduction=True)
    assert reduced.transitions < full.transitions
    assert reduced.violated == full.violated == frozenset({"no-lost-update"})


# Random programs: processes of set / copy+add / conditional-jump instructions over two
# shared variables mod 3.  Footprints follow the semantics, so they are right by
# construction; jumps make loops and paths of different lengths to one state.
Instr = tuple[str, int, int, int]  # op, variable, constant, jump target
Prog = tuple[tuple[Instr, ...], ...]
ProgState = tuple[int, ...]  # x, y, then one pc per process

VARS = "xy"


def _step(instr: Instr, pc: int, values: list[int]) -> tuple[int, set[str], set[str]]:
    """Execute one instruction on ``values``: the next pc, reads, writes."""
    op, var, const, target = instr
    other = 1 - var
    if op == "set":
        values[var] = const
        return pc + 1, set(), {VARS[var]}
    if op == "add":
        values[var] = (values[other] + const) % 3
        return pc + 1, {VARS[other]}, {VARS[var]}
    return (target if values[var] == const else pc + 1), {VARS[var]}, set()


def program_model(prog: Prog) -> Model[ProgState]:
    def actions(s: ProgState) -> list[Action[ProgState]]:
        out = []
        for i, code in enumerate(prog):
            pc = s[2 + i]
            if pc < len(code):
                values = [s[0], s[1]]
                new_pc, reads, writes = _step(code[pc], pc, values)
                pcs = list(s[2:])
                pcs[i] = new_pc
                out.append(action(f"P{i}", f"{pc}: {code[pc]}", (*values, *pcs), reads=reads, writes=writes))
        return out

    def done(s: ProgState, process: str) -> bool:
        i = int(process[1:])
        return s[2 + i] >= len(prog[i])

    return Model(
        name="program",
        initial=(0, 0) + (0,) * len(prog),
        actions=actions,
        processes=tuple(f"P{i}" for i in range(len(prog))),
        done=done,
        properties=(
            ("not-x2-y1", lambda s: (s[0], s[1]) != (2, 1)),
            ("x-ne-y", lambda s: s[0] != s[1] or s[0] == 0),
        ),
    )


@st.composite
def programs(draw: st.DrawFn) -> Prog:
    prog = []
    for _ in range(draw(st.integers(2, 3))):
        length = draw(st.integers(1, 4))
        instr = st.tuples(
            st.sampled_from(["set", "add", "jump"]),
            st.integers(0, 1),
            st.integers(0, 2),
            st.integers(0, length),
        )
        prog.append(tuple(draw(st.lists(instr, min_size=length, max_size=length))))
    return tuple(prog)


@given(programs())
def test_reduction_on_random_programs_keeps_states_and_counterexamples(prog: Prog) -> None:
    model = program_model(prog)
    full = explore(model, max_depth=100, reduction=False)
    reduced = explore(model, max_depth=100, reduction=True, check_footprints=True)
    assert reduced.states == full.states
    assert reduced.violations == full.violations  # livelocks included: jumps can loop
    assert reduced.repairs == 0
    assert reduced.transitions <= full.transitions


def lying_model() -> Model[tuple[int, str]]:
    """A sets x; B branches on x - but neither declares x: a false independence."""

    def actions(s: tuple[int, str]) -> list[Action[tuple[int, str]]]:
        x, b = s
        out = []
        if x == 0:
            out.append(action("A", "x = 1", (1, b)))
        if b == "start":
            out.append(action("B", "branch on x", (x, "special" if x else "normal")))
        return out

    return Model("liar", (0, "start"), actions, ("A", "B"), lambda _s, _p: True)


def test_false_independence_is_caught_by_the_footprint_check() -> None:
    with pytest.raises(FootprintError, match="declared independent"):
        explore(lying_model(), max_depth=10, reduction=True, check_footprints=True)


def test_false_independence_cannot_lose_states_the_closure_repairs() -> None:
    full = explore(lying_model(), max_depth=10, reduction=False)
    reduced = explore(lying_model(), max_depth=10, reduction=True)
    assert reduced.repairs >= 1  # (1, "normal") is only reachable by B then A
    assert reduced.states == full.states == 5


def test_independence_relation() -> None:
    fp = action("A", "a", 0, reads={"x"}, writes={"y"}).footprint
    assert not independent(fp, action("A", "other", 0).footprint)  # same process
    assert independent(fp, action("B", "b", 0, reads={"x", "z"}).footprint)  # read/read
    assert not independent(fp, action("B", "b", 0, writes={"x"}).footprint)  # write/read
    assert not independent(fp, action("B", "b", 0, reads={"y"}).footprint)  # read/write
    assert not independent(fp, action("B", "b", 0, writes={"y"}).footprint)  # write/write


# --- counterexamples ------------------------------------------------------------


def test_counterexample_is_minimal_and_replays() -> None:
    model = racy_increment()
    cx = explore(model, max_depth=10, reduction=True).counterexample("no-lost-update")
    holds = model.properties[0][1]
    assert len(cx.steps) == shortest_distance_to(model, lambda s: not holds(s)) == 4
    assert [step.label for step in cx.steps[:2]] == ["load x", "load x"]
    final = replay(model, cx.steps)
    assert not holds(final)
    assert cx.final_state == repr(final)


def test_counterexample_prefers_the_short_path_over_the_first_explored() -> None:
    # A reaches the bad value in 3 steps and is listed first; B in 1.
    def actions(s: tuple[int, int]) -> list[Action[tuple[int, int]]]:
        a, b = s
        out = []
        if a < 3:
            out.append(action("A", f"a{a}", (a + 1, b), writes={"a"}))
        if b < 1:
            out.append(action("B", "b0", (a, b + 1), writes={"b"}))
        return out

    model = Model(
        "two-roads",
        (0, 0),
        actions,
        ("A", "B"),
        lambda _s, _p: True,
        properties=(("never-done", lambda s: s[0] < 3 and s[1] < 1),),
    )
    cx = explore(model, max_depth=10, reduction=True).counterexample("never-done")
    assert cx.steps == (Step("B", "b0"),)


def test_render_counterexample_prints_one_step_a_line() -> None:
    cx = explore(racy_increment(), max_depth=10, reduction=False).counterexample("no-lost-update")
    text = render_counterexample(cx)
    lines = text.splitlines()
    assert lines[0] == "no-lost-update: violated after 4 steps"
    assert lines[1].split() == ["1.", "A", "load", "x"]
    assert len(lines) == 1 + 4 + 1
    assert lines[-1].startswith("  state: ")


# --- liveness -------------------------------------------------------------------


def test_spin_loop_without_helper_is_a_livelock_of_the_spinner() -> None:
    result = explore(spin_loop(helper=False), max_depth=10, reduction=True)
    assert result.violated == frozenset({"livelock:A"})
    cx = result.counterexample("livelock:A")
    assert cx.steps == ()  # the initial state is already in the loop
    assert cx.cycle == (Step("A", "test flag"), Step("A", "cpu_relax"))
    assert "then forever (2 steps a round)" in render_counterexample(cx)
    assert result.schedules is None  # a cycle: infinitely many executions


def test_spin_loop_with_helper_is_not_a_livelock() -> None:
    # The loop is a cycle, but B can always leave it: not a terminal component.
    result = explore(spin_loop(helper=True), max_depth=10, reduction=False)
    assert not result.violations


def test_a_process_that_can_never_move_is_a_deadlock() -> None:
    result = explore(waits_forever(), max_depth=5, reduction=False)
    assert result.violated == frozenset({"deadlock:A"})
    assert result.counterexample("deadlock:A").cycle == ()


def test_livelock_path_leads_to_the_component_entry() -> None:
    # Two private steps, then A spins forever.
    def actions(s: int) -> list[Action[int]]:
        return [action("A", "warm-up" if s < 2 else "spin", s + 1 if s < 2 else 2)]

    model = Model("late-spin", 0, actions, ("A",), lambda _s, _p: False)
    cx = explore(model, max_depth=10, reduction=False).counterexample("livelock:A")
    assert [step.label for step in cx.steps] == ["warm-up", "warm-up"]
    assert cx.cycle == (Step("A", "spin"),)


def test_depth_bound_leaves_a_frontier_and_no_liveness_verdict() -> None:
    result = explore(spin_loop(helper=False), max_depth=1, reduction=False)
    assert result.frontier == 1
    assert not result.complete
    assert not result.violations  # the loop was not closed within the bound
    assert result.schedules is None


def test_strongly_connected_components() -> None:
    succ = [[1], [2], [0, 3], [3], []]
    comps = sorted(strongly_connected_components(succ))
    assert comps == [[0, 1, 2], [3], [4]]


# --- validation and determinism ------------------------------------------------


def test_duplicate_steps_and_unknown_processes_are_rejected() -> None:
    dup = Model(
        "dup",
        0,
        lambda s: [action("A", "x", 1), action("A", "x", 2)] if s == 0 else [],
        ("A",),
        lambda _s, _p: True,
    )
    with pytest.raises(ValueError, match="two enabled actions"):
        explore(dup, max_depth=3, reduction=False)
    ghost = Model("ghost", 0, lambda s: [action("Z", "x", 1)] if s == 0 else [], ("A",), lambda _s, _p: True)
    with pytest.raises(ValueError, match="unknown process"):
        explore(ghost, max_depth=3, reduction=False)
    with pytest.raises(ValueError, match="max_depth"):
        explore(grid(), max_depth=-1, reduction=False)


def test_results_are_deterministic() -> None:
    first = explore(racy_increment(), max_depth=10, reduction=True)
    second = explore(replace(racy_increment()), max_depth=10, reduction=True)
    assert first == second
