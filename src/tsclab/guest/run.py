"""Run one real-guest case end to end: boot, pause, observe, predict, compare.

"Predict, then look": before the pause the model is run on the pause
asked for, which fixes how long to watch afterwards (any freeze it
predicts, plus time to settle); after it, the model is run again on the
pause the guest's own TSC saw, and that prediction is what the
observation is held to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tsclab.guest.as_trace import guest_trace, observed_verdicts
from tsclab.guest.assets import GuestAssets
from tsclab.guest.cases import GuestCase
from tsclab.guest.compare import SAMPLE_TOL_NS, Row, compare
from tsclab.guest.machine import GuestMachine, MachineConfig, PauseRecord, RunFiles, qemu_command
from tsclab.guest.observe import CpuObservation, Observation, observe
from tsclab.guest.predict import GuestFacts, Prediction, predict
from tsclab.guest.trace import KernelMessage, ProbeLog, TraceError, parse_console_log, parse_probe_log
from tsclab.kernel.lockup_rules import softlockup_sample_period_ns
from tsclab.kernel.profiles import KernelProfile, get_profile
from tsclab.sim.raw_pause import PauseSetup

PAUSE_RECORD = "pause.json"
SETTLE_S = 3.0  # samples before the pause: the TSC rate is fitted over them
AFTER_S = 3.0  # running time after the pause (and after any predicted freeze)
BOOT_TIMEOUT_S = 120.0
# A reader's TSC step across the pause is at least the host's stop-to-continue
# time, and more by however long the reader waited on either side: its last
# read before the stop, and after the continue the kernel's own work first
# (the overdue tick, timer softirqs, and watchdog reports written to the
# serial console - a soft-lockup backtrace kept a reader waiting 13 ms).
RESUME_EXCESS_TOL_NS = 50_000_000


@dataclass
class CaseResult:
    case: GuestCase
    workdir: Path
    facts: GuestFacts
    observation: Observation
    predictions: dict[int, Prediction]  # per vCPU, for the pause its reader saw
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.ok for row in self.rows)


def kernel_hz(config: Path) -> int:
    """CONFIG_HZ from the guest kernel's config file."""
    match = re.search(r"^CONFIG_HZ=(\d+)$", config.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{config}: no CONFIG_HZ line")
    return int(match[1])


def refined_tsc_khz(boot: list[KernelMessage]) -> int | None:
    """The TSC rate the guest kernel registered, from its calibration line."""
    refined = next((m for m in boot if m.kind == "tsc-refined"), None)
    return int(refined.fields["mhz"]) * 1000 + int(refined.fields["khz"]) if refined else None


def guest_facts(
    clocksource: str,
    vcpus: int,
    hz: int,
    tsc_reliable: bool,
    flags: frozenset[str],
    boot: list[KernelMessage],
    fallback_khz: int,
) -> GuestFacts:
    tsc_khz = refined_tsc_khz(boot) or fallback_khz
    tsc_unstable = any(m.kind == "tsc-unstable" for m in boot)
    # 5.17+: a TSC with these features is trusted without a watchdog.
    qualified = {"constant_tsc", "nonstop_tsc", "tsc_adjust"} <= flags
    return GuestFacts(
        clocksource=clocksource,
        tsc_khz=tsc_khz,
        hz=hz,
        vcpus=vcpus,
        sched_clock_stable=any(m.kind == "sched-clock-stable" for m in boot),
        tsc_watched=not (tsc_reliable or tsc_unstable or qualified),
    )


def run_case(
    case: GuestCase,
    assets: GuestAssets,
    workdir: Path,
    *,
    accel: str = "tcg",
    qemu: str = "qemu-system-x86_64",
    progress: Callable[[str], None] = lambda _m: None,
) -> CaseResult:
    """Boot the guest for ``case``, pause it, and compare; raises GuestError if it cannot run."""
    profile = get_profile(assets.profile_name())
    hz = kernel_hz(assets.kernel_config)
    config = MachineConfig(
        clocksource=case.clocksource, vcpus=case.vcpus, tsc_reliable=case.tsc_reliable, accel=accel
    )
    files = RunFiles(workdir)
    # Only this run's own files are replaced; anything else in workdir stays.
    (workdir / PAUSE_RECORD).unlink(missing_ok=True)
    command = qemu_command(qemu, assets.kernel, assets.initramfs, config, files)
    with GuestMachine(command, files, case.vcpus) as machine:
        progress(f"{case.name}: booting ({accel}, {case.vcpus} vCPU, clocksource={case.clocksource})")
        machine.wait_ready(BOOT_TIMEOUT_S)
        machine.run_for(SETTLE_S)
        facts = _facts(case, parse_probe_log(files.probe), parse_console_log(files.console), hz)
        first = predict(facts, profile, case.pause_ns if case.mode == "sigstop" else 0)
        watch_ns = first.frozen.high + int(AFTER_S * 1e9)
        if first.softlockup.state != "no":
            watch_ns += softlockup_sample_period_ns()
        progress(
            f"{case.name}: pausing {case.pause_ns / 1e9:g} s ({case.mode}), "
            f"then watching {watch_ns / 1e9:.1f} s"
        )
        record = machine.pause(case.mode, case.pause_ns)
        machine.run_for(watch_ns / 1e9)
    # The host's record of the pause, beside the guest's logs, so a run can be judged again later.
    (workdir / PAUSE_RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
    return judge(case, workdir, profile, hz)


def _facts(case: GuestCase, log: ProbeLog, boot: list[KernelMessage], hz: int) -> GuestFacts:
    """What the guest said about itself while booting (before any pause)."""
    return guest_facts(
        log.current_clocksource,
        case.vcpus,
        hz,
        case.tsc_reliable,
        log.cpu_flags,
        boot,
        fallback_khz=max(log.tsc_per_ms.values(), default=1),
    )


def judge(case: GuestCase, workdir: Path, profile: KernelProfile, hz: int) -> CaseResult:
    """Judge a finished run from its files (probe.log, console.log, pause.json) alone."""
    files = RunFiles(workdir)
    try:
        record = PauseRecord(**json.loads((workdir / PAUSE_RECORD).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise TraceError(f"{workdir / PAUSE_RECORD}: not a pause record ({err})") from None
    log = parse_probe_log(files.probe)
    messages = parse_console_log(files.console)
    boot = [m for m in messages if m.offset < record.console_offset]
    facts = _facts(case, log, boot, hz)
    observation = observe(log, messages, record, refined_tsc_khz(boot))
    predictions = {
        cpu.cpu: predict(facts, profile, cpu.tsc_step_ns, cpu.since_update_ns) for cpu in observation.cpus
    }
    rows = [_clocksource_row(case, facts), _quiet_row(observation)]
    rows += [_pause_row(case, observation, cpu) for cpu in observation.cpus]
    rows += compare(observation, predictions, tick_ns=1_000_000_000 // hz)
    rows += [
        _verdict_row(log, observation, cpu, predictions[cpu.cpu], profile, hz) for cpu in observation.cpus
    ]
    return CaseResult(case, workdir, facts, observation, predictions, rows)


def _verdict_row(
    log: ProbeLog,
    observation: Observation,
    cpu: CpuObservation,
    prediction: Prediction,
    profile: KernelProfile,
    hz: int,
) -> Row:
    """The check's IDs on the guest's own reads against the model's: certain ones seen, nothing unforeseen."""
    setup = PauseSetup(
        clocksource=prediction.clocksource,
        profile=profile,
        pause_ns=prediction.guest_pause_ns,
        phase_ns=cpu.since_update_ns or 0,
        hz=hz,
    )
    seen = observed_verdicts(guest_trace(log, cpu, observation.rate, setup, observation.pause.probe_offset))
    certain, possible = prediction.verdicts_certain, prediction.verdicts_possible
    maybe = sorted(possible - certain)
    predicted = ", ".join(sorted(certain)) or "none"
    if maybe:
        predicted += f" (maybe {', '.join(maybe)})"
    ok = certain <= seen <= possible
    return Row("verdicts", "", cpu.cpu, predicted, ", ".join(sorted(seen)) or "none", 0, "", ok)


def _clocksource_row(case: GuestCase, facts: GuestFacts) -> Row:
    return Row(
        "clocksource",
        "",
        None,
        case.clocksource,
        facts.clocksource,
        0,
        "",
        facts.clocksource == case.clocksource,
    )


def _pause_row(case: GuestCase, observation: Observation, cpu: CpuObservation) -> Row:
    """The pause as one reader's TSC saw it: all of it on SIGSTOP, none of it behind QMP stop."""
    seen = cpu.tsc_step_ns
    if case.mode == "sigstop":
        host = observation.pause.measured_ns
        ok = host - SAMPLE_TOL_NS <= seen <= host + RESUME_EXCESS_TOL_NS
        return Row(
            "guest-visible pause", "TSC", cpu.cpu, f"{host} (host)", str(seen), RESUME_EXCESS_TOL_NS, "", ok
        )
    # Hidden: no step beyond the probe's threshold.
    return Row(
        "guest-visible pause",
        "TSC",
        cpu.cpu,
        "0 (hidden)",
        str(seen),
        observation.jump_threshold_ns,
        "",
        seen == 0,
    )


def _quiet_row(observation: Observation) -> Row:
    quiet = observation.quiet_during_pause
    return Row("probe silent while stopped", "", None, "yes", "yes" if quiet else "no", 0, "", quiet)
