"""Reader math per version against the worked numbers (docs section 7.1)."""

from __future__ import annotations

import pytest

from tsclab.clocksource import register
from tsclab.kernel.profiles import get_profile
from tsclab.kernel.readers import TkReadBase, clocksource_delta, timekeeping_cycles_to_ns

TSC = register("tsc", 64, freq_khz=2_500_000)
HALF_SECOND = 500_000_000 << TSC.shift

# pause (s) -> (pre-6.10 reading, 6.10+ reading), seconds past cycle_last's second, 4 decimals
WORKED = {
    1099: (1099.4999, 1099.4999),
    1100: (0.9883, 1100.4999),
    1200: (100.9883, 1200.4999),
    3000: (801.4766, 3000.4998),
    86400: (638.5879, 86400.4948),
}


@pytest.mark.parametrize("pause_s", sorted(WORKED))
def test_section_7_1_readings(pause_s: int) -> None:
    tkr = TkReadBase.for_clock(TSC, cycle_last=0)
    tkr.xtime_nsec = HALF_SECOND
    cycles = pause_s * 2_500_000_000
    legacy, _ = timekeeping_cycles_to_ns(tkr, cycles, get_profile("linux-6.1"))
    protected, _ = timekeeping_cycles_to_ns(tkr, cycles, get_profile("linux-6.10"))
    # The reference table gives 4 decimals (rounded in most rows, truncated
    # in one): agree to within one unit of the last place.
    assert legacy / 1e9 == pytest.approx(WORKED[pause_s][0], abs=1e-4)
    assert protected / 1e9 == pytest.approx(WORKED[pause_s][1], abs=1e-4)
    exact = (cycles * TSC.mult + HALF_SECOND) >> TSC.shift
    assert protected == exact
    # The wrapped reading is short by whole 2**40 ns steps, nothing else.
    assert (exact - legacy) % (1 << 40) == 0


def test_shift_23_band_doubles_the_horizon() -> None:
    tsc2 = register("tsc", 64, freq_khz=2_000_000)
    tkr = TkReadBase.for_clock(tsc2, cycle_last=0)
    old = get_profile("linux-6.1")
    for pause_s, wraps in ((1100, False), (2100, False), (2200, True)):
        cycles = pause_s * 2_000_000_000
        ns, _ = timekeeping_cycles_to_ns(tkr, cycles, old)
        assert (ns < pause_s * 10**9 - 10**9) == wraps, pause_s


def test_debug_variant_caps_at_max_cycles() -> None:
    tkr = TkReadBase.for_clock(TSC, cycle_last=0)
    ns, flags = timekeeping_cycles_to_ns(tkr, 1100 * 2_500_000_000, get_profile("linux-6.1-debug"))
    assert flags.overflow_seen
    assert ns == (TSC.max_cycles * TSC.mult) >> TSC.shift


def test_negative_motion_per_version_on_a_small_counter() -> None:
    acpi = register("acpi_pm", 24, freq_hz=3_579_545)
    tkr = TkReadBase.for_clock(acpi, cycle_last=1000)
    tkr.xtime_nsec = 123 << acpi.shift
    past_half = 1000 + (1 << 23) + 5
    old, _ = timekeeping_cycles_to_ns(tkr, past_half, get_profile("linux-6.1"))
    new, _ = timekeeping_cycles_to_ns(tkr, past_half, get_profile("linux-6.13"))
    assert old == 123  # pre-6.10 x86: MSB set -> delta 0 -> the last update's time
    # 6.10+: max_cycles == mask, so the negative test is never reached.
    assert new == (((1 << 23) + 5) * acpi.mult + tkr.xtime_nsec) >> acpi.shift


def test_writer_delta_cutoffs() -> None:
    mask = 0xFFFFFF
    raw = (mask >> 1) + (mask >> 2) + (mask >> 3)
    assert clocksource_delta(1 << 23, 0, mask, "msb", raw) == 0
    assert clocksource_delta(1 << 23, 0, mask, "max-raw-delta", raw) == 1 << 23
    assert clocksource_delta(raw + 1, 0, mask, "max-raw-delta", raw) == 0
    assert clocksource_delta(raw, 0, mask, "max-raw-delta", raw) == raw


def test_reader_flags_name_the_branch_taken() -> None:
    tkr = TkReadBase.for_clock(TSC, cycle_last=0)
    tkr.xtime_nsec = HALF_SECOND
    past_horizon = 1100 * 2_500_000_000
    _, old = timekeeping_cycles_to_ns(tkr, past_horizon, get_profile("linux-6.1"))
    assert (old.path, old.wrap_loss_ns) == ("wrapped-multiply", 1 << 40)
    _, new = timekeeping_cycles_to_ns(tkr, past_horizon, get_profile("linux-6.13"))
    assert (new.path, new.wrap_loss_ns) == ("slow-path", 0)
    _, short = timekeeping_cycles_to_ns(tkr, 2_500_000_000, get_profile("linux-6.1"))
    assert short.path == "fast"
    _, negative = timekeeping_cycles_to_ns(tkr, 1 << 63, get_profile("linux-6.13"))
    assert negative.path == "negative-clamp"
    _, capped = timekeeping_cycles_to_ns(tkr, past_horizon, get_profile("linux-6.1-debug"))
    assert capped.path == "debug-capped"
