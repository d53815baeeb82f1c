"""guest/observe.py: one pause reduced to per-vCPU integers, from synthetic and real probe logs.

The synthetic logs are written from a clean world: at true time ``ms`` every
clock reads its base plus ``ms`` ms (plus a per-clock shift where a clock
lost or gained time), and the TSC reads ``TSC0 + ms * TSC_PER_MS`` - so every
expected figure below is exact and worked out by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tsclab.clocksource.counters import ACPI_PM_HZ
from tsclab.guest.machine import PauseRecord
from tsclab.guest.observe import Observation, ObservationError, TscRate, fit_tsc_rate, observe
from tsclab.guest.trace import (
    CLOCKS,
    PROBE_VERSION,
    KernelMessage,
    Reading,
    Sample,
    Step,
    parse_console_log,
    parse_probe_log,
)

MS = 1_000_000
TSC_PER_MS = 2_596_131
TSC0 = 13_000_000_000
BASES = (1_795_636_680_000_000_000, 200_000_000, 200_000_900, 1_000_000)  # RT, MONO, BOOT, RAW at ms 0
NO_SHIFT = (0, 0, 0, 0)
PAUSE = "<the host stopped the guest here>"
# The rate every synthetic log fits: samples 3..11 of cpu 0, 80 ms apart in all.
RATE = TscRate(80 * TSC_PER_MS, 80 * MS)

DATA = Path(__file__).parent / "data"


def values(
    ms: int, shift: tuple[int, int, int, int] = NO_SHIFT, tsc_offset: int = 0, since: int | None = None
) -> list[int]:
    """One read at true time ``ms``: the TSC, REALTIME, MONOTONIC, BOOTTIME, MONOTONIC_RAW, MONOTONIC_COARSE.

    Timekeeping updates on a 4 ms grid unless ``since`` says how long ago it last did.
    """
    clocks = [base + ms * MS + d for base, d in zip(BASES, shift, strict=True)]
    coarse = clocks[1] - ((ms % 4) * MS if since is None else since)
    return [TSC0 + tsc_offset + ms * TSC_PER_MS, *clocks, coarse]


def reading(v: list[int]) -> Reading:
    return Reading(v[0], dict(zip(CLOCKS, v[1:5], strict=True)), v[5])


def s_line(cpu: int, seq: int, v: list[int]) -> str:
    return f"S {cpu} {seq} " + " ".join(map(str, v))


def j_line(cpu: int, before: list[int], after: list[int]) -> str:
    return f"J {cpu} " + " ".join(map(str, [*before, *after]))


def header(ncpus: int = 1, clocksource: str = "tsc") -> list[str]:
    return [
        f"C {clocksource} tsc hpet acpi_pm ",
        f"U console=ttyS0 clocksource={clocksource} panic=-1",
        "G  fpu tsc rdtscp",
        f"H {PROBE_VERSION} {ncpus} 10000000 20000000",
        *(f"K {cpu} {TSC_PER_MS}" for cpu in range(ncpus)),
    ]


def samples_before(cpu: int = 0, count: int = 12, *, start_ms: int = 1_000, tsc_offset: int = 0) -> list[str]:
    """``count`` samples 10 ms apart; the first three read the TSC late (boot noise the fit must skip).

    Sample 7 reads 9.5 ms after an update: a tick came late.
    """
    junk = {0: 5_000_000, 1: 3_000_000, 2: 1_000_000}
    lines = []
    for seq in range(count):
        v = values(start_ms + 10 * seq, tsc_offset=tsc_offset, since=9_500_000 if seq == 7 else None)
        v[0] += junk.get(seq, 0) if count > 8 else 0
        lines.append(s_line(cpu, seq, v))
    return lines


def write_log(path: Path, lines: list[str]) -> int:
    """Write the lines (the pause marker is not written); the byte offset where the pause fell."""
    data = b""
    offset = -1
    for line in lines:
        if line == PAUSE:
            offset = len(data)
            continue
        data += line.encode() + b"\n"
    path.write_bytes(data)
    assert offset >= 0, "no pause marker"
    return offset


def record(probe_offset: int, *, console_offset: int = 0, cont: int | None = None) -> PauseRecord:
    return PauseRecord(
        mode="sigstop",
        requested_ns=2_000_000_000,
        host_mono_stop_ns=3_700_000_000_000,
        host_mono_cont_ns=3_702_000_002_000,
        host_real_stop_ns=1_795_637_073_000_000_000,
        host_real_cont_ns=1_795_637_075_000_002_000,
        probe_offset=probe_offset,
        console_offset=console_offset,
        probe_offset_cont=probe_offset if cont is None else cont,
    )


def per_clock(*numbers: int) -> dict[str, int]:
    return dict(zip(CLOCKS, numbers, strict=True))


# ---------------------------------------------------------------------------
# (a) A clean 2 s jump on one vCPU

SHIFT_A = (250, -100, -100, 0)  # after the pause REALTIME is 250 ns ahead, MONOTONIC/BOOTTIME 100 ns behind


def clean_jump_lines() -> list[str]:
    before = samples_before()
    return [
        *header(),
        *before[:6],
        # Before the pause: boot-time steps and freezes that must not count.
        j_line(0, values(1_055), values(1_056, (0, -7 * MS, 0, 0))),
        "F 0 13142000000 13220000000 255000000 12",
        *before[6:],
        PAUSE,
        j_line(0, values(1_113), values(3_113, SHIFT_A)),
        s_line(0, 12, values(3_113, SHIFT_A)),  # the first read after the pause is past next_emit
        *(s_line(0, 13 + k, values(3_123 + 10 * k, SHIFT_A)) for k in range(8)),
    ]


def test_clean_jump_one_cpu(tmp_path: Path) -> None:
    path = tmp_path / "probe.log"
    offset = write_log(path, clean_jump_lines())
    log = parse_probe_log(path)
    boot = [
        KernelMessage("switched", 1_110_707_000, {"name": "tsc"}, "switched", 100),
        KernelMessage("tsc-refined", 2_182_151_000, {"mhz": "2596", "khz": "131"}, "refined", 299),
    ]
    after = [
        KernelMessage("long-readout", 9_455_460_000, {"cs_nsec": "1", "wd_nsec": "1"}, "long", 300),
        KernelMessage("softlockup", 40_123_456_000, {"cpu": "0", "seconds": "22"}, "lockup", 301),
    ]
    observation = observe(log, [*boot, *after], record(offset, console_offset=300))

    assert observation.rate == RATE
    assert observation.rate.khz == TSC_PER_MS
    assert observation.clocksource == "tsc"
    assert observation.cpu_flags == frozenset({"fpu", "tsc", "rdtscp"})
    assert observation.jump_threshold_ns == 20_000_000
    assert observation.quiet_during_pause
    assert observation.boot_messages == boot
    assert observation.messages == after

    (cpu,) = observation.cpus
    assert cpu.cpu == 0
    assert cpu.pause_step == Step(0, reading(values(1_113)), reading(values(3_113, SHIFT_A)), offset)
    assert cpu.tsc_step_ns == 2_000_000_000
    assert cpu.since_update_ns == 1 * MS  # read at 1113 ms, updated at 1112 ms
    assert cpu.longest_update_gap_ns == 9_500_000
    assert cpu.jump_ns == per_clock(2_000_000_250, 1_999_999_900, 1_999_999_900, 2_000_000_000)
    assert cpu.correction_ns == per_clock(0, 0, 0, 0)
    assert cpu.backwards_ns == per_clock(0, 0, 0, 0)  # the 7 ms step back came before the pause
    assert cpu.frozen_ns == 0  # so did the freeze
    # From sample 11 (1110 ms) to sample 20 (3193 ms).
    assert cpu.window_ns == 2_083_000_000
    assert cpu.lost_ns == per_clock(-250, 100, 100, 0)


# ---------------------------------------------------------------------------
# (b) Negative motion: a step back, a freeze, a wrap lost

BACK = (3_096_000, 3_096_949, 3_097_100, 3_097_500)
FROZEN_MS = 1_184
# After the freeze every clock runs on from its frozen value: it lost the pause,
# the freeze and its step back.
SHIFT_B = tuple(-(3_500 * MS + FROZEN_MS * MS + b) for b in BACK)


def negative_motion_lines() -> list[str]:
    # MONOTONIC falls back to the last update: the read before was that long after it.
    before = values(1_113, since=BACK[1])
    stepped_back = [c - b for c, b in zip(before[1:5], BACK, strict=True)]
    after = [values(4_613)[0], *stepped_back, stepped_back[1]]
    shift = (SHIFT_B[0], SHIFT_B[1], SHIFT_B[2], SHIFT_B[3])
    return [
        *header(clocksource="acpi_pm"),
        *samples_before(),
        PAUSE,
        j_line(0, before, after),
        f"F 0 {after[0]} {values(4_613 + FROZEN_MS)[0]} {after[2]} 351103",
        *(s_line(0, 12 + k, values(5_800 + 10 * k, shift)) for k in range(11)),
        # A preempted reader: 25 ms of TSC and of every clock (over the 20 ms threshold).
        j_line(0, values(5_900, shift), values(5_925, shift)),
        *(s_line(0, 23 + k, values(5_930 + 10 * k, shift)) for k in range(8)),
    ]


def test_negative_motion_step_back_freeze_and_wrap(tmp_path: Path) -> None:
    path = tmp_path / "probe.log"
    offset = write_log(path, negative_motion_lines())
    (cpu,) = observe(parse_probe_log(path), [], record(offset)).cpus

    assert cpu.pause_step is not None
    assert cpu.pause_step.offset == offset  # the 3.5 s step, not the 25 ms one
    assert cpu.tsc_step_ns == 3_500_000_000
    assert cpu.since_update_ns == 3_096_949
    assert cpu.pause_step.after.since_update_ns == 0
    assert cpu.jump_ns == per_clock(-3_096_000, -3_096_949, -3_097_100, -3_097_500)
    assert cpu.backwards_ns == per_clock(3_096_000, 3_096_949, 3_097_100, 3_097_500)
    assert cpu.correction_ns == per_clock(0, 0, 0, 0)  # the 25 ms step moved with the TSC
    assert cpu.frozen_ns == 1_184_000_000
    assert cpu.window_ns == 4_890_000_000  # 1110 ms to 6000 ms
    assert cpu.lost_ns == per_clock(4_687_096_000, 4_687_096_949, 4_687_097_100, 4_687_097_500)


# ---------------------------------------------------------------------------
# (c) QEMU hid the pause: nothing over the threshold


def test_hidden_pause_has_no_pause_step(tmp_path: Path) -> None:
    nudge = (-1_500, 0, 0, 0)  # REALTIME stepped back 1.5 us; the TSC did not move
    lines = [
        *header(),
        *samples_before(),
        PAUSE,
        j_line(0, values(1_113), values(1_113, nudge)),
        *(s_line(0, 12 + k, values(1_120 + 10 * k, nudge)) for k in range(9)),
    ]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    (cpu,) = observe(parse_probe_log(path), [], record(offset)).cpus
    assert cpu.pause_step is None
    assert cpu.tsc_step_ns == 0
    assert cpu.since_update_ns is None
    assert cpu.longest_update_gap_ns == 9_500_000
    assert cpu.jump_ns == per_clock(0, 0, 0, 0)
    assert cpu.correction_ns == per_clock(0, 0, 0, 0)
    assert cpu.backwards_ns == per_clock(1_500, 0, 0, 0)  # steps back count with or without a pause
    assert cpu.frozen_ns == 0
    assert cpu.window_ns == 90_000_000
    assert cpu.lost_ns == per_clock(1_500, 0, 0, 0)


@pytest.mark.parametrize(("extra_cycles", "seen"), [(0, False), (1, True)])
def test_pause_step_threshold_is_exclusive(tmp_path: Path, extra_cycles: int, seen: bool) -> None:
    # The threshold is the probe's jump_ns (20 ms) in fitted TSC cycles: 20 * TSC_PER_MS exactly.
    after = values(1_133)
    after[0] += extra_cycles
    lines = [
        *header(),
        *samples_before(),
        PAUSE,
        j_line(0, values(1_113), after),
        s_line(0, 12, values(1_140)),
    ]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    (cpu,) = observe(parse_probe_log(path), [], record(offset)).cpus
    if seen:
        assert cpu.pause_step is not None
        assert cpu.tsc_step_ns == 20_000_000  # one cycle more is under a ns
        assert cpu.since_update_ns == 1 * MS
        assert cpu.jump_ns == per_clock(*[20_000_000] * 4)
    else:
        assert cpu.pause_step is None
        assert cpu.tsc_step_ns == 0
        assert cpu.since_update_ns is None
        assert cpu.jump_ns == per_clock(0, 0, 0, 0)


# ---------------------------------------------------------------------------
# (d) Two vCPUs, each judged on its own reads


def test_two_cpus(tmp_path: Path) -> None:
    cpu1_tsc = 12_345  # an unsynchronised TSC offset: only differences matter
    cpu0 = samples_before()
    # vCPU 1 reads 5 ms after vCPU 0; its early TSCs are off, which only a fit on it would see.
    cpu1 = []
    for seq in range(12):
        v = values(1_005 + 10 * seq, tsc_offset=cpu1_tsc)
        v[0] += 1_000_000 * (11 - seq)
        cpu1.append(s_line(1, seq, v))
    shift1 = (0, -150, 0, 0)
    lines = [
        *header(ncpus=2),
        *(line for pair in zip(cpu0, cpu1, strict=True) for line in pair),
        PAUSE,
        j_line(0, values(1_113), values(3_113)),
        s_line(0, 12, values(3_113)),
        j_line(1, values(1_117, tsc_offset=cpu1_tsc), values(3_120, shift1, cpu1_tsc)),
        s_line(1, 12, values(3_120, shift1, cpu1_tsc)),
        *(s_line(0, 13 + k, values(3_123 + 10 * k)) for k in range(8)),
        *(s_line(1, 13 + k, values(3_130 + 10 * k, shift1, cpu1_tsc)) for k in range(8)),
    ]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    observation = observe(parse_probe_log(path), [], record(offset))

    assert observation.rate == RATE
    assert [c.cpu for c in observation.cpus] == [0, 1]
    first, second = observation.cpus
    assert first.tsc_step_ns == 2_000_000_000
    assert first.jump_ns == per_clock(*[2_000_000_000] * 4)
    assert first.lost_ns == per_clock(0, 0, 0, 0)
    assert first.window_ns == 2_083_000_000

    assert second.pause_step is not None
    assert second.pause_step.cpu == 1
    assert second.pause_step.offset > first.pause_step.offset  # type: ignore[union-attr]
    assert second.tsc_step_ns == 2_003_000_000
    assert second.jump_ns == per_clock(2_003_000_000, 2_002_999_850, 2_003_000_000, 2_003_000_000)
    assert second.backwards_ns == per_clock(0, 0, 0, 0)
    assert second.window_ns == 2_085_000_000  # 1115 ms to 3200 ms
    assert second.lost_ns == per_clock(0, 150, 0, 0)


# ---------------------------------------------------------------------------
# The 6.1 reader's delta*mult overflow: a garbage read, then the clock leaps back

LEAP = 1 << 40  # 2**(64 - shift) ns for a shift-24 TSC


def test_leap_after_the_pause_step_is_a_correction(tmp_path: Path) -> None:
    garbage = (-LEAP, -LEAP, -LEAP, 0)  # MONOTONIC_RAW has its own reader and no overflow here
    pause_ms = 1_200_000
    lines = [
        *header(),
        *samples_before(),
        PAUSE,
        j_line(0, values(1_113), values(1_113 + pause_ms, garbage)),
        s_line(0, 12, values(1_113 + pause_ms, garbage)),
        # The overdue tick lands: 1 ms of TSC, the clocks leap by 2**40 ns more.
        j_line(0, values(1_114 + pause_ms, garbage), values(1_115 + pause_ms)),
        *(s_line(0, 13 + k, values(1_120 + pause_ms + 10 * k)) for k in range(5)),
    ]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    (cpu,) = observe(parse_probe_log(path), [], record(offset)).cpus
    assert cpu.pause_step is not None
    assert cpu.pause_step.offset == offset
    assert cpu.tsc_step_ns == 1_200_000_000_000
    assert cpu.jump_ns == per_clock(*[1_200_000_000_000 - LEAP] * 3, 1_200_000_000_000)
    assert cpu.correction_ns == per_clock(LEAP, LEAP, LEAP, 0)
    assert cpu.backwards_ns == per_clock(0, 0, 0, 0)
    assert cpu.lost_ns == per_clock(0, 0, 0, 0)


# ---------------------------------------------------------------------------
# (e) Too little to judge


def test_fewer_than_two_samples_before_the_pause(tmp_path: Path) -> None:
    lines = [*header(), s_line(0, 0, values(1_000)), PAUSE, s_line(0, 1, values(3_000))]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    with pytest.raises(ObservationError, match="fewer than two probe samples before the pause"):
        observe(parse_probe_log(path), [], record(offset))


def test_a_cpu_without_samples_after_the_pause(tmp_path: Path) -> None:
    lines = [
        *header(ncpus=2),
        *samples_before(0),
        *samples_before(1, 3),
        PAUSE,
        s_line(0, 12, values(3_000)),
    ]
    path = tmp_path / "probe.log"
    offset = write_log(path, lines)
    with pytest.raises(
        ObservationError, match=re.escape("vCPU 1: no probe samples on one side of the pause")
    ):
        observe(parse_probe_log(path), [], record(offset))


def _sample(tsc: int, raw: int) -> Sample:
    return Sample(0, 0, Reading(tsc, per_clock(raw, raw, raw, raw), raw), 0)


def test_fit_tsc_rate_is_exact() -> None:
    rate = fit_tsc_rate([_sample(1_000, 50), _sample(999_999, 70), _sample(26_001_000, 10_000_050)])
    assert rate == TscRate(26_000_000, 10_000_000)
    assert rate.khz == 2_600_000
    assert rate.to_ns(2_600_000_007) == 1_000_000_002  # floor of 1_000_000_002.69


def _clean_samples(count: int) -> list[Sample]:
    lines = [s_line(0, k, values(1_000 + 10 * k)) for k in range(count)]
    return [Sample(0, k, reading([int(x) for x in line.split()[3:]]), 0) for k, line in enumerate(lines)]


@pytest.mark.parametrize(("late", "at_an_end"), [(0, True), (19, True), (2, False)])
def test_fit_tsc_rate_passes_over_a_sample_whose_clocks_came_late(late: int, at_an_end: bool) -> None:
    """A sample's clocks are read up to 1 ms after its TSC: the fit keeps to the samples read promptly."""
    samples = _clean_samples(20)
    slow = samples[late].reading
    samples[late] = replace(samples[late], reading=replace(slow, tsc=slow.tsc - 1_500_000))  # ~0.58 ms
    rate = fit_tsc_rate(samples)
    assert rate.cycles * MS == rate.ns * TSC_PER_MS  # exactly the true rate
    assert rate.khz == TSC_PER_MS
    # What a first-to-last fit gets when the late sample is one of its two.
    first, last = samples[0].reading, samples[-1].reading
    raw = last.clocks["MONOTONIC_RAW"] - first.clocks["MONOTONIC_RAW"]
    assert (abs(TscRate(last.tsc - first.tsc, raw).khz - TSC_PER_MS) > 1_000) == at_an_end


def test_observe_at_the_kernels_rate(tmp_path: Path) -> None:
    path = tmp_path / "probe.log"
    offset = write_log(path, clean_jump_lines())
    log = parse_probe_log(path)
    (at_true_rate,) = observe(log, [], record(offset), TSC_PER_MS).cpus
    (fitted,) = observe(log, [], record(offset)).cpus
    assert at_true_rate == fitted
    off = observe(log, [], record(offset), 2_600_000)
    assert off.rate == TscRate(2_600_000, 1_000_000)
    (cpu,) = off.cpus
    assert cpu.tsc_step_ns == 1_997_023_846  # 2000 * 2_596_131 cycles at 2.6 GHz, floored
    assert cpu.window_ns == 2_079_900_335  # 2083 ms of cycles, likewise
    assert cpu.jump_ns == fitted.jump_ns  # clock steps need no rate


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "fewer than two probe samples"),
        ([_sample(1, 1)], "fewer than two probe samples"),
        ([_sample(5, 1), _sample(5, 10)], "do not advance"),
        ([_sample(5, 10), _sample(9, 10)], "do not advance"),
        ([_sample(9, 1), _sample(5, 10)], "do not advance"),
    ],
)
def test_fit_tsc_rate_refuses(samples: list[Sample], message: str) -> None:
    with pytest.raises(ObservationError, match=message):
        fit_tsc_rate(samples)


# ---------------------------------------------------------------------------
# (f) The probe wrote while the guest was meant to be stopped


def test_probe_wrote_during_the_pause(tmp_path: Path) -> None:
    path = tmp_path / "probe.log"
    offset = write_log(path, clean_jump_lines())
    log = parse_probe_log(path)
    assert observe(log, [], record(offset, cont=offset)).quiet_during_pause
    assert not observe(log, [], record(offset, cont=offset + 71)).quiet_during_pause


# ---------------------------------------------------------------------------
# Real runs


def _real_run(case: str, tsc_khz: int | None = None) -> tuple[PauseRecord, Observation]:
    pause = PauseRecord(**json.loads((DATA / case / "pause.json").read_text()))
    log = parse_probe_log(DATA / case / "probe.log")
    return pause, observe(log, parse_console_log(DATA / case / "console.log"), pause, tsc_khz)


def _refined_khz(case: str) -> int:
    """The guest kernel's 'Refined TSC clocksource calibration' of the run, in kHz."""
    (refined,) = [m for m in parse_console_log(DATA / case / "console.log") if m.kind == "tsc-refined"]
    return int(refined.fields["mhz"]) * 1000 + int(refined.fields["khz"])


def test_real_acpi_pm_negative() -> None:
    """3.5 s SIGSTOP, acpi_pm: a negative delta clamped, a step back, a freeze, a wrap lost."""
    assert _refined_khz("acpi_pm-negative") == 2_596_131
    pause, observation = _real_run("acpi_pm-negative", 2_596_131)
    assert (pause.probe_offset, pause.console_offset, pause.measured_ns) == (27_843, 23_223, 3_500_003_249)

    assert observation.clocksource == "acpi_pm"
    assert observation.quiet_during_pause
    assert observation.rate == TscRate(2_596_131, 1_000_000)
    assert [m.kind for m in observation.boot_messages] == [
        "switched",
        "switched",
        "sched-clock-stable",
        "tsc-refined",
    ]
    assert [m.kind for m in observation.messages] == ["long-readout"]

    (cpu,) = observation.cpus
    tick_ns = 4 * MS  # HZ=250
    wrap_ns = (1 << 24) * 1_000_000_000 // ACPI_PM_HZ  # 4_686_968_874
    assert cpu.pause_step is not None
    assert cpu.pause_step.offset == pause.probe_offset  # the first line written after the pause
    assert cpu.tsc_step_ns == 3_500_353_370
    assert pause.measured_ns <= cpu.tsc_step_ns <= pause.measured_ns + 5 * MS
    assert all(0 < cpu.backwards_ns[clock] <= tick_ns for clock in CLOCKS)
    assert cpu.backwards_ns == per_clock(2_808_737, 2_809_575, 2_810_413, 2_811_251)
    assert cpu.jump_ns == {clock: -back for clock, back in cpu.backwards_ns.items()}
    # Back to exactly the last update: the time since it, read off MONOTONIC_COARSE.
    assert cpu.since_update_ns == cpu.backwards_ns["MONOTONIC"]
    assert cpu.longest_update_gap_ns == 8_116_954
    assert 1_000_000_000 <= cpu.frozen_ns <= 1_400_000_000
    assert cpu.frozen_ns == 1_183_838_637
    assert abs(cpu.lost_ns["MONOTONIC"] - wrap_ns) < MS
    assert cpu.lost_ns == per_clock(4_687_024_359, 4_687_024_359, 4_687_024_359, 4_687_024_358)
    assert cpu.window_ns == 7_677_757_538
    # The pause, the freeze and the step back make up one wrap, to within the sampling.
    assert abs(cpu.tsc_step_ns + cpu.frozen_ns + cpu.backwards_ns["MONOTONIC"] - wrap_ns) < 100_000


def test_real_acpi_pm_negative_with_a_fitted_rate() -> None:
    _, observation = _real_run("acpi_pm-negative")
    # vCPU 0's samples before the pause, against its ACPI PM-driven MONOTONIC_RAW: 7 ppm off the kernel's.
    assert observation.rate == TscRate(4_570_012_694, 1_760_303_894)
    assert observation.rate.khz == 2_596_149
    (cpu,) = observation.cpus
    assert cpu.tsc_step_ns == 3_500_327_952
    assert cpu.frozen_ns == 1_183_830_041
    assert cpu.lost_ns == per_clock(4_686_968_607, 4_686_968_607, 4_686_968_607, 4_686_968_606)
    # In the ACPI PM's own time the loss is its wrap, to 300 ns.
    assert abs(cpu.lost_ns["MONOTONIC_RAW"] - (1 << 24) * 1_000_000_000 // ACPI_PM_HZ) < 300


def test_real_two_cpus_each_reader_sees_the_pause() -> None:
    """5 s SIGSTOP, tsc, 2 vCPUs: what each reader saw, in the figures that need no TSC rate."""
    pause, observation = _real_run("tsc-short-2vcpu")
    assert (pause.probe_offset, pause.console_offset, pause.measured_ns) == (57_424, 23_657, 5_000_002_018)
    assert observation.quiet_during_pause
    assert observation.messages == []  # tsc=reliable: the TSC is not watched, nothing printed
    assert [m.kind for m in observation.boot_messages] == [
        "switched",
        "sched-clock-stable",
        "tsc-refined",
        "switched",
    ]
    first, second = observation.cpus
    assert (first.cpu, second.cpu) == (0, 1)
    assert first.pause_step is not None
    assert second.pause_step is not None
    # vCPU 1 wrote its J line first; both come after the host's offset.
    assert (second.pause_step.offset, first.pause_step.offset) == (57_509, 57_757)
    assert (first.pause_step.tsc_cycles, second.pause_step.tsc_cycles) == (12_993_340_931, 12_981_282_430)
    assert first.jump_ns == per_clock(5_004_888_357, 5_004_888_417, 5_004_888_426, 5_004_888_466)
    assert second.jump_ns == per_clock(5_000_245_931, 5_000_302_776, 5_000_303_046, 5_000_303_497)
    assert (first.since_update_ns, second.since_update_ns) == (5_226_278, 5_509_911)
    assert (first.longest_update_gap_ns, second.longest_update_gap_ns) == (17_247_698, 11_204_639)
    # The overdue tick had not run on either reader's first read after the pause.
    assert first.pause_step.after.coarse == first.pause_step.before.coarse == 5_749_332_164
    assert second.pause_step.after.coarse == 5_749_332_164
    for cpu in (first, second):
        assert cpu.backwards_ns == per_clock(0, 0, 0, 0)
        assert cpu.correction_ns == per_clock(0, 0, 0, 0)
        assert cpu.frozen_ns == 0


def test_real_two_cpus_fitted_rate_is_the_kernels() -> None:
    # vCPU 0's sample 84, the first after the skipped quarter, read its TSC ~0.58 ms before its
    # clocks: a first-to-last fit was 243 ppm off (2596760 kHz) and showed ~-1.99 ms lost everywhere.
    pause, observation = _real_run("tsc-short-2vcpu")
    assert _refined_khz("tsc-short-2vcpu") == 2_596_130
    assert observation.rate == TscRate(5_283_189_064, 2_035_024_279)
    assert observation.rate.khz == 2_596_130
    first, second = observation.cpus
    assert (first.tsc_step_ns, second.tsc_step_ns) == (5_004_886_999, 5_000_242_201)
    assert first.lost_ns == per_clock(-1_666, -1_726, -1_856, -1_966)
    assert second.lost_ns == per_clock(-2_335, -2_415, -2_641, -2_801)
    for cpu in observation.cpus:
        assert pause.measured_ns <= cpu.tsc_step_ns <= pause.measured_ns + 50 * MS
        # With the tsc clocksource MONOTONIC_RAW is the TSC, scaled: the two steps agree to
        # within the probe's bracket (a sample's clocks are read up to 1 ms after its TSC).
        assert abs(cpu.tsc_step_ns - cpu.jump_ns["MONOTONIC_RAW"]) < MS
        assert all(abs(lost) < 5_000 for lost in cpu.lost_ns.values())


def test_real_two_cpus_at_the_kernels_rate() -> None:
    _, observation = _real_run("tsc-short-2vcpu", 2_596_130)
    first, second = observation.cpus
    assert observation.rate == TscRate(2_596_130, 1_000_000)
    assert (first.tsc_step_ns, second.tsc_step_ns) == (5_004_888_403, 5_000_243_604)
    assert (first.window_ns, second.window_ns) == (8_201_538_769, 8_214_655_403)
    assert first.lost_ns == per_clock(635, 575, 445, 335)
    assert second.lost_ns == per_clock(-30, -110, -336, -496)
