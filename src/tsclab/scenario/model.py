"""A scenario as the simulator reads it: validated, typed, integer ns.

Built by :mod:`tsclab.scenario.load` from a TOML file; the format is
documented in ``docs/scenarios.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

WorkloadKind = Literal["reader", "timer", "idle", "blocked-task"]
ReaderPath = Literal["kernel", "vdso"]
EventAction = Literal["pause", "stop", "snapshot", "migrate", "host-suspend"]
GuestClocksource = Literal["tsc", "kvm-clock", "hpet", "acpi_pm"]
Watchdog = Literal["hpet", "acpi_pm", "none"]
Scaling = Literal["vmx", "svm", "none"]
HostClocksource = Literal["tsc", "hpet"]
SuspendTsc = Literal["reset", "nonstop"]

GUEST_CLOCKSOURCES = ("tsc", "kvm-clock", "hpet", "acpi_pm")
EVENT_ACTIONS = ("pause", "stop", "snapshot", "migrate", "host-suspend")
WORKLOAD_KINDS = ("reader", "timer", "idle", "blocked-task")


@dataclass(frozen=True, slots=True)
class Workload:
    """What one vCPU runs.

    ``reader``: a busy loop reading ``clocks`` through ``path`` every
    ``every_ns`` of true time (the vCPU never idles), starting ``phase_ns``
    into the period (drawn from the seed unless given).  ``timer``: a periodic
    CLOCK_MONOTONIC timer of period ``every_ns`` (named ``name``).  ``idle``:
    the vCPU sleeps in NOHZ idle between its timers.  ``blocked-task``: a task
    in D state that wakes every ``every_ns`` of guest time.
    """

    kind: WorkloadKind
    vcpu: int
    every_ns: int = 0
    clocks: tuple[str, ...] = ()
    path: ReaderPath = "vdso"
    name: str = ""
    phase_ns: int | None = None  # a reader's first read within its period; None: drawn from the seed


@dataclass(frozen=True, slots=True)
class GuestSpec:
    vcpus: int
    clocksource: GuestClocksource
    kernels: tuple[str, ...]  # kernel profile names
    hz: int = 250
    tsc_khz: int | None = None  # the guest's TSC rate; None: the first host's
    watchdog: Watchdog = "hpet"  # the clocksource watchdog's reference counter
    ntp: bool = True  # an NTP daemon keeps the guest synchronised before the story starts
    # RCU grace periods always in flight (a workload queueing callbacks:
    # file, network or memory churn).  A quiet guest has none most of the
    # time, and then no RCU stall can be reported after a pause.
    rcu_busy: bool = False
    epoch_s: int = 1_767_225_600  # REALTIME at boot (2026-01-01T00:00:00Z)
    watchdog_thresh_s: int = 10  # kernel.watchdog_thresh
    hung_task_timeout_s: int = 120
    rcu_stall_timeout_s: int = 21
    workload: tuple[Workload, ...] = ()


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    tsc_khz: int  # what the host kernel calibrated
    drift_ppb: int = 0  # the TSC's true rate against its calibration, parts per billion
    uptime_ns: int = 3_600 * 1_000_000_000  # how long the host had run when the guest booted
    realtime_error_ns: int = 0  # host CLOCK_REALTIME minus true UTC
    scaling: Scaling = "vmx"
    clocksource: HostClocksource = "tsc"  # TSC-based: KVM can use its master clock
    tsc_in_suspend: SuspendTsc = "reset"  # S3 resets the TSC; s2idle keeps it running
    kvm: tuple[int, int] = (6, 8)  # the host's KVM version (behaviour boundaries)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happens to the guest, at true time ``at_ns`` since boot.

    ``pause``: the VMM pauses and resumes after ``duration_ns``.  ``stop``: the
    VMM process is stopped (SIGSTOP, host overload) for ``duration_ns``; no VMM
    code runs.  ``snapshot``: saved, the VM torn down, restored after
    ``duration_ns`` on ``to`` (default: the same host).  ``migrate``: live
    migration to ``to``: ``precopy_ns`` of the guest running, then a
    stop-and-copy downtime of ``duration_ns``.  ``host-suspend``: the host
    sleeps for ``duration_ns``.
    """

    at_ns: int
    action: EventAction
    duration_ns: int
    to: str | None = None
    precopy_ns: int = 0
    clock_realtime: bool = False  # the VMM asks KVM_SET_CLOCK to add the elapsed realtime
    unresponsive: bool = False  # the guest does not answer a nap request (read only by policies that ask one)


@dataclass(frozen=True, slots=True)
class Expectation:
    """The verdict IDs a (kernel, vmm) combination must show; ``*`` matches any."""

    kernel: str
    vmm: str
    verdicts: frozenset[str]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    guest: GuestSpec
    hosts: tuple[HostSpec, ...]  # the guest boots on the first
    vmms: tuple[str, ...]  # VMM policy names (with optional @version)
    events: tuple[Event, ...]  # in time order
    settle_ns: int = 30 * 1_000_000_000  # run on after the last event
    realtime_bound_ns: int = 1_000_000_000  # REALTIME error tolerated by the realtime-error check
    timer_late_bound_ns: int = 50_000_000
    sources: tuple[str, ...] = ()  # the public reports it reproduces
    expect: tuple[Expectation, ...] = ()
    path: str = field(default="", compare=False)  # where it was read from

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
