"""The thread's alternatives to the nap in whole runs: each one's mechanism, and what it cannot do.

The guest: 2 vCPUs, each a busy reader of every clock every 100 ms (at
phase 50 ms), a 10 ms application timer on vCPU 0, grace periods always in
flight; two 2.5 GHz hosts, "host" (where it boots) and "dst".  Every event
starts at 1 s; the run settles 30 s after it.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from tsclab.check.verdict import RunResult
from tsclab.host.vmm_policies import (
    GUEST_S3,
    MAX_SANE,
    NAP,
    QEMU,
    RESUME_IRQ,
    SCALE_AWARE,
    VMCLOCK,
    VmmPolicy,
)
from tsclab.kernel.nap_alternatives import S3_ANSWER_TIMEOUT_NS, S3_SUSPEND_NS, VMCLOCK_POLL_NS
from tsclab.lab import run_one
from tsclab.scenario.model import Event, GuestSpec, HostSpec, ReaderPath, Scenario, Workload
from tsclab.sim.run import Run
from tsclab.sim.trace import RunTrace, Sample, TimelineEvent

S = 1_000_000_000
MS = 1_000_000
AT = 1 * S
HOSTS = (HostSpec("host", 2_500_000), HostSpec("dst", 2_500_000))


def scenario(
    *events: Event,
    path: ReaderPath = "vdso",
    hosts: tuple[HostSpec, ...] = HOSTS,
) -> Scenario:
    workload = (
        *(Workload("reader", v, every_ns=100 * MS, path=path, phase_ns=50 * MS) for v in range(2)),
        Workload("timer", 0, every_ns=10 * MS, name="app-timer"),
    )
    guest = GuestSpec(2, "tsc", ("linux-6.13",), watchdog="none", rcu_busy=True, workload=workload)
    return Scenario("alternatives", "one event", guest, hosts, ("qemu",), events, settle_ns=30 * S)


def run(
    kernel: str, vmm: str, *events: Event, path: ReaderPath = "vdso", hosts: tuple[HostSpec, ...] = HOSTS
) -> RunResult:
    return run_one(scenario(*events, path=path, hosts=hosts), kernel, vmm, 0)


def guest_events(trace: RunTrace, kind: str) -> list[TimelineEvent]:
    return [e for e in trace.events if e.kind == kind]


def resumed_at(trace: RunTrace) -> int:
    return [e.t_ns for e in trace.events if e.kind == "vcpus-run"][-1]


def reads(trace: RunTrace, clock: str, start: int, end: int) -> list[Sample]:
    return [s for s in trace.samples if s.clock == clock and start <= s.t_ns < end]


def error_ns(trace: RunTrace, sample: Sample) -> int:
    return trace.error_ns(sample)


# --- the policies are data ------------------------------------------------------------------------


def _differences(policy: VmmPolicy, base: VmmPolicy) -> set[str]:
    skip = {"name", "version", "summary", "sources"}
    return {
        f.name
        for f in fields(VmmPolicy)
        if f.name not in skip and getattr(policy, f.name) != getattr(base, f.name)
    }


def test_each_alternative_is_a_known_vmm_plus_its_flag() -> None:
    # resume-irq: the nap policy's host side without the asking, on the scale-aware offsets.
    assert _differences(RESUME_IRQ, SCALE_AWARE) == {
        "hides",
        "emulated_timers",
        "devices_stop_on_pause",
        "resume_irq",
    }
    assert RESUME_IRQ.hides == NAP.hides
    assert _differences(MAX_SANE, QEMU) == {"max_sane_ns"}
    assert _differences(GUEST_S3, QEMU) == {"guest_s3"}
    assert GUEST_S3.guest_s3 == {"snapshot"}  # live migration cannot afford the suspend
    assert _differences(VMCLOCK, QEMU) == {"vmclock"}


# --- resume-irq -------------------------------------------------------------------------------------


def test_the_resume_interrupt_keeps_the_watchdogs_quiet_but_not_monotonic() -> None:
    pause = Event(AT, "pause", 30 * S)
    handled = run("resume-irq", "resume-irq", pause)
    spurious = run("linux-6.13", "resume-irq", pause)
    # The TSC ran through the pause; the handler's update_wall_time() takes it all into MONOTONIC.
    assert handled.ids == {"monotonic-jump", "ntp-maxerror"}
    assert {"softlockup", "rcu-stall"} <= spurious.ids  # a kernel without the handler: nobody touched them
    back = resumed_at(handled.trace)
    assert [(e.t_ns, e.detail) for e in guest_events(handled.trace, "resume-irq")] == [
        (back, "vCPU 0: caught up"),
        (back, "vCPU 1: caught up"),
    ]
    assert [e.detail for e in guest_events(spurious.trace, "resume-irq")] == [
        "vCPU 0: no handler",
        "vCPU 1: no handler",
    ]


def test_timers_due_during_the_nap_fire_once_at_the_resume() -> None:
    result = run("resume-irq", "resume-irq", Event(AT, "pause", 30 * S))
    back = resumed_at(result.trace)
    fires = [f for f in result.trace.timers if f.name == "app-timer" and f.t_ns >= back]
    # 3000 periods were missed: one fire for all of them (hrtimer_forward), then the 10 ms grid again.
    assert fires[0].t_ns == back
    assert back < fires[1].t_ns < back + 10 * MS
    assert fires[2].t_ns - fires[1].t_ns == 10 * MS


def test_a_read_before_the_resume_interrupt_still_sees_the_whole_delta() -> None:
    """The resumed reader reads first, as under every pending interrupt: past max_cycles, the slow path."""
    result = run("resume-irq", "resume-irq", Event(AT, "pause", 1200 * S), path="kernel")
    back = resumed_at(result.trace)
    first = reads(result.trace, "MONOTONIC", back, back + 1)
    assert {s.reader_path for s in first} == {"slow-path"}
    assert all(s.reader_path == "" for s in reads(result.trace, "MONOTONIC", back + 1, result.trace.end_ns))
    assert "overflow-garbage" not in result.ids


def test_no_resume_interrupt_after_a_sigstop_nor_after_a_host_suspend_the_counter_hid() -> None:
    stopped = run("resume-irq", "resume-irq", Event(AT, "stop", 5 * S))
    assert guest_events(stopped.trace, "resume-irq") == []
    # The host's TSC reset in S3 and KVM kept the guest's where it stopped: the handler has nothing to
    # catch up, and it knows nothing else of the night.
    slept = run("resume-irq", "resume-irq", Event(AT, "host-suspend", 3600 * S))
    assert len(guest_events(slept.trace, "resume-irq")) == 2
    assert {"boottime-missing-nap", "realtime-error"} <= slept.ids


# --- max-sane -----------------------------------------------------------------------------------


def test_a_max_sane_reader_waits_for_the_update_instead_of_the_slow_path() -> None:
    pause = Event(AT, "pause", 1200 * S)  # QEMU's pause: the TSC runs on, kvmclock is frozen
    waiting = run("max-sane", "max-sane", pause, path="kernel")
    extrapolating = run("linux-6.13", "max-sane", pause, path="kernel")
    back = resumed_at(waiting.trace)
    (wait,) = guest_events(waiting.trace, "max-sane-wait")
    assert wait.t_ns == back
    assert wait.detail.startswith("vCPU 0: 30000")  # 1200 s of 2.5 GHz cycles and a little more
    assert wait.detail.endswith("over 2500000000")  # max_sane_delta: 1 s of cycles
    assert {s.reader_path for s in waiting.trace.samples} == {""}
    assert "slow-path" in {s.reader_path for s in extrapolating.trace.samples}
    assert guest_events(extrapolating.trace, "max-sane-wait") == []
    # Neither reads garbage, and neither learns of the nap: MONOTONIC takes all of it.
    assert waiting.ids == extrapolating.ids == {"monotonic-jump", "ntp-maxerror"}


def test_max_sane_delta_is_published_at_boot_and_after_a_restore() -> None:
    hosts = (HostSpec("host", 2_500_000), HostSpec("dst", 3_000_000, scaling="none"))
    world = Run(scenario(Event(AT, "snapshot", 2 * S, to="dst"), hosts=hosts), "max-sane", "max-sane", 0)
    assert world.policy.max_sane_ns == S
    world.execute()
    # Without TSC scaling on "dst" the guest TSC runs at the host's 3 GHz: 1 s is 3e9 cycles there.
    assert world.guest.nap_page.max_sane_delta == 3_000_000_000
    plain = Run(scenario(), "max-sane", "qemu", 0)
    plain.execute()
    assert plain.guest.nap_page.max_sane_delta == 0


# --- guest-s3 -----------------------------------------------------------------------------------


def test_guest_s3_before_a_snapshot_counts_the_sleep_on_the_hosts_realtime() -> None:
    hosts = (HostSpec("host", 2_500_000), HostSpec("dst", 2_500_000, realtime_error_ns=300 * MS))
    result = run("linux-6.13", "guest-s3", Event(AT, "snapshot", 100 * S, to="dst"), hosts=hosts)
    trace = result.trace
    asleep = AT + S3_SUSPEND_NS
    assert [(e.t_ns, e.kind) for e in trace.events if e.kind.startswith(("guest-s3", "s3-"))] == [
        (AT, "guest-s3-request"),
        (asleep, "s3-suspended"),
        (resumed_at(trace), "guest-s3-wake"),
        (resumed_at(trace), "s3-resume"),
    ]
    # The guest ran on through its own suspend; the VM was frozen only once it was in S3.
    assert trace.interruptions[0].start_ns == asleep
    back = resumed_at(trace)
    (resume,) = guest_events(trace, "s3-resume")
    slept = int(resume.detail.split()[1])
    assert abs(slept - (back - asleep + 300 * MS)) < 1_000  # the hosts' realtime, ns resolution
    for sample in reads(trace, "REALTIME", back, trace.end_ns):
        assert abs(error_ns(trace, sample) - 300 * MS) < 10 * MS  # on the destination host's realtime
    assert result.ids == set()  # BOOTTIME counts the sleep, MONOTONIC does not, NTP stays synchronised
    assert not any(n.unsync for n in trace.ntp)


def test_guest_s3_cannot_serve_a_live_migration() -> None:
    migrate = Event(AT, "migrate", 200 * S, to="dst", precopy_ns=S)
    s3 = run("linux-6.13", "guest-s3", migrate)
    qemu = run("linux-6.13", "qemu", migrate)
    assert guest_events(s3.trace, "guest-s3-request") == []
    assert s3.ids == qemu.ids == {"boottime-missing-nap", "realtime-error"}


def test_a_guest_that_does_not_suspend_is_snapshotted_awake_after_the_timeout() -> None:
    result = run("linux-6.13", "guest-s3", Event(AT, "snapshot", 100 * S, to="dst", unresponsive=True))
    assert [e.t_ns for e in guest_events(result.trace, "guest-s3-timeout")] == [AT + S3_ANSWER_TIMEOUT_NS]
    assert guest_events(result.trace, "s3-suspended") == []
    assert result.trace.interruptions[0].start_ns == AT + S3_ANSWER_TIMEOUT_NS
    assert result.ids == {"boottime-missing-nap", "realtime-error"}  # QEMU's snapshot, as if never asked


# --- vmclock ------------------------------------------------------------------------------------


def test_vmclock_corrects_realtime_at_the_next_poll_and_not_before() -> None:
    result = run("vmclock", "vmclock", Event(AT, "snapshot", 100 * S, to="dst"))
    trace = result.trace
    back = resumed_at(trace)
    (disruption,) = guest_events(trace, "vmclock-disruption")
    assert disruption.detail == "disruption_marker 1"
    assert AT + 100 * S < disruption.t_ns < back  # on load, before the vCPUs run
    (step,) = guest_events(trace, "vmclock-step")
    assert back < step.t_ns <= back + VMCLOCK_POLL_NS
    before = reads(trace, "REALTIME", back, step.t_ns)
    after = reads(trace, "REALTIME", step.t_ns, trace.end_ns)
    assert before  # readers got there first: the whole snapshot missing from REALTIME
    assert all(abs(error_ns(trace, s) + 100 * S) < 10 * MS for s in before)
    assert all(abs(error_ns(trace, s)) < 10 * MS for s in after)
    # The step moves REALTIME only (BOOTTIME never learns of the snapshot) and clears NTP.
    assert result.ids == {"realtime-error", "boottime-missing-nap", "ntp-unsync"}


def test_without_a_consumer_the_marker_changes_unseen() -> None:
    result = run("linux-6.13", "vmclock", Event(AT, "snapshot", 100 * S, to="dst"))
    assert len(guest_events(result.trace, "vmclock-disruption")) == 1
    assert guest_events(result.trace, "vmclock-step") == []
    last = reads(result.trace, "REALTIME", 0, result.trace.end_ns)[-1]
    assert abs(error_ns(result.trace, last) + 100 * S) < 10 * MS


@pytest.mark.parametrize("vmm", ["vmclock", "qemu"])
def test_no_step_without_a_load(vmm: str) -> None:
    """A pause is not a load (QEMU bumps the marker in vmclock_post_load()); without the device, no poll."""
    pause = Event(AT, "pause", 100 * S)
    result = run("vmclock", vmm, pause)
    assert guest_events(result.trace, "vmclock-disruption") == []
    assert guest_events(result.trace, "vmclock-step") == []
    assert result.ids == run("linux-6.13", vmm, pause).ids
