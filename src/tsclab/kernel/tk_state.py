"""``struct timekeeper`` and ``struct tk_data``: the timekeeper's state.

Fields and widths follow ``include/linux/timekeeper_internal.h`` (5.10 to
the 2026 trees); functions that change them live in
:mod:`tsclab.kernel.timekeeping`.  Since 6.13 the state is ``tk_core`` of
type ``struct tk_data``: a seqcount, the live timekeeper, a shadow copy the
writer works on, and a lock.  Older kernels have the same pair as
``tk_core.timekeeper`` and ``shadow_timekeeper``; the model uses one shape
for both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tsclab.kernel.readers import TkReadBase
from tsclab.kernel.timespec import ZERO, Timespec64


@dataclass(slots=True)
class Timekeeper:
    """``struct timekeeper`` (the fields timekeeping arithmetic touches)."""

    tkr_mono: TkReadBase
    tkr_raw: TkReadBase
    xtime_sec: int = 0  # u64: CLOCK_REALTIME seconds
    ktime_sec: int = 0  # u64: CLOCK_MONOTONIC seconds
    wall_to_monotonic: Timespec64 = ZERO
    offs_real: int = 0  # ktime_t
    offs_boot: int = 0  # ktime_t
    offs_tai: int = 0  # ktime_t
    tai_offset: int = 0  # s32
    clock_was_set_seq: int = 0  # unsigned int
    cs_was_changed_seq: int = 0  # u8
    next_leap_ktime: int = (1 << 63) - 1  # KTIME_MAX: no leap pending
    raw_sec: int = 0  # u64
    monotonic_to_boot: Timespec64 = ZERO
    # Internal: NTP interval bookkeeping (tk_setup_internals()).
    cycle_interval: int = 0  # u64 cycles per NTP interval (one tick)
    xtime_interval: int = 0  # u64 shifted ns per interval
    xtime_remainder: int = 0  # s64
    raw_interval: int = 0  # u64
    ntp_tick: int = 0  # u64, NTP_SCALE_SHIFT units
    ntp_error: int = 0  # s64, 2^-32 ns scaled by ntp_error_shift
    ntp_error_shift: int = 0  # u32
    ntp_err_mult: int = 0  # u32: 0 or 1
    skip_second_overflow: int = 0  # u32
    # CONFIG_DEBUG_TIMEKEEPING state (4.1 to 6.12).
    underflow_seen: bool = False
    overflow_seen: bool = False

    def copy(self) -> Timekeeper:
        """An independent copy: the ``memcpy`` from shadow to live (or back).

        Every field but the two ``tk_read_base`` records is immutable (ints,
        bools, frozen Timespec64), so only those two need copying.
        """
        return replace(self, tkr_mono=self.tkr_mono.copy(), tkr_raw=self.tkr_raw.copy())


@dataclass(slots=True)
class TkData:
    """``struct tk_data``: seqcount, live and shadow timekeepers.

    Invariant between write sections: ``seq`` is even and ``timekeeper``
    equals ``shadow``.  A writer makes ``seq`` odd for the publish step
    only; readers that saw an odd ``seq``, or a changed one, retry.
    """

    timekeeper: Timekeeper
    shadow: Timekeeper
    seq: int = 0
    suspended: bool = False

    def read_seqcount_begin(self) -> int | None:
        """One look at ``tk_core.seq``: the value if even, None while a writer is inside.

        The kernel spins until it is even; a simulator decides what runs meanwhile.
        """
        return None if self.seq & 1 else self.seq

    def read_seqcount_retry(self, start: int) -> bool:
        """``read_seqcount_retry()``: true if a writer published since ``start``."""
        return self.seq != start
