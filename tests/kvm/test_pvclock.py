"""The VMM's copy of the guest's kvmclock arithmetic: exact integers, C's wraps and truncations."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.clocksource.pvclock import kvm_tsc_scale
from tsclab.clocksource.pvclock import pvclock_scale_delta as model_scale_delta
from tsclab.kvm.pvclock import (
    PvclockBusyError,
    PvclockTimeInfo,
    pvclock_clocksource_read,
    pvclock_read_cycles,
    pvclock_scale_delta,
    pvclock_tsc_khz,
    read_consistent,
)

U64 = 1 << 64

# A page KVM wrote on this project's test host (kvm_pvm, 2596.150 MHz TSC), and the guest's
# TSC reading it was used for; KVM_GET_CLOCK bracketed the result at [2673880, 2792646] ns.
REAL_PAGE = PvclockTimeInfo(
    version=2,
    tsc_timestamp=80133486227445,
    system_time=2311614,
    tsc_to_system_mul=3308720448,
    tsc_shift=-1,
    flags=1,
)
REAL_TSC = 80133487352023


def page(tsc_timestamp: int, system_time: int, mul: int, shift: int, flags: int = 0) -> PvclockTimeInfo:
    return PvclockTimeInfo(2, tsc_timestamp, system_time, mul, shift, flags)


def test_half_rate_scale() -> None:
    # mul 2^31 is 0.5 ns per cycle: 2000 cycles after the timestamp add 1000 ns.
    assert pvclock_read_cycles(page(1000, 5000, 1 << 31, 0), 3000) == 6000


def test_real_page_from_kvm() -> None:
    # delta 1124578 cycles, >> 1 = 562289, * 3308720448 >> 32 = 433171 ns.
    assert pvclock_read_cycles(REAL_PAGE, REAL_TSC) == 2311614 + 433171 == 2744785


def test_negative_shift_shifts_right_first() -> None:
    # 1000 >> 3 = 125 cycles, at 1 ns (mul 2^32 - 1 is just under 1): 124 ns (truncated).
    assert pvclock_scale_delta(1000, (1 << 32) - 1, -3) == 124


def test_left_shift_drops_bits_above_64() -> None:
    # (2^63 + 8) << 2 keeps only 32 in 64 bits; 32 * 0.5 = 16.
    assert pvclock_scale_delta((1 << 63) + 8, 1 << 31, 2) == 16


def test_tsc_one_cycle_behind_the_timestamp_wraps() -> None:
    # delta = 2^64 - 1; (delta * (2^32 - 1)) >> 32 keeps bits 32..95 of the product in 64 bits:
    # 2^64 - 2^32 - 1, i.e. -(2^32 + 1) ns: kvmclock jumps back 4.29 s, not 1 ns.
    info = page(1, (1 << 32) + 5, (1 << 32) - 1, 0)
    assert pvclock_scale_delta(U64 - 1, (1 << 32) - 1, 0) == U64 - (1 << 32) - 1
    assert pvclock_read_cycles(info, 0) == 4


def test_system_time_plus_offset_wraps_at_64_bits() -> None:
    assert pvclock_read_cycles(page(0, U64 - 10, 1 << 31, 0), 40) == 10


@given(
    delta=st.integers(0, U64 - 1),
    mul=st.integers(0, (1 << 32) - 1),
    shift=st.integers(-63, 63),
)
def test_agrees_with_the_model_layer(delta: int, mul: int, shift: int) -> None:
    assert pvclock_scale_delta(delta, mul, shift) == model_scale_delta(delta, mul, shift)


def test_scale_real_kvm_wrote_is_the_models_kvm_get_time_scale() -> None:
    scale = kvm_tsc_scale(2596150)
    assert (scale.tsc_to_system_mul, scale.tsc_shift) == (REAL_PAGE.tsc_to_system_mul, REAL_PAGE.tsc_shift)
    assert pvclock_tsc_khz(REAL_PAGE) == 2596150


def test_tsc_khz_of_an_unwritten_page() -> None:
    with pytest.raises(ValueError, match="not written"):
        pvclock_tsc_khz(page(0, 0, 0, 0))


def _reader(*versions: int) -> tuple[list[int], Callable[[], bytes]]:
    reads: list[int] = []
    sequence = list(versions)

    def read() -> bytes:
        version = sequence[min(len(reads), len(sequence) - 1)]
        reads.append(version)
        return PvclockTimeInfo(version, 1, 2, 3, 0, 1).pack()

    return reads, read


def test_read_retries_while_the_version_is_odd() -> None:
    reads, read = _reader(3, 3, 4, 4)
    info = read_consistent(read)
    assert info.version == 4
    assert reads == [3, 3, 4, 4]


def test_read_retries_when_the_version_moved_under_it() -> None:
    reads, read = _reader(4, 6, 6, 6)
    assert read_consistent(read).version == 6
    assert reads == [4, 6, 6, 6]


def test_read_gives_up_on_a_page_that_never_settles() -> None:
    _, read = _reader(5)
    with pytest.raises(PvclockBusyError, match="still changing"):
        read_consistent(read, max_tries=3)


def test_clocksource_read_returns_stable_values_as_they_are() -> None:
    stable = page(1000, 5000, 1 << 31, 0, flags=1)
    reading = pvclock_clocksource_read(stable, 3000, last_value=10**9)
    assert (reading.ns, reading.last_value) == (6000, 10**9)


def test_clocksource_read_clamps_unstable_values_to_the_last_one() -> None:
    unstable = page(1000, 5000, 1 << 31, 0, flags=0)
    assert pvclock_clocksource_read(unstable, 3000, last_value=7000).ns == 7000
    forward = pvclock_clocksource_read(unstable, 3000, last_value=100)
    assert (forward.ns, forward.last_value) == (6000, 6000)
    # The stable bit only counts if the guest was told to trust it (CPUID).
    stable = page(1000, 5000, 1 << 31, 0, flags=1)
    assert pvclock_clocksource_read(stable, 3000, last_value=7000, stable_bit_valid=False).ns == 7000


def test_flags_and_enabled() -> None:
    assert REAL_PAGE.enabled
    assert REAL_PAGE.tsc_stable
    assert not REAL_PAGE.guest_stopped
    assert page(0, 0, 1, 0, flags=3).guest_stopped
    assert not PvclockTimeInfo(0, 0, 0, 0, 0, 0).enabled
    with pytest.raises(ValueError, match="32 bytes"):
        PvclockTimeInfo.parse(b"\0" * 31)
