"""``tsclab clocksource``: the kernel's line first, tables or JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tsclab.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_first_line_is_the_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "clocksource", "--name", "tsc", "--khz", "2499814")
    assert code == 0, err
    assert out.splitlines()[0] == (
        "clocksource: tsc: mask: 0xffffffffffffffff max_cycles: 0x24088a0007e, max_idle_ns: 440795263290 ns"
    )
    for word in (
        "mult",
        "shift",
        "maxadj",
        "max_cycles",
        "max_idle_ns",
        "wrap period",
        "slow path",
        "overflow",
    ):
        assert word in out


def test_reproduces_the_real_sample_through_the_command(
    capsys: pytest.CaptureFixture[str], dmesg_records: list[dict[str, Any]]
) -> None:
    for rec in dmesg_records:
        unit = "--khz" if rec["unit"] == "khz" else "--hz"
        code, out, err = run(
            capsys, "clocksource", "--name", rec["name"], unit, str(rec["freq"]), "--bits", str(rec["bits"])
        )
        assert code == 0, err
        first = out.splitlines()[0]
        assert f"max_cycles: {rec['max_cycles']}, max_idle_ns: {rec['max_idle_ns']} ns" in first
        assert first.startswith(f"clocksource: {rec['name']}: mask: 0x")


def test_json_has_every_field_as_integers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "clocksource", "--name", "hpet", "--hz", "14318180", "--bits", "32", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["dmesg"].startswith("clocksource: hpet: mask: 0xffffffff")
    expected_ints = {
        "mult": 2_343_484_437,
        "shift": 25,
        "maxadj": 257_783_288,
        "max_cycles": 0xFFFFFFFF,
        "max_idle_ns": 133_484_873_504,
        "mask": 0xFFFFFFFF,
        "reader_negative_cycles": 1 << 31,
        "writer_negative_6_13_cycles": 0xDFFFFFFD + 1,
    }
    for key, value in expected_ints.items():
        assert data[key] == value, key
    for key in (
        "wrap_ns",
        "max_cycles_ns",
        "reader_negative_ns",
        "writer_negative_pre_6_13_ns",
        "writer_negative_6_13_ns",
    ):
        assert isinstance(data[key], int), key
        assert data[key] > 0, key
    # Horizons that cannot be reached are null, not zero.
    assert data["slow_path_ns"] is None
    assert data["legacy_overflow_ns"] is None


def test_json_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("clocksource", "--name", "tsc", "--khz", "2500000", "--json")
    assert run(capsys, *args)[1] == run(capsys, *args)[1]


def test_bits_default_to_64(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "clocksource", "--name", "kvm-clock", "--hz", "1000000000", "--json")
    assert json.loads(out)["bits"] == 64


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--name", "tsc", "--khz", "0"], "positive"),
        (["--name", "tsc", "--khz", "-2500000"], "positive"),
        (["--name", "tsc", "--hz", "0"], "positive"),
        (["--name", "tsc", "--khz", "abc"], "whole number"),
        (["--name", "tsc", "--khz", "2.5e6"], "whole number"),
        (["--name", "tsc", "--hz", "5000000000"], "u32"),
        (["--name", "tsc", "--khz", "2500000", "--bits", "0"], "1..64"),
        (["--name", "tsc", "--khz", "2500000", "--bits", "65"], "1..64"),
        (["--name", "tsc", "--khz", "2500000", "--bits", "x"], "1..64"),
        (["--name", "tsc", "--khz", "1", "--hz", "1"], "exactly one of --khz or --hz"),
        (["--name", "tsc"], "exactly one of --khz or --hz"),
        (["--khz", "2500000"], "--name"),
        (["--name", "", "--khz", "2500000"], "name"),
        (["--name", "tsc", "--khz", "2500000", "--bogus"], "--bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run(capsys, "clocksource", *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tsclab clocksource: error:")
    assert needle in lines[0]
    assert "Traceback" not in err


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert err.strip().startswith("tsclab: error:")


def test_console_script_and_module_entry_points() -> None:
    for cmd in ([sys.executable, "-m", "tsclab"],):
        done = subprocess.run(
            [*cmd, "clocksource", "--name", "acpi_pm", "--hz", "3579545", "--bits", "24"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == (
            "clocksource: acpi_pm: mask: 0xffffff max_cycles: 0xffffff, max_idle_ns: 2085701024 ns"
        )
        bad = subprocess.run(
            [*cmd, "clocksource", "--name", "x", "--khz", "zero"], capture_output=True, text=True, check=False
        )
        assert bad.returncode == 2
        assert "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
