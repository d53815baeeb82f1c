"""Counter kinds register as their Linux drivers do."""

from __future__ import annotations

import pytest

from tsclab.clocksource import COUNTER_KINDS, ClocksourceError, counter_kind, hpet_freq_from_period


def test_hpet_frequency_comes_from_the_period_by_integer_division() -> None:
    assert hpet_freq_from_period(0x0429B17F) == 14_318_179  # Intel's 69 841 279 fs
    assert hpet_freq_from_period(69_841_278) == 14_318_180
    assert hpet_freq_from_period(10_000_000) == 100_000_000
    with pytest.raises(ClocksourceError):
        hpet_freq_from_period(0)


@pytest.mark.parametrize(
    ("key", "line"),
    [
        (
            "kvm-clock",
            "clocksource: kvm-clock: mask: 0xffffffffffffffff "
            "max_cycles: 0x1cd42e4dffb, max_idle_ns: 881590591483 ns",
        ),
        ("acpi_pm", "clocksource: acpi_pm: mask: 0xffffff max_cycles: 0xffffff, max_idle_ns: 2085701024 ns"),
        ("hpet", "clocksource: hpet: mask: 0xffffffff max_cycles: 0xffffffff, max_idle_ns: 133484873504 ns"),
    ],
)
def test_kinds_register_at_their_usual_rate(key: str, line: str) -> None:
    assert counter_kind(key).register().dmesg_line() == line


def test_tsc_registers_in_khz() -> None:
    cs = counter_kind("tsc").register(2_499_814)
    assert (cs.unit, cs.freq_hz) == ("khz", 2_499_814_000)
    assert cs.dmesg_line().endswith("max_cycles: 0x24088a0007e, max_idle_ns: 440795263290 ns")


def test_every_kind_has_a_consistent_description() -> None:
    for key, kind in COUNTER_KINDS.items():
        assert kind.key == key
        assert 1 <= kind.bits <= 64
        for freq in kind.usual_freqs:
            assert kind.register(freq).bits == kind.bits


def test_generic_needs_a_frequency_and_unknown_kinds_are_named() -> None:
    with pytest.raises(ClocksourceError, match="no usual frequency"):
        counter_kind("generic").register()
    with pytest.raises(ClocksourceError, match="acpi_pm"):
        counter_kind("pit")
