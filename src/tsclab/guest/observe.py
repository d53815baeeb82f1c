"""What a real guest showed across one pause, per vCPU, in integer ns.

The guest's TSC is the reference: under TCG it follows the host's clock
and runs on through a SIGSTOP, and QEMU stops it with the vCPUs on a QMP
``stop`` - so it says how much time the guest's hardware saw pass.  Its
rate is the one the guest kernel calibrated (the model's counter runs at
it too), or else fitted from the samples taken before the pause; cycles
become ns with exact integer arithmetic.

Per vCPU:

* the **pause step**: the two consecutive reads with the largest TSC step
  after the pause began; each clock's step between them is its jump, and
  the read before it says how long before the pause timekeeping last
  updated (MONOTONIC minus MONOTONIC_COARSE) - the phase the model needs;
* **backwards**: the largest step back of each clock after the pause;
* **frozen**: the time MONOTONIC returned one value, summed over the
  probe's ``F`` lines after the pause;
* **lost**: from the last sample before the pause to the last sample of
  the run, how far each clock fell behind the TSC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsclab.guest.machine import PauseRecord
from tsclab.guest.trace import CLOCKS, KernelMessage, ProbeLog, Sample, Step


class ObservationError(Exception):
    """The run did not record enough to judge it (e.g. no samples before the pause)."""


@dataclass(frozen=True, slots=True)
class TscRate:
    """Cycles per ns as an exact ratio, fitted over one vCPU's samples."""

    cycles: int
    ns: int

    def to_ns(self, cycles: int) -> int:
        return cycles * self.ns // self.cycles

    @property
    def khz(self) -> int:
        return self.cycles * 1_000_000 // self.ns


@dataclass(frozen=True, slots=True)
class CpuObservation:
    cpu: int
    pause_step: Step | None  # None: no read pair spans a TSC step over the probe's threshold
    tsc_step_ns: int  # the pause step's TSC step in ns (0 without one)
    since_update_ns: int | None  # at the last read before the pause, time since timekeeping's last update
    longest_update_gap_ns: int  # the most MONOTONIC - COARSE seen before the pause: the latest tick
    jump_ns: dict[str, int]  # clock step across the pause (0 without a pause step)
    correction_ns: dict[str, int]  # the largest forward step after the pause step, at no TSC jump
    backwards_ns: dict[str, int]  # the largest step back after the pause (0: none)
    frozen_ns: int  # MONOTONIC stuck after the pause, in TSC time
    lost_ns: dict[str, int]  # TSC time minus clock time, over the window
    window_ns: int  # the window's TSC time


@dataclass
class Observation:
    pause: PauseRecord
    clocksource: str
    cpu_flags: frozenset[str]
    rate: TscRate
    jump_threshold_ns: int
    cpus: list[CpuObservation] = field(default_factory=list)
    messages: list[KernelMessage] = field(default_factory=list)  # printed after the pause began
    boot_messages: list[KernelMessage] = field(default_factory=list)  # printed before it
    quiet_during_pause: bool = True  # the probe wrote nothing while the guest was stopped


def fit_tsc_rate(samples: list[Sample]) -> TscRate:
    """The TSC rate over ``samples`` (one vCPU, no pause among them).

    A sample's clocks are read after its TSC, up to the probe's 1 ms
    bracket later, never before: so the truest pair at each end of the
    span is the one with the least MONOTONIC_RAW for its TSC.  Taking that
    pair from the first and the last fifth keeps the rate to a few ppm
    where two arbitrary samples could be hundreds of ppm off.
    """
    if len(samples) < 2:
        raise ObservationError("fewer than two probe samples before the pause: the guest ran too briefly")
    first, last = samples[0].reading, samples[-1].reading
    cycles = last.tsc - first.tsc
    ns = last.clocks["MONOTONIC_RAW"] - first.clocks["MONOTONIC_RAW"]
    if cycles <= 0 or ns <= 0:
        raise ObservationError("probe samples before the pause do not advance")
    fifth = max(1, len(samples) // 5)

    def delay(sample: Sample) -> int:
        # Raw ns ahead of where the rough rate puts this TSC value.
        reading = sample.reading
        return reading.clocks["MONOTONIC_RAW"] - (reading.tsc - first.tsc) * ns // cycles

    start = min(samples[:fifth], key=delay).reading
    end = min(samples[-fifth:], key=delay).reading
    cycles = end.tsc - start.tsc
    ns = end.clocks["MONOTONIC_RAW"] - start.clocks["MONOTONIC_RAW"]
    if cycles <= 0 or ns <= 0:
        raise ObservationError("probe samples before the pause do not advance")
    return TscRate(cycles, ns)


def observe(
    log: ProbeLog, messages: list[KernelMessage], pause: PauseRecord, tsc_khz: int | None = None
) -> Observation:
    """Reduce the logs of one paused run to an :class:`Observation`.

    ``tsc_khz``: the TSC rate the guest kernel calibrated and registered
    (its "Refined TSC clocksource calibration" line), which the model's
    counter runs at too; without it the rate is fitted from the samples.
    """
    if tsc_khz is not None:
        rate = TscRate(tsc_khz, 1_000_000)
    else:
        cpu0 = [s for s in log.samples if s.cpu == 0 and s.offset < pause.probe_offset]
        # Skip the first quarter: the readers start while boot work still runs.
        rate = fit_tsc_rate(cpu0[len(cpu0) // 4 :] if len(cpu0) > 8 else cpu0)
    observation = Observation(
        pause=pause,
        clocksource=log.current_clocksource,
        cpu_flags=log.cpu_flags,
        rate=rate,
        jump_threshold_ns=log.jump_ns,
        messages=[m for m in messages if m.offset >= pause.console_offset],
        boot_messages=[m for m in messages if m.offset < pause.console_offset],
        quiet_during_pause=pause.probe_offset_cont == pause.probe_offset,
    )
    for cpu in range(log.ncpus):
        observation.cpus.append(_observe_cpu(log, cpu, pause.probe_offset, rate))
    return observation


def _observe_cpu(log: ProbeLog, cpu: int, offset: int, rate: TscRate) -> CpuObservation:
    samples_before = [s for s in log.samples if s.cpu == cpu and s.offset < offset]
    samples_after = [s for s in log.samples if s.cpu == cpu and s.offset >= offset]
    if not samples_before or not samples_after:
        raise ObservationError(f"vCPU {cpu}: no probe samples on one side of the pause")
    steps = [s for s in log.steps if s.cpu == cpu and s.offset >= offset]
    pause_step = max(steps, key=lambda s: s.tsc_cycles, default=None)
    if pause_step is not None and pause_step.tsc_cycles <= rate.cycles * log.jump_ns // rate.ns:
        pause_step = None  # only ordinary jitter stepped: no pause visible in the TSC
    jump = {c: pause_step.clock_step(c) if pause_step else 0 for c in CLOCKS}
    # A reader that read a wrapped value before the overdue tick sees the
    # clock leap again when the tick's update lands: a step with no TSC jump.
    later = [s for s in steps if s.offset > pause_step.offset] if pause_step else []
    correction = {c: max([0, *(s.clock_step(c) - rate.to_ns(s.tsc_cycles) for s in later)]) for c in CLOCKS}
    backwards = {c: max([0, *(-s.clock_step(c) for s in steps)]) for c in CLOCKS}
    frozen = sum(
        rate.to_ns(f.tsc_last - f.tsc_first) for f in log.frozen if f.cpu == cpu and f.offset >= offset
    )
    start, end = samples_before[-1].reading, samples_after[-1].reading
    window = rate.to_ns(end.tsc - start.tsc)
    lost = {c: window - (end.clocks[c] - start.clocks[c]) for c in CLOCKS}
    return CpuObservation(
        cpu,
        pause_step,
        rate.to_ns(pause_step.tsc_cycles) if pause_step else 0,
        max(pause_step.before.since_update_ns, 0) if pause_step else None,
        max(s.reading.since_update_ns for s in samples_before),
        jump,
        correction,
        backwards,
        frozen,
        lost,
        window,
    )
