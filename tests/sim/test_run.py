"""One combination from boot to the end: each event's steps, times and Interruption record.

The guest: 2 vCPUs on kvm-clock, no clocksource watchdog, each vCPU a busy
reader of MONOTONIC and BOOTTIME every 100 ms from phase 0; two 2.5 GHz hosts
("host", where it boots, and "dst"), KVM 6.8.  Every event starts at 1 s and
lasts 2 s; the run settles 1 s after it.  A KVM ioctl takes IOCTL_NS (10 us).
"""

from __future__ import annotations

import pytest

from tsclab.check.verdict import RunResult
from tsclab.host.vmm_policies import resolve_policy
from tsclab.host.vmm_steps import IOCTL_NS
from tsclab.lab import run_one
from tsclab.scenario.library import load_builtin
from tsclab.scenario.model import (
    Event,
    GuestClocksource,
    GuestSpec,
    HostSpec,
    Scenario,
    Watchdog,
    Workload,
)
from tsclab.sim.run import Run, event_end_ns, not_applicable, run_combination, run_end_ns
from tsclab.sim.trace import Interruption, RunTrace, TimelineEvent

S = 1_000_000_000
MS = 1_000_000
US = 1_000
EPOCH = 1_767_225_600 * S
KERNEL = "linux-6.13"
AT, DURATION = 1 * S, 2 * S
TWO_HOSTS = (HostSpec("host", 2_500_000), HostSpec("dst", 2_500_000))


def make_scenario(
    *events: Event,
    vcpus: int = 2,
    clocksource: GuestClocksource = "kvm-clock",
    watchdog: Watchdog = "none",
    hosts: tuple[HostSpec, ...] = TWO_HOSTS,
    phase_ns: int | None = 0,
    settle_ns: int = 1 * S,
) -> Scenario:
    workload = tuple(
        Workload("reader", v, every_ns=100 * MS, clocks=("MONOTONIC", "BOOTTIME"), phase_ns=phase_ns)
        for v in range(vcpus)
    )
    return Scenario(
        name="run-test",
        description="one event",
        guest=GuestSpec(vcpus, clocksource, (KERNEL,), watchdog=watchdog, workload=workload),
        hosts=hosts,
        vmms=("qemu",),
        events=events,
        settle_ns=settle_ns,
    )


def execute(
    *events: Event, vmm: str = "qemu", vcpus: int = 2, hosts: tuple[HostSpec, ...] = TWO_HOSTS
) -> tuple[Run, RunTrace]:
    run = Run(make_scenario(*events, vcpus=vcpus, hosts=hosts), KERNEL, vmm, 0)
    return run, run.execute()


def calls(trace: RunTrace, actor: str, start: int, end: int) -> list[tuple[int, str]]:
    return [(e.t_ns, e.kind) for e in trace.events if e.actor == actor and start <= e.t_ns <= end]


def monotonic_lag(trace: RunTrace, after_ns: int) -> int:
    """True time minus MONOTONIC at the first read at or after ``after_ns``."""
    first = next(s for s in trace.samples if s.clock == "MONOTONIC" and s.t_ns >= after_ns)
    return first.t_ns - first.value_ns


# --- ends -----------------------------------------------------------------------------------------


def test_event_and_run_ends() -> None:
    migrate = Event(10 * S, "migrate", 2 * S, to="dst", precopy_ns=1 * S)
    assert event_end_ns(migrate) == 13 * S
    assert event_end_ns(Event(10 * S, "pause", 5 * S)) == 15 * S
    scenario = make_scenario(Event(1 * S, "pause", 1 * S), migrate, settle_ns=4 * S)
    assert run_end_ns(scenario) == 17 * S
    assert run_end_ns(make_scenario(settle_ns=4 * S)) == 4 * S  # no events: the settle alone


def test_the_trace_of_a_run() -> None:
    run, trace = execute(Event(AT, "stop", DURATION))
    assert (trace.scenario, trace.kernel, trace.vmm, trace.seed, trace.vcpus) == (
        "run-test",
        KERNEL,
        "qemu@7.2",
        0,
        2,
    )
    assert trace.epoch_ns == EPOCH
    assert trace.end_ns == run_end_ns(run.scenario) == 4 * S
    assert trace.realtime_bound_ns == 1 * S
    assert trace.boot_values == {
        "REALTIME": EPOCH,
        "TAI": EPOCH,
        "MONOTONIC": 0,
        "BOOTTIME": 0,
        "MONOTONIC_RAW": 0,
    }
    assert trace.skipped == ""
    times = [e.t_ns for e in trace.events]
    assert times == sorted(times)
    # Reads at 0, 0.1, ... 4.0 s on both vCPUs, plus the last reads at the stop (1 s, on the grid too)
    # and the first at SIGCONT (3 s, on the grid too).
    per_vcpu = [s.t_ns for s in trace.samples if s.vcpu == 0 and s.clock == "MONOTONIC"]
    assert per_vcpu.count(1 * S) == 2  # the grid read, then the last read as the VMM stops
    assert per_vcpu[-1] == 4 * S


def test_the_seed_draws_the_reader_phases() -> None:
    scenario = make_scenario(Event(AT, "stop", DURATION), phase_ns=None)
    first = run_combination(scenario, KERNEL, "qemu", seed=1)
    assert run_combination(scenario, KERNEL, "qemu", seed=1) == first
    other = run_combination(scenario, KERNEL, "qemu", seed=2)
    assert [s.t_ns for s in other.samples[:4]] != [s.t_ns for s in first.samples[:4]]
    assert first.samples[0].t_ns < 100 * MS  # the first read lies within the first period


# --- pause ----------------------------------------------------------------------------------------


def test_qemu_pause() -> None:
    run, trace = execute(Event(AT, "pause", DURATION))
    # Resume: KVM_SET_CLOCK, then KVM_KVMCLOCK_CTRL on each of 2 vCPUs: 3 ioctls.
    end = AT + DURATION + 3 * IOCTL_NS
    assert trace.interruptions == [Interruption(AT, end, "pause", hidden=True, nap=False)]
    assert calls(trace, "guest", AT, end) == [(AT, "vcpus-stopped"), (end, "vcpus-run")]
    assert calls(trace, "kvm", AT, end - 1) == [
        (AT, "KVM_GET_MSRS"),
        (AT + IOCTL_NS, "KVM_GET_MSRS"),
        (AT + 2 * IOCTL_NS, "KVM_GET_CLOCK"),
        (AT + DURATION, "KVM_SET_CLOCK"),
        (AT + DURATION + IOCTL_NS, "KVM_KVMCLOCK_CTRL"),
        (AT + DURATION + 2 * IOCTL_NS, "KVM_KVMCLOCK_CTRL"),
    ]
    assert TimelineEvent(AT, "vmm", "pause", "for 2 s") in trace.events
    # QEMU's devices stop with the VM: the device clock lost the whole interruption.
    assert run.platform.devices.ns(trace.end_ns) == trace.end_ns - (end - AT)
    # kvmclock was read at 1 s + 20 us and written back at 3 s: MONOTONIC lags by the 1.99998 s between.
    assert abs(monotonic_lag(trace, end) - (AT + DURATION - (AT + 2 * IOCTL_NS))) <= 5


def test_firecracker_pause() -> None:
    run, trace = execute(Event(AT, "pause", DURATION), vmm="firecracker")
    # Firecracker's resume has no steps, and it hides only snapshots.
    assert trace.vmm == "firecracker@1.13"
    assert trace.interruptions == [Interruption(AT, AT + DURATION, "pause", hidden=False, nap=False)]
    assert run.platform.devices.ns(trace.end_ns) == trace.end_ns  # its device clock does not stop
    # kvmclock was never frozen: MONOTONIC counted the pause.
    assert abs(monotonic_lag(trace, AT + DURATION)) <= 5


# --- stop -----------------------------------------------------------------------------------------


def test_stop_runs_no_vmm_code_and_every_counter_runs_on() -> None:
    run, trace = execute(Event(AT, "stop", DURATION))
    assert trace.interruptions == [Interruption(AT, AT + DURATION, "stop", hidden=False, nap=False)]
    assert calls(trace, "kvm", AT, AT + DURATION - 1) == []
    assert calls(trace, "guest", AT, AT + DURATION) == [(AT, "vcpus-stopped"), (AT + DURATION, "vcpus-run")]
    assert run.platform.devices.ns(trace.end_ns) == trace.end_ns
    assert abs(monotonic_lag(trace, AT + DURATION)) <= 5
    assert run.platform.stopped == [(AT, AT + DURATION)]


# --- snapshot -------------------------------------------------------------------------------------


def test_qemu_snapshot_restored_on_the_same_host() -> None:
    run, trace = execute(Event(AT, "snapshot", DURATION))
    restore = AT + DURATION
    # set-tsc-khz-or-warn: KVM_GET_TSC_KHZ on each of 2 vCPUs, the same rate so no set: 2 ioctls;
    # set-tsc-msrs 2, enable-pvclock 2, set-clock 1, kvmclock-ctrl 2: 9 ioctls.
    end = restore + 9 * IOCTL_NS
    assert trace.interruptions == [Interruption(AT, end, "snapshot", hidden=True, nap=True)]
    assert (restore, "KVM_CREATE_VM") in calls(trace, "kvm", restore, restore)
    assert run.host is run.hosts["host"]
    assert run.kvm.host is run.hosts["host"]
    # The save's KVM_GET_CLOCK (after pause's 2 MSR reads and its own get-clock) came at 1 s + 30 us; the
    # restore's KVM_SET_CLOCK after 2 rate reads, 2 MSR writes and 2 pvclock enables, at 3 s + 60 us:
    # MONOTONIC lags by the 2.00003 s between.
    assert abs(monotonic_lag(trace, end) - (restore + 6 * IOCTL_NS - (AT + 3 * IOCTL_NS))) <= 5


def test_snapshot_with_clock_realtime_is_not_hidden() -> None:
    _, trace = execute(Event(AT, "snapshot", DURATION, clock_realtime=True))
    (cut,) = trace.interruptions
    assert (cut.hidden, cut.nap) == (False, True)
    assert TimelineEvent(AT, "vmm", "snapshot", "for 2 s, clock_realtime") in trace.events
    # The save read kvmclock and the host realtime together at 1 s + 30 us; the restore's KVM_SET_CLOCK
    # at 3 s + 40 us added the realtime elapsed since (2.00001 s): kvmclock reads as if it never stopped.
    assert abs(monotonic_lag(trace, cut.end_ns)) <= 5


def test_snapshot_restored_on_another_host() -> None:
    run, trace = execute(Event(AT, "snapshot", DURATION, to="dst"))
    assert run.host is run.hosts["dst"]
    assert TimelineEvent(AT + DURATION, "kvm", "KVM_CREATE_VM", "host dst, KVM 6.8") in trace.events
    assert trace.events[-1].t_ns <= trace.end_ns


# --- migrate --------------------------------------------------------------------------------------


def test_migrate() -> None:
    run, trace = execute(Event(AT, "migrate", DURATION, to="dst", precopy_ns=1 * S))
    stop = AT + 1 * S
    end = stop + DURATION + 9 * IOCTL_NS  # the same restore steps as a snapshot
    assert trace.interruptions == [Interruption(stop, end, "migrate", hidden=True, nap=True)]
    # The destination VM is created when pre-copy starts; the guest runs on through pre-copy.
    assert TimelineEvent(AT, "kvm", "KVM_CREATE_VM", "host dst, KVM 6.8") in trace.events
    assert TimelineEvent(AT, "vmm", "migrate", "for 2 s, after 1 s of pre-copy, to dst") in trace.events
    during_precopy = [
        s.t_ns for s in trace.samples if AT < s.t_ns < stop and s.vcpu == 0 and s.clock == "MONOTONIC"
    ]
    assert during_precopy == [AT + k * 100 * MS for k in range(1, 10)]
    assert calls(trace, "guest", AT, end) == [(stop, "vcpus-stopped"), (end, "vcpus-run")]
    assert run.host is run.hosts["dst"]
    assert run.platform.kvm is run.kvm
    assert run.kvm.host is run.hosts["dst"]


def test_a_refused_ioctl_is_a_note_and_the_migration_completes() -> None:
    # A 2.5 GHz guest to a 3 GHz host without TSC scaling: KVM_SET_TSC_KHZ is refused; QEMU warns.
    hosts = (HostSpec("host", 2_500_000), HostSpec("dst", 3_000_000, scaling="none"))
    _, trace = execute(Event(AT, "migrate", DURATION, to="dst", precopy_ns=1 * S), vcpus=1, hosts=hosts)
    notes = [(e.actor, e.detail) for e in trace.events if e.kind == "note"]
    assert notes == [
        (
            "vmm",
            "TSC frequency mismatch on vCPU 0, carrying on: KVM_SET_TSC_KHZ: EINVAL "
            "(vcpu0 2500000 kHz: user requested TSC rate below hardware speed)",
        )
    ]
    (cut,) = trace.interruptions
    # KVM_GET_TSC_KHZ (3 GHz here), the refused KVM_SET_TSC_KHZ - an ioctl all the same - then
    # set-tsc-msrs, enable-pvclock, set-clock and kvmclock-ctrl on the one vCPU: 6 ioctls.
    assert cut.end_ns == 2 * S + DURATION + 6 * IOCTL_NS
    # The warning is logged when the refused ioctl returns, 2 ioctls into the restore.
    (warning,) = [e for e in trace.events if e.kind == "note"]
    assert warning.t_ns == 2 * S + DURATION + 2 * IOCTL_NS
    assert any(s.t_ns >= cut.end_ns for s in trace.samples)


# --- host-suspend ---------------------------------------------------------------------------------


def test_host_suspend() -> None:
    run, trace = execute(Event(AT, "host-suspend", DURATION))
    assert trace.interruptions == [Interruption(AT, AT + DURATION, "host-suspend", hidden=False, nap=True)]
    assert [(s.start_ns, s.duration_ns) for s in run.hosts["host"].suspends] == [(AT, DURATION)]
    assert calls(trace, "kvm", AT, AT + DURATION - 1) == [(AT, "PM_SUSPEND_PREPARE")]
    assert (AT + DURATION, "resume") in calls(trace, "kvm", AT + DURATION, AT + DURATION)
    # The device clock stands still while the host sleeps.
    assert run.platform.devices.ns(trace.end_ns) == trace.end_ns - DURATION
    # kvmclock's base (the host's boot time) gained the sleep: MONOTONIC counted it.
    assert abs(monotonic_lag(trace, AT + DURATION)) <= 5


# --- combinations that do not apply ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("clocksource", "watchdog", "vmm", "reason"),
    [
        ("hpet", "none", "firecracker", "firecracker@1.13 gives the guest no hpet (its clocksource)"),
        ("tsc", "acpi_pm", "firecracker@1.12", "firecracker@1.12 gives the guest no acpi_pm (its watchdog)"),
        ("acpi_pm", "hpet", "upstream-doc", "upstream-doc@5.16 gives the guest no acpi_pm (its clocksource)"),
        (
            "tsc",
            "hpet",
            "cloud-hypervisor",
            "cloud-hypervisor@offset-sync gives the guest no hpet (its watchdog)",
        ),
        ("hpet", "acpi_pm", "qemu", ""),
        ("tsc", "hpet", "tsc-state", ""),
        ("kvm-clock", "none", "scale-aware", ""),
    ],
)
def test_not_applicable(clocksource: GuestClocksource, watchdog: Watchdog, vmm: str, reason: str) -> None:
    scenario = make_scenario(Event(AT, "pause", DURATION), clocksource=clocksource, watchdog=watchdog)
    assert not_applicable(scenario, resolve_policy(vmm)) == reason


def test_a_skipped_combination_runs_nothing() -> None:
    scenario = make_scenario(Event(AT, "pause", DURATION), clocksource="hpet")
    trace = run_combination(scenario, KERNEL, "firecracker")
    assert trace.skipped == "firecracker@1.13 gives the guest no hpet (its clocksource)"
    assert (trace.samples, trace.events, trace.interruptions, trace.boot_values) == ([], [], [], {})
    assert (trace.vmm, trace.end_ns) == ("firecracker@1.13", 0)


def test_unknown_policy_and_profile_are_refused() -> None:
    scenario = make_scenario(Event(AT, "pause", DURATION))
    with pytest.raises(ValueError, match="unknown VMM policy"):
        run_combination(scenario, KERNEL, "vmware")
    with pytest.raises(ValueError, match="unknown kernel profile"):
        run_combination(scenario, "linux-2.6", "qemu")


def test_an_event_starting_as_the_previous_ends_waits_for_its_resume() -> None:
    """Pause 1 s at 1 s, then a 1 s stop 'at 2 s': QEMU's resume steps end at 2.00002 s."""
    scenario = Scenario(
        name="back-to-back",
        description="two events back to back",
        guest=GuestSpec(
            vcpus=1,
            clocksource="kvm-clock",
            kernels=(KERNEL,),
            watchdog="none",
            workload=(Workload("reader", 0, every_ns=100 * MS, phase_ns=0),),
        ),
        hosts=(HostSpec("h", 2_500_000),),
        vmms=("qemu",),
        events=(Event(1 * S, "pause", 1 * S), Event(2 * S, "stop", 1 * S)),
        settle_ns=1 * S,
    )
    trace = run_one(scenario, KERNEL, "qemu", 0).trace
    pause, stop = trace.interruptions
    # QEMU's resume: SET_CLOCK and one KVMCLOCK_CTRL, 10 us each.
    resumed = 2 * S + 2 * IOCTL_NS
    assert (pause.start_ns, pause.end_ns) == (1 * S, resumed)
    # The stop waits for the vCPUs to run again, then lasts its full second: the two never overlap.
    assert (stop.start_ns, stop.end_ns) == (resumed, resumed + 1 * S)
    vmm = [(e.t_ns, e.kind, e.detail) for e in trace.events if e.actor in ("vmm", "guest")]
    assert vmm == [
        (1 * S, "pause", "for 1 s"),
        (1 * S, "vcpus-stopped", "VMM pause"),
        (2 * S, "note", "stop waits for the previous operation to finish"),
        (resumed, "vcpus-run", "VMM resume"),
        (resumed, "stop", "for 1 s"),
        (resumed, "vcpus-stopped", "VMM process stopped (SIGSTOP)"),
        (resumed + 1 * S, "vcpus-run", "SIGCONT"),
    ]
    # No reads while stopped, and one reader chain afterwards (every 100 ms, no doubles).
    reads = [s.t_ns for s in trace.samples if s.clock == "MONOTONIC"]
    assert not [t for t in reads if resumed < t < resumed + 1 * S]
    after = [t for t in reads if t > resumed + 1 * S]
    assert len(after) == len(set(after))


# --- the clocksource counter: its width and when it stood still -------------------------------------


def test_a_switch_to_the_hpet_lowers_the_counter_width_to_32_bits() -> None:
    # A 15 min host sleep under KVM 5.10 (no PM notifier): the guest's TSC jumps, its HPET does not, and
    # linux-5.10's watchdog marks the TSC unstable and switches to the 32-bit HPET.
    trace = run_one(load_builtin("host-sleep-tsc-unstable"), "linux-5.10", "qemu", 0).trace
    assert "clocksource: Switched to clocksource hpet" in [m.text for m in trace.messages]
    assert trace.counter_bits == 32  # booted on the 64-bit TSC


def hpet_guest(event: Event) -> RunResult:
    """2 vCPUs on QEMU's HPET (100 MHz, 32 bits: it wraps every 2**32 * 10 ns = 42.94967296 s),
    watched by the ACPI PM timer."""
    return run_one(make_scenario(event, clocksource="hpet", watchdog="acpi_pm"), KERNEL, "qemu", 0)


def test_no_wrap_loss_for_an_hpet_guest_when_the_host_sleeps() -> None:
    # QEMU's device clock stands still for the host's 5 s sleep, and the HPET with it: MONOTONIC ends
    # 5 s behind true time, but no wrap swallowed anything.
    result = hpet_guest(Event(AT, "host-suspend", 5 * S))
    trace = result.trace
    assert trace.counter_bits == 32
    assert trace.counter_stopped == [(AT, AT + 5 * S)]
    last = [s for s in trace.samples if s.clock == "MONOTONIC"][-1]
    assert last.t_ns - last.value_ns == 5 * S
    assert "wrap-loss" not in result.ids


def test_wrap_loss_for_an_hpet_guest_stopped_past_a_wrap() -> None:
    # A 46 s SIGSTOP: the device clock (and so the HPET) runs on through it; one wrap is swallowed.
    result = hpet_guest(Event(AT, "stop", 46 * S))
    assert result.trace.counter_stopped == []
    (loss,) = [v for v in result.verdicts if v.id == "wrap-loss"]
    assert loss.magnitude == (1 << 32) * 10  # one HPET wrap: 42.949672960 s
    # The last MONOTONIC read of the run (at its end, 48 s) is vCPU 1's.
    assert (loss.t_ns, loss.vcpu) == (48 * S, 1)
    assert loss.event == "MONOTONIC on vCPU 1 is 42.950 s behind at the end of the run"


def test_counter_stopped_only_for_an_emulated_clocksource() -> None:
    # The same host sleep stops QEMU's device clock, but a kvm-clock guest does not count on it.
    run, trace = execute(Event(AT, "host-suspend", 5 * S))
    assert run.platform.devices.stopped == [(AT, AT + 5 * S)]
    assert trace.counter_stopped == []


def test_counter_stops_count_only_while_the_guest_reads_the_device_counter() -> None:
    """host-sleep-tsc-unstable on 5.10: the 900 s sleep passed on the TSC; a later stop on the HPET."""
    from dataclasses import replace

    from tsclab.arith import NSEC_PER_SEC as S
    from tsclab.lab import run_one
    from tsclab.scenario.library import load_builtin
    from tsclab.scenario.model import Event

    scenario = load_builtin("host-sleep-tsc-unstable")
    plain = run_one(scenario, "linux-5.10", "qemu", 0)
    # The guest ran on the TSC while the host slept (the HPET stood still
    # then, but timekeeping did not read it): nothing to excuse.
    assert plain.trace.counter_stopped == []
    # The switch to the HPET cost a few ms - not a wrap (less than half of one).
    assert "wrap-loss" not in plain.ids
    assert plain.trace.counter_wrap_ns == (1 << 32) * 10  # QEMU's 100 MHz HPET
    # A 46 s SIGSTOP after the switch loses one HPET wrap for good.
    later = replace(scenario, events=(*scenario.events, Event(940 * S, "stop", 46 * S)))
    loss = next(v for v in run_one(later, "linux-5.10", "qemu", 0).verdicts if v.id == "wrap-loss")
    assert abs(loss.magnitude - (1 << 32) * 10) < 10_000_000


def test_an_event_delayed_past_the_planned_end_still_finishes_and_settles() -> None:
    """Pause 1 s at 1 s, stop 1 s 'at 2 s', settle 0: the stop waits 20 us, so SIGCONT is at 3.00002 s."""
    from dataclasses import replace

    from tsclab.arith import NSEC_PER_SEC as S
    from tsclab.lab import run_one
    from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload

    scenario = Scenario(
        name="late-end",
        description="an event delayed past the planned end",
        guest=GuestSpec(
            vcpus=1,
            clocksource="kvm-clock",
            kernels=("linux-6.13",),
            watchdog="none",
            workload=(Workload("reader", 0, every_ns=100_000_000, phase_ns=0),),
        ),
        hosts=(HostSpec("h", 2_500_000),),
        vmms=("qemu",),
        events=(Event(1 * S, "pause", 1 * S), Event(2 * S, "stop", 1 * S)),
        settle_ns=0,
    )
    trace = run_one(scenario, "linux-6.13", "qemu", 0).trace
    assert [(i.action, i.end_ns) for i in trace.interruptions] == [
        ("pause", 2 * S + 20_000),
        ("stop", 3 * S + 20_000),
    ]
    assert trace.end_ns == 3 * S + 20_000
    # With a settle long enough to cover the delay, the planned end stands.
    settled = run_one(replace(scenario, settle_ns=1 * S), "linux-6.13", "qemu", 0).trace
    assert settled.end_ns == 4 * S


def test_kvm_refreshes_the_pvclock_pages_every_300_s_while_the_vm_exists() -> None:
    """kvmclock_sync_fn: at 300 s and 600 s of a paused VM; none while a snapshot's VM is torn down."""
    from tsclab.arith import NSEC_PER_SEC as S
    from tsclab.lab import run_one
    from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload

    def syncs(events: tuple[Event, ...]) -> list[int]:
        scenario = Scenario(
            name="sync",
            description="KVM's periodic clock update",
            guest=GuestSpec(
                vcpus=1,
                clocksource="kvm-clock",
                kernels=("linux-6.13",),
                watchdog="none",
                workload=(Workload("reader", 0, every_ns=1 * S),),
            ),
            hosts=(HostSpec("h", 2_500_000),),
            vmms=("qemu",),
            events=events,
            settle_ns=1 * S,
        )
        trace = run_one(scenario, "linux-6.13", "qemu", 0).trace
        return [e.t_ns // S for e in trace.events if e.kind == "kvmclock_sync_fn"]

    # The guest runs only 1 s before and after: cheap, and the VM exists throughout the pause.
    assert syncs((Event(1 * S, "pause", 650 * S),)) == [300, 600]
    assert syncs((Event(1 * S, "snapshot", 650 * S),)) == []
