"""Registration math against real kernels' boot lines and the worked numbers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import U32_MAX, U64_MAX
from tsclab.clocksource import (
    Clocksource,
    ClocksourceError,
    clocks_calc_max_nsecs,
    clocks_calc_mult_shift,
    clocksource_max_adjustment,
    max_raw_delta_for,
    register,
)


def _register_record(rec: dict[str, Any]) -> Clocksource:
    if rec["unit"] == "khz":
        return register(rec["name"], rec["bits"], freq_khz=rec["freq"])
    assert rec["unit"] == "hz", rec
    return register(rec["name"], rec["bits"], freq_hz=rec["freq"])


def test_every_real_boot_line_is_reproduced(dmesg_records: list[dict[str, Any]]) -> None:
    assert len(dmesg_records) >= 12
    for rec in dmesg_records:
        cs = _register_record(rec)
        max_cycles = int(rec["max_cycles"], 16)
        assert (cs.max_cycles, cs.max_idle_ns) == (max_cycles, rec["max_idle_ns"]), rec["source"]
        mask = (1 << rec["bits"]) - 1
        expected_line = (
            f"clocksource: {rec['name']}: mask: 0x{mask:x} "
            f"max_cycles: {rec['max_cycles']}, max_idle_ns: {rec['max_idle_ns']} ns"
        )
        assert cs.dmesg_line() == expected_line


# docs/linux-timekeeping.md section 7.1 and 7.2, value for value.
WORKED = [
    # name, bits, unit, freq, mult, shift, maxadj, max_cycles, max_idle_ns
    ("tsc", 64, "khz", 2_000_000, 4_194_304, 23, 461_373, 0x39A85C9BFF6, 881_590_591_483),
    ("tsc", 64, "khz", 2_500_000, 6_710_886, 24, 738_197, 0x240939F1BB2, 440_795_263_295),
    ("tsc", 64, "khz", 3_000_000, 5_592_405, 24, 615_164, 0x2B3E459BF4C, 440_795_289_890),
    ("kvm-clock", 64, "hz", 1_000_000_000, 8_388_608, 23, 922_746, 0x1CD42E4DFFB, 881_590_591_483),
    ("hpet", 32, "hz", 14_318_180, 2_343_484_437, 25, 257_783_288, 0xFFFFFFFF, 133_484_873_504),
    ("acpi_pm", 24, "hz", 3_579_545, 2_343_484_437, 23, 257_783_288, 0xFFFFFF, 2_085_701_024),
]


@pytest.mark.parametrize(
    ("name", "bits", "unit", "freq", "mult", "shift", "maxadj", "max_cycles", "idle"), WORKED
)
def test_worked_numbers(
    name: str, bits: int, unit: str, freq: int, mult: int, shift: int, maxadj: int, max_cycles: int, idle: int
) -> None:
    cs = register(name, bits, freq_khz=freq) if unit == "khz" else register(name, bits, freq_hz=freq)
    assert (cs.mult, cs.shift, cs.maxadj, cs.max_cycles, cs.max_idle_ns) == (
        mult,
        shift,
        maxadj,
        max_cycles,
        idle,
    )


@pytest.mark.parametrize(
    ("khz", "line_tail"),
    [
        (2_499_814, "max_cycles: 0x24088a0007e, max_idle_ns: 440795263290 ns"),
        (2_592_000, "max_cycles: 0x255cb6cc5db, max_idle_ns: 440795203504 ns"),
        (2_495_952, "max_cycles: 0x23fa49fc138, max_idle_ns: 440795295059 ns"),
        (2_304_001, "max_cycles: 0x2135f8984a8, max_idle_ns: 440795232764 ns"),
        (2_600_001, "max_cycles: 0x257a3ce1c4c, max_idle_ns: 440795206275 ns"),
    ],
)
def test_section_7_2_tsc_lines(khz: int, line_tail: str) -> None:
    cs = register("tsc", 64, freq_khz=khz)
    assert cs.dmesg_line() == f"clocksource: tsc: mask: 0xffffffffffffffff {line_tail}"


@pytest.mark.parametrize(
    ("hz", "idle"),
    [
        (14_318_180, 133_484_873_504),
        (14_318_179, 133_484_882_848),
        (100_000_000, 19_112_604_467),
        (23_999_999, 79_635_855_245),
    ],
)
def test_section_7_2_hpet_lines(hz: int, idle: int) -> None:
    assert register("hpet", 32, freq_hz=hz).max_idle_ns == idle


@pytest.mark.parametrize(
    ("khz", "shift"),
    [
        # The shift sawtooth of kHz registration: shift 23 in the bands that
        # end at 1.0, 2.0, 4.0 and 8.0 GHz, 24 elsewhere in 1..8 GHz.
        (916_259, 24),
        (916_260, 23),
        (1_000_000, 23),
        (1_000_001, 24),
        (1_832_519, 24),
        (1_832_520, 23),
        (2_000_000, 23),
        (2_000_001, 24),
        (3_665_038, 24),
        (3_665_039, 23),
        (4_000_000, 23),
        (4_000_001, 24),
        (7_330_077, 24),
        (7_330_078, 23),
    ],
)
def test_tsc_shift_bands(khz: int, shift: int) -> None:
    assert register("tsc", 64, freq_khz=khz).shift == shift


@given(st.integers(min_value=1_000_000, max_value=8_000_000))
def test_64bit_counters_legacy_overflow_is_2_pow_64_minus_shift_ns(khz: int) -> None:
    # With the 600 s cap, mult * f ~= 2**shift * 1e9, so delta*mult wraps
    # after about 2**(64-shift) ns whatever the frequency (within 1 ppm + mult rounding).
    cs = register("tsc", 64, freq_khz=khz)
    first_wrapping_delta = -(-(1 << 64) // cs.mult)
    seconds = first_wrapping_delta / (khz * 1000)
    assert seconds == pytest.approx(2 ** (64 - cs.shift) / 1e9, rel=1e-6)


def test_max_raw_delta_rounds_each_term_down() -> None:
    assert max_raw_delta_for(0xFFFFFF) == 0x7FFFFF + 0x3FFFFF + 0x1FFFFF == 0xDFFFFD
    assert max_raw_delta_for(U64_MAX) == 0xDFFFFFFFFFFFFFFD


def test_maxadj_is_eleven_percent_truncated() -> None:
    assert clocksource_max_adjustment(6_710_886) == 738_197
    assert clocksource_max_adjustment(U32_MAX) == (U32_MAX * 11) // 100


def test_mult_reduction_loop_halves_large_mults() -> None:
    # A slow 32-bit counter asks for a mult near 2**32; 11% on top would
    # overflow u32, so the kernel halves mult and drops one shift.
    mult, shift = clocks_calc_mult_shift(32768, 1_000_000_000, 1)
    assert mult + clocksource_max_adjustment(mult) > U32_MAX
    cs = register("rtc32k", 32, freq_hz=32768)
    assert (cs.mult, cs.shift) == (mult >> 1, shift - 1)
    assert cs.mult + cs.maxadj <= U32_MAX


@given(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=U32_MAX),
    st.sampled_from(["hz", "khz"]),
)
def test_registration_invariants(bits: int, freq: int, unit: str) -> None:
    cs = register("x", bits, freq_hz=freq) if unit == "hz" else register("x", bits, freq_khz=freq)
    assert cs.mask == (1 << bits) - 1
    # mult +/- maxadj fits a u32 (the loop's guarantee) ...
    assert 0 < cs.mult <= U32_MAX
    assert cs.mult + cs.maxadj <= U32_MAX
    # ... so max_cycles * (mult + maxadj) cannot overflow 64 bits ...
    assert cs.max_cycles * (cs.mult + cs.maxadj) <= U64_MAX
    assert cs.max_cycles <= cs.mask
    # ... and max_cycles is the largest such delta (or the mask).
    assert cs.max_cycles == cs.mask or (cs.max_cycles + 1) * (cs.mult + cs.maxadj) > U64_MAX
    assert cs.max_idle_ns == (cs.max_cycles * (cs.mult - cs.maxadj) >> cs.shift) >> 1
    assert cs.max_raw_delta < cs.mask or cs.mask == 1


@given(st.integers(min_value=1, max_value=U32_MAX), st.integers(min_value=1, max_value=U32_MAX))
def test_calc_mult_shift_honours_its_range_guarantee(frm: int, maxsec: int) -> None:
    mult, shift = clocks_calc_mult_shift(frm, 1_000_000_000, maxsec)
    sftacc = 32 - ((maxsec * frm) >> 32).bit_length()
    assert mult < (1 << sftacc) or shift == 0
    assert 0 <= shift <= 32


def test_calc_max_nsecs_caps_at_mask() -> None:
    idle, max_cycles = clocks_calc_max_nsecs(2_343_484_437, 23, 257_783_288, 0xFFFFFF)
    assert (idle, max_cycles) == (2_085_701_024, 0xFFFFFF)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freq_hz": 0}, "positive"),
        ({"freq_hz": -5}, "positive"),
        ({"freq_khz": 0}, "positive"),
        ({"freq_hz": U32_MAX + 1}, "u32"),
        ({}, "exactly one"),
        ({"freq_hz": 1, "freq_khz": 1}, "exactly one"),
    ],
)
def test_register_rejects_bad_frequency(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ClocksourceError, match=message):
        register("tsc", 64, **kwargs)


@pytest.mark.parametrize("bits", [0, 65, -3])
def test_register_rejects_bad_width(bits: int) -> None:
    with pytest.raises(ClocksourceError, match=r"1\.\.64"):
        register("tsc", bits, freq_khz=2_500_000)


def test_register_rejects_empty_name() -> None:
    with pytest.raises(ClocksourceError, match="name"):
        register("", 64, freq_khz=2_500_000)


def test_clocksource_is_frozen() -> None:
    cs = register("tsc", 64, freq_khz=2_500_000)
    with pytest.raises(AttributeError):
        cs.mult = 1  # type: ignore[misc]
