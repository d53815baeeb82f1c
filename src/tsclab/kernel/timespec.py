"""``struct timespec64`` and ``ktime_t`` helpers, with the kernel's rounding.

``ktime_t`` is an s64 count of nanoseconds; ``timespec64`` is (s64 sec,
long nsec) kept normalised to 0 <= nsec < 1e9 by
``set_normalized_timespec64()``.  Models ``kernel/time/time.c`` and
``include/linux/time64.h`` / ``ktime.h``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_SEC, s64


@dataclass(frozen=True, slots=True, order=True)
class Timespec64:
    """A normalised (sec, nsec) pair.

    Ordered by (sec, nsec), which for normalised values is
    ``timespec64_compare()``.
    """

    sec: int
    nsec: int

    @staticmethod
    def normalized(sec: int, nsec: int) -> Timespec64:
        """``set_normalized_timespec64()``: carry nsec into sec, both ways."""
        extra, nsec = divmod(nsec, NSEC_PER_SEC)
        return Timespec64(s64(sec + extra), nsec)

    @staticmethod
    def from_ns(ns: int) -> Timespec64:
        """``ns_to_timespec64()``: floor division, remainder in [0, 1e9)."""
        sec, nsec = divmod(s64(ns), NSEC_PER_SEC)
        return Timespec64(sec, nsec)

    def to_ns(self) -> int:
        """``timespec64_to_ns()`` (no saturation needed for the ranges modelled)."""
        return s64(self.sec * NSEC_PER_SEC + self.nsec)

    def __add__(self, other: Timespec64) -> Timespec64:
        return Timespec64.normalized(self.sec + other.sec, self.nsec + other.nsec)

    def __sub__(self, other: Timespec64) -> Timespec64:
        return Timespec64.normalized(self.sec - other.sec, self.nsec - other.nsec)

    def __neg__(self) -> Timespec64:
        return Timespec64.normalized(-self.sec, -self.nsec)


ZERO = Timespec64(0, 0)


def ktime_add_ns(kt: int, ns: int) -> int:
    """``ktime_add_ns()``: s64 + u64, wrapping as the kernel's s64 does."""
    return s64(kt + ns)


def timespec64_add_ns(ts: Timespec64, ns: int) -> Timespec64:
    """``timespec64_add_ns()``: ``__iter_div_u64_rem`` carries whole seconds."""
    total = ts.nsec + ns
    return Timespec64(s64(ts.sec + total // NSEC_PER_SEC), total % NSEC_PER_SEC)
