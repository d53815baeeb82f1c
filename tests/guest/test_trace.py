"""guest/trace.py: the probe's lines and the kernel's messages, field by field, byte offset by byte offset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tsclab.guest.trace import (
    CLOCKS,
    MESSAGE_PATTERNS,
    PROBE_VERSION,
    Frozen,
    KernelMessage,
    Reading,
    Sample,
    Step,
    TraceError,
    parse_console_log,
    parse_probe_log,
)

DATA = Path(__file__).parent / "data"


def _write(tmp_path: Path, lines: list[str], *, tail: str = "", newline: str = "\r\n") -> tuple[Path, bytes]:
    data = "".join(line + newline for line in lines).encode("ascii") + tail.encode("ascii")
    path = tmp_path / "probe.log"
    path.write_bytes(data)
    return path, data


def _header(ncpus: int = 1) -> list[str]:
    return [f"H {PROBE_VERSION} {ncpus} 10000000 20000000"]


# ---------------------------------------------------------------------------
# Probe lines

# Lines as the v3 probe writes them (taken from the acpi_pm-negative run, vCPU 1's made up).
S0 = "S 0 0 13163849817 1795637595400124736 2149787466 2149788583 1954073718 2145650627"
S1 = "S 1 0 13163900001 1795637595400150000 2149812730 2149813847 1954098982 2145650627"
J0 = (
    "J 0 21509517329 1795637598614757042 5364419772 5364420610 5168705745 5361610197 "
    "30596893224 1795637598611948305 5361610197 5361610197 5165894494 5361610197"
)
F0 = "F 0 30596893224 33670293410 5361610197 324735"
S0B = "S 0 1 33701856084 1795637598624103761 5373766491 5373767050 5178052184 5369610097"


def clocks(rt: int, mono: int, boot: int, raw: int) -> dict[str, int]:
    return {"REALTIME": rt, "MONOTONIC": mono, "BOOTTIME": boot, "MONOTONIC_RAW": raw}


def test_every_line_kind_with_fields_and_byte_offsets(tmp_path: Path) -> None:
    lines = [
        "C acpi_pm tsc-early hpet acpi_pm ",
        "U console=ttyS0 clocksource=acpi_pm panic=-1",
        "G  fpu tsc constant_tsc nonstop_tsc",
        f"H {PROBE_VERSION} 2 10000000 20000000",
        "K 1 2612867",
        "K 0 2613728",
        S0,
        S1,
        J0,
        F0,
        S0B,
    ]
    path, data = _write(tmp_path, lines, tail="S 1 1 1316390")  # QEMU stopped mid-line
    log = parse_probe_log(path)

    assert log.path == path
    assert log.current_clocksource == "acpi_pm"
    assert log.available_clocksources == ("tsc-early", "hpet", "acpi_pm")
    assert log.command_line == "console=ttyS0 clocksource=acpi_pm panic=-1"
    assert log.cpu_flags == frozenset({"fpu", "tsc", "constant_tsc", "nonstop_tsc"})
    assert (log.ncpus, log.interval_ns, log.jump_ns) == (2, 10_000_000, 20_000_000)
    assert log.tsc_per_ms == {0: 2_613_728, 1: 2_612_867}

    # Offsets count the tty's \r\n: 35 + 46 + 37 + 25 + 13 + 13 bytes of lines before S0.
    assert data.index(S0.encode()) == 169
    s0 = Sample(
        0,
        0,
        Reading(
            13_163_849_817,
            clocks(1_795_637_595_400_124_736, 2_149_787_466, 2_149_788_583, 1_954_073_718),
            2_145_650_627,
        ),
        169,
    )
    s1 = Sample(
        1,
        0,
        Reading(
            13_163_900_001,
            clocks(1_795_637_595_400_150_000, 2_149_812_730, 2_149_813_847, 1_954_098_982),
            2_145_650_627,
        ),
        169 + len(S0) + 2,
    )
    s0b = Sample(
        0,
        1,
        Reading(
            33_701_856_084,
            clocks(1_795_637_598_624_103_761, 5_373_766_491, 5_373_767_050, 5_178_052_184),
            5_369_610_097,
        ),
        data.index(S0B.encode()),
    )
    assert log.samples == [s0, s1, s0b]
    assert s0.reading.since_update_ns == 4_136_839  # MONOTONIC less MONOTONIC_COARSE
    step = Step(
        0,
        Reading(
            21_509_517_329,
            clocks(1_795_637_598_614_757_042, 5_364_419_772, 5_364_420_610, 5_168_705_745),
            5_361_610_197,
        ),
        Reading(
            30_596_893_224,
            clocks(1_795_637_598_611_948_305, 5_361_610_197, 5_361_610_197, 5_165_894_494),
            5_361_610_197,
        ),
        data.index(J0.encode()),
    )
    assert log.steps == [step]
    # The reader clamped to the last update: MONOTONIC fell back exactly to its coarse twin.
    assert step.before.since_update_ns == 2_809_575
    assert step.after.since_update_ns == 0
    assert log.frozen == [
        Frozen(0, 30_596_893_224, 33_670_293_410, 5_361_610_197, 324_735, data.index(b"F 0"))
    ]
    # Offsets are exact: each line starts right after the previous line's \r\n.
    offsets = [s.offset for s in log.samples] + [s.offset for s in log.steps] + [f.offset for f in log.frozen]
    for offset in offsets:
        assert data[offset - 2 : offset] == b"\r\n"


def test_step_arithmetic() -> None:
    before = Reading(1_000, dict(zip(CLOCKS, (50, 40, 30, 20), strict=True)), 35)
    after = Reading(9_000_000_000, dict(zip(CLOCKS, (45, 41, 29, 2_000_000_020), strict=True)), 41)
    step = Step(3, before, after, 77)
    assert step.tsc_cycles == 8_999_999_000
    assert [step.clock_step(clock) for clock in CLOCKS] == [-5, 1, -1, 2_000_000_000]
    assert (before.since_update_ns, after.since_update_ns) == (5, 0)


def test_unix_newlines_and_blank_lines_keep_offsets(tmp_path: Path) -> None:
    path, data = _write(tmp_path, [*_header(), "", "K 0 2596131", S0], newline="\n")
    log = parse_probe_log(path)
    assert log.tsc_per_ms == {0: 2_596_131}
    assert [s.offset for s in log.samples] == [len(_header()[0]) + 1 + 1 + len("K 0 2596131") + 1]
    assert log.samples[0].offset == data.index(b"S 0")


@pytest.mark.parametrize(
    "tail",
    [
        "S 0 1 3370185",  # too few numbers, but cut short
        "J 0 21509517329 17956375986",
        "F 0 30596893224 3367029",
        "S 0 1 33701856084 1795637598624103761 5373766491 5373767050 5178052184",  # one number short
        "S 0 1 33701856084 17956375986241X",  # cut inside a number (garbled)
        "Q",  # not even a tag yet
    ],
)
def test_cut_short_last_line_is_ignored(tmp_path: Path, tail: str) -> None:
    path, _ = _write(tmp_path, [*_header(), "K 0 2596131", S0], tail=tail)
    log = parse_probe_log(path)
    assert [s.seq for s in log.samples] == [0]
    assert log.steps == []
    assert log.frozen == []


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("S 0 1 33701856084 1795637598624103761", "expected 8 numbers, got 4"),
        # A v1/v2 sample: no MONOTONIC_COARSE.
        (
            "S 0 1 33701856084 1795637598624103761 5373766491 5373767050 5178052184",
            "expected 8 numbers, got 7",
        ),
        (S0 + " 12", "expected 8 numbers, got 9"),
        ("J 0 1 2 3 4 5 6 7 8 9 10 11", "expected 13 numbers, got 12"),
        ("J 0 1 2 3 4 5 6 7 8 9 10", "expected 13 numbers, got 11"),
        ("F 0 30596893224 33670293410 5361610197", "expected 5 numbers, got 4"),
        ("K 0", "expected 2 numbers, got 1"),
        ("K 0 2596.131", "expected whole numbers, got '0 2596.131'"),
        ("S 0 1 0x1f 1 2 3 4 5", "expected whole numbers, got '0 1 0x1f 1 2 3 4 5'"),
        ("C", "expected the current clocksource"),
        ("Z 0 1", "expected a probe line (H, K, S, J, F, C, U, G), got 'Z 0 1'"),
        ("s 0 0 1 2 3 4 5 6", "expected a probe line (H, K, S, J, F, C, U, G), got 's 0 0 1 2 3 4 5 6'"),
    ],
)
def test_malformed_middle_line_names_file_line_and_expectation(
    tmp_path: Path, bad: str, expected: str
) -> None:
    path, _ = _write(tmp_path, [*_header(), "K 0 2596131", S0, bad, S0B])
    with pytest.raises(TraceError, match=re.escape(f"{path}:4: {expected}")):
        parse_probe_log(path)


def test_malformed_complete_last_line_is_an_error(tmp_path: Path) -> None:
    # Terminated by a newline: written whole, so it is not a cut-short line.
    path, _ = _write(tmp_path, [*_header(), S0, "S 0 1 2"])
    with pytest.raises(TraceError, match=re.escape(f"{path}:3: expected 8 numbers, got 3")):
        parse_probe_log(path)


def test_line_numbers_count_from_one_and_include_blank_lines(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, ["", "", *_header(), "K zero 1"], newline="\n")
    with pytest.raises(TraceError, match=re.escape(f"{path}:4: expected whole numbers")):
        parse_probe_log(path)


def test_long_garbage_is_quoted_to_80_characters(tmp_path: Path) -> None:
    garbage = "?" * 200
    path, _ = _write(tmp_path, [*_header(), garbage])
    with pytest.raises(TraceError) as err:
        parse_probe_log(path)
    assert str(err.value) == (f"{path}:2: expected a probe line (H, K, S, J, F, C, U, G), got {'?' * 80!r}")


@pytest.mark.parametrize("other", [PROBE_VERSION - 1, PROBE_VERSION + 1, 0])
def test_wrong_probe_version(tmp_path: Path, other: int) -> None:
    path, _ = _write(tmp_path, ["C tsc tsc", f"H {other} 1 10000000 20000000", "K 0 2596131"])
    with pytest.raises(TraceError) as err:
        parse_probe_log(path)
    assert str(err.value) == (f"{path}:2: probe version {other}, expected {PROBE_VERSION}: rebuild the guest")


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["C tsc tsc hpet acpi_pm", "U console=ttyS0", "G fpu tsc"],
    ],
)
def test_no_header(tmp_path: Path, lines: list[str]) -> None:
    # Only a cut-short header came: that is no header.
    path, _ = _write(tmp_path, lines, tail=f"H {PROBE_VERSION} 1 1000")
    with pytest.raises(TraceError) as err:
        parse_probe_log(path)
    assert str(err.value) == f"{path}: no probe header ('H ...' line): the probe never started"


def test_x_line_is_an_error(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, [*_header(2), "K 0 2596131", "X 1 affinity", S0])
    with pytest.raises(TraceError) as err:
        parse_probe_log(path)
    assert str(err.value) == f"{path}:3: the probe could not pin a reader to its CPU (1 affinity)"


def test_real_probe_log() -> None:
    path = DATA / "acpi_pm-negative" / "probe.log"
    data = path.read_bytes()
    log = parse_probe_log(path)
    assert log.current_clocksource == "acpi_pm"
    assert log.available_clocksources == ("tsc-early", "hpet", "acpi_pm")
    assert log.command_line == "console=ttyS0 clocksource=acpi_pm panic=-1"
    assert {"tsc", "rdtscp", "hypervisor"} <= log.cpu_flags
    assert "constant_tsc" not in log.cpu_flags
    assert (log.ncpus, log.interval_ns, log.jump_ns) == (1, 10_000_000, 20_000_000)
    assert log.tsc_per_ms == {0: 2_725_308}
    assert len(log.samples) == 621
    assert [s.seq for s in log.samples] == list(range(621))
    assert (log.samples[0].offset, log.samples[-1].offset) == (583, 53_377)
    assert data[53_377:].startswith(b"S 0 620 41440276840 ")
    assert log.samples[-1].reading.tsc == 41_440_276_840
    assert log.samples[-1].reading.coarse == 8_353_572_583
    assert [s.offset for s in log.steps] == [27_843]  # where the host's pause.json says the pause fell
    assert log.steps[0].tsc_cycles == 9_087_375_895
    assert log.steps[0].clock_step("MONOTONIC") == -2_809_575
    assert log.frozen == [Frozen(0, 30_596_893_224, 33_670_293_410, 5_361_610_197, 324_735, 28_000)]


# ---------------------------------------------------------------------------
# Console lines

CONSOLE = [
    "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
    "[    0.252002] tsc: Marking TSC unstable due to TSCs unsynchronized",
    "[    1.334715] sched_clock: Marking stable (1302206564, 32083844)->(1346055614, -11765206)",
    "[    2.144862] tsc: Refined TSC clocksource calibration: 2596.131 MHz",
    "[    2.146002] clocksource: Switched to clocksource tsc",
    "[    9.455460] clocksource: Long readout interval, skipping watchdog check: "
    "cs_nsec: 5199022898 wd_nsec: 5198984510",
    "[   40.123456] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [probe:63]",
    "[   40.123999] Modules linked in:",
    "[   41.000001] clocksource: timekeeping watchdog on CPU0: Marking clocksource 'tsc' as unstable "
    "because the skew is too large:",
    "[   61.500000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "[  245.760012] INFO: task probe:63 blocked for more than 120 seconds.",
    "clocksource: Switched to clocksource hpet",
    "[12345.678901] clocksource: Long readout interval, skipping watchdog check: cs_nsec: -5 wd_nsec: 7",
]


def test_every_message_kind_from_realistic_lines(tmp_path: Path) -> None:
    data = "\r\n".join(CONSOLE).encode() + b"\r\n"
    path = tmp_path / "console.log"
    path.write_bytes(data)

    def at(line: str) -> int:
        return data.index(line.encode())

    expected = [
        KernelMessage(
            "tsc-unstable", 252_002_000, {"reason": "TSCs unsynchronized"}, CONSOLE[1], at(CONSOLE[1])
        ),
        KernelMessage("sched-clock-stable", 1_334_715_000, {}, CONSOLE[2], at(CONSOLE[2])),
        KernelMessage(
            "tsc-refined", 2_144_862_000, {"mhz": "2596", "khz": "131"}, CONSOLE[3], at(CONSOLE[3])
        ),
        KernelMessage("switched", 2_146_002_000, {"name": "tsc"}, CONSOLE[4], at(CONSOLE[4])),
        KernelMessage(
            "long-readout",
            9_455_460_000,
            {"cs_nsec": "5199022898", "wd_nsec": "5198984510"},
            CONSOLE[5],
            at(CONSOLE[5]),
        ),
        KernelMessage(
            "softlockup", 40_123_456_000, {"cpu": "0", "seconds": "22"}, CONSOLE[6], at(CONSOLE[6])
        ),
        KernelMessage("clocksource-unstable", 41_000_001_000, {"name": "tsc"}, CONSOLE[8], at(CONSOLE[8])),
        KernelMessage("rcu-stall", 61_500_000_000, {"flavour": "rcu_preempt"}, CONSOLE[9], at(CONSOLE[9])),
        KernelMessage(
            "hung-task", 245_760_012_000, {"task": "probe:63", "seconds": "120"}, CONSOLE[10], at(CONSOLE[10])
        ),
        KernelMessage("switched", None, {"name": "hpet"}, CONSOLE[11], at(CONSOLE[11])),
        KernelMessage(
            "long-readout",
            12_345_678_901_000,
            {"cs_nsec": "-5", "wd_nsec": "7"},
            CONSOLE[12],
            at(CONSOLE[12]),
        ),
    ]
    assert parse_console_log(path) == expected
    # Every kind the check looks for is exercised here.
    assert {m.kind for m in expected} == set(MESSAGE_PATTERNS)


def test_self_detected_rcu_stall_is_an_rcu_stall(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_text("[   61.500000] rcu: INFO: rcu_preempt self-detected stall on CPU\n")
    assert [m.kind for m in parse_console_log(path)] == ["rcu-stall"]


def test_console_offsets_with_a_cut_short_last_line(tmp_path: Path) -> None:
    first = "[    2.146002] clocksource: Switched to clocksource tsc"
    data = (first + "\n" + "[   40.123456] watchdog: BUG: soft lockup - CPU#0 stuck for 2").encode()
    path = tmp_path / "console.log"
    path.write_bytes(data)
    # The cut line does not match ("s!" never came); the whole one keeps offset 0.
    assert parse_console_log(path) == [KernelMessage("switched", 2_146_002_000, {"name": "tsc"}, first, 0)]


def test_stamp_needs_six_digits_of_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_text("[ 2.14600] clocksource: Switched to clocksource tsc\n")
    (message,) = parse_console_log(path)
    assert message.stamp_ns is None
    assert message.fields == {"name": "tsc"}


def test_real_console_log() -> None:
    messages = parse_console_log(DATA / "acpi_pm-negative" / "console.log")
    assert [(m.kind, m.stamp_ns, m.offset) for m in messages] == [
        ("switched", 1_004_830_000, 17_126),
        ("switched", 1_110_425_000, 17_551),
        ("sched-clock-stable", 1_361_585_000, 21_336),
        ("tsc-refined", 2_172_858_000, 23_037),
        ("long-readout", 10_443_765_000, 23_223),
    ]
    assert [m.fields.get("name") for m in messages[:2]] == ["tsc-early", "acpi_pm"]
    assert messages[3].fields == {"mhz": "2596", "khz": "131"}
    assert messages[4].fields == {"cs_nsec": "5167047496", "wd_nsec": "5167006470"}
    assert messages[4].line == (
        "[   10.443765] clocksource: Long readout interval, skipping watchdog check: "
        "cs_nsec: 5167047496 wd_nsec: 5167006470"
    )


def test_real_console_log_with_a_soft_lockup() -> None:
    messages = parse_console_log(DATA / "hpet-wrapped" / "console.log")
    assert [(m.kind, m.stamp_ns, m.fields, m.offset) for m in messages] == [
        ("switched", 971_731_000, {"name": "hpet"}, 17_120),
        ("sched-clock-stable", 1_318_027_000, {}, 21_264),
        ("tsc-refined", 2_140_681_000, {"mhz": "2596", "khz": "130"}, 22_966),
        ("softlockup", 52_508_112_000, {"cpu": "0", "seconds": "44"}, 23_152),
        ("long-readout", 52_516_135_000, {"cs_nsec": "46247678935", "wd_nsec": "3297655010"}, 26_366),
    ]
