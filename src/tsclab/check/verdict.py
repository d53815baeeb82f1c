"""A verdict: one finding of a run, with a stable ID other tools match on.

Each carries the first offending event - when, on which vCPU and clock -
and its magnitude, so a report can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.sim.trace import RunTrace

# Stable IDs and what each means; the order is the order reports list them.
VERDICT_IDS: dict[str, str] = {
    "time-backwards": "a clock read lower than an earlier read (same vCPU, or across vCPUs)",
    "overflow-garbage": "a pre-6.10 reader's delta*mult wrapped 64 bits: the value is short by whole wraps",
    "wrap-loss": "time lost for good to counter wraps or a negative-motion clamp",
    "time-frozen": "reads stuck at one value while the counter moved on",
    "ntp-maxerror": "NTP's maxerror grew over the interruption",
    "realtime-error": "REALTIME off true UTC by more than the bound",
    "boottime-missing-nap": "BOOTTIME did not count a nap the guest was put through",
    "monotonic-jump": "MONOTONIC jumped across an interruption the policy promises to hide",
    "softlockup": "the soft-lockup detector reported a stuck CPU",
    "rcu-stall": "RCU reported a CPU stall",
    "hung-task": "the hung-task detector reported a blocked task",
    "clocksource-unstable": "the clocksource watchdog marked the clocksource unstable",
    "ntp-unsync": "NTP was driven unsynchronised (maxerror past 16 s)",
    "livelock": "a reader spun without finishing",
    "timer-late": "a timer fired late by more than the bound",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One finding."""

    id: str  # a key of VERDICT_IDS
    t_ns: int  # true time of the first offending event
    vcpu: int | None
    clock: str | None
    magnitude: int
    unit: str  # "ns", "s", "us" or "count"
    event: str  # the first offending event, in words

    def __post_init__(self) -> None:
        if self.id not in VERDICT_IDS:
            raise ValueError(f"unknown verdict ID {self.id!r}")

    def record(self) -> dict[str, object]:
        """The verdict as JSON-ready data (the run schema's ``verdicts`` items)."""
        return {
            "id": self.id,
            "t_ns": self.t_ns,
            "vcpu": self.vcpu,
            "clock": self.clock,
            "magnitude": self.magnitude,
            "unit": self.unit,
            "event": self.event,
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """One combination's run: its trace, its verdicts, and what the scenario expected of it."""

    trace: RunTrace
    verdicts: tuple[Verdict, ...]
    expected: frozenset[str] | None = None  # None: the scenario says nothing about this combination

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(v.id for v in self.verdicts)

    @property
    def check(self) -> str:
        """``skipped`` (does not apply), ``unchecked`` (no expectation), ``pass`` or ``fail``."""
        if self.trace.skipped:
            return "skipped"
        if self.expected is None:
            return "unchecked"
        return "pass" if self.ids == self.expected else "fail"
