"""Pause horizons: the deltas at which kernel code paths change behaviour."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import u64
from tsclab.clocksource import horizons_for, register
from tsclab.clocksource.horizons import cycles_to_pause_ns, legacy_overflow_cycles


def _legacy_read_ns(delta: int, mult: int, xtime_nsec: int, shift: int) -> int:
    """The pre-6.10 reader: ``(u64(delta*mult) + xtime_nsec) >> shift``, wrapping."""
    return u64(u64(delta * mult) + xtime_nsec) >> shift


def test_tsc_2_5_ghz_horizons() -> None:
    h = horizons_for(register("tsc", 64, freq_khz=2_500_000))
    assert h.slow_path.cycles == 0x240939F1BB2 + 1
    assert h.slow_path.pause_ns == 990_551_136_226
    assert h.legacy_overflow.cycles == -(-(1 << 64) // 6_710_886)
    assert h.legacy_overflow.pause_ns is not None
    assert abs(h.legacy_overflow.pause_ns - 1_099_511_627_776) < 1_000_000  # 2**40 ns within 1 ms
    assert h.reader_negative.cycles == 1 << 63
    assert h.reader_negative_6_10.cycles == 1 << 63
    assert h.writer_negative_6_13.cycles == 0xDFFFFFFFFFFFFFFD + 1
    assert h.wrap.cycles == 1 << 64


def test_legacy_overflow_horizon_is_where_the_reader_first_goes_wrong() -> None:
    cs = register("tsc", 64, freq_khz=2_500_000)
    first = legacy_overflow_cycles(cs.mult)
    assert _legacy_read_ns(first - 1, cs.mult, 0, cs.shift) == ((first - 1) * cs.mult) >> cs.shift
    # One cycle later the product has wrapped: the read falls back by 2**40 ns.
    assert ((first * cs.mult) >> cs.shift) - _legacy_read_ns(first, cs.mult, 0, cs.shift) == 1 << 40


def test_worked_example_pre_6_10_read_after_1100_s() -> None:
    # Section 7.1: TSC 2.5 GHz, xtime_nsec = 0.5 s, 1100 s after the last tick
    # the pre-6.10 reader returns 0.9883 s; the exact value is 1100.4999 s.
    cs = register("tsc", 64, freq_khz=2_500_000)
    xtime_nsec = 500_000_000 << cs.shift
    delta = 1100 * 2_500_000_000
    legacy = _legacy_read_ns(delta, cs.mult, xtime_nsec, cs.shift)
    exact = (delta * cs.mult + xtime_nsec) >> cs.shift
    assert round(legacy / 1e9, 4) == 0.9883
    assert round(exact / 1e9, 4) == 1100.4999
    assert exact - legacy == 1 << 40


def test_acpi_pm_horizons() -> None:
    h = horizons_for(register("acpi_pm", 24, freq_hz=3_579_545))
    assert h.wrap.cycles == 1 << 24
    assert h.wrap.pause_ns == 4_686_968_875
    assert h.reader_negative.cycles == 1 << 23
    assert h.writer_negative_pre_6_13.cycles == 1 << 23
    assert h.writer_negative_6_13.cycles == 0xDFFFFD + 1
    # max_cycles == mask: the 6.10+ reader never takes its checking branch.
    assert h.slow_path.cycles is None
    assert h.reader_negative_6_10.cycles is None
    # delta*mult stays far below 2**64 for a 24-bit delta.
    assert h.legacy_overflow.cycles is None


def test_hpet_horizons() -> None:
    h = horizons_for(register("hpet", 32, freq_hz=14_318_180))
    assert h.reader_negative.pause_ns == cycles_to_pause_ns(1 << 31, 14_318_180)
    assert round(h.reader_negative.pause_ns / 1e9, 2) == 149.98
    assert h.writer_negative_6_13.pause_ns is not None
    assert round(h.writer_negative_6_13.pause_ns / 1e9, 2) == 262.47
    assert h.wrap.pause_ns is not None
    assert round(h.wrap.pause_ns / 1e9, 2) == 299.97
    assert h.legacy_overflow.cycles is None  # the counter wraps first


@given(st.integers(min_value=0, max_value=1 << 70), st.integers(min_value=1, max_value=(1 << 32) - 1))
def test_pause_ns_is_the_shortest_pause_reaching_the_delta(cycles: int, freq_hz: int) -> None:
    ns = cycles_to_pause_ns(cycles, freq_hz)
    # The counter advances floor(ns * f / 1e9) cycles in ns nanoseconds.
    assert ns * freq_hz // 10**9 >= cycles
    assert ns == 0 or (ns - 1) * freq_hz // 10**9 < cycles


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=(1 << 32) - 1))
def test_horizon_ordering(bits: int, freq: int) -> None:
    h = horizons_for(register("x", bits, freq_hz=freq))
    if bits >= 2:
        assert h.reader_negative.cycles is not None
        assert h.writer_negative_6_13.cycles is not None
        assert h.wrap.cycles is not None
        assert h.reader_negative.cycles <= h.writer_negative_6_13.cycles <= h.wrap.cycles
    for horizon in h.all():
        assert (horizon.cycles is None) == (horizon.pause_ns is None)
