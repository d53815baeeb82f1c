"""kernel/time/ntp.c model: exact integers for the tick length, slews, leap seconds, adjtimex."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import S64_MAX, S64_MIN, U64_MAX
from tsclab.kernel.ntp import (
    ADJ_ADJTIME,
    ADJ_ESTERROR,
    ADJ_FREQUENCY,
    ADJ_MAXERROR,
    ADJ_MICRO,
    ADJ_NANO,
    ADJ_OFFSET,
    ADJ_OFFSET_SINGLESHOT,
    ADJ_OFFSET_SS_READ,
    ADJ_SETOFFSET,
    ADJ_STATUS,
    ADJ_TAI,
    ADJ_TICK,
    ADJ_TIMECONST,
    KTIME_MAX,
    MAXFREQ_SCALED,
    MAXTC,
    NTP_PHASE_LIMIT,
    PPM_SCALE,
    PPM_SCALE_INV,
    STA_DEL,
    STA_FLL,
    STA_INS,
    STA_MODE,
    STA_NANO,
    STA_PLL,
    STA_UNSYNC,
    TIME64_MAX,
    TIME_DEL,
    TIME_ERROR,
    TIME_INS,
    TIME_OK,
    TIME_OOP,
    TIME_WAIT,
    NtpInputError,
    NtpState,
    Timex,
    c_div,
    shift_right,
    validate_timex,
)

HZS = (100, 250, 300, 1000)
DAY = 86_400
MIDNIGHT = 19_000 * DAY  # a UTC day boundary (2022-01-08)


def base_tick_length(hz: int, second_ns: int = 1_000_000_000) -> int:
    """(ns per second << 32) / HZ: the kernel's tick_length_base."""
    return (second_ns << 32) // hz


def synced_state(hz: int = 250, **kw: bool) -> NtpState:
    """A state with STA_UNSYNC cleared and maxerror 0, as ntpd leaves it."""
    ntp = NtpState(hz=hz, **kw)
    ntp.adjtimex(Timex(modes=ADJ_STATUS | ADJ_MAXERROR, status=0, maxerror=0), 1000, 0)
    return ntp


# --- constants --------------------------------------------------------------


def test_constants_match_timex_h() -> None:
    assert PPM_SCALE == 65_536_000
    assert PPM_SCALE_INV == 34_359_739
    assert MAXFREQ_SCALED == 500_000 * 2**32
    assert NTP_PHASE_LIMIT == 16_000_000
    assert NtpState(hz=250).max_tickadj_scaled == 2000 << 32
    assert NtpState(hz=1000).max_tickadj_scaled == 500 << 32


# --- initial state and the tick length ------------------------------------------


@pytest.mark.parametrize("hz", [100, 250, 1000])
def test_initial_tick_length_is_one_second_over_hz(hz: int) -> None:
    ntp = NtpState(hz=hz)
    assert ntp.ntp_tick_length() == (10**9 << 32) // hz
    assert ntp.tick_length_base == ntp.tick_length
    assert ntp.tick_nsec == 10**9 // hz
    assert ntp.tick_usec == 10_000


def test_hz_250_tick_length_value() -> None:
    assert NtpState().ntp_tick_length() == 17_179_869_184_000_000


def test_initial_state_is_after_ntp_init() -> None:
    ntp = NtpState()
    assert ntp.time_state == TIME_OK
    assert ntp.time_status == STA_UNSYNC
    assert ntp.time_maxerror == ntp.time_esterror == NTP_PHASE_LIMIT
    assert ntp.time_constant == 2
    assert (ntp.time_offset, ntp.time_freq, ntp.time_adjust) == (0, 0, 0)
    assert ntp.ntp_next_leap_sec == TIME64_MAX
    assert ntp.ntp_get_next_leap() == KTIME_MAX


def test_read_only_adjtimex_reports_time_error_while_unsynced() -> None:
    res = NtpState().adjtimex(Timex(), 1_700_000_000, 123_456_789)
    assert res.state == TIME_ERROR
    assert res.txc.maxerror == NTP_PHASE_LIMIT
    assert res.txc.tolerance == 32_768_000  # MAXFREQ_SCALED / PPM_SCALE = 500 ppm << 16
    assert res.txc.precision == 1
    assert res.txc.tick == 10_000
    assert res.txc.constant == 2
    assert (res.txc.time_sec, res.txc.time_usec) == (1_700_000_000, 123_456)
    assert not res.advance_freq
    assert not res.tick_length_changed


def test_ntp_tick_adj_boot_parameter_shifts_the_base() -> None:
    ntp = NtpState(hz=250, ntp_tick_adj=-7 << 32)
    assert ntp.tick_length == ((10**9 - 7) << 32) // 250


# --- frequency ----------------------------------------------------------------


@pytest.mark.parametrize("hz", HZS)
@pytest.mark.parametrize("ppm", [100, -100, 500, -37])
def test_adj_frequency_changes_tick_length_by_freq_over_hz(hz: int, ppm: int) -> None:
    ntp = NtpState(hz=hz)
    res = ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=ppm << 16), 1000, 0)
    assert ntp.time_freq == (ppm * 1000) << 32  # ppm * 1000 ns/s, scaled
    second_length = (10**9 << 32) + ((ppm * 1000) << 32)
    assert ntp.tick_length == second_length // hz
    assert res.advance_freq
    assert res.tick_length_changed
    assert res.txc.freq == ppm << 16  # the kernel's PPM_SCALE_INV round trip is exact here


def test_plus_100_ppm_at_hz_250_adds_400_ns_per_tick() -> None:
    ntp = NtpState(hz=250)
    ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=100 << 16), 0, 0)
    assert ntp.tick_length - base_tick_length(250) == 400 << 32
    assert ntp.tick_nsec == 4_000_400


def test_adj_frequency_is_clamped_to_500_ppm() -> None:
    ntp = NtpState()
    res = ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=-600 << 16), 0, 0)
    assert ntp.time_freq == -MAXFREQ_SCALED
    assert res.txc.freq == -500 << 16


def test_freq_readback_of_a_fractional_ppm_value() -> None:
    ntp = NtpState()
    res = ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=-1), 0, 0)
    assert ntp.time_freq == -PPM_SCALE
    # (time_freq >> 19) floors (-125 exactly), then shift_right truncates toward zero
    assert res.txc.freq == -((125 * PPM_SCALE_INV) >> 32)
    assert res.txc.freq == -1


@pytest.mark.parametrize("tick", [9000, 10_010, 11_000])
def test_adj_tick(tick: int) -> None:
    ntp = NtpState(hz=250)
    res = ntp.adjtimex(Timex(modes=ADJ_TICK, tick=tick), 0, 0)
    assert ntp.tick_usec == tick
    assert ntp.tick_length == ((tick * 1000 * 100) << 32) // 250
    assert res.txc.tick == tick
    assert res.advance_freq


# --- maxerror -------------------------------------------------------------------


def test_maxerror_grows_500us_per_second_and_unsyncs_past_16s() -> None:
    ntp = synced_state()
    assert ntp.time_maxerror == 0
    for n in range(1, 32_001):
        ntp.second_overflow(1000 + n)
        if n in (1, 2, 31_999):
            assert ntp.time_maxerror == 500 * n
    assert ntp.time_maxerror == NTP_PHASE_LIMIT
    assert ntp.synced
    assert ntp.adjtimex(Timex(), 40_000, 0).state == TIME_OK
    ntp.second_overflow(33_001)
    assert ntp.time_maxerror == NTP_PHASE_LIMIT
    assert not ntp.synced
    assert ntp.adjtimex(Timex(), 40_000, 0).state == TIME_ERROR


def test_maxerror_input_clamped_from_6_11() -> None:
    ntp = NtpState.for_kernel((6, 11))
    ntp.adjtimex(Timex(modes=ADJ_MAXERROR | ADJ_ESTERROR, maxerror=S64_MAX - 100, esterror=-5), 0, 0)
    assert (ntp.time_maxerror, ntp.time_esterror) == (NTP_PHASE_LIMIT, 0)


def test_maxerror_unclamped_before_6_11_wraps_and_never_unsyncs() -> None:
    ntp = NtpState.for_kernel((6, 10))
    ntp.adjtimex(Timex(modes=ADJ_STATUS | ADJ_MAXERROR, status=0, maxerror=S64_MAX - 100), 0, 0)
    ntp.second_overflow(1)
    assert ntp.time_maxerror == S64_MIN + 399  # the long add wrapped
    assert ntp.synced


def test_time_constant_clamping_by_version() -> None:
    old, new = NtpState.for_kernel((6, 1)), NtpState.for_kernel((6, 13))
    for ntp in (old, new):
        ntp.adjtimex(Timex(modes=ADJ_TIMECONST, constant=S64_MAX), 0, 0)
    assert old.time_constant == 0  # S64_MAX + 4 wrapped negative, then max(.., 0)
    assert new.time_constant == MAXTC
    ntp = NtpState()
    ntp.adjtimex(Timex(modes=ADJ_TIMECONST, constant=3), 0, 0)
    assert ntp.time_constant == 7  # microsecond mode adds 4
    ntp.adjtimex(Timex(modes=ADJ_TIMECONST | ADJ_NANO, constant=3), 0, 0)
    assert ntp.time_constant == 3


# --- leap seconds -----------------------------------------------------------------


def run_clock(ntp: NtpState, xtime_sec: int, tai_offset: int, seconds: int) -> list[tuple[int, int, int]]:
    """accumulate_nsecs_to_secs() in miniature: (realtime sec, TAI sec, leap) per second."""
    out = []
    for _ in range(seconds):
        xtime_sec += 1
        leap = ntp.second_overflow(xtime_sec)
        xtime_sec += leap
        tai_offset -= leap
        out.append((xtime_sec, xtime_sec + tai_offset, leap))
    return out


def test_leap_insert_returns_minus_one_once_and_keeps_tai_continuous() -> None:
    ntp = synced_state()
    start = MIDNIGHT - 10
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), start, 0)
    seconds = run_clock(ntp, start, 37, 14)
    leaps = [leap for _, _, leap in seconds]
    assert leaps.count(-1) == 1
    assert set(leaps) == {0, -1}
    realtime = [rt for rt, _, _ in seconds]
    assert realtime[7:11] == [MIDNIGHT - 2, MIDNIGHT - 1, MIDNIGHT - 1, MIDNIGHT]  # 23:59:60 repeats :59
    tai = [t for _, t, _ in seconds]
    assert tai == list(range(start + 1 + 37, start + 1 + 37 + 14))
    assert seconds[-1][1] - seconds[-1][0] == 38  # tai_offset went 37 -> 38


def test_leap_insert_state_machine_seconds() -> None:
    ntp = synced_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), MIDNIGHT - 10, 0)
    assert ntp.second_overflow(MIDNIGHT - 9) == 0
    assert (ntp.time_state, ntp.ntp_next_leap_sec) == (TIME_INS, MIDNIGHT)
    assert ntp.ntp_get_next_leap() == MIDNIGHT * 10**9
    for s in range(MIDNIGHT - 8, MIDNIGHT):
        assert ntp.second_overflow(s) == 0
        assert ntp.time_state == TIME_INS
    assert ntp.second_overflow(MIDNIGHT) == -1
    assert ntp.time_state == TIME_OOP
    assert ntp.ntp_next_leap_sec == MIDNIGHT  # still armed during the leap second
    # the timekeeper stepped back to MIDNIGHT - 1; the next second is MIDNIGHT again
    assert ntp.second_overflow(MIDNIGHT) == 0
    assert (ntp.time_state, ntp.ntp_next_leap_sec) == (TIME_WAIT, TIME64_MAX)
    assert ntp.second_overflow(MIDNIGHT + 1) == 0
    assert ntp.time_state == TIME_WAIT  # STA_INS still set
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=0), MIDNIGHT + 1, 0)
    assert ntp.second_overflow(MIDNIGHT + 2) == 0
    assert ntp.time_state == TIME_OK


def test_leap_insert_armed_on_midnight_targets_the_next_day() -> None:
    ntp = synced_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), MIDNIGHT - 1, 0)
    ntp.second_overflow(MIDNIGHT)
    assert ntp.ntp_next_leap_sec == MIDNIGHT + DAY


def test_adjtimex_reports_the_leap_second_before_the_tick_applies_it() -> None:
    ntp = synced_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), MIDNIGHT - 10, 0)
    ntp.second_overflow(MIDNIGHT - 9)
    assert ntp.adjtimex(Timex(), MIDNIGHT - 1, 0, tai_offset=37).state == TIME_INS
    res = ntp.adjtimex(Timex(), MIDNIGHT, 500_000_000, tai_offset=37)
    assert res.state == TIME_OOP
    assert (res.txc.time_sec, res.txc.time_usec, res.txc.tai) == (MIDNIGHT - 1, 500_000, 38)
    assert not res.tai_changed  # only the report moves; second_overflow() does the step
    ntp.second_overflow(MIDNIGHT)  # -> TIME_OOP, realtime back to MIDNIGHT - 1
    assert ntp.adjtimex(Timex(), MIDNIGHT - 1, 0).state == TIME_OOP
    assert ntp.adjtimex(Timex(), MIDNIGHT, 0).state == TIME_WAIT


def test_leap_delete_returns_plus_one_at_23_59_59() -> None:
    ntp = synced_state()
    start = MIDNIGHT - 10
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_DEL), start, 0)
    assert ntp.second_overflow(start + 1) == 0
    assert (ntp.time_state, ntp.ntp_next_leap_sec) == (TIME_DEL, MIDNIGHT - 1)
    assert ntp.ntp_get_next_leap() == KTIME_MAX  # only insertions are announced
    seconds = run_clock(ntp, start + 1, 37, 12)
    leaps = [leap for _, _, leap in seconds]
    assert leaps.count(1) == 1
    assert set(leaps) == {0, 1}
    realtime = [rt for rt, _, _ in seconds]
    assert MIDNIGHT - 1 not in realtime  # 23:59:59 is skipped
    assert realtime[6:9] == [MIDNIGHT - 2, MIDNIGHT, MIDNIGHT + 1]
    tai = [t for _, t, _ in seconds]
    assert tai == list(range(start + 2 + 37, start + 2 + 37 + 12))
    assert (ntp.time_state, ntp.ntp_next_leap_sec) == (TIME_WAIT, TIME64_MAX)


def test_leap_cancelled_by_clearing_sta_ins() -> None:
    ntp = synced_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), MIDNIGHT - 10, 0)
    ntp.second_overflow(MIDNIGHT - 9)
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=0), MIDNIGHT - 5, 0)
    assert ntp.second_overflow(MIDNIGHT - 4) == 0
    assert (ntp.time_state, ntp.ntp_next_leap_sec) == (TIME_OK, TIME64_MAX)
    assert all(ntp.second_overflow(s) == 0 for s in range(MIDNIGHT - 3, MIDNIGHT + 3))


def test_leap_arming_before_1970_uses_c_remainder() -> None:
    ntp = synced_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_INS), -DAY - 11, 0)
    ntp.second_overflow(-DAY - 10)
    # div_s64_rem(-86410, 86400) leaves rem = -10: the "next" leap is a day late
    assert ntp.ntp_next_leap_sec == -DAY - 10 + DAY + 10


# --- adjtime() slew ----------------------------------------------------------------


def test_adjtime_slews_500us_per_second_then_the_remainder() -> None:
    ntp = NtpState(hz=250)
    base = ntp.tick_length_base
    res = ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=1200), 0, 0)
    assert res.txc.offset == 0  # the previous time_adjust
    assert ntp.time_adjust == 1200
    assert not res.advance_freq
    steps = []
    for s in range(1, 5):
        ntp.second_overflow(s)
        steps.append((ntp.time_adjust, ntp.tick_length - base))
    assert steps == [(700, 2000 << 32), (200, 2000 << 32), (0, 800 << 32), (0, 0)]
    slewed_ns = sum(extra for _, extra in steps) * 250 >> 32
    assert slewed_ns == 1_200_000


def test_adjtime_negative_slew() -> None:
    ntp = NtpState(hz=1000)
    base = ntp.tick_length_base
    ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=-1200), 0, 0)
    extra = []
    for s in range(1, 4):
        ntp.second_overflow(s)
        extra.append(ntp.tick_length - base)
    assert extra == [-(500 << 32), -(500 << 32), -(200 << 32)]
    assert ntp.time_adjust == 0


def test_adjtime_remainder_division_truncates_toward_zero() -> None:
    ntp = NtpState(hz=300)
    base = ntp.tick_length_base
    ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=-1), 0, 0)
    ntp.second_overflow(1)
    assert ntp.tick_length - base == -(3 << 32)  # C: -1000 / 300 == -3 (floor would be -4)


def test_adjtime_read_only_and_replacement() -> None:
    ntp = NtpState()
    ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=5000), 0, 0)
    res = ntp.adjtimex(Timex(modes=ADJ_OFFSET_SS_READ, offset=99), 0, 0)
    assert (res.txc.offset, ntp.time_adjust) == (5000, 5000)
    res = ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=-3), 0, 0)
    assert (res.txc.offset, ntp.time_adjust) == (5000, -3)


def test_ntp_clear_stops_adjtime_and_the_pll() -> None:
    ntp = NtpState()
    ntp.adjtimex(Timex(modes=ADJ_OFFSET_SINGLESHOT, offset=5000), 0, 0)
    ntp.adjtimex(Timex(modes=ADJ_FREQUENCY, freq=10 << 16), 0, 0)
    ntp.second_overflow(1)
    ntp.ntp_clear()
    assert ntp.time_adjust == 0
    assert ntp.time_freq == 10_000 << 32  # the frequency survives
    assert ntp.tick_length == ntp.tick_length_base == ((10**9 + 10_000) << 32) // 250
    assert not ntp.synced


# --- PLL ---------------------------------------------------------------------------


def pll_state(hz: int = 250, nano: bool = True, now: int = 1000, **kw: bool) -> NtpState:
    ntp = NtpState(hz=hz, **kw)
    modes = ADJ_STATUS | (ADJ_NANO if nano else ADJ_MICRO)
    ntp.adjtimex(Timex(modes=modes, status=STA_PLL), now, 0)
    assert ntp.time_reftime == now
    return ntp


def test_pll_offset_sets_freq_and_phase_exactly() -> None:
    ntp = pll_state()
    res = ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=1_000_000), 1016, 0)  # 1 ms, 16 s later
    assert ntp.time_reftime == 1016
    # PLL term: (offset * secs) << (32 - 2 * (SHIFT_PLL + 2 + time_constant)) = << 20
    assert ntp.time_freq == (1_000_000 * 16) << 20
    assert ntp.time_offset == (1_000_000 << 32) // 250
    assert ntp.time_status & STA_MODE == 0
    assert ntp.tick_length == ((10**9 << 32) + ntp.time_freq) // 250
    assert res.txc.offset == 1_000_000
    assert res.tick_length_changed
    assert not res.advance_freq  # do_adjtimex() only advances for ADJ_FREQUENCY/ADJ_TICK


def test_pll_offset_decays_by_shift_right_each_second() -> None:
    ntp = pll_state()
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=1_000_000), 1016, 0)
    base = ntp.tick_length_base
    offset = ntp.time_offset
    for s in range(1017, 1057):
        delta = offset >> 4  # SHIFT_PLL + time_constant(2), offset positive
        offset -= delta
        ntp.second_overflow(s)
        assert ntp.time_offset == offset
        assert ntp.tick_length == base + delta


def test_negative_pll_offset_decays_symmetrically() -> None:
    pos, neg = pll_state(), pll_state()
    pos.adjtimex(Timex(modes=ADJ_OFFSET, offset=123_457), 1001, 0)
    neg.adjtimex(Timex(modes=ADJ_OFFSET, offset=-123_457), 1001, 0)
    assert neg.time_offset == -pos.time_offset
    assert neg.time_freq == -pos.time_freq
    for s in range(1002, 1102):
        pos.second_overflow(s)
        neg.second_overflow(s)
        assert neg.time_offset == -pos.time_offset  # an arithmetic >> would break this
        assert neg.tick_length - neg.tick_length_base == -(pos.tick_length - pos.tick_length_base)


def test_pll_interval_capped_and_fll_used_after_maxsec() -> None:
    ntp = pll_state()
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=1_000_000), 1000 + 100, 0)
    assert ntp.time_freq == (1_000_000 * 32) << 20  # secs capped at 1 << (2 + 1 + 2)
    ntp = pll_state()
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=1_000_000), 1000 + 3000, 0)
    fll = (1_000_000 << 30) // 3000
    assert ntp.time_freq == fll + ((1_000_000 * 32) << 20)
    assert ntp.time_status & STA_MODE


def test_fll_term_truncates_negative_division() -> None:
    ntp = pll_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_PLL | STA_FLL), 1000, 0)
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=-1_000_001), 1000 + 300, 0)
    fll = -((1_000_001 << 30) // 300)  # div64_long truncates toward zero
    assert ntp.time_freq == fll - ((1_000_001 * 32) << 20)


def test_pll_offset_clamped_in_microsecond_mode() -> None:
    ntp = pll_state(nano=False)
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=-(10**12)), 1001, 0)
    assert ntp.time_offset == c_div(-500_000_000 << 32, 250)


def test_pll_ignored_without_sta_pll() -> None:
    ntp = NtpState()
    res = ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=1000), 1000, 0)
    assert (ntp.time_offset, ntp.time_freq) == (0, 0)
    assert not res.tick_length_changed


def test_negative_offset_readback_by_version() -> None:
    old = pll_state(nano=False, signed_offset_readback=False)
    new = pll_state(nano=False)
    for ntp in (old, new):
        ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=-1000), 1001, 0)
    assert old.adjtimex(Timex(), 1001, 0).txc.offset == (2**32 - 1_000_000) // 1000  # (u32) cast
    assert new.adjtimex(Timex(), 1001, 0).txc.offset == -1000


def test_microsecond_readback_of_a_sub_microsecond_negative_offset() -> None:
    old = pll_state(signed_offset_readback=False)
    new = pll_state()
    for ntp in (old, new):
        ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=-1_234_567), 1001, 0)  # ns (STA_NANO)
    magnitude = (((1_234_567 << 32) // 250) * 250) >> 32  # div_s64 and shift_right: toward zero
    assert magnitude == 1_234_566
    assert new.adjtimex(Timex(modes=ADJ_NANO), 1001, 0).txc.offset == -magnitude
    assert new.adjtimex(Timex(modes=ADJ_MICRO), 1001, 0).txc.offset == -1234  # div_s64 truncates
    assert old.adjtimex(Timex(modes=ADJ_MICRO), 1001, 0).txc.offset == (2**32 - magnitude) // 1000


def test_switching_pll_off_resets_state() -> None:
    ntp = pll_state()
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=STA_PLL | STA_INS | STA_NANO), 1000, 0)
    ntp.second_overflow(1001)
    assert ntp.time_state == TIME_INS
    ntp.adjtimex(Timex(modes=ADJ_STATUS, status=0), 1002, 0)
    assert ntp.time_state == TIME_OK
    # process_adj_status() overwrites the status with STA_UNSYNC, then keeps only its
    # read-only bits (none) and takes the writable ones from txc (none): even STA_NANO goes.
    assert ntp.time_status == 0
    assert ntp.ntp_next_leap_sec == TIME64_MAX


# --- adjtimex reporting -------------------------------------------------------------


def test_set_offset_and_tai_are_reported() -> None:
    ntp = NtpState()
    res = ntp.adjtimex(Timex(modes=ADJ_SETOFFSET, time_sec=-2, time_usec=250), 0, 0)
    assert res.set_offset == (-2, 250_000)
    res = ntp.adjtimex(Timex(modes=ADJ_SETOFFSET | ADJ_NANO, time_sec=1, time_usec=250), 0, 0)
    assert res.set_offset == (1, 250)
    res = ntp.adjtimex(Timex(modes=ADJ_TAI, constant=37), 0, 0, tai_offset=36)
    assert (res.tai_offset, res.tai_changed, res.txc.tai) == (37, True, 37)
    res = ntp.adjtimex(Timex(modes=ADJ_TAI, constant=-1), 0, 0, tai_offset=36)
    assert (res.tai_offset, res.tai_changed) == (36, False)
    assert NtpState().adjtimex(Timex(), 0, 0).set_offset is None


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("txc", "message"),
    [
        (Timex(modes=ADJ_ADJTIME), "SINGLESHOT"),
        (Timex(modes=ADJ_TICK, tick=8999), "ADJ_TICK"),
        (Timex(modes=ADJ_TICK, tick=11_001), "ADJ_TICK"),
        (Timex(modes=ADJ_SETOFFSET, time_usec=-1), "ADJ_SETOFFSET"),
        (Timex(modes=ADJ_SETOFFSET, time_usec=1_000_000), "ADJ_SETOFFSET"),
        (Timex(modes=ADJ_SETOFFSET | ADJ_NANO, time_usec=1_000_000_000), "ADJ_SETOFFSET"),
        (Timex(modes=ADJ_FREQUENCY, freq=140_737_488_356), "ADJ_FREQUENCY"),
        (Timex(modes=ADJ_FREQUENCY, freq=-140_737_488_356), "ADJ_FREQUENCY"),
        (Timex(offset=S64_MAX + 1), "long long"),
        (Timex(modes=1 << 32), "unsigned int"),
    ],
)
def test_validate_timex_rejects(txc: Timex, message: str) -> None:
    with pytest.raises(NtpInputError, match=message):
        validate_timex(txc)
    with pytest.raises(NtpInputError):
        NtpState().adjtimex(txc, 0, 0)


@pytest.mark.parametrize(
    "txc",
    [
        Timex(modes=ADJ_TICK, tick=9000),
        Timex(modes=ADJ_TICK, tick=11_000),
        Timex(modes=ADJ_SETOFFSET | ADJ_NANO, time_usec=999_999_999),
        Timex(modes=ADJ_FREQUENCY, freq=140_737_488_355),
        Timex(modes=ADJ_FREQUENCY, freq=-140_737_488_355),  # LLONG_MIN / PPM_SCALE truncates
        Timex(modes=ADJ_OFFSET_SINGLESHOT, tick=1),  # tick is not checked in adjtime mode
    ],
)
def test_validate_timex_accepts_the_edges(txc: Timex) -> None:
    validate_timex(txc)


def test_bad_hz() -> None:
    with pytest.raises(ValueError, match="HZ"):
        NtpState(hz=0)


# --- arithmetic helpers and widths (properties) ------------------------------------------

s64s = st.integers(S64_MIN, S64_MAX)


@given(s64s, st.integers(0, 63))
def test_shift_right_truncates_toward_zero(x: int, s: int) -> None:
    r = shift_right(x, s)
    if x == S64_MIN:
        # -x wraps to S64_MIN, which then shifts arithmetically and negates (wrapping for s == 0)
        expected = S64_MIN if s == 0 else 1 << (63 - s)
        assert r == expected
    else:
        q = abs(x) >> s
        assert r == (q if x >= 0 else -q)
        assert shift_right(-x, s) == -r


@given(s64s, s64s.filter(lambda d: d != 0))
def test_c_div_truncates(a: int, b: int) -> None:
    if a == S64_MIN and b == -1:
        return
    q = c_div(a, b)
    assert abs(q) == abs(a) // abs(b)
    assert q == 0 or (q < 0) == ((a < 0) != (b < 0))


timex_ops = st.one_of(
    st.builds(
        Timex,
        modes=st.sampled_from([ADJ_FREQUENCY, ADJ_OFFSET, ADJ_TIMECONST, ADJ_MAXERROR, ADJ_ESTERROR]),
        freq=st.integers(-140_737_488_355, 140_737_488_355),
        offset=s64s,
        constant=s64s,
        maxerror=s64s,
        esterror=s64s,
    ),
    st.builds(Timex, modes=st.just(ADJ_STATUS), status=st.integers(0, 0xFFFF)),
    st.builds(Timex, modes=st.just(ADJ_TICK), tick=st.integers(9000, 11_000)),
    st.builds(Timex, modes=st.just(ADJ_OFFSET_SINGLESHOT), offset=s64s),
)


@given(
    hz=st.sampled_from(HZS),
    clamp=st.booleans(),
    ops=st.lists(st.tuples(timex_ops, st.integers(0, 5000)), max_size=12),
)
def test_state_stays_within_c_widths(hz: int, clamp: bool, ops: list[tuple[Timex, int]]) -> None:
    ntp = NtpState(hz=hz, clamp_adjtimex_inputs=clamp)
    now = 1_000_000
    for txc, seconds in ops:
        res = ntp.adjtimex(txc, now, 0)
        assert res.state in (TIME_OK, TIME_INS, TIME_DEL, TIME_OOP, TIME_WAIT, TIME_ERROR)
        assert S64_MIN <= res.txc.offset <= S64_MAX
        for _ in range(min(seconds, 40)):
            now += 1
            assert ntp.second_overflow(now) in (-1, 0, 1)
            assert 0 <= ntp.tick_length <= U64_MAX
            assert ntp.time_maxerror <= NTP_PHASE_LIMIT
        now += seconds
        assert 0 <= ntp.tick_length <= U64_MAX
        assert 0 <= ntp.tick_length_base <= U64_MAX
        assert -MAXFREQ_SCALED <= ntp.time_freq <= MAXFREQ_SCALED
        assert S64_MIN <= ntp.time_offset <= S64_MAX
        assert abs(ntp.time_offset) <= (500_000_000 << 32) // hz
        assert 0 <= ntp.time_constant <= MAXTC
        assert S64_MIN <= ntp.time_adjust <= S64_MAX
        if clamp:
            assert 0 <= ntp.time_esterror <= NTP_PHASE_LIMIT


@given(hz=st.sampled_from(HZS), offset=st.integers(-500_000_000, 500_000_000))
def test_pll_slew_delivers_the_whole_offset(hz: int, offset: int) -> None:
    ntp = pll_state(hz=hz)
    ntp.adjtimex(Timex(modes=ADJ_OFFSET, offset=offset), 1001, 0)
    start = ntp.time_offset
    delivered = 0
    for s in range(1002, 1002 + 2000):
        ntp.second_overflow(s)
        delivered += ntp.tick_length - ntp.tick_length_base
    # each second moves shift_right(time_offset, 4); the remainder is < 16 and keeps its sign
    assert delivered + ntp.time_offset == start
    assert abs(ntp.time_offset) < 16
    assert ntp.time_offset == 0 or (ntp.time_offset > 0) == (start > 0)
