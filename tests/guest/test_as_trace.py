"""A real guest's reads, shaped as the model's trace, judged by the model's own checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tsclab.check.pause_anomalies import find_anomalies
from tsclab.guest.as_trace import guest_trace, observed_verdicts
from tsclab.guest.machine import PauseRecord
from tsclab.guest.observe import Observation, observe
from tsclab.guest.predict import guest_clocksource
from tsclab.guest.run import guest_facts, refined_tsc_khz
from tsclab.guest.trace import ProbeLog, parse_console_log, parse_probe_log
from tsclab.kernel.profiles import get_profile
from tsclab.sim.raw_pause import PauseSetup, PauseTrace

DATA = Path(__file__).parent / "data"


def _load(name: str) -> tuple[ProbeLog, Observation, PauseSetup]:
    work = DATA / name
    record = PauseRecord(**json.loads((work / "pause.json").read_text()))
    log = parse_probe_log(work / "probe.log")
    messages = parse_console_log(work / "console.log")
    boot = [m for m in messages if m.offset < record.console_offset]
    observation = observe(log, messages, record, refined_tsc_khz(boot))
    facts = guest_facts(log.current_clocksource, log.ncpus, 250, False, log.cpu_flags, boot, fallback_khz=1)
    cpu = observation.cpus[0]
    setup = PauseSetup(
        clocksource=guest_clocksource(facts),
        profile=get_profile("linux-6.1"),
        pause_ns=cpu.tsc_step_ns,
        phase_ns=cpu.since_update_ns or 0,
    )
    return log, observation, setup


def _trace(name: str, cpu: int = 0) -> PauseTrace:
    log, observation, setup = _load(name)
    return guest_trace(log, observation.cpus[cpu], observation.rate, setup, observation.pause.probe_offset)


def test_negative_motion_run_gives_the_model_ids() -> None:
    trace = _trace("acpi_pm-negative")
    assert [r.label for r in trace.reads] == ["before-pause", "after-resume", "after-first-tick", "steady"]
    assert observed_verdicts(trace) == {"time-backwards", "time-frozen", "wrap-loss"}
    found = {(a.id, a.clock): a.magnitude_ns for a in find_anomalies(trace)}
    _, observation, _ = _load("acpi_pm-negative")
    cpu = observation.cpus[0]
    # The checks' magnitudes are the observation's figures.
    assert found[("time-backwards", "MONOTONIC")] == cpu.backwards_ns["MONOTONIC"]
    # (the observation's window starts at the last sample, the trace's at the pause step's read)
    assert abs(found[("wrap-loss", "MONOTONIC")] - cpu.lost_ns["MONOTONIC"]) < 1_000
    frozen = found[("time-frozen", "MONOTONIC")]
    assert abs(frozen - cpu.frozen_ns) <= 1_000_000


def test_clean_jump_on_two_vcpus_gives_no_ids() -> None:
    for cpu in (0, 1):
        trace = _trace("tsc-short-2vcpu", cpu)
        assert observed_verdicts(trace) == frozenset()
        # Expected runs on the guest's TSC: the steady read is where it should be.
        steady = trace.reads[-1]
        assert abs(steady.expected["MONOTONIC"] - steady.values["MONOTONIC"]) < 1_000_000


def test_overflow_run_read_after_the_tick_gives_no_garbage() -> None:
    trace = _trace("tsc-overflow-1vcpu")
    assert trace.reads[1].overflow_shortfall_ns == 0
    assert observed_verdicts(trace) == frozenset()


def test_a_leap_after_the_pause_is_overflow_garbage() -> None:
    log, observation, setup = _load("tsc-overflow-1vcpu")
    cpu = observation.cpus[0]
    leapt = replace(cpu, correction_ns=dict.fromkeys(cpu.correction_ns, 1 << 40))
    trace = guest_trace(log, leapt, observation.rate, setup, observation.pause.probe_offset)
    assert trace.reads[1].overflow_shortfall_ns == 1 << 40
    assert "overflow-garbage" in observed_verdicts(trace)
