"""Host mappings: bounds, guest-physical addressing, deterministic unmapping (no KVM needed)."""

from __future__ import annotations

import pytest

from tests.kvm.host_state import mapped
from tsclab.kvm.memory import GuestMemory, Mapping


def test_guest_physical_read_write() -> None:
    with GuestMemory(0x2000, base=0x10000) as memory:
        memory.write_u64(0x10008, 0x1122334455667788)
        assert memory.read_gpa(0x10008, 2) == b"\x88\x77"
        assert memory.read_u64(0x10008) == 0x1122334455667788
        assert memory.contains(0x11FF8, 8)
        assert not memory.contains(0x11FF9, 8)
        assert not memory.contains(0xFFFF)


def test_out_of_bounds_access_is_refused() -> None:
    with Mapping(4096, what="test page") as page:
        with pytest.raises(ValueError, match=r"test page: bytes \[0xffc, 0x1004\) outside \[0, 0x1000\)"):
            page.read(4092, 8)
        with pytest.raises(ValueError, match="outside"):
            page.write(-1, b"x")


def test_close_unmaps_once_and_later_access_fails() -> None:
    page = Mapping(4096, what="test page")
    address = page.address
    assert mapped(address)
    page.close()
    assert page.closed
    assert not mapped(address)
    page.close()  # harmless
    with pytest.raises(ValueError, match="test page is unmapped"):
        page.read(0, 1)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Mapping(0, what="empty")
