"""What the guest printed, parsed: the probe's lines and the kernel's log.

The probe's line formats are documented in ``probe.c``; every line keeps
its byte offset in the log, so the host can tell which lines were written
before a pause (the offset it recorded when it stopped the guest) and
which after.  Only the last line of a log may be cut short (QEMU is
stopped mid-line); any other malformed line is an error naming the file
and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PROBE_VERSION = 3
CLOCKS = ("REALTIME", "MONOTONIC", "BOOTTIME", "MONOTONIC_RAW")


class TraceError(Exception):
    """A guest log that is not what the probe or the kernel writes."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample: the TSC read just before every clock (ns)."""

    tsc: int
    clocks: dict[str, int]
    coarse: int  # CLOCK_MONOTONIC_COARSE: the time of the last timekeeping update

    @property
    def since_update_ns(self) -> int:
        """How long before this read timekeeping last updated (MONOTONIC - its coarse twin)."""
        return self.clocks["MONOTONIC"] - self.coarse


@dataclass(frozen=True, slots=True)
class Sample:
    cpu: int
    seq: int
    reading: Reading
    offset: int


@dataclass(frozen=True, slots=True)
class Step:
    """Two consecutive reads on one CPU that stepped: a clock back, or far forward."""

    cpu: int
    before: Reading
    after: Reading
    offset: int

    @property
    def tsc_cycles(self) -> int:
        return self.after.tsc - self.before.tsc

    def clock_step(self, clock: str) -> int:
        return self.after.clocks[clock] - self.before.clocks[clock]


@dataclass(frozen=True, slots=True)
class Frozen:
    """MONOTONIC returned one value over a TSC span longer than the jump threshold."""

    cpu: int
    tsc_first: int
    tsc_last: int
    mono: int
    reads: int
    offset: int


@dataclass
class ProbeLog:
    """Everything the probe and the init script wrote on ttyS1."""

    path: Path
    current_clocksource: str = ""
    available_clocksources: tuple[str, ...] = ()
    command_line: str = ""
    cpu_flags: frozenset[str] = frozenset()
    ncpus: int = 0
    interval_ns: int = 0
    jump_ns: int = 0
    tsc_per_ms: dict[int, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    frozen: list[Frozen] = field(default_factory=list)


def _ints(fields: list[str], count: int, where: str) -> list[int]:
    if len(fields) != count:
        raise TraceError(f"{where}: expected {count} numbers, got {len(fields)}")
    try:
        return [int(value) for value in fields]
    except ValueError:
        raise TraceError(f"{where}: expected whole numbers, got {' '.join(fields)!r}") from None


def _reading(values: list[int]) -> Reading:
    return Reading(values[0], dict(zip(CLOCKS, values[1:5], strict=True)), values[5])


def parse_probe_log(path: Path) -> ProbeLog:
    """Parse ttyS1's log; raise :class:`TraceError` naming the line at fault."""
    data = path.read_bytes()
    log = ProbeLog(path)
    offset = 0
    lines = data.split(b"\n")
    complete = lines[:-1]  # after the last newline: a cut-short line, or nothing
    for number, raw in enumerate(complete, start=1):
        where = f"{path}:{number}"
        text = raw.decode("ascii", "replace").rstrip("\r")
        _parse_probe_line(log, text, offset, where)
        offset += len(raw) + 1
    if not log.ncpus:
        raise TraceError(f"{path}: no probe header ('H ...' line): the probe never started")
    return log


def _parse_probe_line(log: ProbeLog, text: str, offset: int, where: str) -> None:
    tag, _, rest = text.partition(" ")
    fields = rest.split()
    if tag == "S":
        cpu, seq, *values = _ints(fields, 8, where)
        log.samples.append(Sample(cpu, seq, _reading(values), offset))
    elif tag == "J":
        cpu, *values = _ints(fields, 13, where)
        log.steps.append(Step(cpu, _reading(values[:6]), _reading(values[6:]), offset))
    elif tag == "F":
        cpu, first, last, mono, reads = _ints(fields, 5, where)
        log.frozen.append(Frozen(cpu, first, last, mono, reads, offset))
    elif tag == "K":
        cpu, per_ms = _ints(fields, 2, where)
        log.tsc_per_ms[cpu] = per_ms
    elif tag == "H":
        version, ncpus, interval, jump = _ints(fields, 4, where)
        if version != PROBE_VERSION:
            raise TraceError(f"{where}: probe version {version}, expected {PROBE_VERSION}: rebuild the guest")
        log.ncpus, log.interval_ns, log.jump_ns = ncpus, interval, jump
    elif tag == "C":
        if not fields:
            raise TraceError(f"{where}: expected the current clocksource")
        log.current_clocksource, log.available_clocksources = fields[0], tuple(fields[1:])
    elif tag == "U":
        log.command_line = rest.strip()
    elif tag == "G":
        log.cpu_flags = frozenset(fields)
    elif tag == "X":
        raise TraceError(f"{where}: the probe could not pin a reader to its CPU ({rest.strip()})")
    elif text.strip():
        raise TraceError(f"{where}: expected a probe line (H, K, S, J, F, C, U, G), got {text[:80]!r}")


# Kernel messages the check looks for, with the kernels that print them.
MESSAGE_PATTERNS: dict[str, re.Pattern[str]] = {
    # kernel/watchdog.c watchdog_timer_fn(), 5.x-6.x
    "softlockup": re.compile(r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<seconds>\d+)s!"),
    # kernel/time/clocksource.c clocksource_watchdog(), 6.3+ and 6.1.y stable
    "long-readout": re.compile(
        r"Long readout interval, skipping watchdog check: cs_nsec: (?P<cs_nsec>-?\d+) "
        r"wd_nsec: (?P<wd_nsec>-?\d+)"
    ),
    # kernel/time/clocksource.c __clocksource_unstable() callers
    "clocksource-unstable": re.compile(r"Marking clocksource '(?P<name>[^']+)' as unstable"),
    # arch/x86/kernel/tsc.c mark_tsc_unstable()
    "tsc-unstable": re.compile(r"Marking TSC unstable due to (?P<reason>.+)$"),
    # kernel/rcu/tree_stall.h: print_other_cpu_stall() / print_cpu_stall() (one vCPU: only the latter)
    "rcu-stall": re.compile(r"rcu: INFO: (?P<flavour>\S+) (?:self-)?detected stalls?"),
    "hung-task": re.compile(r"INFO: task (?P<task>\S+) blocked for more than (?P<seconds>\d+) seconds"),
    "switched": re.compile(r"clocksource: Switched to clocksource (?P<name>\S+)"),
    # boot facts the predictions need: the TSC rate the kernel registered, sched_clock stability
    "tsc-refined": re.compile(r"tsc: Refined TSC clocksource calibration: (?P<mhz>\d+)\.(?P<khz>\d{3}) MHz"),
    "sched-clock-stable": re.compile(r"sched_clock: Marking stable"),
}
_STAMP = re.compile(r"^\[\s*(?P<sec>\d+)\.(?P<usec>\d{6})\]\s?(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class KernelMessage:
    kind: str  # a key of MESSAGE_PATTERNS
    stamp_ns: int | None  # printk's timestamp (local_clock), if the line had one
    fields: dict[str, str]
    line: str
    offset: int


def parse_console_log(path: Path) -> list[KernelMessage]:
    """The kernel messages of interest, in order, each with its byte offset."""
    messages: list[KernelMessage] = []
    offset = 0
    for raw in path.read_bytes().split(b"\n"):
        text = raw.decode("utf-8", "replace").rstrip("\r")
        stamp: int | None = None
        body = text
        if match := _STAMP.match(text):
            stamp = int(match["sec"]) * 1_000_000_000 + int(match["usec"]) * 1000
            body = match["text"]
        for kind, pattern in MESSAGE_PATTERNS.items():
            if found := pattern.search(body):
                messages.append(KernelMessage(kind, stamp, found.groupdict(), text.strip(), offset))
        offset += len(raw) + 1
    return messages
