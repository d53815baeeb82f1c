"""``tsclab advise`` and ``tsclab profiles``: output, JSON, bad input."""

from __future__ import annotations

import json

import pytest

from tsclab.cli import main
from tsclab.units import parse_duration


def test_advise_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "advise",
        "--clocksource",
        "tsc",
        "--khz",
        "2500000",
        "--kernel",
        "linux-6.1",
        "--pause",
        "20m",
        "--json",
    ]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "linux-6.1"
    assert data["pause_ns"] == 1_200 * 10**9
    ids = {a["id"] for a in data["anomalies"]}
    assert "overflow-garbage" in ids
    for anomaly in data["anomalies"]:
        assert isinstance(anomaly["magnitude_ns"], int)
        assert anomaly["clock"]
    assert {r["when"] for r in data["reads"]} >= {"after-resume", "after-first-tick", "steady"}
    assert data["writer"]["second_overflow_calls"] >= 1200


def test_advise_text_and_determinism(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["advise", "--clocksource", "acpi_pm", "--hz", "3579545", "--bits", "24", "--kernel", "linux-6.1"]
    assert main([*args, "--pause", "3s"]) == 0
    first = capsys.readouterr().out
    assert main([*args, "--pause", "3s"]) == 0
    assert capsys.readouterr().out == first
    assert "wrap-loss" in first
    assert "time-frozen" in first


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--kernel", "linux-9.9", "--pause", "1s"], "unknown kernel profile"),
        (["--kernel", "linux-6.1", "--pause", "1 fortnight"], "duration"),
        (["--kernel", "linux-6.1", "--pause", "-5s"], "non-negative"),
        (["--kernel", "linux-6.1", "--pause", "5"], "unit"),
        (["--kernel", "linux-6.1", "--pause", "1s", "--phase", "1s"], "shorter than one tick"),
        (["--kernel", "linux-6.1", "--pause", "1s", "--hz-tick", "0"], "positive"),
        (["--kernel", "linux-6.1", "--pause", "1s", "--hz-tick", "3000000000"], "tick rate"),
        (["--kernel", "linux-6.1", "--pause", "101d"], "at most 100d"),
        (["--kernel", "linux-6.1"], "--pause"),
        (["--kernel", "linux-6.1", "--pause", "1s", "--hz", "1000"], "exactly one of --khz or --hz"),
    ],
)
def test_advise_bad_input_exits_2(capsys: pytest.CaptureFixture[str], extra: list[str], needle: str) -> None:
    code = main(["advise", "--clocksource", "tsc", "--khz", "2500000", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1200s", 1_200 * 10**9),
        ("20m", 1_200 * 10**9),
        ("8h", 8 * 3600 * 10**9),
        ("2d", 2 * 86400 * 10**9),
        ("1500ms", 1_500_000_000),
        ("300us", 300_000),
        ("10ns", 10),
        ("2.5s", 2_500_000_000),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


def test_profiles_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in ("linux-5.10", "linux-6.1", "linux-6.10", "linux-6.13"):
        assert name in out
    assert main(["profiles", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["linux-6.13"]["writer negative motion"] == "max_raw_delta (87.5%)"
