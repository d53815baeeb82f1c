"""The event engine: order, ties, cancellation, the clock, and determinism."""

from __future__ import annotations

from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.sim.engine import Engine, SimError


def _recorder(engine: Engine, log: list[tuple[int, str]], name: str):
    return lambda: log.append((engine.now, name))


def test_events_run_in_time_order_with_now_at_their_time() -> None:
    engine = Engine()
    log: list[tuple[int, str]] = []
    for time_ns, name in ((30, "c"), (10, "a"), (20, "b")):
        engine.at(time_ns, _recorder(engine, log, name))
    assert engine.run() == 3
    assert log == [(10, "a"), (20, "b"), (30, "c")]
    assert engine.now == 30
    assert engine.events_run == 3


def test_ties_break_by_priority_then_by_scheduling_order() -> None:
    engine = Engine()
    log: list[tuple[int, str]] = []
    engine.at(5, _recorder(engine, log, "late-low"), priority=1)
    engine.at(5, _recorder(engine, log, "first"), priority=0)
    engine.at(5, _recorder(engine, log, "second"), priority=0)
    engine.at(5, _recorder(engine, log, "urgent"), priority=-1)
    engine.run()
    assert [name for _, name in log] == ["urgent", "first", "second", "late-low"]


def test_an_event_scheduled_for_now_runs_after_those_already_due() -> None:
    engine = Engine()
    log: list[tuple[int, str]] = []

    def first() -> None:
        log.append((engine.now, "first"))
        engine.after(0, _recorder(engine, log, "spawned"))

    engine.at(7, first)
    engine.at(7, _recorder(engine, log, "queued"))
    engine.run()
    assert log == [(7, "first"), (7, "queued"), (7, "spawned")]


def test_cancelled_events_never_run_and_cancel_is_idempotent() -> None:
    engine = Engine()
    log: list[tuple[int, str]] = []
    keep = engine.at(1, _recorder(engine, log, "keep"))
    drop = engine.at(2, _recorder(engine, log, "drop"))
    engine.cancel(drop)
    engine.cancel(drop)
    assert not drop.pending
    assert keep.pending
    assert engine.peek() == 1
    engine.run()
    assert log == [(1, "keep")]
    engine.cancel(keep)  # already ran: nothing happens
    assert engine.peek() is None


def test_run_until_stops_there_and_moves_the_clock() -> None:
    engine = Engine(start_ns=100)
    log: list[tuple[int, str]] = []
    engine.at(150, _recorder(engine, log, "in"))
    engine.at(250, _recorder(engine, log, "out"))
    assert engine.run(until_ns=200) == 1
    assert engine.now == 200
    assert log == [(150, "in")]
    # An event exactly at the bound runs.
    assert engine.run(until_ns=250) == 1
    assert log[-1] == (250, "out")
    # Nothing due: the clock still moves.
    assert engine.run(until_ns=86_400 * 10**9) == 0
    assert engine.now == 86_400 * 10**9


def test_refusals_name_the_problem() -> None:
    engine = Engine(start_ns=50)
    with pytest.raises(SimError, match="now is 50 ns"):
        engine.at(49, lambda: None, label="tick")
    with pytest.raises(SimError, match="negative delay"):
        engine.after(-1, lambda: None)
    with pytest.raises(SimError, match="integer count of ns"):
        engine.at(1.5, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(SimError, match="integer count of ns"):
        engine.after(True, lambda: None)
    with pytest.raises(SimError, match="cannot run until 10 ns"):
        engine.run(until_ns=10)


def test_step_reports_when_the_queue_is_empty() -> None:
    engine = Engine()
    assert engine.step() is False
    engine.after(3, lambda: None)
    assert engine.step() is True
    assert engine.step() is False
    assert engine.now == 3


def test_cost_is_per_event_not_per_simulated_time() -> None:
    # A day between two events is two events of work, whatever the span.
    engine = Engine()
    engine.at(0, lambda: None)
    engine.at(86_400 * 10**9, lambda: None)
    assert engine.run() == 2
    assert engine.events_run == 2


def _random_run(seed: int) -> list[tuple[int, int]]:
    engine = Engine(seed=seed)
    log: list[tuple[int, int]] = []

    def spawn(depth: int) -> None:
        log.append((engine.now, depth))
        if depth < 4:
            for _ in range(engine.rng.randrange(1, 3)):
                engine.after(engine.rng.randrange(0, 1_000), partial(spawn, depth + 1))

    engine.at(0, lambda: spawn(0))
    engine.run()
    return log


@given(st.integers(min_value=0, max_value=2**32))
def test_same_seed_same_run(seed: int) -> None:
    assert _random_run(seed) == _random_run(seed)


def test_different_seeds_differ() -> None:
    assert _random_run(1) != _random_run(2)


@given(st.lists(st.tuples(st.integers(0, 1_000), st.integers(-2, 2)), max_size=60))
def test_order_is_time_priority_then_fifo(entries: list[tuple[int, int]]) -> None:
    engine = Engine()
    seen: list[tuple[int, int, int]] = []
    for index, (time_ns, priority) in enumerate(entries):
        engine.at(time_ns, partial(seen.append, (time_ns, priority, index)), priority=priority)
    engine.run()
    assert seen == sorted(seen)
    assert len(seen) == len(entries)
