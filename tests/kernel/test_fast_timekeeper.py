"""The NMI-safe fast timekeeper: latch protocol, per-version math, halting."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import NSEC_PER_SEC, U64_MAX
from tsclab.clocksource import register
from tsclab.kernel.fast_timekeeper import (
    DUMMY_CLOCK,
    DummyClockState,
    FastHookPoint,
    FastReaderLivelockError,
    TkFast,
    fast_read_attempt,
    fast_read_begin,
    fast_read_retry,
    halt_fast_timekeeper,
    ktime_get_fast_ns,
    ktime_get_offset_fast_ns,
    ktime_get_real_fast,
    update_fast_timekeeper,
    update_fast_timekeeper_first_half,
    update_fast_timekeeper_second_half,
    update_fast_timekeeper_steps,
)
from tsclab.kernel.profiles import PROFILES, KernelProfile
from tsclab.kernel.readers import TkReadBase, timekeeping_cycles_to_ns
from tsclab.kernel.timespec import Timespec64
from tsclab.kernel.tk_state import Timekeeper

TSC = register("tsc", 64, freq_khz=2_500_000)
TSC_HZ = 2_500_000_000
P61 = PROFILES["linux-6.1"]
P61_DEBUG = PROFILES["linux-6.1-debug"]
P610 = PROFILES["linux-6.10"]
P613 = PROFILES["linux-6.13"]
CYCLE_LAST = 3_000_000_000_000
BASE = 1_200 * NSEC_PER_SEC + 123_456_789
XTIME_NSEC = (456_789_012 << TSC.shift) + 0x123456
OFFS_REAL = 1_700_000_000 * NSEC_PER_SEC


def tkr_at(cycle_last: int = CYCLE_LAST, base: int = BASE, mult: int = TSC.mult) -> TkReadBase:
    tkr = TkReadBase.for_clock(TSC, cycle_last)
    tkr.mult = mult
    tkr.xtime_nsec = XTIME_NSEC
    tkr.base = base
    tkr.base_real = base + OFFS_REAL
    return tkr


def published(tkr: TkReadBase) -> TkFast:
    tkf = TkFast()
    update_fast_timekeeper(tkr, tkf)
    return tkf


def const(value: int) -> Callable[[], int]:
    return lambda: value


def kernel_ns(tkr: TkReadBase, cycles: int, profile: KernelProfile) -> int:
    ns, _ = timekeeping_cycles_to_ns(tkr, cycles, profile)
    return tkr.base + ns


# --- the latch ---------------------------------------------------------------------


def test_update_is_two_latch_steps_and_two_copies() -> None:
    tkf = TkFast()
    assert tkf.base[0].clock == DUMMY_CLOCK
    new = tkr_at()
    steps = update_fast_timekeeper_steps(new, tkf)
    assert next(steps) == "latch-odd"
    assert tkf.seq == 1
    assert tkf.base[0].clock == DUMMY_CLOCK  # not yet copied
    assert next(steps) == "base0-copied"
    assert tkf.base[0] == new
    assert tkf.base[0] is not new
    assert tkf.base[1].clock == DUMMY_CLOCK
    assert next(steps) == "latch-even"
    assert tkf.seq == 2
    assert next(steps) == "base1-copied"
    assert tkf.base[1] == new
    assert list(steps) == []


@pytest.mark.parametrize("profile", [P61, P61_DEBUG, P610, P613], ids=lambda p: p.name)
@given(delta=st.integers(min_value=0, max_value=TSC.max_cycles))
def test_fast_reader_matches_kernel_reader(profile: KernelProfile, delta: int) -> None:
    tkr = tkr_at()
    tkf = published(tkr)
    read = ktime_get_fast_ns(tkf, const(CYCLE_LAST + delta), profile)
    assert read.ns == kernel_ns(tkr, CYCLE_LAST + delta, profile)
    assert (read.retries, read.index) == (0, 0)


def test_real_fast_adds_base_real() -> None:
    tkr = tkr_at()
    tkf = published(tkr)
    cycles = CYCLE_LAST + 12_345_678
    both = ktime_get_real_fast(tkf, const(cycles), P613)
    assert both.mono == kernel_ns(tkr, cycles, P613)
    assert both.real == both.mono + OFFS_REAL
    assert ktime_get_offset_fast_ns(both.mono, 5 * NSEC_PER_SEC) == both.mono + 5 * NSEC_PER_SEC


def test_reader_retries_when_the_latch_moves_mid_read() -> None:
    old = tkr_at()
    new = tkr_at(cycle_last=CYCLE_LAST + TSC_HZ, base=BASE + NSEC_PER_SEC)
    tkf = published(old)
    seen: list[FastHookPoint] = []

    def writer(point: FastHookPoint) -> None:
        seen.append(point)
        if len(seen) == 1:
            update_fast_timekeeper(new, tkf)

    cycles = CYCLE_LAST + TSC_HZ + 1_000
    read = ktime_get_fast_ns(tkf, const(cycles), P613, hook=writer)
    assert read.retries == 1
    assert read.ns == kernel_ns(new, cycles, P613)
    assert seen == ["begin", "retry", "begin", "retry"]


def test_reader_in_the_middle_uses_the_old_copy_without_retry() -> None:
    old = tkr_at()
    new = tkr_at(cycle_last=CYCLE_LAST + TSC_HZ, base=BASE + NSEC_PER_SEC)
    tkf = published(old)
    update_fast_timekeeper_first_half(new, tkf)
    seq = fast_read_begin(tkf)
    assert seq & 1 == 1
    cycles = CYCLE_LAST + TSC_HZ + 1_000
    now = fast_read_attempt(tkf, seq, const(cycles), P613)
    assert not fast_read_retry(tkf, seq)
    assert now == kernel_ns(old, cycles, P613)
    update_fast_timekeeper_second_half(tkf)
    assert fast_read_retry(tkf, seq)


def test_lowering_the_slope_lets_time_go_backwards() -> None:
    """The diagram above ktime_get_mono_fast_ns(): reader 6 is behind reader 5.

    An update at cycle U lowers mult by 1%.  An NMI reader that hits between
    the two halves of update_fast_timekeeper() reads base[1], which still
    holds the old, steeper slope from the old cycle_last; a reader that
    comes a few cycles later, after the update, uses the new copy.
    """
    mult_old = TSC.mult
    mult_new = mult_old - mult_old // 100
    old = tkr_at(mult=mult_old)
    update_at = CYCLE_LAST + TSC_HZ // 1000  # 1 ms after the last update
    # timekeeping_advance()-style continuity: accumulate the elapsed cycles
    # into base/xtime_nsec so the new copy starts where the old one is.
    elapsed = (update_at - CYCLE_LAST) * mult_old + XTIME_NSEC
    new = tkr_at(cycle_last=update_at, base=BASE + (elapsed >> TSC.shift), mult=mult_new)
    new.xtime_nsec = elapsed & ((1 << TSC.shift) - 1)
    tkf = published(old)

    def mono(cycles: int) -> int:
        return ktime_get_fast_ns(tkf, const(cycles), P613).ns

    before = mono(update_at)
    update_fast_timekeeper_first_half(new, tkf)
    nmi_cycles = update_at + 250_000  # the NMI runs 100 us after the update point
    nmi = mono(nmi_cycles)
    update_fast_timekeeper_second_half(tkf)
    later_cycles = nmi_cycles + 25  # 10 ns later
    later = mono(later_cycles)

    assert before == kernel_ns(old, update_at, P613) == kernel_ns(new, update_at, P613)
    assert nmi == BASE + ((nmi_cycles - CYCLE_LAST) * mult_old + XTIME_NSEC >> TSC.shift)
    assert later == new.base + ((later_cycles - update_at) * mult_new + new.xtime_nsec >> TSC.shift)
    assert later_cycles > nmi_cycles
    assert later < nmi
    # 250_000 cycles at a 1% steeper slope: 1000 ns ahead, less the ~10 ns the
    # later reader adds, with truncation of both shifts: exactly 991 ns.
    assert nmi - later == 991


def test_reader_that_never_settles_is_reported() -> None:
    tkf = published(tkr_at())

    def writer(point: FastHookPoint) -> None:
        if point == "retry":
            update_fast_timekeeper(tkr_at(), tkf)

    with pytest.raises(FastReaderLivelockError):
        ktime_get_fast_ns(tkf, const(CYCLE_LAST), P613, hook=writer, max_retries=3)


# --- math per version -----------------------------------------------------------------


PAUSE_1100 = 1100 * TSC_HZ


def test_pre_610_fast_reader_wraps_after_1100s() -> None:
    tkr = tkr_at()
    tkf = published(tkr)
    cycles = CYCLE_LAST + PAUSE_1100
    exact = BASE + ((PAUSE_1100 * TSC.mult + XTIME_NSEC) >> TSC.shift)
    assert ktime_get_fast_ns(tkf, const(cycles), P61).ns == exact - (1 << 40)
    assert ktime_get_fast_ns(tkf, const(cycles), P610).ns == exact


def test_debug_kernels_do_not_cap_the_fast_reader() -> None:
    """fast_tk_get_delta_ns() never used timekeeping_get_delta(): wrapping, not capping."""
    tkr = tkr_at()
    tkf = published(tkr)
    cycles = CYCLE_LAST + PAUSE_1100
    capped = kernel_ns(tkr, cycles, P61_DEBUG)
    assert capped == BASE + ((TSC.max_cycles * TSC.mult + XTIME_NSEC) >> TSC.shift)
    fast = ktime_get_fast_ns(tkf, const(cycles), P61_DEBUG).ns
    assert fast == kernel_ns(tkr, cycles, P61) != capped


@pytest.mark.parametrize("profile", [P61, P610], ids=lambda p: p.name)
def test_negative_motion_sticks_at_base(profile: KernelProfile) -> None:
    tkf = published(tkr_at())
    assert ktime_get_fast_ns(tkf, const(CYCLE_LAST - 10), profile).ns == BASE + (XTIME_NSEC >> TSC.shift)


# --- halting -------------------------------------------------------------------------------


def make_tk(tkr: TkReadBase) -> Timekeeper:
    raw = TkReadBase.for_clock(TSC, CYCLE_LAST)
    raw.base = 1_000 * NSEC_PER_SEC
    return Timekeeper(
        tkr_mono=tkr,
        tkr_raw=raw,
        wall_to_monotonic=Timespec64(-1_700_000_000, 0),
        offs_real=OFFS_REAL,
    )


@pytest.mark.parametrize("profile", [P61, P610, P613], ids=lambda p: p.name)
def test_halt_freezes_both_fast_timekeepers(profile: KernelProfile) -> None:
    tk = make_tk(tkr_at())
    mono, raw = published(tk.tkr_mono), published(tk.tkr_raw)
    dummy = DummyClockState(timekeeping_suspended=True)
    at_suspend = CYCLE_LAST + 7 * TSC_HZ
    assert halt_fast_timekeeper(tk, mono, raw, const(at_suspend), dummy) == at_suspend
    assert mono.seq == raw.seq == 4
    assert mono.base[0].clock == mono.base[1].clock == DUMMY_CLOCK
    assert mono.base[0].base_real == tk.tkr_mono.base + OFFS_REAL

    def host_tsc() -> int:
        raise AssertionError("the halted fast timekeeper must not touch the clocksource")

    first = ktime_get_fast_ns(mono, host_tsc, profile, dummy=dummy).ns
    assert first == ktime_get_fast_ns(mono, host_tsc, profile, dummy=dummy).ns
    assert first == kernel_ns(tk.tkr_mono, at_suspend, profile)
    raw_ns = ktime_get_fast_ns(raw, host_tsc, profile, dummy=dummy).ns
    assert raw_ns == kernel_ns(tk.tkr_raw, at_suspend, profile)
    real = ktime_get_real_fast(mono, host_tsc, profile, dummy=dummy)
    assert real.real == first + OFFS_REAL


def test_halted_read_after_long_interval_uses_slow_path_from_610() -> None:
    """dummy_clock.max_cycles is 0: from 6.10 every non-zero delta is exact."""
    tk = make_tk(tkr_at())
    mono, raw = published(tk.tkr_mono), published(tk.tkr_raw)
    dummy = DummyClockState(timekeeping_suspended=True)
    halt_fast_timekeeper(tk, mono, raw, const(CYCLE_LAST + PAUSE_1100), dummy)
    exact = BASE + ((PAUSE_1100 * TSC.mult + XTIME_NSEC) >> TSC.shift)
    assert ktime_get_fast_ns(mono, const(0), P610, dummy=dummy).ns == exact
    assert ktime_get_fast_ns(mono, const(0), P61, dummy=dummy).ns == exact - (1 << 40)


def test_dummy_clock_when_not_suspended_reads_local_clock() -> None:
    tkf = TkFast()  # FAST_TK_INIT: dummy clock, mult 1, shift 0
    with pytest.raises(ValueError, match="local_clock"):
        ktime_get_fast_ns(tkf, const(0), P613, dummy=DummyClockState())
    dummy = DummyClockState(local_clock=const(42_000_000))
    for profile in (P61, P613):
        assert ktime_get_fast_ns(tkf, const(0), profile, dummy=dummy).ns == 42_000_000
    assert tkf.base[0].mask == U64_MAX
