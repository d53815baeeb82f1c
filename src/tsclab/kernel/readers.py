"""Reader-side arithmetic: counter value to nanoseconds, per kernel version.

Models ``struct tk_read_base`` and the functions that turn a counter read
into nanoseconds since the last update (``kernel/time/timekeeping.c``,
``kernel/time/timekeeping_internal.h``):

* ``clocksource_delta()`` - the writer's delta, by variant;
* ``timekeeping_cycles_to_ns()`` - the reader's, by ``reader_math``:

  - ``wrapping`` (before 6.10): ``clocksource_delta()`` (x86: MSB test),
    then ``(delta * mult + xtime_nsec) >> shift`` in u64, which wraps;
  - ``debug-capping`` (4.1-6.9, ``CONFIG_DEBUG_TIMEKEEPING``):
    ``timekeeping_get_delta()`` clamps near-wrap deltas
    (``(~delta & mask) < mask >> 3``) to 0 and caps ``delta > max_cycles``
    at ``max_cycles`` before the same multiply;
  - ``protected`` (6.10+): ``delta > clock->max_cycles`` leaves the fast
    path; with the MSB of the mask set it returns ``xtime_nsec >> shift``,
    otherwise ``mul_u64_u32_add_u64_shr()``.

Readers return what the kernel returns, plus (for the debug variant) the
``underflow_seen``/``overflow_seen`` flags it raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import mul_u64_u32_add_u64_shr, u64
from tsclab.clocksource import Clocksource
from tsclab.kernel.profiles import KernelProfile, WriterNegative


@dataclass(slots=True)
class TkReadBase:
    """``struct tk_read_base``: the hot state a reader touches.

    ``xtime_nsec`` is shifted nanoseconds (ns << shift); ``base`` is a
    ``ktime_t`` (s64 ns); ``base_real`` is ``base + offs_real``.
    """

    clock: Clocksource
    mask: int
    cycle_last: int
    mult: int
    shift: int
    xtime_nsec: int = 0
    base: int = 0
    base_real: int = 0

    @classmethod
    def for_clock(cls, clock: Clocksource, cycle_last: int) -> TkReadBase:
        return cls(clock=clock, mask=clock.mask, cycle_last=cycle_last, mult=clock.mult, shift=clock.shift)

    def copy(self) -> TkReadBase:
        return TkReadBase(
            self.clock,
            self.mask,
            self.cycle_last,
            self.mult,
            self.shift,
            self.xtime_nsec,
            self.base,
            self.base_real,
        )


@dataclass(frozen=True, slots=True)
class ReaderFlags:
    """What the debug reader noticed (``tk->underflow_seen``/``overflow_seen``)."""

    underflow_seen: bool = False
    overflow_seen: bool = False


NO_FLAGS = ReaderFlags()


def delta_has_msb(delta: int, mask: int) -> bool:
    """``delta & ~(mask >> 1)``: the MSB of the counter width is set."""
    return bool(delta & ~(mask >> 1) & mask)


def clocksource_delta(now: int, last: int, mask: int, variant: WriterNegative, max_raw_delta: int) -> int:
    """``clocksource_delta(now, last, mask[, max_delta])`` (writer side).

    ``msb``: x86 with ``CONFIG_CLOCKSOURCE_VALIDATE_LAST_CYCLE``, ~3.17-6.12:
    0 when the MSB of the mask is set.  ``max-raw-delta``: 6.13+ and 6.12.5+:
    0 above ``max_raw_delta`` (87.5% of the mask).
    """
    delta = (now - last) & mask
    if variant == "msb":
        return 0 if delta_has_msb(delta, mask) else delta
    return 0 if delta > max_raw_delta else delta


def cycles_to_ns_wrapping(tkr: TkReadBase, cycles: int, negative_msb: bool) -> int:
    """Pre-6.10 ``timekeeping_get_ns()`` / ``timekeeping_delta_to_ns()``."""
    delta = (cycles - tkr.cycle_last) & tkr.mask
    if negative_msb and delta_has_msb(delta, tkr.mask):
        delta = 0
    return u64(u64(delta * tkr.mult) + tkr.xtime_nsec) >> tkr.shift


def cycles_to_ns_debug(tkr: TkReadBase, cycles: int, negative_msb: bool) -> tuple[int, ReaderFlags]:
    """4.1-6.9 ``timekeeping_get_delta()`` under ``CONFIG_DEBUG_TIMEKEEPING``."""
    mask = tkr.mask
    delta = (cycles - tkr.cycle_last) & mask
    if negative_msb and delta_has_msb(delta, mask):
        delta = 0
    underflow = overflow = False
    if (~delta & mask) < (mask >> 3):
        underflow, delta = True, 0
    if delta > tkr.clock.max_cycles:
        overflow, delta = True, tkr.clock.max_cycles
    ns = u64(u64(delta * tkr.mult) + tkr.xtime_nsec) >> tkr.shift
    return ns, ReaderFlags(underflow, overflow)


def cycles_to_ns_protected(tkr: TkReadBase, cycles: int, negative_msb: bool) -> int:
    """6.10+ ``timekeeping_cycles_to_ns()`` with ``delta_to_ns_safe()``.

    The negative-motion test is only reached past ``max_cycles``: a counter
    whose ``max_cycles`` equals its mask (HPET, ACPI PM) never takes it.
    """
    mask = tkr.mask
    delta = (cycles - tkr.cycle_last) & mask
    if delta > tkr.clock.max_cycles:
        if negative_msb and delta_has_msb(delta, mask):
            return tkr.xtime_nsec >> tkr.shift
        return mul_u64_u32_add_u64_shr(delta, tkr.mult, tkr.xtime_nsec, tkr.shift)
    return u64(u64(delta * tkr.mult) + tkr.xtime_nsec) >> tkr.shift


def timekeeping_cycles_to_ns(tkr: TkReadBase, cycles: int, profile: KernelProfile) -> tuple[int, ReaderFlags]:
    """Nanoseconds since the last update for a counter read, per profile."""
    if profile.reader_math == "protected":
        return cycles_to_ns_protected(tkr, cycles, profile.reader_negative_msb), NO_FLAGS
    if profile.reader_math == "debug-capping":
        return cycles_to_ns_debug(tkr, cycles, profile.reader_negative_msb)
    return cycles_to_ns_wrapping(tkr, cycles, profile.reader_negative_msb), NO_FLAGS
