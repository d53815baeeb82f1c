"""The three explorer models: each finding, its minimal counterexample, and the clean variants."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import pytest

from tsclab.kernel.fast_timekeeper import TkFast, update_fast_timekeeper_steps
from tsclab.kernel.ntp import NtpState
from tsclab.kernel.profiles import get_profile
from tsclab.kernel.timekeeping import Timekeeping
from tsclab.sim.explore import Action, Counterexample, ExploreResult, Model, Step, explore
from tsclab.sim.explore_models import (
    HOUR,
    HZ,
    MODELS,
    TSC,
    FastState,
    TkMono,
    WriteSectionState,
    boot_timekeeper,
    cycle_interval,
    fast_store,
    fast_timekeeper_backwards,
    nohz_reader_livelock,
    pause_inside_write_section,
    timekeeping_advance_from,
)

DEPTH = 200  # every model closes well within this: results must be complete
WRAP_ALIGNED_PAUSE = (1 << 41) - 1_000_000  # 1 ms short of the reader's u64 wrap (2**41 cycles)


@cache
def run(name: str, reduction: bool) -> ExploreResult:
    return explore(MODELS[name](), max_depth=DEPTH, reduction=reduction, check_footprints=reduction)


def index_of(steps: tuple[Step, ...], process: str, text: str) -> int:
    return next(i for i, step in enumerate(steps) if step.process == process and text in step.label)


# --- every model ------------------------------------------------------------------


def test_the_cli_names() -> None:
    assert list(MODELS) == [
        "nohz-livelock",
        "nohz-no-livelock",
        "write-section-pause-6.1",
        "write-section-pause-6.10",
        "fast-timekeeper-backwards",
    ]


@pytest.mark.parametrize("name", list(MODELS))
def test_reduction_keeps_every_state_and_violation(name: str) -> None:
    full, reduced = run(name, False), run(name, True)
    assert full.complete
    assert reduced.complete
    assert reduced.states == full.states
    assert reduced.violated == full.violated
    assert reduced.violations == full.violations
    assert reduced.repairs == 0  # the footprints are right (and checked: check_footprints)
    assert reduced.transitions <= full.transitions == reduced.enabled_transitions


def test_reduction_factor_above_one() -> None:
    factors = {name: run(name, True).reduction_factor for name in MODELS}
    assert max(factors.values()) > 1
    assert factors["fast-timekeeper-backwards"] > 1
    assert factors["write-section-pause-6.1"] > 1


# --- the real arithmetic under the models ---------------------------------------


def test_writer_rebuilt_from_the_slice_matches_one_continuous_timekeeper() -> None:
    profile = get_profile("linux-6.1")
    counter = [0]
    ntp = NtpState.for_kernel(profile.version, hz=HZ)
    engine = Timekeeping(TSC, profile, ntp, read_counter=lambda: counter[0], hz=HZ)
    tk = boot_timekeeper("linux-6.1", 0)
    for now in (
        cycle_interval(),
        cycle_interval() + HOUR,
        cycle_interval() + HOUR + 7 * cycle_interval() + 5,
    ):
        counter[0] = now
        engine.update_wall_time()
        advanced = timekeeping_advance_from(tk, now, "linux-6.1")
        assert advanced == TkMono.of(engine.tk)
        tk = advanced
        assert engine.tk.ntp_error == 0  # why the slice is enough
    assert timekeeping_advance_from(tk, tk.cycle_last + 1, "linux-6.1") is None  # early return


def test_fast_stores_are_update_fast_timekeeper_steps() -> None:
    boot = boot_timekeeper("linux-6.10", 0)
    new = replace(boot, mult=boot.mult - 7, xtime_nsec=boot.xtime_nsec + 99)
    state = FastState(0, 0, 0, (boot, boot), new, 1, ())
    tkf = TkFast(seq=0, base=[boot.tkr(), boot.tkr()])
    for _ in update_fast_timekeeper_steps(new.tkr(), tkf):
        _, state = fast_store(state)
        assert (state.latch, state.base[0].tkr(), state.base[1].tkr()) == (tkf.seq, tkf.base[0], tkf.base[1])
    assert state.writer == 5


def test_the_clocksource_numbers_the_docstrings_quote() -> None:
    assert (TSC.mult, TSC.shift, TSC.max_cycles) == (1 << 23, 23, 1_981_102_219_259)
    assert cycle_interval() == 4_000_000


# --- 1. NOHZ entry livelock -----------------------------------------------------


def test_nohz_reader_on_the_update_cpu_livelocks() -> None:
    result = run("nohz-livelock", True)
    assert result.violated == frozenset({"livelock:cpu0"})
    cx = result.counterexample("livelock:cpu0")
    assert [step.process for step in cx.steps] == ["host"]  # the resume after the pause
    assert "counter += 7200000000000" in cx.steps[0].label
    assert {step.process for step in cx.cycle} == {"cpu0"}
    labels = [step.label for step in cx.cycle]
    assert "debug-capped" in labels[2]
    assert "1981.102219259 s" in labels[2]  # stands still at cycle_last + max_cycles
    assert "cpu_relax(), loop" in labels[3]
    assert not any("update_wall_time" in label for label in labels)


def test_nohz_reader_with_another_cpu_updating_does_not_livelock() -> None:
    result = run("nohz-no-livelock", True)
    assert not result.violations
    assert result.schedules is None  # the reader may spin any number of rounds first


def test_nohz_reader_with_the_610_slow_path_does_not_livelock() -> None:
    result = explore(nohz_reader_livelock("linux-6.10"), max_depth=DEPTH, reduction=True)
    assert result.complete
    assert not result.violations


# --- 2. a pause inside the write section ----------------------------------------


def assert_pause_inside_write_section(cx: Counterexample) -> None:
    steps = cx.steps
    counter_read = index_of(steps, "writer", "tk_clock_read()")
    pause = index_of(steps, "host", "pause the VM")
    section_end = index_of(steps, "writer", "write_seqcount_end")
    assert counter_read < pause < section_end
    assert not any(s.process == "writer" and "tk_clock_read()" in s.label for s in steps[pause:])
    assert steps[-1].process == "reader"
    assert "ktime_get() returns" in steps[-1].label


def test_pause_inside_write_section_gives_garbage_on_61() -> None:
    result = run("write-section-pause-6.1", True)
    assert result.violated == frozenset({"reader-value-exact"})
    cx = result.counterexample("reader-value-exact")
    assert len(cx.steps) == 11
    assert_pause_inside_write_section(cx)
    # The counter read comes first, the pause right after it.
    assert [step.process for step in cx.steps[:3]] == ["writer", "host", "host"]
    compute = cx.steps[-2].label
    assert "wrapped-multiply; delta 3600000000000 > max_cycles" in compute
    # 3600.004 s less one wrap of 2**41 ns.
    assert "returns 1400.980744448 s (exact: 3600.004000000 s)" in cx.steps[-1].label


def test_wrap_aligned_pause_also_sends_time_backwards_on_61() -> None:
    model = pause_inside_write_section("linux-6.1", pause_cycles=WRAP_ALIGNED_PAUSE)
    result = explore(model, max_depth=DEPTH, reduction=True)
    assert result.violated == frozenset({"reader-value-exact", "time-monotonic"})
    cx = result.counterexample("time-monotonic")
    assert_pause_inside_write_section(cx)
    assert "returns 0.004000000 s" in cx.steps[index_of(cx.steps, "reader", "returns")].label
    assert "returns 0.003000000 s" in cx.steps[-1].label  # 1 ms before the previous read


@pytest.mark.parametrize("pause_cycles", [HOUR, WRAP_ALIGNED_PAUSE])
@pytest.mark.parametrize("profile_name", ["linux-6.10", "linux-6.13"])
def test_protected_reader_is_clean_in_the_same_scope(profile_name: str, pause_cycles: int) -> None:
    model = pause_inside_write_section(profile_name, pause_cycles=pause_cycles)
    result = explore(model, max_depth=DEPTH, reduction=True)
    assert result.complete
    assert not result.violations


def pausing_only_outside_the_write_section(model: Model[WriteSectionState]) -> Model[WriteSectionState]:
    def actions(s: WriteSectionState) -> list[Action[WriteSectionState]]:
        acts = model.actions(s)
        if s.writer == "idle":
            return acts
        return [a for a in acts if a.label != "pause the VM"]

    return replace(model, actions=actions)


def test_on_61_a_pause_outside_the_write_section_is_harmless_in_this_scope() -> None:
    model = pausing_only_outside_the_write_section(pause_inside_write_section("linux-6.1"))
    result = explore(model, max_depth=DEPTH, reduction=True)
    assert result.complete
    assert not result.violations


# --- 3. the fast timekeeper goes backwards --------------------------------------


def test_fast_timekeeper_goes_backwards_across_a_slope_change() -> None:
    result = run("fast-timekeeper-backwards", True)
    assert result.violated == frozenset({"fast-monotonic"})
    cx = result.counterexample("fast-monotonic")
    steps = cx.steps
    assert len(steps) == 7
    adjust = index_of(steps, "writer", "timekeeping_apply_adjustment()")
    clock = index_of(steps, "clock", "counter +=")
    reads = [i for i, step in enumerate(steps) if step.process == "nmi"]
    assert adjust < clock < reads[0]
    assert "mult 8388608 -> 8384414" in steps[adjust].label  # -500 ppm
    # The first read used the old copy, the last the new one, at the same counter.
    assert "= 3000000 from base[1] at counter 3000000" in steps[reads[0]].label
    assert "= 2999500 from base[0] at counter 3000000" in steps[reads[1]].label
    latch_even = index_of(steps, "writer", "latch = 2")
    assert reads[0] < latch_even < reads[1]


@pytest.mark.parametrize("profile_name", ["linux-5.10", "linux-6.1"])
def test_fast_timekeeper_backwards_on_older_reader_math_too(profile_name: str) -> None:
    result = explore(fast_timekeeper_backwards(profile_name), max_depth=DEPTH, reduction=True)
    assert result.violated == frozenset({"fast-monotonic"})


def test_fast_timekeeper_is_monotonic_without_a_slope_change() -> None:
    result = explore(fast_timekeeper_backwards(ppm=0), max_depth=DEPTH, reduction=True)
    assert not result.violations


def test_model_states_are_hashable_values() -> None:
    for factory in MODELS.values():
        model: Model[Any] = factory()
        assert hash(model.initial) == hash(replace(model.initial))
