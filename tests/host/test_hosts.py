"""A host's TSC, kvmclock base and realtime as exact functions of true time, across suspends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.host.hosts import HostClock
from tsclab.scenario.model import HostSpec, SuspendTsc

S = 1_000_000_000
EPOCH = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def host_3ghz(tsc_in_suspend: SuspendTsc = "reset", realtime_error_ns: int = 0) -> HostClock:
    """3 GHz calibrated, no drift, up for 1 s when the guest boots: tsc(t) = 3 * (t + 1e9)."""
    spec = HostSpec(
        "a", 3_000_000, uptime_ns=S, realtime_error_ns=realtime_error_ns, tsc_in_suspend=tsc_in_suspend
    )
    return HostClock(spec, EPOCH)


def host_drifting() -> HostClock:
    """2.5 GHz calibrated, 40 ppb fast, booted with the guest: tsc(t) = floor(t * 2.5000001)."""
    return HostClock(HostSpec("b", 2_500_000, drift_ppb=40, uptime_ns=0, tsc_in_suspend="nonstop"), EPOCH)


# --- the TSC ---------------------------------------------------------------------


def test_tsc_counts_from_host_boot() -> None:
    host = host_3ghz()
    # 3e9 cycles/s for the 1 s of host uptime before the guest booted.
    assert host.tsc(0) == 3_000_000_000
    assert host.tsc(-S) == 0
    assert host.tsc(1) == 3_000_000_003
    assert host.tsc(S) == 6_000_000_000
    assert host.tsc_khz == 3_000_000


def test_tsc_runs_at_the_drifted_rate() -> None:
    host = host_drifting()
    # 2.5e6 kHz * (1e9 + 40) / 1e9 = 2.5000001 cycles/ns.
    assert host.tsc(S) == 2_500_000_100  # 2.5e9 + 100
    assert host.tsc(7) == 17  # floor(17.5000007)
    assert host.tsc(3_600 * S) == 9_000_000_360_000  # one hour: 360 000 cycles ahead
    # The kernel still calibrated 2.5 GHz, which is what KVM uses.
    assert host.tsc_khz == 2_500_000


def test_slow_tsc_floors() -> None:
    host = HostClock(HostSpec("slow", 1_000_000, drift_ppb=-1_000, uptime_ns=0), EPOCH)
    # 0.999999 cycles/ns: 1_000_001 ns * 0.999999 = 999_999.999999 -> 999_999.
    assert host.tsc(1) == 0
    assert host.tsc(1_000_001) == 999_999
    assert host.tsc(S) == 999_999_000


def test_tsc_before_the_host_booted_is_an_error() -> None:
    with pytest.raises(ValueError, match="before the host booted"):
        host_3ghz().tsc(-S - 1)


# --- get_kvmclock_base_ns and realtime -------------------------------------------


def test_boot_ns_converts_at_the_calibrated_rate() -> None:
    assert host_3ghz().boot_ns(0) == S  # 3e9 cycles * 1e6 / 3e6 kHz
    drifting = host_drifting()
    # floor(2_500_000_100 * 1e6 / 2_500_000) = 1_000_000_040: the raw clock is 40 ppb fast too.
    assert drifting.boot_ns(S) == 1_000_000_040


def test_realtime_is_true_utc_plus_the_hosts_error() -> None:
    host = host_3ghz(realtime_error_ns=-250_000_000)
    assert host.realtime_ns(5 * S) == EPOCH + 5 * S - 250_000_000
    assert host_3ghz().realtime_ns(0) == EPOCH


# --- suspend -------------------------------------------------------------------------


def test_suspend_with_tsc_reset() -> None:
    host = host_3ghz("reset")
    host.suspend(10 * S, 60 * S)
    assert not host.suspended_at(10 * S - 1)
    assert host.suspended_at(10 * S)
    assert host.suspended_at(70 * S - 1)
    assert not host.suspended_at(70 * S)
    # Before: 3 * (11e9 - 1).  Asleep: the value the TSC stopped at, 3 * 11e9.
    assert host.tsc(10 * S - 1) == 32_999_999_997
    assert host.tsc(40 * S) == 33_000_000_000
    # Resume: the TSC starts from 0; the base ns gained the 60 s asleep (11e9 + 60e9).
    assert host.tsc(70 * S) == 0
    assert host.boot_ns(40 * S) == 11 * S
    assert host.boot_ns(70 * S) == 71 * S
    assert host.tsc(71 * S) == 3_000_000_000
    assert host.boot_ns(71 * S) == 72 * S


def test_suspend_with_nonstop_tsc() -> None:
    host = host_3ghz("nonstop")
    host.suspend(10 * S, 60 * S)
    # The TSC counts through the sleep: 3 * (70e9 + 1e9) at resume.
    assert host.tsc(40 * S) == 123_000_000_000
    assert host.tsc(70 * S) == 213_000_000_000
    # The base ns is frozen while asleep and gains the sleep at resume, as with a reset.
    assert host.boot_ns(40 * S) == 11 * S
    assert host.boot_ns(70 * S) == 71 * S
    assert host.boot_ns(71 * S) == 72 * S


def test_nonstop_suspend_counts_true_sleep_while_the_raw_clock_drifts() -> None:
    host = host_drifting()
    host.suspend(S, S)
    # 1_000_000_040 at the sleep, + 1e9 asleep.
    assert host.boot_ns(2 * S) == 2_000_000_040
    # tsc(3e9) - tsc(2e9) = 7_500_000_300 - 5_000_000_200 = 2_500_000_100 cycles -> 1_000_000_040 ns.
    assert host.tsc(2 * S) == 5_000_000_200
    assert host.boot_ns(3 * S) == 3_000_000_080


def test_two_resets_each_start_from_zero() -> None:
    host = host_3ghz("reset")
    host.suspend(40 * S, 10 * S)
    host.suspend(10 * S, 10 * S)  # declared out of order
    assert [s.start_ns for s in host.suspends] == [10 * S, 40 * S]
    assert host.tsc(20 * S) == 0
    assert host.tsc(40 * S - 1) == 59_999_999_997  # 3 * (20e9 - 1)
    assert host.tsc(50 * S) == 0
    # 1 s of uptime + 10 s + 20 s running, + 10 s + 10 s asleep.
    assert host.boot_ns(50 * S) == 51 * S
    assert host.last_suspend_ended_by(45 * S) is not None
    assert host.last_suspend_ended_by(50 * S) == host.suspends[1]
    assert host.next_running_ns(45 * S) == 50 * S
    assert host.next_running_ns(55 * S) == 55 * S


@pytest.mark.parametrize(
    ("start", "duration", "match"),
    [
        (15 * S, 10 * S, "overlaps"),
        (5 * S, 6 * S, "overlaps"),
        (30 * S, 0, "positive"),
        (-2 * S, S, "before the host booted"),
    ],
)
def test_bad_suspends_are_refused(start: int, duration: int, match: str) -> None:
    host = host_3ghz()
    host.suspend(10 * S, 10 * S)
    with pytest.raises(ValueError, match=match):
        host.suspend(start, duration)


# --- the inverse -------------------------------------------------------------------------


def test_true_time_at_tsc_rounds_up() -> None:
    host = host_3ghz()
    assert host.true_time_at_tsc(6_000_000_000, 0) == S
    # 6e9 + 1 needs t + 1e9 >= 2e9 + 1/3: the next whole ns, where the TSC reads 6e9 + 3.
    assert host.true_time_at_tsc(6_000_000_001, 0) == S + 1
    assert host.true_time_at_tsc(0, 5) == 5  # already passed


def test_true_time_at_tsc_with_drift() -> None:
    host = host_drifting()
    # ceil(2_500_000_100 / 2.5000001) = 1e9 exactly.
    assert host.true_time_at_tsc(2_500_000_100, 0) == S
    # 2_500_000_101 / 2.5000001 = 1e9 + 0.39999...: the next ns, tsc 2_500_000_102.
    assert host.true_time_at_tsc(2_500_000_101, 0) == S + 1


def test_true_time_at_tsc_stops_at_a_reset() -> None:
    host = host_3ghz("reset")
    host.suspend(10 * S, 60 * S)
    assert host.true_time_at_tsc(33_000_000_000 - 3, 0) == 10 * S - 1
    # 3 * 11e9 would be reached at the instant the host sleeps; after it the TSC restarts.
    assert host.true_time_at_tsc(33_000_000_000, 0) is None
    # From inside the sleep: the stretch after the resume, from TSC 0 at 70 s.
    assert host.true_time_at_tsc(3_000_000_000, 40 * S) == 71 * S


def test_true_time_at_tsc_runs_through_a_nonstop_sleep() -> None:
    host = host_3ghz("nonstop")
    host.suspend(10 * S, 60 * S)
    # Passed while asleep: the first running instant, the resume.
    assert host.true_time_at_tsc(33_000_000_030, 0) == 70 * S
    assert host.true_time_at_tsc(213_000_000_003, 0) == 70 * S + 1


@given(
    khz=st.integers(min_value=1_000, max_value=6_000_000),
    drift=st.integers(min_value=-100_000, max_value=100_000),
    uptime=st.integers(min_value=0, max_value=10**15),
    not_before=st.integers(min_value=0, max_value=10**13),
    ahead=st.integers(min_value=0, max_value=10**16),
)
def test_true_time_at_tsc_is_the_exact_inverse(
    khz: int, drift: int, uptime: int, not_before: int, ahead: int
) -> None:
    host = HostClock(HostSpec("p", khz, drift_ppb=drift, uptime_ns=uptime), EPOCH)
    target = host.tsc(not_before) + ahead
    t = host.true_time_at_tsc(target, not_before)
    assert t is not None
    assert t >= not_before
    assert host.tsc(t) >= target
    assert t == not_before or host.tsc(t - 1) < target
