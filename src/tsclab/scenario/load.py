"""Scenario files: TOML in, a validated :class:`~tsclab.scenario.model.Scenario` out.

The format is documented in ``docs/scenarios.md``.  Every problem is a
:class:`ScenarioError` naming the file, the dotted field (``events[2].duration``)
and what was expected; nothing else escapes, and no partial scenario is built.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, get_args

from tsclab.check.verdict import VERDICT_IDS
from tsclab.host.vmm_policies import resolve_policy
from tsclab.kernel.profiles import get_profile
from tsclab.scenario.model import (
    Event,
    EventAction,
    Expectation,
    GuestClocksource,
    GuestSpec,
    HostClocksource,
    HostSpec,
    ReaderPath,
    Scaling,
    Scenario,
    SuspendTsc,
    Watchdog,
    Workload,
    WorkloadKind,
)
from tsclab.sim.trace import CLOCKS
from tsclab.units import parse_duration

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_KVM_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_LINE = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)

_MAX_NS = 2**63 - 1  # every duration must fit a signed 64-bit count of ns
_MAX_S = _MAX_NS // 1_000_000_000
_MAX_TSC_KHZ = 2**32 - 1
_HZ_VALUES = (100, 250, 300, 1000)

_GUEST_CLOCKSOURCES: tuple[GuestClocksource, ...] = get_args(GuestClocksource)
_WATCHDOGS: tuple[Watchdog, ...] = get_args(Watchdog)
_WORKLOAD_KINDS: tuple[WorkloadKind, ...] = get_args(WorkloadKind)
_READER_PATHS: tuple[ReaderPath, ...] = get_args(ReaderPath)
_EVENT_ACTIONS: tuple[EventAction, ...] = get_args(EventAction)
_SCALINGS: tuple[Scaling, ...] = get_args(Scaling)
_HOST_CLOCKSOURCES: tuple[HostClocksource, ...] = get_args(HostClocksource)
_SUSPEND_TSC: tuple[SuspendTsc, ...] = get_args(SuspendTsc)

_TOP_KEYS = (
    "name", "description", "sources", "vmms", "settle", "realtime_bound", "timer_late_bound",
    "guest", "hosts", "events", "expect",
)  # fmt: skip
_GUEST_KEYS = (
    "vcpus", "clocksource", "kernels", "hz", "tsc_khz", "watchdog", "ntp", "rcu_busy", "epoch",
    "watchdog_thresh", "hung_task_timeout", "rcu_stall_timeout", "workload",
)  # fmt: skip
_WORKLOAD_KEYS = ("kind", "vcpu", "every", "clocks", "path", "name", "phase")
_HOST_KEYS = (
    "name", "tsc_khz", "drift_ppb", "uptime", "realtime_error", "scaling", "clocksource",
    "tsc_in_suspend", "kvm",
)  # fmt: skip
_EVENT_KEYS = ("at", "action", "duration", "to", "precopy", "clock_realtime", "unresponsive")
_EXPECT_KEYS = ("kernel", "vmm", "verdicts")

# Which workload kinds / event actions may set a field that only some of them use.
_WORKLOAD_ONLY: dict[str, tuple[WorkloadKind, ...]] = {
    "every": ("reader", "timer", "blocked-task"),
    "clocks": ("reader",),
    "path": ("reader",),
    "phase": ("reader",),
    "name": ("timer",),
}
_EVENT_ONLY: dict[str, tuple[EventAction, ...]] = {
    "to": ("snapshot", "migrate"),
    "precopy": ("migrate",),
    "clock_realtime": ("pause", "snapshot", "migrate"),
}

D = TypeVar("D")
T = TypeVar("T")


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate."""

    def __init__(self, path: str, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path = path
        self.field = field
        self.message = message


class _Req(enum.Enum):
    REQUIRED = enum.auto()


REQUIRED = _Req.REQUIRED


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            name, "file", f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ScenarioError(name, "file", f"cannot read: {exc.strerror or exc}") from None
    return parse_scenario(text, name)


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    """Validate a scenario given as TOML text; ``path`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, str(exc)) from None
    except RecursionError:
        raise ScenarioError(path, "file", "invalid TOML: arrays or tables nested too deeply") from None
    return _scenario(_Table(path, "", data, _TOP_KEYS))


def _syntax_error(path: str, text: str, message: str) -> ScenarioError:
    located = _TOML_LINE.match(message)
    if located:
        what, line, column = located.groups()
        return ScenarioError(path, f"line {line}", f"invalid TOML: {what} (column {column})")
    what = message.removesuffix(" (at end of document)")
    return ScenarioError(path, f"line {max(1, len(text.splitlines()))}", f"invalid TOML: {what} (at the end)")


def _model_default(cls: type[Any], name: str) -> Any:
    """A model field's default, so that the defaults live in one place."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _describe(value: object) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
             (list, "an array"), (dict, "a table"))  # fmt: skip
    return next((text for kind, text in kinds if isinstance(value, kind)), "a date/time")


def _format_ns(ns: int) -> str:
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns % scale == 0:
            return f"{ns // scale}{unit}"
    return f"{ns}ns"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _key_text(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _quoted(key)


class _Table:
    """One TOML table being read: its dotted place in the file, and a reader per field kind."""

    def __init__(self, path: str, where: str, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
        self.path, self.where, self.data = path, where, data
        for key in data:
            if key not in allowed:
                raise self.error(key, f"unknown key; allowed keys: {', '.join(allowed)}")

    def field(self, key: str, index: int | None = None) -> str:
        name = f"{self.where}.{_key_text(key)}" if self.where else _key_text(key)
        return name if index is None else f"{name}[{index}]"

    def error(self, key: str, message: str, index: int | None = None) -> ScenarioError:
        return ScenarioError(self.path, self.field(key, index), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def _value(self, key: str, expected: str, kind: type[Any]) -> Any:
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"expected {expected}, got {_describe(value)}")
        return value

    def _missing(self, key: str, default: D | _Req, expected: str) -> D:
        if default is REQUIRED:
            raise self.error(key, f"missing; expected {expected}")
        return default

    def integer(self, key: str, low: int, high: int, default: D | _Req = REQUIRED) -> int | D:
        expected = f"an integer from {low} to {high}"
        if not self.has(key):
            return self._missing(key, default, expected)
        value: int = self._value(key, expected, int)
        if not low <= value <= high:
            raise self.error(key, f"expected {expected}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._value(key, "true or false", bool)) if self.has(key) else default

    def string(
        self, key: str, default: D | _Req = REQUIRED, pattern: re.Pattern[str] | None = None
    ) -> str | D:
        expected = f"a string matching {pattern.pattern}" if pattern else "a non-empty string"
        if not self.has(key):
            return self._missing(key, default, expected)
        value: str = self._value(key, expected, str)
        if not (pattern.fullmatch(value) if pattern else value.strip()):
            raise self.error(key, f"expected {expected}, got {_quoted(value)}")
        return value

    def choice(self, key: str, choices: tuple[T, ...], default: T | _Req = REQUIRED) -> T:
        expected = "one of: " + ", ".join(str(c) for c in choices)
        if not self.has(key):
            return self._missing(key, default, expected)
        value = self.data[key]
        if type(value) is not type(choices[0]) or value not in choices:
            shown = _quoted(value) if isinstance(value, str) else _describe(value)
            raise self.error(key, f"expected {expected}, got {shown}")
        return value

    def duration(
        self, key: str, default: D | _Req = REQUIRED, *, positive: bool = False, signed: bool = False
    ) -> int | D:
        sign = "-" if signed else ""
        expected = f'a duration like "{sign}200s" (units: ns, us, ms, s, m, h, d)'
        if not self.has(key):
            return self._missing(key, default, expected)
        text: str = self._value(key, expected, str).strip()
        negative = signed and text.startswith("-")
        try:
            ns = parse_duration(text[1:] if negative else text)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if ns > _MAX_NS:
            raise self.error(key, f"{_quoted(text)} is too long (at most {_MAX_S}s)")
        if positive and ns == 0:
            raise self.error(key, f"expected a duration greater than 0, got {_quoted(text)}")
        return -ns if negative else ns

    def names(
        self, key: str, check: Callable[[str], object] | None, *, required: bool, nonempty: bool
    ) -> tuple[str, ...]:
        """A list of distinct strings, each accepted by ``check`` (which raises ValueError)."""
        expected = "an array of strings" + (", at least one" if nonempty else "")
        if not self.has(key):
            if required:
                raise self.error(key, f"missing; expected {expected}")
            return ()
        items: list[Any] = self._value(key, expected, list)
        if nonempty and not items:
            raise self.error(key, f"expected {expected}, got an empty array")
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"expected a non-empty string, got {_describe(item)}", index)
            if item in items[:index]:
                raise self.error(key, f"{_quoted(item)} is listed twice", index)
            if check is not None:
                try:
                    check(item)
                except ValueError as exc:
                    raise self.error(key, str(exc), index) from None
        return tuple(items)

    def table(self, key: str, allowed: tuple[str, ...]) -> _Table:
        if not self.has(key):
            raise self.error(key, f"missing; expected a [{key}] table")
        data: dict[str, Any] = self._value(key, f"a [{key}] table", dict)
        return _Table(self.path, self.field(key), data, allowed)

    def tables(self, key: str, allowed: tuple[str, ...], *, required: bool) -> list[_Table]:
        expected = f"an array of tables, [[{self.field(key)}]]"
        if not self.has(key):
            if required:
                raise self.error(key, f"missing; expected {expected}, at least one")
            return []
        items: list[Any] = self._value(key, expected, list)
        if required and not items:
            raise self.error(key, f"expected {expected}, at least one")
        tables = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(key, f"expected a table, got {_describe(item)}", index)
            tables.append(_Table(self.path, self.field(key, index), item, allowed))
        return tables


def _scenario(top: _Table) -> Scenario:
    name = top.string("name", pattern=_NAME)
    description = top.string("description")
    sources = top.names("sources", None, required=False, nonempty=False)
    vmms = top.names("vmms", resolve_policy, required=True, nonempty=True)
    settle = top.duration("settle", _model_default(Scenario, "settle_ns"))
    realtime_bound = top.duration("realtime_bound", _model_default(Scenario, "realtime_bound_ns"))
    timer_late_bound = top.duration("timer_late_bound", _model_default(Scenario, "timer_late_bound_ns"))
    guest = _guest(top.table("guest", _GUEST_KEYS))
    hosts = _hosts(top.tables("hosts", _HOST_KEYS, required=True))
    events = _events(top.tables("events", _EVENT_KEYS, required=True), hosts)
    expect = tuple(
        _expectation(table, guest.kernels, vmms)
        for table in top.tables("expect", _EXPECT_KEYS, required=False)
    )
    return Scenario(
        name=name,
        description=description,
        guest=guest,
        hosts=hosts,
        vmms=vmms,
        events=events,
        settle_ns=settle,
        realtime_bound_ns=realtime_bound,
        timer_late_bound_ns=timer_late_bound,
        sources=sources,
        expect=expect,
        path=top.path,
    )


def _guest(guest: _Table) -> GuestSpec:
    default = partial(_model_default, GuestSpec)
    vcpus = guest.integer("vcpus", 1, 64)
    return GuestSpec(
        vcpus=vcpus,
        clocksource=guest.choice("clocksource", _GUEST_CLOCKSOURCES),
        kernels=guest.names("kernels", get_profile, required=True, nonempty=True),
        hz=guest.choice("hz", _HZ_VALUES, default("hz")),
        tsc_khz=guest.integer("tsc_khz", 1, _MAX_TSC_KHZ, None),
        watchdog=guest.choice("watchdog", _WATCHDOGS, default("watchdog")),
        ntp=guest.boolean("ntp", default("ntp")),
        rcu_busy=guest.boolean("rcu_busy", default("rcu_busy")),
        epoch_s=guest.integer("epoch", 0, _MAX_S, default("epoch_s")),
        watchdog_thresh_s=guest.integer("watchdog_thresh", 1, 60, default("watchdog_thresh_s")),
        hung_task_timeout_s=guest.integer("hung_task_timeout", 1, _MAX_S, default("hung_task_timeout_s")),
        # The kernel clamps rcu_cpu_stall_timeout to 3..300 s.
        rcu_stall_timeout_s=guest.integer("rcu_stall_timeout", 3, 300, default("rcu_stall_timeout_s")),
        workload=_workloads(guest.tables("workload", _WORKLOAD_KEYS, required=False), vcpus),
    )


def _workloads(tables: list[_Table], vcpus: int) -> tuple[Workload, ...]:
    workloads: list[Workload] = []
    exclusive: dict[int, str] = {}  # vCPU -> the table that made it busy (reader) or idle
    for table in tables:
        kind = table.choice("kind", _WORKLOAD_KINDS)
        vcpu = table.integer("vcpu", 0, vcpus - 1)
        for key, kinds in _WORKLOAD_ONLY.items():
            if table.has(key) and kind not in kinds:
                raise table.error(
                    key, f"not allowed for kind = {_quoted(kind)} (only for: {', '.join(kinds)})"
                )
        if kind in ("reader", "idle"):
            if vcpu in exclusive:
                raise table.error(
                    "vcpu", f"vCPU {vcpu} already has a reader or idle workload ({exclusive[vcpu]}); "
                    "a vCPU is either busy (reader) or idle"
                )  # fmt: skip
            exclusive[vcpu] = table.where
        reader = kind == "reader"
        every = 0 if kind == "idle" else table.duration("every", positive=True)
        phase: int | None = None
        if reader and table.has("phase"):
            phase = table.duration("phase")
            if phase >= every:
                raise table.error(
                    "phase", f"expected a duration shorter than every ({every} ns), got {phase} ns"
                )
        workloads.append(
            Workload(
                kind=kind,
                vcpu=vcpu,
                every_ns=every,
                phase_ns=phase,
                clocks=(table.names("clocks", _check_clock, required=False, nonempty=True) or CLOCKS)
                if reader
                else (),
                path=table.choice("path", _READER_PATHS, "vdso"),
                name=table.string("name", f"timer{vcpu}") if kind == "timer" else "",
            )
        )
    return tuple(workloads)


def _check_clock(name: str) -> None:
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {_quoted(name)}; expected one of: {', '.join(CLOCKS)}")


def _hosts(tables: list[_Table]) -> tuple[HostSpec, ...]:
    default = partial(_model_default, HostSpec)
    hosts: list[HostSpec] = []
    for table in tables:
        name = table.string("name", pattern=_NAME)
        if any(host.name == name for host in hosts):
            raise table.error("name", f"host {_quoted(name)} is defined twice")
        hosts.append(
            HostSpec(
                name=name,
                tsc_khz=table.integer("tsc_khz", 1, _MAX_TSC_KHZ),
                drift_ppb=table.integer("drift_ppb", -1_000_000, 1_000_000, default("drift_ppb")),
                uptime_ns=table.duration("uptime", default("uptime_ns")),
                realtime_error_ns=table.duration("realtime_error", default("realtime_error_ns"), signed=True),
                scaling=table.choice("scaling", _SCALINGS, default("scaling")),
                clocksource=table.choice("clocksource", _HOST_CLOCKSOURCES, default("clocksource")),
                tsc_in_suspend=table.choice("tsc_in_suspend", _SUSPEND_TSC, default("tsc_in_suspend")),
                kvm=_kvm_version(table, default("kvm")),
            )
        )
    return tuple(hosts)


def _kvm_version(table: _Table, default: tuple[int, int]) -> tuple[int, int]:
    if not table.has("kvm"):
        return default
    text = table.string("kvm")
    match = _KVM_VERSION.fullmatch(text)
    version = (int(match[1]), int(match[2])) if match else None
    if version is None or version < (4, 0):
        raise table.error("kvm", f'expected a KVM version "major.minor", at least "4.0", got {_quoted(text)}')
    return version


def _events(tables: list[_Table], hosts: tuple[HostSpec, ...]) -> tuple[Event, ...]:
    host_names = [host.name for host in hosts]
    events: list[Event] = []
    for index, table in enumerate(tables):
        at = table.duration("at")
        action = table.choice("action", _EVENT_ACTIONS)
        for key, actions in _EVENT_ONLY.items():
            if table.has(key) and action not in actions:
                raise table.error(
                    key, f"not allowed for action = {_quoted(action)} (only for: {', '.join(actions)})"
                )
        to = table.string("to", REQUIRED if action == "migrate" else None)
        if to is not None and to not in host_names:
            raise table.error("to", f"unknown host {_quoted(to)}; expected one of: {', '.join(host_names)}")
        event = Event(
            at_ns=at,
            action=action,
            duration_ns=table.duration("duration", positive=True),
            to=to,
            precopy_ns=table.duration("precopy", 0),
            clock_realtime=table.boolean("clock_realtime", False),
            unresponsive=table.boolean("unresponsive", False),
        )
        if events:
            previous, previous_end = events[-1], _end_ns(events[-1])
            what = f"events[{index - 1}] ({previous.action} at {_format_ns(previous.at_ns)})"
            if at < previous.at_ns:
                raise table.error("at", f"{_format_ns(at)} is before {what}; events must be in time order")
            if at < previous_end:
                raise table.error(
                    "at", f"{_format_ns(at)} overlaps {what}, which ends at {_format_ns(previous_end)}"
                )
        events.append(event)
    return tuple(events)


def _end_ns(event: Event) -> int:
    return event.at_ns + event.precopy_ns + event.duration_ns


def _expectation(table: _Table, kernels: tuple[str, ...], vmms: tuple[str, ...]) -> Expectation:
    return Expectation(
        kernel=_name_or_any(table, "kernel", kernels, "guest.kernels"),
        vmm=_name_or_any(table, "vmm", vmms, "vmms"),
        verdicts=frozenset(table.names("verdicts", _check_verdict, required=True, nonempty=False)),
    )


def _name_or_any(table: _Table, key: str, known: tuple[str, ...], where: str) -> str:
    name = table.string(key)
    if name != "*" and name not in known:
        raise table.error(
            key, f'{_quoted(name)} is not in {where}; expected "*" or one of: {", ".join(known)}'
        )
    return name


def _check_verdict(name: str) -> None:
    if name not in VERDICT_IDS:
        raise ValueError(f"unknown verdict ID {_quoted(name)}; expected one of: {', '.join(VERDICT_IDS)}")
