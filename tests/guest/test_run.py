"""Judging real runs from their files: the whole chain from logs to verdicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tsclab.guest.cases import find_case
from tsclab.guest.run import guest_facts, judge, kernel_hz, refined_tsc_khz
from tsclab.guest.trace import TraceError, parse_console_log
from tsclab.kernel.profiles import get_profile
from tsclab.report.guest_check import case_record, render_case, render_summary

DATA = Path(__file__).parent / "data"
PROFILE = get_profile("linux-6.1")


def _judge(name: str, workdir: Path | None = None):
    case = find_case(name)
    assert case is not None
    return judge(case, workdir or DATA / name, PROFILE, 250)


def test_real_acpi_pm_negative_run_matches_the_model() -> None:
    result = _judge("acpi_pm-negative")
    assert result.passed, render_case(result)
    cpu = result.observation.cpus[0]
    # Time stepped back to the last update: by exactly the time since it.
    assert cpu.backwards_ns["MONOTONIC"] == cpu.since_update_ns
    ids = {row.verdict_id for row in result.rows if row.verdict_id}
    assert ids == {"time-backwards", "time-frozen", "wrap-loss"}
    long_readout = next(row for row in result.rows if row.quantity == "long-readout")
    assert long_readout.observed.startswith("yes (cs_nsec ")


def test_real_two_vcpu_run_is_judged_per_vcpu() -> None:
    result = _judge("tsc-short-2vcpu")
    assert result.passed, render_case(result)
    pauses = {cpu: p.guest_pause_ns for cpu, p in result.predictions.items()}
    assert set(pauses) == {0, 1}
    # Each vCPU is held to the pause its own reader saw; they differ by milliseconds.
    assert pauses[0] != pauses[1]
    assert abs(pauses[0] - pauses[1]) < 10_000_000


def test_a_run_whose_probe_wrote_while_stopped_fails(tmp_path: Path) -> None:
    work = tmp_path / "acpi_pm-negative"
    shutil.copytree(DATA / "acpi_pm-negative", work)
    record = json.loads((work / "pause.json").read_text())
    record["probe_offset_cont"] += 80
    (work / "pause.json").write_text(json.dumps(record))
    result = _judge("acpi_pm-negative", work)
    assert not result.passed
    failed = [row.quantity for row in result.rows if not row.ok]
    assert failed == ["probe silent while stopped"]


def test_a_run_judged_as_the_wrong_clocksource_fails(tmp_path: Path) -> None:
    work = tmp_path / "tsc-short"
    shutil.copytree(DATA / "acpi_pm-negative", work)
    result = _judge("tsc-short", work)
    clocksource = next(row for row in result.rows if row.quantity == "clocksource")
    assert (clocksource.predicted, clocksource.observed, clocksource.ok) == ("tsc", "acpi_pm", False)


def test_missing_pause_record_is_a_trace_error(tmp_path: Path) -> None:
    work = tmp_path / "acpi_pm-negative"
    shutil.copytree(DATA / "acpi_pm-negative", work)
    (work / "pause.json").write_text("{not json")
    with pytest.raises(TraceError, match=r"pause\.json: not a pause record"):
        _judge("acpi_pm-negative", work)


def test_report_and_record_of_a_real_run() -> None:
    result = _judge("acpi_pm-negative")
    text = render_case(result)
    assert text.startswith("acpi_pm-negative: PASS")
    assert "last timekeeping update" in text
    record = case_record(result)
    assert record["passed"] is True
    assert record["since_update_ns"] == {"0": result.observation.cpus[0].since_update_ns}
    assert all(isinstance(row["observed"], str) for row in record["rows"])
    json.dumps(record)  # serialisable as it stands
    assert "acpi_pm-negative" in render_summary([result])


def test_kernel_hz_reads_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_HZ_250=y\nCONFIG_HZ=250\n")
    assert kernel_hz(config) == 250
    config.write_text("CONFIG_HZ_250=y\n")
    with pytest.raises(ValueError, match="no CONFIG_HZ line"):
        kernel_hz(config)


def test_guest_facts_from_a_real_boot() -> None:
    boot = parse_console_log(DATA / "acpi_pm-negative" / "console.log")
    assert refined_tsc_khz(boot) == 2_596_131
    facts = guest_facts("acpi_pm", 1, 250, False, frozenset({"tsc"}), boot, fallback_khz=1)
    assert facts.sched_clock_stable
    assert facts.tsc_watched
    # tsc=reliable, or a CPU qualified for trust, takes the TSC off the watchdog's list.
    assert not guest_facts("tsc", 1, 250, True, frozenset(), boot, fallback_khz=1).tsc_watched
    qualified = frozenset({"constant_tsc", "nonstop_tsc", "tsc_adjust"})
    assert not guest_facts("tsc", 1, 250, False, qualified, boot, fallback_khz=1).tsc_watched
    assert guest_facts("tsc", 1, 250, False, frozenset(), [], fallback_khz=2_600_000).tsc_khz == 2_600_000


def test_real_1200s_pause_past_the_overflow_horizon() -> None:
    # A real 21-minute run (tsclab guest suite --long), kept as a fixture.
    result = _judge("tsc-overflow-1vcpu")
    assert result.passed, render_case(result)
    cpu = result.observation.cpus[0]
    # On one vCPU the overdue tick updated timekeeping before the reader read
    # again: one correct 1200 s jump, no wrapped value seen.
    assert cpu.correction_ns["MONOTONIC"] == 0
    assert abs(cpu.jump_ns["MONOTONIC"] - 1_200_000_000_000) < 50_000_000
    printed = {m.kind: m.fields for m in result.observation.messages}
    # The watchdog's conversion did not wrap (an unsafe u64 delta * mult would
    # print 2**40 ns less), and the HPET's delta, past its half-width, read 0.
    assert int(printed["long-readout"]["cs_nsec"]) > 1_200_000_000_000
    assert printed["long-readout"]["wd_nsec"] == "0"
    assert printed["softlockup"]["seconds"] == "1118"


def test_real_1200s_pause_on_two_vcpus_shows_who_reads_garbage() -> None:
    # The same pause with a busy reader on a second vCPU (tsclab guest suite --long).
    result = _judge("tsc-overflow-2vcpu")
    assert result.passed, render_case(result)
    cpu0, cpu1 = result.observation.cpus
    # vCPU 0 took the overdue tick first: one correct 1200 s jump.
    assert cpu0.correction_ns["MONOTONIC"] == 0
    assert abs(cpu0.jump_ns["MONOTONIC"] - 1_200_000_000_000) < 50_000_000
    # vCPU 1's reader got in before that update: delta * mult wrapped 64 bits,
    # the clock jumped 2**40 ns short, then leapt the rest when the update landed.
    assert abs(cpu1.jump_ns["MONOTONIC"] - (cpu1.tsc_step_ns - (1 << 40))) < 1_000_000
    assert abs(cpu1.correction_ns["MONOTONIC"] - (1 << 40)) < 1_000_000
    verdicts = {row.cpu: row.observed for row in result.rows if row.quantity == "verdicts"}
    assert verdicts == {0: "none", 1: "overflow-garbage"}
    lockups = sorted(m.fields["cpu"] for m in result.observation.messages if m.kind == "softlockup")
    assert lockups == ["0", "1"]
