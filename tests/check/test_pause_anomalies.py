"""Raw-pause anomalies per kernel profile, worked out from the kernel code."""

from __future__ import annotations

import pytest

from tsclab.arith import NSEC_PER_SEC
from tsclab.check.pause_anomalies import Anomaly, find_anomalies
from tsclab.clocksource import Clocksource, register
from tsclab.kernel.profiles import get_profile
from tsclab.sim.raw_pause import PauseSetup, run_raw_pause

TSC = register("tsc", 64, freq_khz=2_500_000)
ACPI = register("acpi_pm", 24, freq_hz=3_579_545)


def anomalies(
    cs: Clocksource, profile: str, pause_ns: int, clock: str = "MONOTONIC", reader: str = "kernel"
) -> dict[str, Anomaly]:
    trace = run_raw_pause(PauseSetup(cs, get_profile(profile), pause_ns, phase_ns=2_000_000))
    return {a.id: a for a in find_anomalies(trace) if a.clock == clock and a.reader == reader}


def acpi_wrap_in_kernel_ns() -> int:
    # One wrap of 2**24 cycles at the rate NTP steers the clock to
    # (cycle_interval = 14318 cycles per 4 ms tick at HZ=250).
    return (1 << 24) * 4_000_000 // 14_318


def test_tsc_past_the_overflow_horizon() -> None:
    old = anomalies(TSC, "linux-6.1", 1100 * NSEC_PER_SEC)
    assert old["overflow-garbage"].magnitude_ns == 1 << 40
    assert "wrap-loss" not in old  # the first tick accumulates in chunks: nothing lost
    new = anomalies(TSC, "linux-6.13", 1100 * NSEC_PER_SEC)
    assert "overflow-garbage" not in new
    assert "time-backwards" not in new


def test_tsc_below_the_horizon_is_clean_except_maxerror() -> None:
    found = anomalies(TSC, "linux-6.1", 60 * NSEC_PER_SEC, clock="REALTIME")
    assert set(found) == {"ntp-maxerror"}
    # 500 us per paused second, 61 second_overflow() calls including this one's.
    assert found["ntp-maxerror"].magnitude_ns in (60 * 500_000, 61 * 500_000)


def test_acpi_pm_between_half_and_seven_eighths() -> None:
    pause = 3 * NSEC_PER_SEC
    # 6.1 (x86): reader and writer see negative motion; time stands at the
    # last tick until the counter comes round; one wrap is lost.
    old = anomalies(ACPI, "linux-6.1", pause)
    assert old["time-frozen"].magnitude_ns > NSEC_PER_SEC
    assert old["time-backwards"].magnitude_ns < 3_000_000  # back to the last tick: the phase
    assert old["wrap-loss"].magnitude_ns == pytest.approx(acpi_wrap_in_kernel_ns(), abs=500_000)
    # 6.10: the reader takes the delta as forward, the writer (still 50%)
    # does not: reads run ahead, then step back by a wrap.
    mid = anomalies(ACPI, "linux-6.10", pause)
    assert "time-frozen" not in mid
    assert mid["time-backwards"].magnitude_ns > 4 * NSEC_PER_SEC
    assert mid["wrap-loss"].magnitude_ns == pytest.approx(acpi_wrap_in_kernel_ns(), abs=500_000)
    # 6.13: the writer accepts up to 87.5%: nothing goes wrong.
    assert set(anomalies(ACPI, "linux-6.13", pause)) <= {"ntp-maxerror"}


def test_acpi_pm_past_seven_eighths_and_past_the_wrap() -> None:
    late = anomalies(ACPI, "linux-6.13", 4_400_000_000)
    assert late["time-backwards"].magnitude_ns > 4 * NSEC_PER_SEC
    assert late["wrap-loss"].magnitude_ns == pytest.approx(acpi_wrap_in_kernel_ns(), abs=500_000)
    for profile in ("linux-6.1", "linux-6.10", "linux-6.13"):
        beyond = anomalies(ACPI, profile, 6 * NSEC_PER_SEC)
        assert beyond["wrap-loss"].magnitude_ns == pytest.approx(acpi_wrap_in_kernel_ns(), abs=500_000)
        assert "time-backwards" not in beyond


def test_runs_are_deterministic() -> None:
    setup = PauseSetup(ACPI, get_profile("linux-6.1"), 3 * NSEC_PER_SEC, phase_ns=2_000_000)
    assert find_anomalies(run_raw_pause(setup)) == find_anomalies(run_raw_pause(setup))


def test_vdso_wraps_like_the_kernel_before_6_10_and_not_after() -> None:
    old = anomalies(TSC, "linux-6.1", 1100 * NSEC_PER_SEC, reader="vdso")
    assert old["overflow-garbage"].magnitude_ns == 1 << 40
    assert "overflow-garbage" not in anomalies(TSC, "linux-6.10", 1100 * NSEC_PER_SEC, reader="vdso")


def test_vdso_reads_equal_the_kernel_reads_where_it_serves_them() -> None:
    for cs in (TSC, register("kvm-clock", 64, freq_hz=10**9)):
        trace = run_raw_pause(
            PauseSetup(cs, get_profile("linux-6.13"), 60 * NSEC_PER_SEC, phase_ns=2_000_000)
        )
        for read in trace.reads:
            assert read.vdso == read.values, (cs.name, read.label)


def test_vdso_falls_back_without_a_clock_mode() -> None:
    trace = run_raw_pause(PauseSetup(ACPI, get_profile("linux-6.13"), NSEC_PER_SEC, phase_ns=2_000_000))
    assert all(read.vdso is None for read in trace.reads)
    assert all(a.reader == "kernel" for a in find_anomalies(trace))
