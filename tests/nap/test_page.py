"""The nap page's fixed layout (docs/nap-protocol.md section 1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsclab.nap.page import GUEST_PARKED, MAGIC, SIZE, WOKEN, NapPage, NapPageError, pack, unpack

U64 = st.integers(min_value=0, max_value=2**64 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)


def test_the_layout_is_little_endian_at_the_documented_offsets() -> None:
    page = NapPage(
        seq=2,
        host_state=WOKEN,
        generation=7,
        reason=3,
        flags=0b1010,
        nap_ns=200_000_000_000,
        realtime_error_ns=1_000_000,
        tsc_at_freeze=11,
        tsc_at_wake=12,
        tsc_khz=2_500_000,
        max_sane_delta=13,
        guest_state=GUEST_PARKED,
        acked_generation=7,
        applied_generation=6,
        slept_ns=300_000_000_000,
        slept_tsc=14,
        slept_error_ns=2_000_000,
        woken_generation=7,
    )
    data = pack(page)
    assert len(data) == SIZE == 160
    assert data[0:4] == b"NAP1"
    assert struct.unpack_from("<I", data, 0)[0] == MAGIC
    assert struct.unpack_from("<HH", data, 4) == (1, 160)
    assert struct.unpack_from("<II", data, 8) == (2, WOKEN)
    assert struct.unpack_from("<Q", data, 16)[0] == 7
    assert struct.unpack_from("<II", data, 24) == (3, 0b1010)
    assert struct.unpack_from("<QQ", data, 48) == (200_000_000_000, 1_000_000)
    assert struct.unpack_from("<QQ", data, 64) == (11, 12)
    assert struct.unpack_from("<I", data, 80)[0] == 2_500_000
    assert struct.unpack_from("<Q", data, 88)[0] == 13
    assert struct.unpack_from("<I", data, 96)[0] == GUEST_PARKED
    assert struct.unpack_from("<QQ", data, 104) == (7, 6)
    assert struct.unpack_from("<QQQ", data, 120) == (300_000_000_000, 14, 2_000_000)
    assert struct.unpack_from("<Q", data, 144)[0] == 7
    assert data[152:160] == bytes(8)


@given(U32, U64, U64, U64, U64, U64, U32, U64)
def test_pack_and_unpack_round_trip(
    seq: int, generation: int, nap: int, tsc0: int, tsc1: int, applied: int, khz: int, slept: int
) -> None:
    page = NapPage(
        seq=seq,
        generation=generation,
        nap_ns=nap,
        tsc_at_freeze=tsc0,
        tsc_at_wake=tsc1,
        tsc_khz=khz,
        applied_generation=applied,
        slept_ns=slept,
    )
    assert unpack(pack(page)) == page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(159), "expected 160 bytes, got 159"),
        (bytes(160), "not NAP1 v1"),
        (pack(NapPage())[:4] + b"\x02\x00" + pack(NapPage())[6:], "version 2"),
    ],
)
def test_a_page_that_is_not_nap1_v1_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(NapPageError, match=message):
        unpack(data)
