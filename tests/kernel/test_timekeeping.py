"""The timekeeper model: setup numbers, accumulation, NTP, leap, suspend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import Clocksource, register
from tsclab.kernel.ntp import ADJ_FREQUENCY, ADJ_STATUS, STA_INS, STA_PLL, NtpState, Timex
from tsclab.kernel.profiles import PROFILES, get_profile
from tsclab.kernel.timekeeping import AdvanceStats, Timekeeping, WriteStep
from tsclab.kernel.timespec import Timespec64

TSC_2_5 = register("tsc", 64, freq_khz=2_500_000)


class Guest:
    """A timekeeper on a drift-free counter driven by true time in ns."""

    def __init__(self, cs: Clocksource, profile: str = "linux-6.13", hz: int = 250, epoch: int = 0) -> None:
        self.cs = cs
        self.t = 0
        self.ntp = NtpState(hz=hz)
        self.tkg = Timekeeping(
            cs, get_profile(profile), self.ntp, self.counter, hz=hz, realtime=Timespec64(epoch, 0)
        )
        self.tick_ns = NSEC_PER_SEC // hz

    def counter(self) -> int:
        return (self.t * self.cs.freq_hz // NSEC_PER_SEC) & self.cs.mask

    def tick_until(self, t_end: int) -> None:
        next_tick = (self.t // self.tick_ns + 1) * self.tick_ns
        while next_tick <= t_end:
            self.t = next_tick
            self.tkg.update_wall_time()
            next_tick += self.tick_ns
        self.t = t_end


@pytest.mark.parametrize(
    ("cs", "hz", "cycle_interval", "xtime_interval", "remainder", "error_shift"),
    [
        (TSC_2_5, 250, 10_000_001, 67_108_866_710_886, -2_710_886, 8),
        (TSC_2_5, 1000, 2_500_000, 16_777_215_000_000, 1_000_000, 8),
        (register("tsc", 64, freq_khz=2_000_000), 250, 8_000_000, 8_000_000 * 4_194_304, 0, 9),
        (register("kvm-clock", 64, freq_hz=10**9), 250, 4_000_000, 33_554_432_000_000, 0, 9),
    ],
)
def test_tk_setup_internals_worked_numbers(
    cs: Clocksource, hz: int, cycle_interval: int, xtime_interval: int, remainder: int, error_shift: int
) -> None:
    tk = Guest(cs, hz=hz).tkg.tk
    assert (tk.cycle_interval, tk.xtime_interval, tk.xtime_remainder, tk.ntp_error_shift) == (
        cycle_interval,
        xtime_interval,
        remainder,
        error_shift,
    )
    assert tk.ntp_tick == (NSEC_PER_SEC << 32) // hz


def test_long_update_is_chunked_and_calls_second_overflow_per_second() -> None:
    g = Guest(TSC_2_5)
    g.tick_until(NSEC_PER_SEC)
    g.t += 1100 * NSEC_PER_SEC
    stats = g.tkg.update_wall_time()
    # maxshift is 9 at HZ=250: chunks of at most 512 ticks (2.048 s).
    assert 1100 / 2.048 < stats.accumulations < 1100 / 2.048 + 20
    assert stats.second_overflows in (1100, 1101)


CLOCKSOURCES = [
    TSC_2_5,
    register("tsc", 64, freq_khz=2_000_000),
    register("kvm-clock", 64, freq_hz=10**9),
    register("hpet", 32, freq_hz=14_318_180),
    register("acpi_pm", 24, freq_hz=3_579_545),
]


@settings(max_examples=40)
@given(
    st.sampled_from(sorted(PROFILES)),
    st.sampled_from(CLOCKSOURCES),
    st.sampled_from([100, 250, 1000]),
    st.lists(st.integers(min_value=0, max_value=10 * NSEC_PER_SEC // 100), min_size=5, max_size=40),
)
def test_no_clock_goes_backwards_with_regular_ticks(
    profile: str, cs: Clocksource, hz: int, gaps: list[int]
) -> None:
    g = Guest(cs, profile, hz=hz, epoch=1_700_000_000)
    last: dict[str, int] = {}
    for gap in gaps:
        g.tick_until(g.t + gap)
        now = g.tkg.read_all_ns()
        for clock, value in now.items():
            assert value >= last.get(clock, value), (clock, g.t)
        last = now


def test_monotonic_raw_never_changes_rate_even_under_ntp() -> None:
    g = Guest(TSC_2_5)
    g.ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=200 << 16), 0, 0)  # +200 ppm
    g.tkg.timekeeping_advance()
    g.tick_until(NSEC_PER_SEC)
    c0, r0 = g.counter(), g.tkg.ktime_get_raw()
    g.tick_until(30 * NSEC_PER_SEC)
    c1, r1 = g.counter(), g.tkg.ktime_get_raw()
    assert abs((r1 - r0) - (((c1 - c0) * TSC_2_5.mult) >> TSC_2_5.shift)) <= 1


@pytest.mark.parametrize("ppm", [-400, -50, 0, 25, 300])
def test_ntp_frequency_sets_the_rate_against_raw(ppm: int) -> None:
    g = Guest(TSC_2_5)
    g.ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=ppm << 16), 0, 0)
    g.tkg.timekeeping_advance()
    g.tick_until(2 * NSEC_PER_SEC)
    m0, r0 = g.tkg.ktime_get(), g.tkg.ktime_get_raw()
    g.tick_until(62 * NSEC_PER_SEC)
    m1, r1 = g.tkg.ktime_get(), g.tkg.ktime_get_raw()
    rate = (m1 - m0) / (r1 - r0)
    # NTP asks for tick_length = (1 + ppm) * 4 ms per tick; mult granularity
    # is one part in 6.7 million (0.15 ppm) and the raw clock's own
    # truncation bias is about 0.1 ppm.
    assert rate == pytest.approx(1 + ppm * 1e-6, abs=0.5e-6)


def test_inserted_leap_second_repeats_realtime_and_keeps_tai_continuous() -> None:
    day = 86_400
    g = Guest(TSC_2_5, epoch=20_000 * day - 3)  # three seconds before midnight
    g.ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_PLL | STA_INS), 20_000 * day - 3, 0)
    g.tkg.timekeeping_advance()
    tai_offset_before = g.tkg.tk.tai_offset
    samples = []
    for step in range(1, 25):
        g.tick_until(step * 250_000_000)
        samples.append((g.tkg.ktime_get_real(), g.tkg.ktime_get_clocktai(), g.tkg.ktime_get()))
    assert g.tkg.tk.tai_offset == tai_offset_before + 1
    tai = [s[1] - s[2] for s in samples]
    real = [s[0] - s[2] for s in samples]
    # TAI - MONOTONIC stays put; REALTIME - MONOTONIC drops by exactly 1 s.
    assert max(tai) == min(tai)
    assert max(real) - min(real) == NSEC_PER_SEC
    assert real[0] - real[-1] == NSEC_PER_SEC


def test_suspend_injects_sleep_into_boottime_and_realtime_not_monotonic() -> None:
    g = Guest(TSC_2_5, epoch=1_700_000_000)
    g.tkg.suspend_nonstop = True  # the TSC keeps counting in S3
    g.tick_until(3 * NSEC_PER_SEC)
    before = g.tkg.read_all_ns()
    g.tkg.timekeeping_suspend()
    g.t += 3600 * NSEC_PER_SEC
    slept = g.tkg.timekeeping_resume()
    assert slept is not None
    after = g.tkg.read_all_ns()
    assert after["MONOTONIC"] - before["MONOTONIC"] < 1_000_000
    assert after["BOOTTIME"] - before["BOOTTIME"] == pytest.approx(3600 * NSEC_PER_SEC, abs=1_000_000)
    assert after["REALTIME"] - before["REALTIME"] == pytest.approx(3600 * NSEC_PER_SEC, abs=1_000_000)
    assert g.tkg.tk.offs_boot == slept.to_ns()


def test_settimeofday_steps_realtime_only() -> None:
    g = Guest(TSC_2_5, epoch=1_700_000_000)
    g.tick_until(NSEC_PER_SEC)
    mono = g.tkg.ktime_get()
    assert g.tkg.do_settimeofday64(Timespec64(1_800_000_000, 0))
    assert g.tkg.ktime_get_real() // NSEC_PER_SEC == 1_800_000_000
    assert abs(g.tkg.ktime_get() - mono) < 1_000


def test_forward_now_before_6_10_wraps_and_after_is_chunked() -> None:
    for profile, expect_wrap in (("linux-6.1", True), ("linux-6.10", False)):
        g = Guest(TSC_2_5, profile)
        g.tick_until(NSEC_PER_SEC)
        g.t += 1200 * NSEC_PER_SEC  # past the 1099.5 s overflow horizon
        g.tkg.change_clocksource(TSC_2_5)  # forward_now under stop_machine
        mono = g.tkg.ktime_get()
        wrapped = mono < 1000 * NSEC_PER_SEC
        assert wrapped == expect_wrap, profile


def test_write_section_steps_and_a_reader_that_straddles_them() -> None:
    g = Guest(TSC_2_5)
    g.tick_until(NSEC_PER_SEC)
    tkd = g.tkg.tkd
    g.t += 10_000_000  # two and a half ticks pending
    old_cycle_last = g.tkg.tk.tkr_mono.cycle_last

    # A reader takes the seq before the writer starts...
    start = tkd.read_seqcount_begin()
    assert start is not None
    steps = g.tkg.advance_steps()
    assert next(steps) is WriteStep.SHADOW_UPDATED
    # ...the shadow has moved on, the live timekeeper has not, seq is even.
    assert tkd.shadow.tkr_mono.cycle_last > old_cycle_last
    assert g.tkg.tk.tkr_mono.cycle_last == old_cycle_last
    assert not tkd.read_seqcount_retry(start)
    assert next(steps) is WriteStep.SEQ_ODD
    assert tkd.read_seqcount_begin() is None  # new readers must wait
    assert next(steps) is WriteStep.PUBLISHED
    assert g.tkg.tk.tkr_mono.cycle_last == tkd.shadow.tkr_mono.cycle_last
    assert next(steps) is WriteStep.SEQ_EVEN
    stats = next(steps)
    assert isinstance(stats, AdvanceStats)
    assert stats.accumulations >= 2
    # The straddling reader sees the seq moved and retries.
    assert tkd.read_seqcount_retry(start)
    assert tkd.read_seqcount_begin() == start + 2
