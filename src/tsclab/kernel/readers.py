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

Readers return what the kernel returns, plus :class:`ReaderFlags`: the
branch the read took and (for the debug variant) the
``underflow_seen``/``overflow_seen`` flags it raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tsclab.arith import U64_MAX, mul_u64_u32_add_u64_shr
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


ReaderPath = Literal["fast", "slow-path", "negative-clamp", "debug-capped", "wrapped-multiply"]


@dataclass(frozen=True, slots=True)
class ReaderFlags:
    """How one read went: the branch it took and what the debug reader noticed.

    ``path``: ``fast``; ``slow-path`` (6.10+ 128-bit); ``negative-clamp``
    (delta taken as 0: the last update's time); ``debug-capped`` (delta
    capped at ``max_cycles``); ``wrapped-multiply`` (``delta * mult +
    xtime_nsec`` passed 2**64), with ``wrap_loss_ns`` the exact result
    minus the wrapped one - whole ``2**(64 - shift)`` ns steps.
    ``underflow_seen``/``overflow_seen`` are ``tk->underflow_seen`` and
    ``overflow_seen`` of the debug reader.
    """

    underflow_seen: bool = False
    overflow_seen: bool = False
    path: ReaderPath = "fast"
    wrap_loss_ns: int = 0


NO_FLAGS = ReaderFlags()
_SLOW_PATH = ReaderFlags(path="slow-path")
_NEGATIVE_CLAMP = ReaderFlags(path="negative-clamp")


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


def _mul_add_shift_u64(delta: int, mult: int, xtime_nsec: int, shift: int) -> tuple[int, ReaderFlags]:
    """``(delta * mult + xtime_nsec) >> shift`` with the sum truncated to u64, as C does."""
    product = delta * mult + xtime_nsec
    ns = (product & U64_MAX) >> shift
    if product > U64_MAX:
        return ns, ReaderFlags(path="wrapped-multiply", wrap_loss_ns=(product >> shift) - ns)
    return ns, NO_FLAGS


def read_wrapping(tkr: TkReadBase, cycles: int, negative_msb: bool) -> tuple[int, ReaderFlags]:
    """Pre-6.10 ``timekeeping_get_ns()`` / ``timekeeping_delta_to_ns()``, with its branch."""
    delta = (cycles - tkr.cycle_last) & tkr.mask
    if negative_msb and delta_has_msb(delta, tkr.mask):
        return tkr.xtime_nsec >> tkr.shift, _NEGATIVE_CLAMP
    return _mul_add_shift_u64(delta, tkr.mult, tkr.xtime_nsec, tkr.shift)


def cycles_to_ns_wrapping(tkr: TkReadBase, cycles: int, negative_msb: bool) -> int:
    """Pre-6.10 ``timekeeping_get_ns()``: the nanoseconds of :func:`read_wrapping`."""
    return read_wrapping(tkr, cycles, negative_msb)[0]


def cycles_to_ns_debug(tkr: TkReadBase, cycles: int, negative_msb: bool) -> tuple[int, ReaderFlags]:
    """4.1-6.9 ``timekeeping_get_delta()`` under ``CONFIG_DEBUG_TIMEKEEPING``."""
    mask = tkr.mask
    delta = (cycles - tkr.cycle_last) & mask
    clamped = negative_msb and delta_has_msb(delta, mask)
    if clamped:
        delta = 0
    underflow = overflow = False
    if (~delta & mask) < (mask >> 3):
        underflow, delta = True, 0
    if delta > tkr.clock.max_cycles:
        overflow, delta = True, tkr.clock.max_cycles
    ns, mul = _mul_add_shift_u64(delta, tkr.mult, tkr.xtime_nsec, tkr.shift)
    path: ReaderPath = mul.path
    if path == "fast":
        path = "negative-clamp" if clamped or underflow else "debug-capped" if overflow else "fast"
    return ns, ReaderFlags(underflow, overflow, path, mul.wrap_loss_ns)


def read_protected(tkr: TkReadBase, cycles: int, negative_msb: bool) -> tuple[int, ReaderFlags]:
    """6.10+ ``timekeeping_cycles_to_ns()`` with ``delta_to_ns_safe()``, with its branch.

    The negative-motion test is only reached past ``max_cycles``: a counter
    whose ``max_cycles`` equals its mask (HPET, ACPI PM) never takes it.
    """
    mask = tkr.mask
    delta = (cycles - tkr.cycle_last) & mask
    if delta > tkr.clock.max_cycles:
        if negative_msb and delta_has_msb(delta, mask):
            return tkr.xtime_nsec >> tkr.shift, _NEGATIVE_CLAMP
        return mul_u64_u32_add_u64_shr(delta, tkr.mult, tkr.xtime_nsec, tkr.shift), _SLOW_PATH
    return _mul_add_shift_u64(delta, tkr.mult, tkr.xtime_nsec, tkr.shift)


def cycles_to_ns_protected(tkr: TkReadBase, cycles: int, negative_msb: bool) -> int:
    """6.10+ ``timekeeping_cycles_to_ns()``: the nanoseconds of :func:`read_protected`."""
    return read_protected(tkr, cycles, negative_msb)[0]


def timekeeping_cycles_to_ns(tkr: TkReadBase, cycles: int, profile: KernelProfile) -> tuple[int, ReaderFlags]:
    """Nanoseconds since the last update for a counter read, per profile."""
    if profile.reader_math == "protected":
        return read_protected(tkr, cycles, profile.reader_negative_msb)
    if profile.reader_math == "debug-capping":
        return cycles_to_ns_debug(tkr, cycles, profile.reader_negative_msb)
    return read_wrapping(tkr, cycles, profile.reader_negative_msb)
