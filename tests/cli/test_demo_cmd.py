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
    data = json.loads(capsys.readouterr().out)
    rows = {row["label"]: row for row in data["horizons"]}
    fast = rows["tsc 2.5 GHz"]
    band = rows["tsc 2.0 GHz (shift-23 band)"]
    assert (fast["shift"], band["shift"]) == (24, 23)
    assert fast["legacy_overflow_backstep_ns"] == 1 << 40
    assert band["legacy_overflow_backstep_ns"] == 1 << 41


def test_demo_compares_raw_pauses_on_6_1_and_6_13(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["raw_pauses"]
    by_key = {(r["kernel"], r["pause_ns"]): {a["id"] for a in r["anomalies"]} for r in runs}
    day, twenty_min, minute = 86_400 * 10**9, 1_200 * 10**9, 60 * 10**9
    assert "overflow-garbage" in by_key[("linux-6.1", twenty_min)]
    assert "overflow-garbage" in by_key[("linux-6.1", day)]
    assert "overflow-garbage" not in by_key[("linux-6.13", day)]
    assert "overflow-garbage" not in by_key[("linux-6.1", minute)]
