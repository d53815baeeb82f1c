"""``tsclab kvm migrate``: a source and a destination VMM process, a guest moved over TCP, measured.

The parent (this module) starts the destination
(``python -m tsclab.kvm.vmm_destination``), reads the port it listens on,
starts the source (``python -m tsclab.kvm.vmm_source``) pointed at it -
with ``netns``, each inside its own network namespace of a pair joined by a
veth (:mod:`tsclab.kvm.netns`), the stream crossing the veth - and waits
for both. Each prints its result as JSON; :func:`assemble` turns the two
into the migration's report: where the guest runs now, what it saw
(:mod:`tsclab.kvm.measure`), what the clock-state part cost, and the
model's prediction with the verdict (:mod:`tsclab.kvm.agreement`).

Nothing outlives :func:`migrate`: both children are waited for (killed
first if they overrun the deadline), their pipes closed, the namespaces
deleted - also when anything fails.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from tsclab.host.vmm_policies import VmmPolicy
from tsclab.kvm import netns
from tsclab.kvm.agreement import Agreement, Timeline, agreement
from tsclab.kvm.clock import ClockData
from tsclab.kvm.facts import HostFacts
from tsclab.kvm.measure import Measurement, measure
from tsclab.kvm.steps import StepRecord
from tsclab.kvm.system import DEVICE
from tsclab.kvm.vmm_process import migrate_policy
from tsclab.kvm.wire import Fault

EXIT_DONE = 0
EXIT_FAILED = 1
LISTEN_TIMEOUT_S = 20.0
CHILD_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


class MigrationSetupError(Exception):
    """The two VMMs could not be started (namespaces, a process that died at once...)."""


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    policy: str = "upstream-doc"
    downtime_ns: int = 0
    netns: bool = False
    fault: Fault | None = None
    destination_tsc_khz: int | None = None  # what the destination advertises (tests: other hardware)
    timeout_s: float = CHILD_TIMEOUT_S
    device: str = DEVICE


@dataclass
class ChildResult:
    role: str
    returncode: int
    record: dict[str, Any]
    stderr: str


@dataclass
class MigrationReport:
    """The migration as the command prints it (:meth:`to_dict` is its JSON)."""

    policy: VmmPolicy
    options: MigrationOptions
    facts: HostFacts
    source: ChildResult
    destination: ChildResult
    namespaces: tuple[str, str] | None
    outcome: str  # "migrated", "failed"
    guest_on: str  # "destination", "source", "nowhere"
    stopped: bool  # the source stopped the guest (a failure before the stop leaves it running)
    error: str | None
    measurement: Measurement | None
    agreement: Agreement | None
    clock_state: dict[str, int] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "migrated"

    def to_dict(self) -> dict[str, Any]:
        src, dst = self.source.record, self.destination.record
        return {
            "policy": self.policy.label,
            "options": {
                "downtime_ns": self.options.downtime_ns,
                "netns": self.options.netns,
                "fault": None if self.options.fault is None else str(self.options.fault),
                "destination_tsc_khz": self.options.destination_tsc_khz,
            },
            "host": self.facts.to_dict(),
            "outcome": self.outcome,
            "guest_on": self.guest_on,
            "stopped": self.stopped,
            "error": self.error,
            "source": {
                "exit": self.source.returncode,
                "error": src.get("error"),
                "stage": src.get("stage"),
                "committed": src.get("committed"),
            },
            "destination": {
                "exit": self.destination.returncode,
                "error": dst.get("error"),
                "stage": dst.get("stage"),
                "refused": dst.get("refused"),
            },
            "namespaces": None if self.namespaces is None else list(self.namespaces),
            "wire": {"source": src.get("wire"), "destination": dst.get("wire")},
            "measurement": None if self.measurement is None else self.measurement.to_dict(),
            "model": None if self.agreement is None else self.agreement.to_dict(),
            "clock_state_ns": self.clock_state,
            "steps": [record.to_dict() for record in self.steps],
            "nap_page": dst.get("nap_page") if self.guest_on == "destination" else src.get("nap_page"),
        }


# --- the children


def _module_command(module: str, args: Sequence[str], namespace: str | None) -> list[str]:
    command = [sys.executable, "-m", module, *args]
    return command if namespace is None else [*netns.exec_prefix(namespace), *command]


def _read_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The child's first stdout line, within ``timeout_s`` (empty if it closed or overran)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        byte = os.read(fd, 1)
        if not byte:
            return line.decode(errors="replace")
        line += byte
    return line.decode(errors="replace").strip()


@contextmanager
def _child(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is always reaped: killed if it still runs when the body ends."""
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its pipes


def _collect(role: str, process: subprocess.Popen[bytes], deadline: float) -> ChildResult:
    try:
        out, err = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        text = err.decode(errors="replace").strip()
        return ChildResult(
            role, -9, {"ok": False, "error": f"the {role} VMM overran its deadline: killed"}, text
        )
    stderr = err.decode(errors="replace").strip()
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    try:
        record = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        record = {}
    if not isinstance(record, dict) or "ok" not in record:
        tail = stderr.splitlines()[-1] if stderr else f"exit {process.returncode}"
        record = {"ok": False, "error": f"the {role} VMM gave no result: {tail}"}
    return ChildResult(role, process.returncode if process.returncode is not None else -1, record, stderr)


def run_children(
    options: MigrationOptions, pair: netns.NamespacePair | None
) -> tuple[ChildResult, ChildResult]:
    """Start the destination, then the source at its address; wait for both."""
    timeout = options.timeout_s + options.downtime_ns / 1e9
    common = ["--timeout", str(timeout), "--device", options.device]
    fault = [] if options.fault is None else ["--fault", str(options.fault)]
    listen = LOOPBACK if pair is None else pair.destination_address
    dst_args = ["--listen", listen, *common, *fault]
    if options.destination_tsc_khz is not None:
        dst_args += ["--tsc-khz", str(options.destination_tsc_khz)]
    with ExitStack() as stack:
        destination = stack.enter_context(
            _child(
                _module_command(
                    "tsclab.kvm.vmm_destination", dst_args, None if pair is None else pair.destination
                )
            )
        )
        line = _read_line(destination, LISTEN_TIMEOUT_S)
        parts = line.split()
        if len(parts) != 3 or parts[0] != "LISTENING" or not parts[2].isdigit():
            result = _collect("destination", destination, time.monotonic() + 5)
            raise MigrationSetupError(
                f"the destination VMM did not start: {result.record.get('error') or line}"
            )
        src_args = ["--connect", f"{parts[1]}:{parts[2]}", "--policy", options.policy, *common, *fault]
        src_args += ["--downtime-ns", str(options.downtime_ns)]
        source = stack.enter_context(
            _child(_module_command("tsclab.kvm.vmm_source", src_args, None if pair is None else pair.source))
        )
        deadline = time.monotonic() + 2 * timeout + 10
        src = _collect("source", source, deadline)
        if "wire" not in src.record:  # the source never connected: nothing will come to the destination
            return src, _stop("destination", destination, "stopped: the source never connected")
        dst = _collect("destination", destination, deadline)
    return src, dst


def _stop(role: str, process: subprocess.Popen[bytes], reason: str) -> ChildResult:
    """End a child that waits for what will not come; its result says why."""
    process.kill()
    _out, err = process.communicate()
    return ChildResult(role, -9, {"ok": False, "error": reason}, err.decode(errors="replace").strip())


# --- the report


def _records(record: dict[str, Any]) -> list[StepRecord]:
    return [StepRecord.from_dict(r) for r in record.get("steps", [])]


def _drift_ppb(first: dict[str, Any] | None, last: dict[str, Any] | None, khz: int) -> int:
    """How fast the host TSC ran against host realtime, from KVM's (realtime, host TSC) pairs."""
    if first is None or last is None:
        return 0
    a, b = ClockData.from_dict(first["before"]), ClockData.from_dict(last["after"])
    if not (a.has_realtime and a.has_host_tsc and b.has_realtime and b.has_host_tsc):
        return 0
    realtime = b.realtime - a.realtime
    if realtime <= 0:
        return 0
    tsc_ns = (b.host_tsc - a.host_tsc) * 1_000_000 // khz
    return (tsc_ns - realtime) * 1_000_000_000 // realtime


def _error(src: ChildResult, dst: ChildResult) -> str | None:
    """Each side's error, once: a side that only relays the other's ERROR is not repeated."""
    texts = {r.role: str(r.record["error"]) for r in (src, dst) if r.record.get("error")}
    if "source" in texts and "destination" in texts and texts["source"].endswith(texts["destination"]):
        del texts["source"]
    if "source" in texts and "destination" in texts and texts["destination"].endswith(texts["source"]):
        del texts["destination"]
    return "; ".join(f"{role}: {text}" for role, text in texts.items()) or None


def clock_state_ns(src: dict[str, Any], dst: dict[str, Any], guest_on: str) -> dict[str, int]:
    """What the clock state added to the downtime: the steps inside the stop, and the CLOCK message."""
    stop_phases = {"source": ("pause", "save", "nap"), "destination": ("restore", "restore_resume", "nap")}
    source_steps = sum(
        r.duration_ns for r in _records(src) if r.phase in stop_phases["source"] and r.step != "nap-request"
    )
    if guest_on == "source":
        source_steps += sum(r.duration_ns for r in _records(src) if r.phase == "resume")
    destination_steps = sum(r.duration_ns for r in _records(dst) if r.phase in stop_phases["destination"])
    message = int(src.get("clock_message_ns", 0)) + int(dst.get("clock_message_ns", 0))
    return {
        "source_steps": source_steps,
        "destination_steps": destination_steps,
        "clock_message": message,
        "total": source_steps + destination_steps + message,
    }


def assemble(
    policy: VmmPolicy,
    options: MigrationOptions,
    facts: HostFacts,
    src: ChildResult,
    dst: ChildResult,
    namespaces: tuple[str, str] | None,
) -> MigrationReport:
    s, d = src.record, dst.record
    if d.get("guest_resumed_here"):
        guest_on, after = "destination", d.get("samples", {}).get("first")
        later = d.get("samples", {}).get("later")
    elif s.get("guest_resumed_here"):
        guest_on, after = "source", s.get("samples", {}).get("resumed")
        later = s.get("samples", {}).get("later")
    else:
        guest_on, after, later = "nowhere", None, None
    migrated = guest_on == "destination"
    error = _error(src, dst)
    outcome = "migrated" if migrated and error is None else "failed"
    before = s.get("samples", {}).get("last")
    measurement = agree = None
    khz = int(s.get("tsc_khz") or facts.tsc_khz)
    if before is not None and after is not None:
        measurement = measure(before, after, khz)
        records = _records(s)
        timeline = Timeline(
            policy=policy,
            source_created=int(s["vm_created_realtime"]),
            source_started=int(s["vm_started_realtime"]),
            source_steps=tuple(r for r in records if r.phase in ("pause", "save", "resume")),
            destination_created=d.get("vm_created_realtime"),
            destination_steps=tuple(r for r in _records(d) if r.phase in ("restore", "restore_resume")),
            resumed_on=guest_on,
            drift_ppb=_drift_ppb(s.get("samples", {}).get("first") or before, later or after, khz),
        )
        agree = agreement(timeline, facts, measurement)
    return MigrationReport(
        policy=policy,
        options=options,
        facts=facts,
        source=src,
        destination=dst,
        namespaces=namespaces,
        outcome=outcome,
        guest_on=guest_on,
        stopped="stop_realtime" in s,
        error=error,
        measurement=measurement,
        agreement=agree,
        clock_state=clock_state_ns(s, d, guest_on),
        steps=[*_records(s), *_records(d)],
    )


def migrate(options: MigrationOptions, facts: HostFacts) -> MigrationReport:
    """One migration, end to end; raises :class:`MigrationSetupError` or :class:`netns.NetnsError`
    when the two VMMs could not be set up, and ValueError for a policy it does not run."""
    policy = migrate_policy(options.policy)
    with ExitStack() as stack:
        pair = stack.enter_context(netns.namespace_pair()) if options.netns else None
        src, dst = run_children(options, pair)
        names = None if pair is None else (pair.source, pair.destination)
    return assemble(policy, options, facts, src, dst, names)
