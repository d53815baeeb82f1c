"""What a simulated run leaves behind: the trace the checks and the report read.

The simulator appends; nothing here knows how the values were produced.
Times are integer ns of true time since the guest booted; guest clock
values are integer ns as the guest read them (``ktime``, REALTIME counts
from the Unix epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The clocks a reader samples, in the order reports list them.
CLOCKS = ("REALTIME", "MONOTONIC", "BOOTTIME", "MONOTONIC_RAW", "TAI")


@dataclass(frozen=True, slots=True)
class Sample:
    """One clock read by one reader on one vCPU."""

    t_ns: int  # true time of the read
    vcpu: int
    clock: str  # one of CLOCKS
    path: str  # "kernel" (the syscall) or "vdso"
    value_ns: int
    reader_path: str = ""  # the branch the reader took (e.g. "slow-path", "negative-clamp"); "" = plain
    wrap_loss_ns: int = 0  # a wrapped delta*mult: how far the value fell short of the exact arithmetic


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A host, VMM or KVM step, or a guest phase, in the order it happened."""

    t_ns: int
    actor: str  # "host:<name>", "vmm", "kvm", "guest"
    kind: str  # e.g. "pause", "resume", "KVM_SET_CLOCK", "snapshot-save", "vcpus-run"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KernelMessage:
    """A line the guest kernel printed (what a detector said, as dmesg would show it)."""

    t_ns: int
    vcpu: int
    kind: str  # "softlockup", "rcu-stall", "hung-task", "clocksource-unstable", "long-readout", ...
    text: str
    value: int = 0  # the figure the line carries, in its own unit (e.g. seconds stuck)


@dataclass(frozen=True, slots=True)
class TimerFire:
    """A guest timer's callback ran; ``late_ns`` is true time past its intended moment."""

    t_ns: int
    vcpu: int
    name: str  # "tick", "watchdog", a workload timer's name
    due_true_ns: int  # when it should have run: armed at + its period in true time
    late_ns: int


@dataclass(frozen=True, slots=True)
class NtpState:
    """The guest's NTP status after a timekeeping update."""

    t_ns: int
    unsync: bool
    maxerror_us: int
    growth_us: int = 0  # how much one timekeeping update grew maxerror


@dataclass(frozen=True, slots=True)
class Stall:
    """A reader that could not finish (spun past its bound)."""

    t_ns: int
    vcpu: int
    where: str
    spins: int


@dataclass(frozen=True, slots=True)
class Interruption:
    """A stretch of true time the guest's vCPUs did not run, and what it was."""

    start_ns: int
    end_ns: int
    action: str  # the scenario event: pause, stop, snapshot, migrate, host-suspend
    hidden: bool  # the VMM freezes kvmclock across it on purpose: MONOTONIC must not jump
    nap: bool  # a nap the guest was put through: BOOTTIME should count it


@dataclass(slots=True)
class RunTrace:
    """Everything one (scenario, kernel profile, VMM policy, seed) run observed."""

    scenario: str
    kernel: str
    vmm: str
    seed: int
    vcpus: int
    epoch_ns: int  # true UTC at guest boot (true time 0), ns since the Unix epoch
    end_ns: int = 0
    # Each clock's value at true time 0 had it started there exactly: a
    # sample's error against true time is value - (boot value + t).
    boot_values: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    messages: list[KernelMessage] = field(default_factory=list)
    timers: list[TimerFire] = field(default_factory=list)
    ntp: list[NtpState] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    interruptions: list[Interruption] = field(default_factory=list)
    realtime_bound_ns: int = 0  # the REALTIME error a check tolerates
    counter_bits: int = 64  # the narrowest clocksource counter timekeeping ran on
    counter_wrap_ns: int = 0  # how long that counter takes to wrap, if narrower than 64 bits (else 0)
    # Intervals the guest's clocksource counter itself stood still (an
    # emulated HPET or ACPI PM timer while the VMM's device clock stopped):
    # time the counter never showed, not time its wraps lost.
    counter_stopped: list[tuple[int, int]] = field(default_factory=list)
    skipped: str = ""  # non-empty: this combination does not apply; the reason

    def true_utc_ns(self, t_ns: int) -> int:
        """True UTC at true time ``t_ns``."""
        return self.epoch_ns + t_ns

    def error_ns(self, sample: Sample) -> int:
        """How far ``sample`` is from true time: positive ahead, negative behind."""
        return sample.value_ns - (self.boot_values[sample.clock] + sample.t_ns)
