"""The x86 vDSO model against the kernel reader, version by version."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import NSEC_PER_SEC, U32_MAX, U64_MAX
from tsclab.clocksource import kvm_tsc_scale, register
from tsclab.kernel.profiles import PROFILES, KernelProfile
from tsclab.kernel.readers import TkReadBase, timekeeping_cycles_to_ns
from tsclab.kernel.timespec import Timespec64
from tsclab.kernel.tk_state import Timekeeper
from tsclab.kernel.vdso import (
    CLOCK_BOOTTIME,
    CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_COARSE,
    CLOCK_MONOTONIC_RAW,
    CLOCK_PROCESS_CPUTIME_ID,
    CLOCK_REALTIME,
    CLOCK_REALTIME_COARSE,
    CLOCK_TAI,
    PVCLOCK_TSC_STABLE_BIT,
    VDSO_CLOCKMODE_NONE,
    VDSO_CLOCKMODE_PVCLOCK,
    VDSO_CLOCKMODE_TSC,
    FallbackReason,
    HookPoint,
    PvclockVcpuTimeInfo,
    VdsoData,
    VdsoFallback,
    VdsoLivelockError,
    VdsoTime,
    do_coarse,
    do_hres,
    do_hres_attempt,
    iter_div_u64_rem,
    pvclock_read_cycles,
    update_vsyscall,
    update_vsyscall_data,
    vdso_clock_gettime,
    vdso_read_begin,
    vdso_read_retry,
    vdso_write_begin,
    vdso_write_end,
)

TSC = register("tsc", 64, freq_khz=2_500_000)
TSC_HZ = 2_500_000_000
P510 = PROFILES["linux-5.10"]
P61 = PROFILES["linux-6.1"]
P610 = PROFILES["linux-6.10"]
P613 = PROFILES["linux-6.13"]
# No shipped profile selects the 6.5-6.9 x86 vDSO; derive one from 6.1.
P65 = dataclasses.replace(P61, name="linux-6.5-test", version=(6, 5), vdso_delta="x86-6.5")
ALL = (P510, P61, P65, P610, P613)

CYCLE_LAST = 7_000_000_000_000  # ~46 min of uptime at 2.5 GHz
XTIME_SEC = 1_700_000_000
XTIME_NS = 987_654_321
FRAC = 0x5A5A5A  # sub-ns bits of xtime_nsec (< 2**24)
WTM = Timespec64(-1_699_997_200, 400_000_000)  # monotonic = realtime + wtm
MTB = Timespec64(12, 700_000_000)  # monotonic_to_boot
TAI_OFFSET = 37
RAW_SEC = 2_800
RAW_NS = 555_000_000


def make_tk(cycle_last: int = CYCLE_LAST, xtime_ns: int = XTIME_NS, frac: int = FRAC) -> Timekeeper:
    """A timekeeper as tk_update_ktime_data()/timekeeping_update() leave it."""
    mono = TkReadBase.for_clock(TSC, cycle_last)
    raw = TkReadBase.for_clock(TSC, cycle_last)
    mono.xtime_nsec = (xtime_ns << TSC.shift) + frac
    raw.xtime_nsec = (RAW_NS << TSC.shift) + frac // 3
    mono.base = (XTIME_SEC + WTM.sec) * NSEC_PER_SEC + WTM.nsec
    raw.base = RAW_SEC * NSEC_PER_SEC
    offs_real = -WTM.to_ns()
    mono.base_real = mono.base + offs_real
    return Timekeeper(
        tkr_mono=mono,
        tkr_raw=raw,
        xtime_sec=XTIME_SEC,
        wall_to_monotonic=WTM,
        offs_real=offs_real,
        offs_boot=MTB.to_ns(),
        offs_tai=offs_real + TAI_OFFSET * NSEC_PER_SEC,
        tai_offset=TAI_OFFSET,
        raw_sec=RAW_SEC,
        monotonic_to_boot=MTB,
    )


def published(tk: Timekeeper, profile: KernelProfile, mode: int = VDSO_CLOCKMODE_TSC) -> VdsoData:
    vdata = VdsoData()
    update_vsyscall(tk, vdata, mode, profile)
    return vdata


def const(value: int) -> Callable[[], int]:
    return lambda: value


def kernel_ns(tk: Timekeeper, clock_id: int, cycles: int, profile: KernelProfile) -> int:
    """What the kernel's getters return for the same counter value (ns)."""
    if clock_id == CLOCK_MONOTONIC_RAW:
        ns, _ = timekeeping_cycles_to_ns(tk.tkr_raw, cycles, profile)
        return tk.tkr_raw.base + ns
    ns, _ = timekeeping_cycles_to_ns(tk.tkr_mono, cycles, profile)
    if clock_id == CLOCK_REALTIME:  # ktime_get_real_ts64(): xtime_sec + ns
        return tk.xtime_sec * NSEC_PER_SEC + ns
    offset = {CLOCK_MONOTONIC: 0, CLOCK_BOOTTIME: tk.offs_boot, CLOCK_TAI: tk.offs_tai}[clock_id]
    return tk.tkr_mono.base + offset + ns


def total_ns(result: VdsoTime) -> int:
    assert 0 <= result.nsec < NSEC_PER_SEC
    return result.sec * NSEC_PER_SEC + result.nsec


def hres(vdata: VdsoData, clock_id: int, cycles: int, profile: KernelProfile) -> VdsoTime:
    result = do_hres(vdata, clock_id, const(cycles), profile)
    assert isinstance(result, VdsoTime), result
    return result


# --- constants and the writer ----------------------------------------------


def test_clock_ids_and_masks() -> None:
    assert (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW) == (0, 1, 4)
    assert (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME, CLOCK_TAI) == (5, 6, 7, 11)


def test_update_vsyscall_writes_shifted_basetimes() -> None:
    tk = make_tk()
    vdata = published(tk, P610)
    s = TSC.shift
    hres_rec, raw_rec = vdata.hres, vdata.raw
    assert (hres_rec.seq, raw_rec.seq) == (2, 2)
    assert hres_rec.basetime[CLOCK_REALTIME] == (XTIME_SEC, (XTIME_NS << s) + FRAC)
    assert hres_rec.basetime[CLOCK_REALTIME_COARSE] == (XTIME_SEC, XTIME_NS)
    # 0.987654321 + 0.4 carries one second.
    mono_sec = XTIME_SEC + WTM.sec + 1
    mono_nsec = ((XTIME_NS + WTM.nsec - NSEC_PER_SEC) << s) + FRAC
    assert hres_rec.basetime[CLOCK_MONOTONIC_COARSE] == (mono_sec, XTIME_NS + WTM.nsec - NSEC_PER_SEC)
    assert hres_rec.basetime[CLOCK_MONOTONIC] == (mono_sec, mono_nsec)
    # BOOTTIME = normalised MONOTONIC + 12.7 s: 0.387654321 + 0.7 carries again.
    boot_nsec = ((XTIME_NS + WTM.nsec - NSEC_PER_SEC + MTB.nsec - NSEC_PER_SEC) << s) + FRAC
    assert hres_rec.basetime[CLOCK_BOOTTIME] == (mono_sec + MTB.sec + 1, boot_nsec)
    assert hres_rec.basetime[CLOCK_TAI] == (XTIME_SEC + TAI_OFFSET, (XTIME_NS << s) + FRAC)
    assert raw_rec.basetime[CLOCK_MONOTONIC_RAW] == (RAW_SEC, (RAW_NS << s) + FRAC // 3)
    assert (hres_rec.cycle_last, hres_rec.mult, hres_rec.shift, hres_rec.mask) == (
        CYCLE_LAST,
        TSC.mult,
        s,
        U64_MAX,
    )


@pytest.mark.parametrize(("profile", "expected"), [(P510, 0), (P61, 0), (P65, 0), (P610, TSC.max_cycles)])
def test_max_cycles_written_only_with_overflow_protect(profile: KernelProfile, expected: int) -> None:
    vdata = published(make_tk(), profile)
    assert vdata.hres.max_cycles == expected
    assert vdata.raw.max_cycles == expected


def test_mode_none_skips_hres_part_but_keeps_realtime_and_coarse() -> None:
    vdata = published(make_tk(), P61, VDSO_CLOCKMODE_NONE)
    assert vdata.hres.clock_mode == vdata.raw.clock_mode == VDSO_CLOCKMODE_NONE
    assert vdata.hres.cycle_last == 0
    assert CLOCK_MONOTONIC not in vdata.hres.basetime
    assert CLOCK_REALTIME in vdata.hres.basetime
    coarse = do_coarse(vdata, CLOCK_REALTIME_COARSE)
    assert (coarse.sec, coarse.nsec) == (XTIME_SEC, XTIME_NS)


# --- reader agrees with the kernel -------------------------------------------


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
@given(delta=st.integers(min_value=0, max_value=TSC.max_cycles), frac=st.integers(0, (1 << 24) - 1))
def test_vdso_matches_kernel_reader_for_ordinary_deltas(
    profile: KernelProfile, delta: int, frac: int
) -> None:
    tk = make_tk(frac=frac)
    vdata = published(tk, profile)
    cycles = CYCLE_LAST + delta
    for clock_id in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_MONOTONIC_RAW):
        result = hres(vdata, clock_id, cycles, profile)
        assert total_ns(result) == kernel_ns(tk, clock_id, cycles, profile), clock_id
        assert (result.retries, result.spins) == (0, 0)


def test_coarse_clocks_match_kernel_coarse_getters() -> None:
    tk = make_tk()
    vdata = published(tk, P613)
    rt = vdso_clock_gettime(vdata, CLOCK_REALTIME_COARSE, const(0), P613)
    mono = vdso_clock_gettime(vdata, CLOCK_MONOTONIC_COARSE, const(0), P613)
    assert isinstance(rt, VdsoTime)
    assert isinstance(mono, VdsoTime)
    assert total_ns(rt) == XTIME_SEC * NSEC_PER_SEC + (tk.tkr_mono.xtime_nsec >> TSC.shift)
    # ktime_get_coarse(): base + (xtime_nsec >> shift)
    assert total_ns(mono) == tk.tkr_mono.base + (tk.tkr_mono.xtime_nsec >> TSC.shift)


def test_unsupported_clock_falls_back() -> None:
    vdata = published(make_tk(), P610)
    result = vdso_clock_gettime(vdata, CLOCK_PROCESS_CPUTIME_ID, const(CYCLE_LAST), P610)
    assert result == VdsoFallback(FallbackReason.UNSUPPORTED_CLOCK)


# --- long pauses -------------------------------------------------------------

PAUSE_1100 = 1100 * TSC_HZ  # beyond both max_cycles (~990 s) and the u64 wrap (~1099.5 s)


def exact_mono_ns(tk: Timekeeper, cycles: int) -> int:
    delta = cycles - tk.tkr_mono.cycle_last
    return tk.tkr_mono.base + ((delta * TSC.mult + tk.tkr_mono.xtime_nsec) >> TSC.shift)


@pytest.mark.parametrize("profile", [P510, P61, P65], ids=lambda p: p.name)
def test_1100s_jump_wraps_before_610(profile: KernelProfile) -> None:
    tk = make_tk()
    vdata = published(tk, profile)
    cycles = CYCLE_LAST + PAUSE_1100
    result = hres(vdata, CLOCK_MONOTONIC, cycles, profile)
    assert total_ns(result) == exact_mono_ns(tk, cycles) - (1 << 40)
    assert total_ns(result) == kernel_ns(tk, CLOCK_MONOTONIC, cycles, profile)  # kernel wraps the same way


@pytest.mark.parametrize("profile", [P610, P613], ids=lambda p: p.name)
def test_1100s_jump_is_exact_from_610(profile: KernelProfile) -> None:
    tk = make_tk()
    vdata = published(tk, profile)
    cycles = CYCLE_LAST + PAUSE_1100
    result = hres(vdata, CLOCK_MONOTONIC, cycles, profile)
    assert total_ns(result) == exact_mono_ns(tk, cycles)
    assert total_ns(result) == kernel_ns(tk, CLOCK_MONOTONIC, cycles, profile)


def test_iter_div_loops_after_long_pause() -> None:
    tk = make_tk()
    vdata = published(tk, P610)
    cycles = CYCLE_LAST + 1000 * TSC_HZ
    result = hres(vdata, CLOCK_REALTIME, cycles, P610)
    ns = (1000 * TSC_HZ * TSC.mult + tk.tkr_mono.xtime_nsec) >> TSC.shift
    assert result.iter_div_loops == ns // NSEC_PER_SEC == 1000  # 0.98765 s + 999.99997 s
    assert (result.sec, result.nsec) == (XTIME_SEC + 1000, ns - 1000 * NSEC_PER_SEC)
    # No pause: the loop runs zero times (xtime_nsec < 1 s).
    assert hres(vdata, CLOCK_REALTIME, CYCLE_LAST, P610).iter_div_loops == 0
    # 5.10 wraps after 1100 s: 0.98765 s + 1100 s - 2**40 ns is 1.476 s, one loop.
    vdata_old = published(tk, P510)
    wrapped = ((PAUSE_1100 * TSC.mult + tk.tkr_mono.xtime_nsec) % (1 << 64)) >> TSC.shift
    assert wrapped // NSEC_PER_SEC == 1
    assert hres(vdata_old, CLOCK_REALTIME, CYCLE_LAST + PAUSE_1100, P510).iter_div_loops == 1


def test_iter_div_quotient_is_u32() -> None:
    quotient, rem, loops = iter_div_u64_rem(U64_MAX, NSEC_PER_SEC)
    assert loops == U64_MAX // NSEC_PER_SEC == 18_446_744_073
    assert quotient == loops & U32_MAX
    assert rem == U64_MAX % NSEC_PER_SEC


# --- negative motion -----------------------------------------------------------


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
@pytest.mark.parametrize("back", [1, 1000, 2_500_000_000])
def test_small_negative_motion_sticks_at_base(profile: KernelProfile, back: int) -> None:
    tk = make_tk()
    vdata = published(tk, profile)
    result = hres(vdata, CLOCK_MONOTONIC, CYCLE_LAST - back, profile)
    sec, nsec = vdata.hres.basetime[CLOCK_MONOTONIC]
    assert (result.sec, result.nsec) == (sec, nsec >> TSC.shift)
    assert total_ns(result) == kernel_ns(tk, CLOCK_MONOTONIC, CYCLE_LAST - back, profile)


def test_tsc_crossing_bit_63_per_variant() -> None:
    """A raw TSC above 2**63: 5.3-6.4 falls back, 6.5+ masks and computes the delta."""
    last = (1 << 63) - 100
    raw_tsc = (1 << 63) + 1000
    tk = make_tk(cycle_last=last)
    old = do_hres(published(tk, P61), CLOCK_MONOTONIC, const(raw_tsc), P61)
    assert old == VdsoFallback(FallbackReason.INVALID_CYCLES)
    expected = exact_mono_ns(tk, last + 1100)
    for profile in (P65, P610):
        result = hres(published(tk, profile), CLOCK_MONOTONIC, raw_tsc, profile)
        assert total_ns(result) == expected, profile.name


def test_610_bit62_forward_delta_sticks() -> None:
    """6.10's test is on bit 62 of the unmasked delta: a delta with it set is 'negative'."""
    tk = make_tk(cycle_last=0)
    vdata = published(tk, P610)
    result = hres(vdata, CLOCK_MONOTONIC, (1 << 62) + 5, P610)
    sec, nsec = vdata.hres.basetime[CLOCK_MONOTONIC]
    assert (result.sec, result.nsec) == (sec, nsec >> TSC.shift)


# --- fallbacks -------------------------------------------------------------------


def _must_not_read() -> int:
    raise AssertionError("counter read in a mode without a vDSO reader")


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_clock_mode_none_falls_back_without_reading(profile: KernelProfile) -> None:
    vdata = published(make_tk(), profile, VDSO_CLOCKMODE_NONE)
    for clock_id in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW):
        assert do_hres(vdata, clock_id, _must_not_read, profile) == VdsoFallback(
            FallbackReason.CLOCK_MODE_NONE
        )


KVM_CLOCK = register("kvm-clock", 64, freq_hz=NSEC_PER_SEC)
SCALE = kvm_tsc_scale(2_500_000)


def pvclock_setup(flags: int, profile: KernelProfile) -> tuple[Timekeeper, VdsoData, PvclockVcpuTimeInfo]:
    pvti = PvclockVcpuTimeInfo(
        version=2,
        tsc_timestamp=5_000_000_000_000,
        system_time=2_000_000_000_000,
        tsc_to_system_mul=SCALE.tsc_to_system_mul,
        tsc_shift=SCALE.tsc_shift,
        flags=flags,
    )
    mono = TkReadBase.for_clock(KVM_CLOCK, 2_000_000_000_000)
    raw = TkReadBase.for_clock(KVM_CLOCK, 2_000_000_000_000)
    mono.base = 2_000 * NSEC_PER_SEC
    tk = Timekeeper(
        tkr_mono=mono, tkr_raw=raw, xtime_sec=XTIME_SEC, wall_to_monotonic=Timespec64(2_000 - XTIME_SEC, 0)
    )
    vdata = published(tk, profile, VDSO_CLOCKMODE_PVCLOCK)
    vdata.pvclock_page = pvti
    return tk, vdata, pvti


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_pvclock_without_stable_bit_falls_back(profile: KernelProfile) -> None:
    _, vdata, _ = pvclock_setup(0, profile)
    result = do_hres(vdata, CLOCK_MONOTONIC, const(5_000_000_000_000 + TSC_HZ), profile)
    assert result == VdsoFallback(FallbackReason.INVALID_CYCLES)


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_pvclock_with_stable_bit_reads_kvmclock(profile: KernelProfile) -> None:
    tk, vdata, pvti = pvclock_setup(PVCLOCK_TSC_STABLE_BIT, profile)
    tsc = 5_000_000_000_000 + TSC_HZ  # one second of TSC
    kvmclock = pvclock_read_cycles(pvti, tsc)
    assert kvmclock == 2_000_000_000_000 + 999_999_999  # the 2.5 GHz scale truncates
    result = hres(vdata, CLOCK_MONOTONIC, tsc, profile)
    assert total_ns(result) == kernel_ns(tk, CLOCK_MONOTONIC, kvmclock, profile)


# --- seqcount interleaving -------------------------------------------------------------


def test_odd_seq_spins_until_writer_finishes() -> None:
    old, new = make_tk(), make_tk(cycle_last=CYCLE_LAST + TSC_HZ, xtime_ns=XTIME_NS)
    new.xtime_sec += 1
    vdata = published(old, P610)
    vdso_write_begin(vdata)
    assert vdso_read_begin(vdata.hres) is None

    def writer(point: HookPoint) -> None:
        if point == "spin":
            update_vsyscall_data(new, vdata, VDSO_CLOCKMODE_TSC, P610)
            vdso_write_end(vdata)

    cycles = CYCLE_LAST + TSC_HZ + 10
    result = do_hres(vdata, CLOCK_REALTIME, const(cycles), P610, hook=writer)
    assert isinstance(result, VdsoTime)
    assert (result.spins, result.retries) == (1, 0)
    assert total_ns(result) == kernel_ns(new, CLOCK_REALTIME, cycles, P610)


def test_seq_change_during_pass_forces_retry_with_new_data() -> None:
    old = make_tk()
    new = make_tk(cycle_last=CYCLE_LAST + TSC_HZ)
    new.xtime_sec += 1
    vdata = published(old, P61)
    calls: list[HookPoint] = []

    def writer(point: HookPoint) -> None:
        calls.append(point)
        if point == "begin" and calls.count("begin") == 1:
            update_vsyscall(new, vdata, VDSO_CLOCKMODE_TSC, P61)

    cycles = CYCLE_LAST + TSC_HZ + 10
    result = do_hres(vdata, CLOCK_REALTIME, const(cycles), P61, hook=writer)
    assert isinstance(result, VdsoTime)
    assert result.retries == 1
    assert calls == ["begin", "retry", "begin", "retry"]
    assert total_ns(result) == kernel_ns(new, CLOCK_REALTIME, cycles, P61)


def test_step_api_sees_the_race() -> None:
    vdata = published(make_tk(), P613)
    seq = vdso_read_begin(vdata.hres)
    assert seq == 2
    sample = do_hres_attempt(vdata, CLOCK_MONOTONIC, const(CYCLE_LAST + 1), P613)
    assert not isinstance(sample, VdsoFallback)
    assert not vdso_read_retry(vdata.hres, seq)
    update_vsyscall(make_tk(), vdata, VDSO_CLOCKMODE_TSC, P613)
    assert vdso_read_retry(vdata.hres, seq)


def test_writer_that_never_finishes_is_reported() -> None:
    vdata = published(make_tk(), P610)
    vdso_write_begin(vdata)
    with pytest.raises(VdsoLivelockError):
        do_hres(vdata, CLOCK_MONOTONIC, const(CYCLE_LAST), P610, max_spins=5)
