"""Human-readable formatting and plain tables."""

from __future__ import annotations

import pytest

from tsclab.report.text import format_duration, format_frequency, format_seconds, render_table


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (None, "never"),
        (999, "999 ns"),
        (1_500, "1.5 us"),
        (2_085_701_024, "2.086 s"),
        (1_099_511_627_776, "1099.512 s"),
        (86_400 * 10**9, "24.00 h"),
        (7_378_697_629_483_820_647, "233.8 y"),
        (-1_500, "-1.5 us"),
    ],
)
def test_format_duration(ns: int | None, text: str) -> None:
    assert format_duration(ns) == text


def test_format_seconds_keeps_every_nanosecond() -> None:
    assert format_seconds(990_551_136_226) == "990.551136226 s"
    assert format_seconds(-5) == "-0.000000005 s"
    assert format_seconds(None) == "never"


@pytest.mark.parametrize(
    ("hz", "text"),
    [
        (2_500_000_000, "2.5 GHz"),
        (3_579_545, "3.579545 MHz"),
        (100_000_000, "100 MHz"),
        (32_768, "32.768 kHz"),
        (5, "5 Hz"),
    ],
)
def test_format_frequency(hz: int, text: str) -> None:
    assert format_frequency(hz) == text


def test_render_table_aligns_and_rejects_ragged_rows() -> None:
    out = render_table(["a", "num"], [["x", "1"], ["long", "123"]], right_align=(1,))
    assert out.splitlines() == ["a     num", "----  ---", "x       1", "long  123"]
    with pytest.raises(ValueError, match="cells"):
        render_table(["a"], [["1", "2"]])
