"""``tsclab demo``: the horizon overview."""

from __future__ import annotations

import json

import pytest

from tsclab.cli import main


def test_demo_lists_each_clocksource_with_a_consequence_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for label in ("tsc 2.5 GHz", "shift-23 band", "kvm-clock", "hpet 14.318 MHz", "acpi_pm"):
        assert label in out
    lines = out.splitlines()
    consequence = [line for line in lines if line.startswith("tsc 2.5 GHz:")]
    assert len(consequence) == 1
    assert "990.551 s" in consequence[0]
    assert "1099.512 s" in consequence[0]
    acpi = next(line for line in lines if line.startswith("acpi_pm:"))
    for horizon in ("2.343 s", "4.101 s", "4.687 s"):
        assert horizon in acpi


def test_demo_shift_23_band_doubles_the_horizon(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    rows = {row["label"]: row for row in json.loads(capsys.readouterr().out)}
    fast = rows["tsc 2.5 GHz"]
    band = rows["tsc 2.0 GHz (shift-23 band)"]
    assert (fast["shift"], band["shift"]) == (24, 23)
    assert fast["legacy_overflow_backstep_ns"] == 1 << 40
    assert band["legacy_overflow_backstep_ns"] == 1 << 41
