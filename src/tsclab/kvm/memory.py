"""Host memory mapped for KVM: guest RAM and the vCPU run page, each owned and unmapped once."""

from __future__ import annotations

import ctypes
import struct
from types import TracebackType
from typing import Self

from tsclab.kvm import libc


class Mapping:
    """``size`` bytes mapped at ``address`` (anonymous, or of an fd); :meth:`close` unmaps them.

    Closing twice is harmless; any access after :meth:`close` raises
    ``ValueError`` rather than touching memory that is no longer ours.
    """

    def __init__(self, size: int, fd: int = -1, *, what: str) -> None:
        if size <= 0:
            raise ValueError(f"{what}: mapping size must be positive, got {size}")
        self._what = what
        self.size = size
        self._address: int | None = libc.map_shared(size, fd, what=what)

    @property
    def address(self) -> int:
        """The host virtual address of the first byte."""
        if self._address is None:
            raise ValueError(f"{self._what} is unmapped")
        return self._address

    @property
    def closed(self) -> bool:
        return self._address is None

    def close(self) -> None:
        """Unmap (once)."""
        if self._address is not None:
            address, self._address = self._address, None
            libc.unmap(address, self.size, what=self._what)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check(self, offset: int, length: int) -> int:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(
                f"{self._what}: bytes [{offset:#x}, {offset + length:#x}) outside [0, {self.size:#x})"
            )
        return self.address + offset

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``."""
        return ctypes.string_at(self._check(offset, length), length)

    def write(self, offset: int, data: bytes) -> None:
        """Copy ``data`` to ``offset``."""
        ctypes.memmove(self._check(offset, len(data)), data, len(data))


class GuestMemory(Mapping):
    """Guest RAM: anonymous shared memory at guest-physical ``[base, base + size)``.

    Addresses taken by :meth:`read_gpa`/:meth:`write_gpa` are guest-physical.
    The VMM reads the guest's pvclock page and the migration code copies
    RAM through them.
    """

    def __init__(self, size: int, base: int = 0) -> None:
        super().__init__(size, what=f"guest memory at {base:#x}")
        self.base = base

    def contains(self, gpa: int, length: int = 1) -> bool:
        return self.base <= gpa and gpa + length <= self.base + self.size

    def read_gpa(self, gpa: int, length: int) -> bytes:
        return self.read(gpa - self.base, length)

    def write_gpa(self, gpa: int, data: bytes) -> None:
        self.write(gpa - self.base, data)

    def read_u64(self, gpa: int) -> int:
        value: int = struct.unpack("<Q", self.read_gpa(gpa, 8))[0]
        return value

    def write_u64(self, gpa: int, value: int) -> None:
        self.write_gpa(gpa, struct.pack("<Q", value))
