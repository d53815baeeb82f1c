"""The vectorised readers agree with the scalar readers, bit for bit.

Every element of every array result is compared with
:func:`tsclab.kernel.readers.timekeeping_cycles_to_ns` on the same input:
for every kernel profile, for counters of 64, 32 and 24 bits, for random
reader state (``cycle_last``, ``xtime_nsec``, an NTP-adjusted ``mult``) and
for random as well as boundary counter values.  Nothing here is timed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tsclab.arith import NSEC_PER_SEC, U32_MAX, U64_MAX, mul_u64_u32_add_u64_shr, u64
from tsclab.clocksource import Clocksource, register
from tsclab.kernel import readers, vectorised
from tsclab.kernel.profiles import PROFILES, KernelProfile
from tsclab.kernel.readers import TkReadBase, timekeeping_cycles_to_ns
from tsclab.kernel.vectorised import (
    ArrayReads,
    as_u64_array,
    cycles_to_ns_debug_array,
    cycles_to_ns_protected_array,
    cycles_to_ns_wrapping_array,
    mul_u64_u32_add_u64_shr_array,
    read_ns_after_pause,
    timekeeping_cycles_to_ns_array,
)

# numpy must never warn about wrap-around: the u64 wrap is the point.
pytestmark = pytest.mark.filterwarnings("error")

CLOCKS: dict[str, Clocksource] = {
    "tsc-2.5GHz": register("tsc", 64, freq_khz=2_500_000),
    "tsc-2.0GHz": register("tsc", 64, freq_khz=2_000_000),
    "kvm-clock": register("kvm-clock", 64, freq_hz=1_000_000_000),
    "hpet": register("hpet", 32, freq_hz=14_318_180),
    "acpi_pm": register("acpi_pm", 24, freq_hz=3_579_545),
}
# Not a registration result: a 32-bit counter whose max_cycles lies between
# the MSB and the mask, so that 6.10+ deltas past max_cycles can be below the
# MSB (exact slow path) or above it (negative motion) - and deltas with the
# MSB set can still be within max_cycles (fast path).
_hpet = CLOCKS["hpet"]
CLOCKS["synthetic-32bit"] = replace(_hpet, name="synthetic", max_cycles=(_hpet.mask >> 1) + (_hpet.mask >> 2))

# Every defined profile, plus each with the reader's negative-motion test
# toggled, so that both values of ``reader_negative_msb`` meet every variant.
ALL_PROFILES: list[KernelProfile] = [
    variant
    for p in PROFILES.values()
    for variant in (
        p,
        replace(
            p, name=f"{p.name}/msb={not p.reader_negative_msb}", reader_negative_msb=not p.reader_negative_msb
        ),
    )
]
PROFILE_IDS = [p.name for p in ALL_PROFILES]

u64s = st.integers(min_value=0, max_value=U64_MAX)
profiles = st.sampled_from(ALL_PROFILES)


def edge_deltas(tkr: TkReadBase) -> list[int]:
    """Deltas at every boundary a reader variant branches on."""
    clock, mask, mult = tkr.clock, tkr.mask, tkr.mult
    overflow_at = -(-(1 << 64) // mult)  # ceil(2**64 / mult): first wrapping delta
    underflow_at = mask - (mask >> 3)  # debug: (~delta & mask) < mask >> 3 above this
    centres = [
        0,
        clock.max_cycles,
        mask >> 1,
        (mask >> 1) + 1,
        mask,
        1 << 63,
        U64_MAX,
        overflow_at,
        underflow_at,
        clock.max_raw_delta,
    ]
    return sorted({u64(c + d) for c in centres for d in (-1, 0, 1)})


def scalar_reads(tkr: TkReadBase, cycles: np.ndarray, profile: KernelProfile) -> list[tuple[int, bool, bool]]:
    out = []
    for c in cycles.reshape(-1).tolist():
        ns, flags = timekeeping_cycles_to_ns(tkr, int(c), profile)
        out.append((ns, flags.underflow_seen, flags.overflow_seen))
    return out


def array_reads(reads: ArrayReads) -> list[tuple[int, bool, bool]]:
    assert reads.ns.dtype == np.uint64
    assert reads.underflow_seen.dtype == np.bool_
    assert reads.overflow_seen.dtype == np.bool_
    return list(
        zip(
            (int(v) for v in reads.ns.reshape(-1).tolist()),
            (bool(v) for v in reads.underflow_seen.reshape(-1).tolist()),
            (bool(v) for v in reads.overflow_seen.reshape(-1).tolist()),
            strict=True,
        )
    )


def assert_bit_identical(tkr: TkReadBase, cycles: np.ndarray, profile: KernelProfile) -> None:
    reads = timekeeping_cycles_to_ns_array(tkr, cycles, profile)
    assert reads.ns.shape == cycles.shape
    assert array_reads(reads) == scalar_reads(tkr, cycles, profile)


@dataclass(frozen=True)
class State:
    tkr: TkReadBase
    name: str


@st.composite
def reader_states(draw: st.DrawFn) -> State:
    """A reader state: clock, cycle_last, xtime_nsec < 1 s << shift, mult within maxadj."""
    name = draw(st.sampled_from(sorted(CLOCKS)))
    clock = CLOCKS[name]
    # Usually a counter value the clock can produce; sometimes any u64.
    cycle_last = draw(st.one_of(st.integers(0, clock.mask), u64s))
    tkr = TkReadBase.for_clock(clock, cycle_last)
    tkr.mult = clock.mult + draw(st.integers(-clock.maxadj, clock.maxadj))
    tkr.xtime_nsec = draw(st.integers(0, (NSEC_PER_SEC << clock.shift) - 1))
    return State(tkr, name)


@given(
    state=reader_states(),
    profile=profiles,
    cycles=hnp.arrays(np.uint64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=16), elements=u64s),
)
def test_random_counter_values_match_scalar(state: State, profile: KernelProfile, cycles: np.ndarray) -> None:
    assert_bit_identical(state.tkr, cycles, profile)


@given(state=reader_states(), profile=profiles)
def test_edge_deltas_match_scalar(state: State, profile: KernelProfile) -> None:
    tkr = state.tkr
    deltas = np.array(edge_deltas(tkr), dtype=np.uint64)
    cycles = deltas + np.uint64(u64(tkr.cycle_last))
    assert_bit_identical(tkr, cycles, profile)
    # The same values as raw counter reads, not offsets from cycle_last.
    assert_bit_identical(tkr, deltas, profile)


@given(
    state=reader_states(),
    profile=profiles,
    pauses=hnp.arrays(np.uint64, st.integers(0, 32), elements=u64s),
)
def test_read_ns_after_pause_reads_at_cycle_last_plus_pause(
    state: State, profile: KernelProfile, pauses: np.ndarray
) -> None:
    tkr = state.tkr
    expected = [
        timekeeping_cycles_to_ns(tkr, u64(tkr.cycle_last + int(p)), profile)[0] for p in pauses.tolist()
    ]
    got = read_ns_after_pause(tkr, pauses, profile)
    assert got.dtype == np.uint64
    assert [int(v) for v in got.tolist()] == expected


@pytest.mark.parametrize("name", sorted(CLOCKS))
@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_full_edge_grid_at_registered_mult(name: str, profile: KernelProfile) -> None:
    """Deterministic: every edge delta, at mult and at mult +/- maxadj."""
    clock = CLOCKS[name]
    for adj in (-clock.maxadj, 0, clock.maxadj):
        tkr = TkReadBase.for_clock(clock, cycle_last=clock.mask // 3)
        tkr.mult = clock.mult + adj
        tkr.xtime_nsec = (NSEC_PER_SEC << clock.shift) - 1
        cycles = np.array(edge_deltas(tkr), dtype=np.uint64) + np.uint64(tkr.cycle_last)
        assert_bit_identical(tkr, cycles, profile)


# --- the worked example --------------------------------------------------------


def test_worked_example_tsc_2_5ghz_1100s_pause() -> None:
    """TSC 2.5 GHz, 0.5 s into the second, 1100 s of cycles since the update.

    ``delta * mult`` needs 2**64 * 1.0 and a bit: the wrapping reader loses
    1024 s and reads 0.9883 s; 6.10+ takes the slow path and reads 1100.4999 s.
    """
    clock = CLOCKS["tsc-2.5GHz"]
    tkr = TkReadBase.for_clock(clock, cycle_last=123_456_789)
    tkr.xtime_nsec = (NSEC_PER_SEC // 2) << clock.shift
    delta = 1100 * clock.freq_hz
    assert delta > clock.max_cycles
    assert delta * tkr.mult >= 1 << 64
    cycles = np.array([tkr.cycle_last + delta], dtype=np.uint64)

    wrapping = PROFILES["linux-6.1"]
    protected = PROFILES["linux-6.10"]
    assert wrapping.reader_math == "wrapping"
    assert protected.reader_math == "protected"

    wrapped_ns = int(timekeeping_cycles_to_ns_array(tkr, cycles, wrapping).ns[0])
    assert wrapped_ns == timekeeping_cycles_to_ns(tkr, int(cycles[0]), wrapping)[0]
    assert f"{wrapped_ns / NSEC_PER_SEC:.4f}" == "0.9883"

    protected_ns = int(timekeeping_cycles_to_ns_array(tkr, cycles, protected).ns[0])
    assert protected_ns == timekeeping_cycles_to_ns(tkr, int(cycles[0]), protected)[0]
    assert str(protected_ns).startswith("11004999")
    assert protected_ns // 100_000 == 11_004_999  # 1100.4999 s, truncated to 0.1 ms

    # The debug kernel caps the delta at max_cycles and says so.
    debug = timekeeping_cycles_to_ns_array(tkr, cycles, PROFILES["linux-6.1-debug"])
    assert bool(debug.overflow_seen[0])
    assert not bool(debug.underflow_seen[0])
    assert int(debug.ns[0]) == timekeeping_cycles_to_ns(tkr, int(cycles[0]), PROFILES["linux-6.1-debug"])[0]


# --- the exact slow-path multiply ---------------------------------------------


@given(
    a=hnp.arrays(np.uint64, st.integers(0, 16), elements=u64s),
    mul=st.integers(0, U32_MAX),
    b=u64s,
    shift=st.integers(0, 64),
)
def test_mul_u64_u32_add_u64_shr_array_is_exact(a: np.ndarray, mul: int, b: int, shift: int) -> None:
    got = mul_u64_u32_add_u64_shr_array(a, mul, b, shift)
    assert [int(v) for v in got.tolist()] == [
        mul_u64_u32_add_u64_shr(int(x), mul, b, shift) for x in a.tolist()
    ]


def test_mul_u64_u32_add_u64_shr_array_extremes() -> None:
    # The largest sum: (2**64 - 1) * (2**32 - 1) + 2**64 - 1, a 97-bit value.
    a = np.array([0, 1, U32_MAX, 1 << 32, U64_MAX], dtype=np.uint64)
    for shift in (0, 1, 31, 32, 33, 63, 64):
        got = mul_u64_u32_add_u64_shr_array(a, U32_MAX, U64_MAX, shift)
        want = [mul_u64_u32_add_u64_shr(int(x), U32_MAX, U64_MAX, shift) for x in a.tolist()]
        assert [int(v) for v in got.tolist()] == want


def test_mul_u64_u32_add_u64_shr_array_refuses_bad_shift() -> None:
    with pytest.raises(ValueError, match="shift"):
        mul_u64_u32_add_u64_shr_array(np.zeros(1, dtype=np.uint64), 1, 0, 65)


# --- input handling -------------------------------------------------------------


@pytest.fixture
def tsc_tkr() -> TkReadBase:
    clock = CLOCKS["tsc-2.5GHz"]
    tkr = TkReadBase.for_clock(clock, cycle_last=U64_MAX - 10)
    tkr.xtime_nsec = 7 << clock.shift
    return tkr


@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_shapes_and_dtypes(tsc_tkr: TkReadBase, profile: KernelProfile) -> None:
    empty = timekeeping_cycles_to_ns_array(tsc_tkr, np.zeros(0, dtype=np.uint64), profile)
    assert empty.ns.shape == (0,)
    assert empty.ns.dtype == np.uint64

    scalar = timekeeping_cycles_to_ns_array(tsc_tkr, np.uint64(5), profile)
    assert scalar.ns.shape == ()
    assert int(scalar.ns) == timekeeping_cycles_to_ns(tsc_tkr, 5, profile)[0]

    grid = np.arange(12, dtype=np.uint64).reshape(3, 4)
    reads = timekeeping_cycles_to_ns_array(tsc_tkr, grid, profile)
    assert reads.ns.shape == reads.underflow_seen.shape == reads.overflow_seen.shape == (3, 4)


def test_signed_and_list_inputs_are_taken_modulo_2_64(tsc_tkr: TkReadBase) -> None:
    profile = PROFILES["linux-6.10"]
    signed = np.array([-1, -11, 0, 3], dtype=np.int64)
    reads = timekeeping_cycles_to_ns_array(tsc_tkr, signed, profile)
    want = [timekeeping_cycles_to_ns(tsc_tkr, int(v), profile)[0] for v in signed.tolist()]
    assert [int(v) for v in reads.ns.tolist()] == want
    from_list = timekeeping_cycles_to_ns_array(tsc_tkr, [U64_MAX, 0, 1 << 63], profile)
    assert [int(v) for v in from_list.ns.tolist()] == [
        timekeeping_cycles_to_ns(tsc_tkr, v, profile)[0] for v in (U64_MAX, 0, 1 << 63)
    ]


def test_input_array_is_not_modified(tsc_tkr: TkReadBase) -> None:
    cycles = np.array([0, U64_MAX, 1 << 63, 12345], dtype=np.uint64)
    before = cycles.copy()
    for profile in PROFILES.values():
        timekeeping_cycles_to_ns_array(tsc_tkr, cycles, profile)
        read_ns_after_pause(tsc_tkr, cycles, profile)
    assert np.array_equal(cycles, before)


def test_float_input_is_refused() -> None:
    with pytest.raises(TypeError, match="integers"):
        as_u64_array(np.array([1.5]))
    with pytest.raises(TypeError, match="integers"):
        as_u64_array([1, 2.0])
    with pytest.raises(TypeError, match="integers"):
        as_u64_array([U64_MAX, 0.5])


def test_python_int_sequences_are_exact() -> None:
    got = as_u64_array([[U64_MAX, -1], [1 << 63, (1 << 64) + 3]])
    assert got.dtype == np.uint64
    assert got.tolist() == [[U64_MAX, U64_MAX], [1 << 63, 3]]


def test_out_of_range_state_is_refused(tsc_tkr: TkReadBase) -> None:
    cycles = np.zeros(1, dtype=np.uint64)
    tsc_tkr.xtime_nsec = 1 << 64
    with pytest.raises(ValueError, match="xtime_nsec"):
        cycles_to_ns_wrapping_array(tsc_tkr, cycles, True)
    tsc_tkr.xtime_nsec = 0
    tsc_tkr.shift = 65
    with pytest.raises(ValueError, match="shift"):
        cycles_to_ns_protected_array(tsc_tkr, cycles, True)


def test_variant_functions_match_scalar_variants(tsc_tkr: TkReadBase) -> None:
    cycles = np.array(edge_deltas(tsc_tkr), dtype=np.uint64) + np.uint64(tsc_tkr.cycle_last)
    values = [int(c) for c in cycles.tolist()]
    for negative_msb in (False, True):
        ns, under, over = cycles_to_ns_debug_array(tsc_tkr, cycles, negative_msb)
        want_debug = [readers.cycles_to_ns_debug(tsc_tkr, c, negative_msb) for c in values]
        assert [int(v) for v in ns.tolist()] == [w[0] for w in want_debug]
        assert under.tolist() == [w[1].underflow_seen for w in want_debug]
        assert over.tolist() == [w[1].overflow_seen for w in want_debug]
        wrapping = cycles_to_ns_wrapping_array(tsc_tkr, cycles, negative_msb)
        assert [int(v) for v in wrapping.tolist()] == [
            readers.cycles_to_ns_wrapping(tsc_tkr, c, negative_msb) for c in values
        ]
        protected = cycles_to_ns_protected_array(tsc_tkr, cycles, negative_msb)
        assert [int(v) for v in protected.tolist()] == [
            readers.cycles_to_ns_protected(tsc_tkr, c, negative_msb) for c in values
        ]


# --- block processing -------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_small_blocks_give_the_same_reads(
    monkeypatch: pytest.MonkeyPatch, chunk: int, profile: KernelProfile
) -> None:
    """Block boundaries anywhere: edge deltas for every clock, in blocks of ``chunk``."""
    monkeypatch.setattr(vectorised, "CHUNK", chunk)
    for clock in CLOCKS.values():
        tkr = TkReadBase.for_clock(clock, cycle_last=clock.mask - 5)
        tkr.xtime_nsec = 123_456_789 << clock.shift
        cycles = np.array(edge_deltas(tkr), dtype=np.uint64) + np.uint64(tkr.cycle_last)
        assert_bit_identical(tkr, cycles, profile)


@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_arrays_longer_than_a_block(profile: KernelProfile) -> None:
    """Several full blocks and a partial one, with slow-path values in some blocks only."""
    clock = CLOCKS["tsc-2.5GHz"]
    tkr = TkReadBase.for_clock(clock, cycle_last=987_654_321)
    tkr.xtime_nsec = 999_999_999 << clock.shift
    rng = np.random.default_rng(7)
    n = 2 * vectorised.CHUNK + 1001
    deltas = rng.integers(0, clock.max_cycles, size=n, dtype=np.uint64, endpoint=True)
    # Past max_cycles only in the second block and the tail.
    tail = rng.integers(0, U64_MAX, size=n // 4, dtype=np.uint64, endpoint=True)
    deltas[vectorised.CHUNK + 17 : vectorised.CHUNK + 17 + tail.size // 2] = tail[: tail.size // 2]
    deltas[-500:] = tail[:500]
    assert_bit_identical(tkr, deltas + np.uint64(tkr.cycle_last), profile)


@given(
    mask=st.sampled_from([0x00FF_FF00_FFFF_0FF0, 0xA5A5_A5A5, U64_MAX ^ (1 << 40), 0]),
    profile=profiles,
    cycles=hnp.arrays(np.uint64, st.integers(0, 32), elements=u64s),
    cycle_last=u64s,
)
def test_non_contiguous_masks_match_scalar(
    mask: int, profile: KernelProfile, cycles: np.ndarray, cycle_last: int
) -> None:
    """No clocksource has one, but the scalar readers take any mask; so do these."""
    clock = replace(CLOCKS["tsc-2.5GHz"], mask=mask, max_cycles=min(mask, CLOCKS["tsc-2.5GHz"].max_cycles))
    tkr = TkReadBase.for_clock(clock, cycle_last)
    tkr.xtime_nsec = 5 << clock.shift
    edges = np.array(edge_deltas(tkr), dtype=np.uint64) + np.uint64(cycle_last)
    assert_bit_identical(tkr, np.concatenate([cycles, edges]), profile)
