"""Reader arithmetic over numpy arrays: the scalar readers, bit for bit.

The same three variants as :mod:`tsclab.kernel.readers`, evaluated for a
whole array of counter values at once (for sweeps over pause lengths and
counter positions).  Every element gets exactly the ``u64`` result the
scalar path returns; the tests prove it against the scalar readers.

* :func:`cycles_to_ns_wrapping_array` - pre-6.10 ``timekeeping_get_ns()``
  (``timekeeping_delta_to_ns()``): ``(delta * mult + xtime_nsec) >> shift``
  in u64, which wraps;
* :func:`cycles_to_ns_debug_array` - 4.1-6.9 ``timekeeping_get_delta()``
  under ``CONFIG_DEBUG_TIMEKEEPING``: near-wrap deltas clamped to 0, deltas
  above ``max_cycles`` capped, with the ``underflow_seen``/``overflow_seen``
  flags per element;
* :func:`cycles_to_ns_protected_array` - 6.10+ ``timekeeping_cycles_to_ns()``
  with ``delta_to_ns_safe()``: past ``max_cycles`` either the negative-motion
  result ``xtime_nsec >> shift`` or the exact ``mul_u64_u32_add_u64_shr()``.

How the C widths are kept: arrays are ``uint64``, whose multiply and add
wrap modulo 2**64 silently, exactly as C's u64 does.  The 6.10+ slow path
needs the exact 97-bit ``delta * mult + xtime_nsec`` before the shift; it is
built from two 32x32->64 partial products (see
:func:`mul_u64_u32_add_u64_shr_array`).  Scalars are reduced to their C
width in Python first and only then turned into ``np.uint64``, so no numpy
scalar arithmetic (which warns on overflow) ever happens.

Branches are boolean masks, applied without data-dependent branching (a
value is zeroed by multiplying with the negated mask, a result chosen by
adding the masked difference); there is no Python loop over elements.
Long arrays are processed in blocks of :data:`CHUNK` values with in-place
ufuncs, so that the handful of intermediates stays in cache instead of being
allocated (and page-faulted) at full length for every step.

Layer: this is the only module of tsclab that imports numpy; the model core
does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsclab.arith import U32_MAX, U64_MAX, u32, u64
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.readers import TkReadBase

U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

_LOW32 = np.uint64(U32_MAX)
_SHIFT32 = np.uint64(32)

__all__ = [
    "ArrayReads",
    "BoolArray",
    "U64Array",
    "as_u64_array",
    "cycles_to_ns_debug_array",
    "cycles_to_ns_protected_array",
    "cycles_to_ns_wrapping_array",
    "mul_u64_u32_add_u64_shr_array",
    "read_ns_after_pause",
    "timekeeping_cycles_to_ns_array",
]


@dataclass(frozen=True, slots=True)
class ArrayReads:
    """Per-element reader results: ns since the last update, and the debug flags.

    ``underflow_seen``/``overflow_seen`` are all False except for the
    ``debug-capping`` variant, mirroring :data:`tsclab.kernel.readers.NO_FLAGS`.
    All three arrays have the shape of the input.
    """

    ns: U64Array
    underflow_seen: BoolArray
    overflow_seen: BoolArray


def as_u64_array(values: npt.ArrayLike) -> U64Array:
    """Counter values as a ``uint64`` array (a copy only when needed).

    Integers of any dtype, and sequences of Python ints of any size, are
    taken modulo 2**64, which is what the readers do with any value anyway
    (``(cycles - last) & mask``).  Anything else (floats, which numpy picks
    for a list mixing ints beyond ``int64`` and ``uint64``, or non-integer
    objects) is refused: it cannot carry a u64 exactly.
    """
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind in "iub":
        return arr.astype(np.uint64)
    if not isinstance(values, np.ndarray | np.generic):
        # A (nested) sequence of Python ints that no single integer dtype
        # holds: reduce each exactly, in Python, then convert.
        objs = np.asarray(values, dtype=object)
        if all(isinstance(v, int | np.integer) for v in objs.flat):
            exact: U64Array = np.mod(objs, 1 << 64).astype(np.uint64)
            return exact
    raise TypeError(f"counter values must be integers, got dtype {arr.dtype}")


# --- reader state at C width -------------------------------------------------

CHUNK = 1 << 14
"""Values per block: a few u64 intermediates of this length fit in L2."""

_ZERO = np.uint64(0)


def _check_shift(shift: int) -> None:
    # C shifts by >= 64 are undefined; clocksource shifts are at most 32.
    if not 0 <= shift <= 64:
        raise ValueError(f"shift must be 0..64, got {shift}")


@dataclass(frozen=True, slots=True)
class _MulAddShr:
    """``(a * mul + b) >> shift`` exactly, constants prepared once.

    For ``shift <= 32``, with ``b = b_high << shift | b_low``::

        (a * mul + b) >> shift
          = ((ah * mul) << (32 - shift)) + b_high + ((al * mul + b_low) >> shift)

    exactly, because ``ah * mul << 32`` and ``b_high << shift`` are
    multiples of ``1 << shift``.  ``al * mul + b_low`` is at most
    ``(2**32 - 1)**2 + 2**32 - 1 < 2**64``, so no step needs a carry, and
    the u64 truncation of the result is the wrapping sum of the three terms.
    Wider shifts take :func:`_mul_add_shr_wide`.
    """

    mul: np.uint64
    b: int
    shift: int
    b_high: np.uint64
    b_low: np.uint64

    @classmethod
    def of(cls, mul: int, b: int, shift: int) -> _MulAddShr:
        _check_shift(shift)
        b = u64(b)
        low = (1 << shift) - 1 if shift <= 32 else 0
        return cls(np.uint64(u32(mul)), b, shift, np.uint64(b >> shift), np.uint64(b & low))

    def into(self, a: U64Array, out: U64Array, scratch: U64Array) -> None:
        """Write the result for ``a`` into ``out``; ``scratch`` is clobbered."""
        if self.shift > 32:
            out[...] = _mul_add_shr_wide(a, self.mul, self.b, self.shift)
            return
        np.bitwise_and(a, _LOW32, out=out)
        np.multiply(out, self.mul, out=out)
        np.add(out, self.b_low, out=out)
        np.right_shift(out, np.uint64(self.shift), out=out)
        np.right_shift(a, _SHIFT32, out=scratch)
        np.multiply(scratch, self.mul, out=scratch)
        np.left_shift(scratch, np.uint64(32 - self.shift), out=scratch)
        np.add(out, scratch, out=out)
        np.add(out, self.b_high, out=out)


def _mul_add_shr_wide(a: U64Array, mul: np.uint64, b: int, shift: int) -> U64Array:
    """``(a * mul + b) >> shift`` for any shift 0..64, via a 128-bit (hi, lo) pair.

    As the generic ``include/linux/math64.h`` fallbacks assemble wide
    products: the two 32x32->64 partial products and ``b`` are summed into
    ``lo`` with the carries out of 64 bits counted into ``hi``.
    """
    p_lo = np.multiply(np.bitwise_and(a, _LOW32), mul)  # bits 0..63
    p_hi = np.multiply(np.right_shift(a, _SHIFT32), mul)  # worth p_hi << 32
    lo = np.add(p_lo, np.uint64(b))
    carry1 = lo < p_lo
    lo2 = np.add(lo, np.left_shift(p_hi, _SHIFT32))
    carry2 = lo2 < lo
    hi = np.right_shift(p_hi, _SHIFT32)  # < 2**32: the carries cannot overflow it
    hi += carry1.astype(np.uint64)
    hi += carry2.astype(np.uint64)
    if shift == 0:
        return lo2
    if shift == 64:
        return hi
    out: U64Array = np.bitwise_or(
        np.left_shift(hi, np.uint64(64 - shift)), np.right_shift(lo2, np.uint64(shift))
    )
    return out


@dataclass(frozen=True, slots=True)
class _Reader:
    """A ``TkReadBase`` reduced to the C widths, as numpy scalars, once per call."""

    last: np.uint64
    mask: np.uint64
    msb: np.uint64  # mask & ~(mask >> 1)
    half: np.uint64  # mask >> 1
    contiguous: bool  # mask is 2**n - 1 (every clocksource's CLOCKSOURCE_MASK)
    underflow_below: np.uint64  # mask >> 3
    mult: np.uint64  # the fast path's u64 multiply: any mult, taken mod 2**64
    xtime_nsec: np.uint64
    shift: int
    max_cycles: np.uint64
    negative_ns: np.uint64  # xtime_nsec >> shift
    exact: _MulAddShr  # the slow path: mult as u32

    @classmethod
    def of(cls, tkr: TkReadBase) -> _Reader:
        _check_shift(tkr.shift)
        if not 0 <= tkr.xtime_nsec <= U64_MAX:
            raise ValueError(f"xtime_nsec must be a u64, got {tkr.xtime_nsec}")
        if not 0 <= tkr.mask <= U64_MAX:
            raise ValueError(f"mask must be a u64, got {tkr.mask}")
        mask, max_cycles = tkr.mask, tkr.clock.max_cycles
        if not 0 <= max_cycles <= U64_MAX:
            raise ValueError(f"max_cycles must be a u64, got {max_cycles}")
        return cls(
            last=np.uint64(u64(tkr.cycle_last)),
            mask=np.uint64(mask),
            msb=np.uint64(mask & ~(mask >> 1)),
            half=np.uint64(mask >> 1),
            contiguous=mask & (mask + 1) == 0,
            underflow_below=np.uint64(mask >> 3),
            mult=np.uint64(u64(tkr.mult)),
            xtime_nsec=np.uint64(tkr.xtime_nsec),
            shift=tkr.shift,
            max_cycles=np.uint64(max_cycles),
            negative_ns=np.uint64(tkr.xtime_nsec >> tkr.shift),
            exact=_MulAddShr.of(tkr.mult, tkr.xtime_nsec, tkr.shift),
        )

    def delta_into(self, cycles: U64Array, delta: U64Array) -> None:
        """``(cycles - cycle_last) & mask``."""
        np.subtract(cycles, self.last, out=delta)
        np.bitwise_and(delta, self.mask, out=delta)

    def msb_into(self, delta: U64Array, flag: BoolArray, scratch: U64Array) -> None:
        """``delta_has_msb()``: ``delta & ~(mask >> 1)`` within the mask is non-zero.

        For a ``2**n - 1`` mask and a masked delta that is ``delta > mask >> 1``,
        one comparison instead of an AND and a comparison.
        """
        if self.contiguous:
            np.greater(delta, self.half, out=flag)
        else:
            np.bitwise_and(delta, self.msb, out=scratch)
            np.not_equal(scratch, _ZERO, out=flag)

    def zero_where(self, delta: U64Array, flag: BoolArray, keep: BoolArray) -> None:
        """``if (flag) delta = 0`` per element (``keep`` is clobbered)."""
        np.logical_not(flag, out=keep)
        np.multiply(delta, keep, out=delta)

    def wrapping_into(self, delta: U64Array, ns: U64Array) -> None:
        """``(u64)(delta * mult + xtime_nsec) >> shift``: the u64 math that wraps."""
        np.multiply(delta, self.mult, out=ns)
        np.add(ns, self.xtime_nsec, out=ns)
        if self.shift >= 64:
            ns.fill(0)
        else:
            np.right_shift(ns, np.uint64(self.shift), out=ns)


@dataclass(slots=True)
class _Scratch:
    """Block-sized work arrays, allocated once per call."""

    delta: U64Array
    tmp: U64Array
    tmp2: U64Array
    flag: BoolArray
    flag2: BoolArray
    flag3: BoolArray

    @classmethod
    def of(cls, n: int) -> _Scratch:
        k = max(1, min(n, CHUNK))
        return cls(
            np.empty(k, np.uint64),
            np.empty(k, np.uint64),
            np.empty(k, np.uint64),
            np.empty(k, np.bool_),
            np.empty(k, np.bool_),
            np.empty(k, np.bool_),
        )


def _flat(cycles: npt.ArrayLike) -> tuple[U64Array, tuple[int, ...]]:
    # Work on a 1-d array: 0-d inputs would otherwise turn intermediates into
    # numpy scalars, whose arithmetic warns on wrap-around.
    arr = as_u64_array(cycles)
    return arr.reshape(-1), arr.shape


def _blocks(n: int) -> list[slice]:
    return [slice(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]


def mul_u64_u32_add_u64_shr_array(a: npt.ArrayLike, mul: int, b: int, shift: int) -> U64Array:
    """``mul_u64_u32_add_u64_shr(a, mul, b, shift)`` per element, exactly.

    The vector form of :func:`tsclab.arith.mul_u64_u32_add_u64_shr` (used by
    6.10+ ``delta_to_ns_safe()``): ``(a * (u32)mul + b) >> shift`` taken on the
    exact (at most 97-bit) sum, then truncated to 64 bits.  ``mul`` is
    truncated to u32 and ``b`` to u64, as the C prototypes do.  Exact for
    every shift 0..64 (the kernel's generic C fallback,
    :func:`tsclab.arith.mul_u64_u32_add_u64_shr_32bit`, is exact for
    ``shift <= 32``, the range clocksources use).
    """
    op = _MulAddShr.of(mul, b, shift)
    arr, shape = _flat(a)
    out = np.empty_like(arr)
    op.into(arr, out, np.empty_like(arr))
    result: U64Array = out.reshape(shape)
    return result


# --- the three reader variants ----------------------------------------------


def cycles_to_ns_wrapping_array(tkr: TkReadBase, cycles: npt.ArrayLike, negative_msb: bool) -> U64Array:
    """Pre-6.10 ``timekeeping_get_ns()`` / ``timekeeping_delta_to_ns()`` per element.

    Array form of :func:`tsclab.kernel.readers.cycles_to_ns_wrapping`: the
    x86 ``clocksource_delta()`` MSB test (when ``negative_msb``), then
    ``delta * mult + xtime_nsec`` in u64 - wrapping for long deltas - and the
    shift.
    """
    r = _Reader.of(tkr)
    arr, shape = _flat(cycles)
    ns = np.empty(arr.shape, np.uint64)
    s = _Scratch.of(arr.size)
    for blk in _blocks(arr.size):
        k = blk.stop - blk.start
        delta, flag = s.delta[:k], s.flag[:k]
        r.delta_into(arr[blk], delta)
        if negative_msb:
            r.msb_into(delta, flag, s.tmp[:k])
            r.zero_where(delta, flag, s.flag2[:k])
        r.wrapping_into(delta, ns[blk])
    return ns.reshape(shape)


def cycles_to_ns_debug_array(
    tkr: TkReadBase, cycles: npt.ArrayLike, negative_msb: bool
) -> tuple[U64Array, BoolArray, BoolArray]:
    """4.1-6.9 ``timekeeping_get_delta()`` under ``CONFIG_DEBUG_TIMEKEEPING``.

    Array form of :func:`tsclab.kernel.readers.cycles_to_ns_debug`; returns
    ``(ns, underflow_seen, overflow_seen)``.  After the optional MSB test, a
    delta with ``(~delta & mask) < mask >> 3`` (within 12.5% of a wrap) is
    taken as negative motion and clamped to 0; a delta above
    ``clock->max_cycles`` is capped at ``max_cycles``.  Then the same u64
    multiply as the wrapping reader (which the cap keeps from wrapping for
    ``mult <= clock.mult + maxadj``).
    """
    r = _Reader.of(tkr)
    arr, shape = _flat(cycles)
    ns = np.empty(arr.shape, np.uint64)
    underflow = np.empty(arr.shape, np.bool_)
    overflow = np.empty(arr.shape, np.bool_)
    s = _Scratch.of(arr.size)
    for blk in _blocks(arr.size):
        k = blk.stop - blk.start
        delta, tmp, flag, keep = s.delta[:k], s.tmp[:k], s.flag[:k], s.flag2[:k]
        under, over = underflow[blk], overflow[blk]
        r.delta_into(arr[blk], delta)
        if negative_msb:
            r.msb_into(delta, flag, tmp)
            r.zero_where(delta, flag, keep)
        np.invert(delta, out=tmp)
        np.bitwise_and(tmp, r.mask, out=tmp)
        np.less(tmp, r.underflow_below, out=under)
        r.zero_where(delta, under, keep)
        np.greater(delta, r.max_cycles, out=over)
        np.minimum(delta, r.max_cycles, out=delta)  # if (delta > max_cycles) delta = max_cycles
        r.wrapping_into(delta, ns[blk])
    return ns.reshape(shape), underflow.reshape(shape), overflow.reshape(shape)


def cycles_to_ns_protected_array(tkr: TkReadBase, cycles: npt.ArrayLike, negative_msb: bool) -> U64Array:
    """6.10+ ``timekeeping_cycles_to_ns()`` with ``delta_to_ns_safe()`` per element.

    Array form of :func:`tsclab.kernel.readers.cycles_to_ns_protected`.  The
    fast path is the u64 ``delta * mult + xtime_nsec``; elements with
    ``delta > clock->max_cycles`` take the slow path: ``xtime_nsec >> shift``
    when ``negative_msb`` and the MSB of the mask is set, otherwise the exact
    ``mul_u64_u32_add_u64_shr()`` (:func:`mul_u64_u32_add_u64_shr_array`).
    The negative-motion test is only reached past ``max_cycles``, so a
    counter with ``max_cycles == mask`` (HPET, ACPI PM) never takes it.

    ``xtime_nsec >> shift`` is what the exact multiply gives for a delta of
    0, so deltas with the MSB set are zeroed before the exact multiply and
    both slow-path outcomes come from it; the zeroed deltas of elements on
    the fast path are never used.
    """
    r = _Reader.of(tkr)
    arr, shape = _flat(cycles)
    ns = np.empty(arr.shape, np.uint64)
    s = _Scratch.of(arr.size)
    for blk in _blocks(arr.size):
        k = blk.stop - blk.start
        delta, slow = s.delta[:k], s.flag[:k]
        out = ns[blk]
        r.delta_into(arr[blk], delta)
        r.wrapping_into(delta, out)
        np.greater(delta, r.max_cycles, out=slow)
        if not slow.any():
            continue
        if negative_msb:
            # Zeroed wherever the MSB is set; only slow elements use the result.
            negative, keep = s.flag2[:k], s.flag3[:k]
            r.msb_into(delta, negative, s.tmp[:k])
            r.zero_where(delta, negative, keep)
        exact = s.tmp[:k]
        r.exact.into(delta, exact, s.tmp2[:k])
        # out = slow ? exact : out, as out + slow * (exact - out) in u64.
        np.subtract(exact, out, out=exact)
        np.multiply(exact, slow, out=exact)
        np.add(out, exact, out=out)
    return ns.reshape(shape)


def timekeeping_cycles_to_ns_array(
    tkr: TkReadBase, cycles: npt.ArrayLike, profile: KernelProfile
) -> ArrayReads:
    """Nanoseconds since the last update for each counter value, per profile.

    The array form of :func:`tsclab.kernel.readers.timekeeping_cycles_to_ns`,
    dispatching on ``profile.reader_math`` and ``profile.reader_negative_msb``.
    """
    negative_msb = profile.reader_negative_msb
    if profile.reader_math == "debug-capping":
        ns, underflow, overflow = cycles_to_ns_debug_array(tkr, cycles, negative_msb)
        return ArrayReads(ns, underflow, overflow)
    if profile.reader_math == "protected":
        ns = cycles_to_ns_protected_array(tkr, cycles, negative_msb)
    else:
        ns = cycles_to_ns_wrapping_array(tkr, cycles, negative_msb)
    no_flags = np.zeros(ns.shape, dtype=np.bool_)
    return ArrayReads(ns, no_flags, no_flags.copy())


def read_ns_after_pause(tkr: TkReadBase, pauses_cycles: npt.ArrayLike, profile: KernelProfile) -> U64Array:
    """What a reader returns after the counter advanced by each pause length.

    The counter is read at ``cycle_last + pause`` (u64, wrapping), i.e. with
    no timekeeping update since ``cycle_last``: the first read after a guest
    resumes from a pause of that many cycles.  Returns only the ns; use
    :func:`timekeeping_cycles_to_ns_array` for the debug flags.
    """
    pauses, shape = _flat(pauses_cycles)
    cycles = np.add(pauses, np.uint64(u64(tkr.cycle_last)))
    return timekeeping_cycles_to_ns_array(tkr, cycles.reshape(shape), profile).ns
