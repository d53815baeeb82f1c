"""kernel/cs_watchdog.py: clocksource_watchdog() per variant, with exact dmesg lines.

The scene: a 2.5 GHz TSC (mult 6710886, shift 24) watched by QEMU's 100 MHz
HPET (mult 2684354560, shift 28; a 32-bit counter that wraps every 42.9 s).
The watchdog runs every 0.5 s; then a 28 s pause stretches one interval to
28.5 s.  The HPET register wraps inside that interval and its delta, 2.85e9
cycles, has the MSB of the 32-bit mask set: before 6.13 ``clocksource_delta()``
makes it 0, from 6.13 (cutoff 87.5 %, 3758096381 cycles) it is kept.

    cs_nsec = 71_250_000_000 * 6710886 >> 24 = 28_499_998_301
    wd_nsec = 0 (MSB rule) or 2_850_000_000 * 2684354560 >> 28 = 28_500_000_000
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tsclab.clocksource import register
from tsclab.kernel.cs_watchdog import (
    ClocksourceWatchdog,
    WatchdogOutcome,
    cyc2ns_delta,
    default_uncertainty_margin,
    div_s64_ms,
    watchdog_interval_max_ns,
)
from tsclab.kernel.profiles import LINUX_5_10, LINUX_6_1, LINUX_6_13, KernelProfile, WatchdogDelta

TSC = register("tsc", 64, freq_khz=2_500_000)
HPET = register("hpet", 32, freq_hz=100_000_000)
ACPI_PM = register("acpi_pm", 24, freq_hz=3_579_545)

C0 = 10_000_000_000_000  # 0x9184e72a000
W0 = 0xF000_0000
HALF_S_TSC = 1_250_000_000
HALF_S_HPET = 50_000_000
PAUSE_TSC = 71_250_000_000  # 28.5 s
PAUSE_HPET = 2_850_000_000

UNCERTAINTY_MARGIN = replace(LINUX_6_1, watchdog="uncertainty-margin", watchdog_delta="wrapping")
REWRITE = replace(LINUX_6_13, watchdog="rewrite-2026")
PAD = "clocksource:" + " " * 23


def hpet(x: int) -> int:
    return x & 0xFFFF_FFFF


def through_pause(
    profile: KernelProfile, *, system_running: bool = True
) -> tuple[ClocksourceWatchdog, list[WatchdogOutcome]]:
    """init, one normal 0.5 s run, then the run after the 28 s pause."""
    wd = ClocksourceWatchdog(TSC, HPET, profile, 250, system_running=system_running)
    c1, w1 = C0 + HALF_S_TSC, hpet(W0 + HALF_S_HPET)
    outcomes = [wd.run(C0, W0, 0), wd.run(c1, w1, 1), wd.run(c1 + PAUSE_TSC, hpet(w1 + PAUSE_HPET), 2)]
    return wd, outcomes


def test_interval_and_limits() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, LINUX_6_1, 250)
    assert wd.interval_jiffies == 125
    assert ClocksourceWatchdog(TSC, HPET, LINUX_6_1, 1000).interval_jiffies == 500
    assert watchdog_interval_max_ns(250) == 1_000_000_000
    assert watchdog_interval_max_ns(300) == 999_999_900  # 2 * 150 * 3333333
    # One counter period is far below 2 * WATCHDOG_MAX_SKEW for both.
    assert (wd.cs_margin_ns, wd.wd_margin_ns) == (250_000, 250_000)
    assert default_uncertainty_margin(HPET, 50_000) == 100_000
    assert default_uncertainty_margin(register("tsc-early", 64, freq_khz=2_500_000), 125_000) == 32_000_000
    assert default_uncertainty_margin(register("slow", 32, freq_hz=1000), 125_000) == 1_000_000


def test_normal_runs() -> None:
    _, (first, second, _) = through_pause(LINUX_6_1)
    assert first == WatchdogOutcome("init", 0, 0, "")
    assert second == WatchdogOutcome("ok", 499_999_970, 500_000_000, "")


def test_threshold_62ms_marks_tsc_unstable_after_28s_pause() -> None:
    wd, (_, _, after) = through_pause(LINUX_5_10)
    assert after.kind == "unstable"
    assert (after.cs_nsec, after.wd_nsec) == (28_499_998_301, 0)
    assert after.printed.splitlines() == [
        "clocksource: timekeeping watchdog on CPU2: Marking clocksource 'tsc' as unstable because the skew is"
        " too large:",
        f"{PAD}'hpet' wd_now: 9cda7d00 wd_last: f2faf080 mask: ffffffff",
        f"{PAD}'tsc' cs_now: 9292fc8d500 cs_last: 91898f41c80 mask: ffffffffffffffff",
        "tsc: Marking TSC unstable due to clocksource watchdog",
    ]
    assert wd.unstable
    assert wd.run(C0, W0, 3) == WatchdogOutcome("unstable", 0, 0, "")  # already marked: nothing printed


def test_uncertainty_margin_variant_also_marks_it_unstable() -> None:
    _, (_, _, after) = through_pause(UNCERTAINTY_MARGIN)
    assert after.kind == "unstable"
    assert after.printed.splitlines()[1:] == [
        f"{PAD}'hpet' wd_nsec: 0 wd_now: 9cda7d00 wd_last: f2faf080 mask: ffffffff",
        f"{PAD}'tsc' cs_nsec: 28499998301 cs_now: 9292fc8d500 cs_last: 91898f41c80 mask: ffffffffffffffff",
        f"{PAD}'tsc' is current clocksource.",
        "tsc: Marking TSC unstable due to clocksource watchdog",
    ]


def test_interval_skip_skips_and_prints_only_when_the_interval_doubles() -> None:
    wd, (_, _, after) = through_pause(LINUX_6_1)
    assert after == WatchdogOutcome(
        "skipped-long-readout",
        28_499_998_301,
        0,
        "clocksource: Long readout interval, skipping watchdog check: cs_nsec: 28499998301 wd_nsec: 0",
    )
    assert not wd.unstable
    assert wd.watchdog_max_interval == 28_499_998_301
    c, w = wd.cs_last, wd.wd_last
    # 50 s more: longer, but not twice 28.5 s - skipped silently.
    quiet = wd.run(c + 125_000_000_000, w, 0)
    assert (quiet.kind, quiet.printed) == ("skipped-long-readout", "")
    # 60 s: more than twice the longest printed - printed again.
    c += 125_000_000_000
    loud = wd.run(c + 150_000_000_000, w, 0)
    assert loud.kind == "skipped-long-readout"
    assert loud.printed.startswith("clocksource: Long readout interval, skipping watchdog check: cs_nsec: 59")


def test_interval_skip_with_max_raw_delta_keeps_the_hpet_delta() -> None:
    _, (_, _, after) = through_pause(LINUX_6_13)
    assert (after.kind, after.cs_nsec, after.wd_nsec) == (
        "skipped-long-readout",
        28_499_998_301,
        28_500_000_000,
    )


def test_interval_skip_is_silent_before_the_system_runs() -> None:
    wd, (_, _, after) = through_pause(LINUX_6_1, system_running=False)
    assert (after.kind, after.printed) == ("skipped-long-readout", "")
    assert wd.watchdog_max_interval == 0


def test_skip_restarts_the_timer_from_now() -> None:
    wd, _ = through_pause(LINUX_6_1)
    assert wd.next_expires(expires=1000, jiffies_now=8000) == 8125
    wd.run(wd.cs_last + HALF_S_TSC, hpet(wd.wd_last + HALF_S_HPET), 0)
    assert wd.next_expires(expires=8125, jiffies_now=8126) == 8250  # += WATCHDOG_INTERVAL


def test_touch_rebaselines_instead_of_judging() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, LINUX_5_10, 250)
    c1, w1 = C0 + HALF_S_TSC, hpet(W0 + HALF_S_HPET)
    wd.run(C0, W0, 0)
    wd.run(c1, w1, 0)
    wd.touch()  # pvclock_touch_watchdogs() -> clocksource_touch_watchdog()
    after = wd.run(c1 + PAUSE_TSC, hpet(w1 + PAUSE_HPET), 0)
    assert after == WatchdogOutcome("reset", 0, 0, "")
    assert wd.reset_pending == 0
    c2, w2 = c1 + PAUSE_TSC, hpet(w1 + PAUSE_HPET)
    assert wd.run(c2 + HALF_S_TSC, hpet(w2 + HALF_S_HPET), 0).kind == "ok"


def test_two_touches_rebaseline_twice() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, LINUX_5_10, 250)
    wd.run(C0, W0, 0)
    wd.touch()
    wd.touch()
    assert wd.run(C0 + PAUSE_TSC, W0, 0).kind == "reset"
    assert wd.run(C0 + 2 * PAUSE_TSC, W0, 0).kind == "reset"
    assert wd.run(C0 + 3 * PAUSE_TSC, W0, 0).kind == "unstable"


def test_skew_message_of_6_3() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, LINUX_6_1, 250, current_clocksource="kvm-clock")
    wd.run(C0, W0, 0)
    out = wd.run(C0 + 1_252_500_000, hpet(W0 + HALF_S_HPET), 3)  # the TSC runs 2 ms/s fast
    assert (out.kind, out.cs_nsec, out.wd_nsec) == ("unstable", 500_999_970, 500_000_000)
    assert out.printed.splitlines()[1:] == [
        f"{PAD}'hpet' wd_nsec: 500000000 wd_now: f2faf080 wd_last: f0000000 mask: ffffffff",
        f"{PAD}'tsc' cs_nsec: 500999970 cs_now: 918991a4220 cs_last: 9184e72a000 mask: ffffffffffffffff",
        f"{PAD}Clocksource 'tsc' skewed 999970 ns (0 ms) over watchdog 'hpet'"
        " interval of 500000000 ns (500 ms)",
        f"{PAD}'kvm-clock' (not 'tsc') is current clocksource.",
        "tsc: Marking TSC unstable due to clocksource watchdog",
    ]


def test_skew_within_the_margin_is_ok() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, LINUX_6_1, 250)
    wd.run(C0, W0, 0)
    assert wd.run(C0 + 1_251_000_000, hpet(W0 + HALF_S_HPET), 0).kind == "ok"  # 0.4 ms < 0.5 ms


def test_rewrite_resets_beyond_max_idle_ns() -> None:
    wd, (_, second, after) = through_pause(REWRITE)
    assert second.kind == "ok"
    assert after == WatchdogOutcome("reset", 28_499_998_301, 28_500_000_000, "")  # > HPET's 19.1 s
    assert not wd.unstable


def test_rewrite_frequency_skew() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, REWRITE, 250)
    wd.run(C0, W0, 0)
    ok = wd.run(C0 + 1_250_250_000, hpet(W0 + HALF_S_HPET), 0)  # 200 ppm < 500 ppm
    assert ok.kind == "ok"
    wd = ClocksourceWatchdog(TSC, HPET, REWRITE, 250)
    wd.run(C0, W0, 0)
    bad = wd.run(C0 + 1_262_500_000, hpet(W0 + HALF_S_HPET), 0)  # 1 %
    assert bad.kind == "unstable"
    assert bad.printed.splitlines() == [
        "clocksource: Marking clocksource tsc unstable due to frequency skew",
        "clocksource: Watchdog                    hpet interval:        500000000ns",
        "clocksource: Clocksource                  tsc interval:        504999969ns",
        "tsc: Marking TSC unstable due to clocksource watchdog",
    ]


def test_rewrite_uncalibrated_allows_4000_ppm() -> None:
    wd = ClocksourceWatchdog(TSC, HPET, REWRITE, 250, calibrated=False)
    wd.run(C0, W0, 0)
    assert wd.run(C0 + 1_253_750_000, hpet(W0 + HALF_S_HPET), 0).kind == "ok"  # 3000 ppm


def test_acpi_pm_wrap_lands_below_one_second_but_cs_is_long() -> None:
    """acpi_pm (24 bits, 4.69 s) wraps six times in 28.5 s; max() still skips."""
    wd = ClocksourceWatchdog(TSC, ACPI_PM, LINUX_6_1, 250)
    wd.run(C0, 0, 0)
    out = wd.run(C0 + PAUSE_TSC, 102_017_032 & 0xFF_FFFF, 0)
    assert out.wd_nsec == cyc2ns_delta(ACPI_PM, 0, 1_353_736, "msb", "safe")
    assert out.wd_nsec < 1_000_000_000 < out.cs_nsec
    assert out.kind == "skipped-long-readout"


THOUSAND_S_TSC = 7_500_000_000_000  # 3000 s at 2.5 GHz, past max_cycles (990.55 s)


@pytest.mark.parametrize(
    ("to_ns", "expected"),
    [("wrapping", (THOUSAND_S_TSC * 6710886 % 2**64) >> 24), ("safe", (THOUSAND_S_TSC * 6710886) >> 24)],
)
def test_delta_to_ns_wraps_only_when_wrapping(to_ns: WatchdogDelta, expected: int) -> None:
    """clocksource_cyc2ns() loses 2**64 of the product; cycles_to_nsec_safe() does not."""
    assert cyc2ns_delta(TSC, 0, THOUSAND_S_TSC, "msb", to_ns) == expected


def test_wrapped_conversion_is_far_off() -> None:
    assert cyc2ns_delta(TSC, 0, THOUSAND_S_TSC, "msb", "safe") == 2_999_999_821_186
    assert cyc2ns_delta(TSC, 0, THOUSAND_S_TSC, "msb", "wrapping") == 800_976_565_634


def test_div_s64_ms_truncates_toward_zero() -> None:
    assert (div_s64_ms(1_999_999), div_s64_ms(-1_999_999), div_s64_ms(-1_000_000)) == (1, -1, -1)
