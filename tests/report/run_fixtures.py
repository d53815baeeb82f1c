"""Synthetic ``tsclab run`` results for the report tests (no simulator involved).

:func:`two_by_two` is one scenario on two kernel profiles and two VMM
policies with one combination of each kind: a pass with verdicts, a fail,
a pass with none, and a skipped one.  :func:`synthetic_trace` builds a run
trace of any length: readers on every vCPU, a pause that MONOTONIC and
REALTIME fall behind by, kernel messages and timeline events.
"""

from __future__ import annotations

from tsclab.check.verdict import RunResult, Verdict
from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload
from tsclab.sim.trace import Interruption, KernelMessage, RunTrace, Sample, TimelineEvent

S = 1_000_000_000
EPOCH_NS = 1_767_225_600 * S
KERNELS = ("linux-6.1", "linux-6.13")
VMMS = ("qemu@7.2", "firecracker@1.12")
PAUSE_AT_NS = 10 * S
PAUSE_NS = 120 * S


def scenario(description: str = "A two-minute pause, readers on both vCPUs") -> Scenario:
    return Scenario(
        name="pause-2min",
        description=description,
        guest=GuestSpec(
            vcpus=2,
            clocksource="kvm-clock",
            kernels=KERNELS,
            workload=(
                Workload("reader", 0, every_ns=S, clocks=("REALTIME", "MONOTONIC"), path="vdso"),
                Workload("reader", 1, every_ns=S, clocks=("REALTIME", "MONOTONIC"), path="kernel"),
            ),
        ),
        hosts=(HostSpec(name="a", tsc_khz=2_500_000),),
        vmms=VMMS,
        events=(Event(at_ns=PAUSE_AT_NS, action="pause", duration_ns=PAUSE_NS),),
        sources=("https://example.org/bug/1", "a mailing-list thread"),
        path="scenarios/pause-2min.toml",
    )


def synthetic_trace(
    kernel: str,
    vmm: str,
    *,
    samples: int = 40,
    vcpus: int = 2,
    clocks: tuple[str, ...] = ("REALTIME", "MONOTONIC"),
    both_paths_on_vcpu0: bool = True,
    skipped: str = "",
) -> RunTrace:
    """About ``samples`` clock reads in all, spread evenly over a run with one pause.

    Before the pause each clock is a few hundred ns off, wobbling; after
    it, MONOTONIC and REALTIME are behind by the pause (they did not
    count it) and BOOTTIME is right.
    """
    trace = RunTrace(
        scenario="pause-2min",
        kernel=kernel,
        vmm=vmm,
        seed=7,
        vcpus=vcpus,
        epoch_ns=EPOCH_NS,
        boot_values={
            "REALTIME": EPOCH_NS,
            "MONOTONIC": 0,
            "BOOTTIME": 0,
            "MONOTONIC_RAW": 0,
            "TAI": EPOCH_NS,
        },
        skipped=skipped,
    )
    if skipped:
        return trace
    series = [(v, c, p) for v in range(vcpus) for c in clocks for p in ("vdso", "kernel")]
    series = [(v, c, p) for v, c, p in series if p == "vdso" or (v == 0 and both_paths_on_vcpu0)]
    per_series = max(2, samples // len(series))
    run_ns = PAUSE_AT_NS + PAUSE_NS + 30 * S
    step = max(1, (run_ns - PAUSE_NS) // per_series)
    for i in range(per_series):
        t = i * step
        if t >= PAUSE_AT_NS:
            t += PAUSE_NS
        for vcpu, clock, path in series:
            error = (i * 37 + vcpu * 101) % 500 - 250
            if t >= PAUSE_AT_NS + PAUSE_NS and clock in ("REALTIME", "MONOTONIC"):
                error -= PAUSE_NS
            value = trace.boot_values[clock] + t + error
            trace.samples.append(Sample(t_ns=t, vcpu=vcpu, clock=clock, path=path, value_ns=value))
    trace.end_ns = run_ns
    trace.events += [
        TimelineEvent(0, "guest", "vcpus-run"),
        TimelineEvent(PAUSE_AT_NS, "vmm", "pause"),
        TimelineEvent(PAUSE_AT_NS + PAUSE_NS, "vmm", "resume"),
        TimelineEvent(PAUSE_AT_NS + PAUSE_NS, "kvm", "KVM_SET_CLOCK", "<no realtime>"),
    ]
    trace.messages.append(
        KernelMessage(
            PAUSE_AT_NS + PAUSE_NS + 4 * S,
            0,
            "softlockup",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 124s! [swapper/0:0]",
            124,
        )
    )
    trace.interruptions.append(
        Interruption(PAUSE_AT_NS, PAUSE_AT_NS + PAUSE_NS, "pause", hidden=False, nap=False)
    )
    return trace


SOFTLOCKUP = Verdict(
    id="softlockup",
    t_ns=PAUSE_AT_NS + PAUSE_NS + 4 * S,
    vcpu=0,
    clock=None,
    magnitude=124,
    unit="s",
    event="watchdog: BUG: soft lockup - CPU#0 stuck for 124s!",
)
MONOTONIC_JUMP = Verdict(
    id="monotonic-jump",
    t_ns=PAUSE_AT_NS + PAUSE_NS,
    vcpu=1,
    clock="MONOTONIC",
    magnitude=PAUSE_NS,
    unit="ns",
    event="MONOTONIC read 120 s short across the pause",
)
SKIP_REASON = "firecracker 1.12 cannot snapshot a linux-6.13 guest <here>"


def two_by_two(samples: int = 40, description: str | None = None) -> tuple[Scenario, list[RunResult]]:
    """The 2x2 results: pass with verdicts, fail, pass with none, skipped."""
    k61, k613 = KERNELS
    qemu, fc = VMMS
    results = [
        RunResult(
            synthetic_trace(k61, qemu, samples=samples),
            (SOFTLOCKUP, MONOTONIC_JUMP),
            frozenset({"softlockup", "monotonic-jump"}),
        ),
        RunResult(synthetic_trace(k61, fc, samples=samples), (SOFTLOCKUP,), frozenset()),
        RunResult(synthetic_trace(k613, qemu, samples=samples), (), frozenset()),
        RunResult(synthetic_trace(k613, fc, skipped=SKIP_REASON), ()),
    ]
    sc = scenario() if description is None else scenario(description)
    return sc, results
