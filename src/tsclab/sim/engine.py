"""A deterministic discrete-event engine: the tiny loop every simulation runs on.

True time is an integer count of nanoseconds.  Events run in order of
(time, priority, sequence): at equal times a lower priority runs first,
and at equal priorities the one scheduled first runs first - so a run is
a pure function of what was scheduled and of the seed of :attr:`rng`, the
only random source a simulation may use.

Cost is per event, never per unit of simulated time: a day with no events
costs nothing.  Everything else - vCPUs, ticks, timers, readers, hosts -
lives outside this module and schedules callbacks here.

Invariants relied on by callers:

* ``now`` never decreases; a callback runs with ``now`` equal to its time;
* an event scheduled from a callback for the current time runs in the
  same :meth:`Engine.run`, after every event already due at that time and
  priority;
* a cancelled event never runs; cancelling one that has run, or twice, is
  a no-op.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

Callback = Callable[[], None]


class SimError(Exception):
    """A scheduling request the engine refuses (the past, a negative delay, a non-integer time)."""


@dataclass(eq=False, slots=True)
class EventHandle:
    """A scheduled event; keep it to cancel the event."""

    time_ns: int
    priority: int
    seq: int
    label: str
    callback: Callback | None = field(repr=False)

    @property
    def pending(self) -> bool:
        return self.callback is not None


class Engine:
    """The event loop: schedule callbacks at integer ns, run them in a stable order."""

    def __init__(self, *, seed: int = 0, start_ns: int = 0) -> None:
        _check_int("start_ns", start_ns)
        self._now = start_ns
        self._seq = 0
        self._queue: list[tuple[int, int, int, EventHandle]] = []
        self.rng = random.Random(seed)
        self.events_run = 0

    @property
    def now(self) -> int:
        return self._now

    def at(self, time_ns: int, callback: Callback, *, priority: int = 0, label: str = "") -> EventHandle:
        """Run ``callback`` at ``time_ns`` (not before now)."""
        _check_int("time_ns", time_ns)
        _check_int("priority", priority)
        if time_ns < self._now:
            raise SimError(f"cannot schedule {label or 'an event'} at {time_ns} ns: now is {self._now} ns")
        handle = EventHandle(time_ns, priority, self._seq, label, callback)
        heapq.heappush(self._queue, (time_ns, priority, self._seq, handle))
        self._seq += 1
        return handle

    def after(self, delay_ns: int, callback: Callback, *, priority: int = 0, label: str = "") -> EventHandle:
        """Run ``callback`` ``delay_ns`` from now (zero: later in this instant)."""
        _check_int("delay_ns", delay_ns)
        if delay_ns < 0:
            raise SimError(f"cannot schedule {label or 'an event'} {delay_ns} ns from now: negative delay")
        return self.at(self._now + delay_ns, callback, priority=priority, label=label)

    @staticmethod
    def cancel(handle: EventHandle) -> None:
        """Drop the event if it has not run (lazily: it stays queued, marked dead)."""
        handle.callback = None

    def peek(self) -> int | None:
        """The time of the next live event, or None."""
        self._drop_dead()
        return self._queue[0][0] if self._queue else None

    def step(self) -> bool:
        """Run the next live event; False when there is none."""
        self._drop_dead()
        if not self._queue:
            return False
        time_ns, _, _, handle = heapq.heappop(self._queue)
        callback = handle.callback
        assert callback is not None  # _drop_dead() left a live event on top
        handle.callback = None
        self._now = time_ns
        self.events_run += 1
        callback()
        return True

    def run(self, until_ns: int | None = None) -> int:
        """Run events due up to ``until_ns`` (all, if None); return how many ran.

        With ``until_ns`` the clock ends there even if nothing was due.
        """
        if until_ns is not None:
            _check_int("until_ns", until_ns)
            if until_ns < self._now:
                raise SimError(f"cannot run until {until_ns} ns: now is {self._now} ns")
        ran = 0
        while (due := self.peek()) is not None and (until_ns is None or due <= until_ns):
            self.step()
            ran += 1
        if until_ns is not None:
            self._now = until_ns
        return ran

    def _drop_dead(self) -> None:
        while self._queue and self._queue[0][3].callback is None:
            heapq.heappop(self._queue)


def _check_int(name: str, value: object) -> None:
    # bool is an int in Python, never a time.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SimError(f"{name} must be an integer count of ns, got {value!r}")
