"""The NMI-safe fast timekeepers ``tk_fast_mono`` and ``tk_fast_raw``.

Models ``struct tk_fast`` and its users in ``kernel/time/timekeeping.c``
(5.10 to the 2026 trees): a seqcount *latch* and two copies of
``struct tk_read_base``.  The writer (``update_fast_timekeeper()``) bumps
the latch, rewrites ``base[0]`` while readers use ``base[1]``, bumps it
again and rewrites ``base[1]``; a reader takes the latch, uses
``base[seq & 1]`` and retries if the latch moved.  Readers never wait, so
an NMI that interrupts the writer still gets a consistent copy, at the
price of documented non-monotonicity: a reader forced onto the old copy
after the update point extrapolates with the old slope.

Reader math by version (selected by :attr:`KernelProfile.reader_math`):

* before 6.10, ``fast_tk_get_delta_ns()``: ``clocksource_delta()`` (the
  x86 MSB test) then the wrapping ``delta * mult + xtime_nsec``.  This path
  never went through ``timekeeping_get_delta()``, so kernels built with
  ``CONFIG_DEBUG_TIMEKEEPING`` read the fast timekeeper with the wrapping
  math too;
* from 6.10, ``__timekeeping_get_ns()`` -> ``timekeeping_cycles_to_ns()``,
  the overflow-safe reader of :mod:`tsclab.kernel.readers`.

``halt_fast_timekeeper()`` (suspend) points both copies at ``dummy_clock``,
whose read returns ``cycles_at_suspend`` while timekeeping is suspended
and ``local_clock()`` otherwise (5.10+).  ``dummy_clock`` is a
zero-initialised ``struct clocksource``: its ``max_cycles`` is 0, so from
6.10 every non-zero delta read through it takes the 128-bit slow path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from tsclab.arith import U64_MAX, s64, u32, u64
from tsclab.clocksource import Clocksource
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.readers import TkReadBase, cycles_to_ns_protected, cycles_to_ns_wrapping
from tsclab.kernel.tk_state import Timekeeper

# ``static struct clocksource dummy_clock = { .read = dummy_clock_read };``
# Every other field is zero, including mask and max_cycles.
DUMMY_CLOCK = Clocksource(
    name="dummy",
    bits=0,
    mask=0,
    freq=0,
    scale=1,
    mult=0,
    shift=0,
    maxadj=0,
    max_cycles=0,
    max_idle_ns=0,
    max_raw_delta=0,
)


def fast_tk_init_base() -> TkReadBase:
    """``FAST_TK_INIT`` (5.10+): the boot-time copy, local_clock() ns via mult 1 shift 0."""
    return TkReadBase(clock=DUMMY_CLOCK, mask=U64_MAX, cycle_last=0, mult=1, shift=0)


@dataclass(slots=True)
class TkFast:
    """``struct tk_fast``: ``seqcount_latch_t seq`` and ``tk_read_base base[2]``."""

    seq: int = 0  # unsigned int
    base: list[TkReadBase] = field(default_factory=lambda: [fast_tk_init_base(), fast_tk_init_base()])


@dataclass(slots=True)
class DummyClockState:
    """The globals ``dummy_clock_read()`` consults.

    ``timekeeping_suspended`` is set by ``timekeeping_suspend()`` before it
    halts the fast timekeepers and cleared on resume; ``cycles_at_suspend``
    is written by ``halt_fast_timekeeper()``.  ``local_clock`` models the
    early-boot / not-suspended branch (ns from sched_clock); None means the
    model has no such clock and reading it is an error.
    """

    timekeeping_suspended: bool = False
    cycles_at_suspend: int = 0
    local_clock: Callable[[], int] | None = None


# --- writer ----------------------------------------------------------------


def fast_tk_latch(tkf: TkFast) -> None:
    """``raw_write_seqcount_latch()`` (<6.13) / ``write_seqcount_latch[_begin]()`` (6.13+).

    One increment of the latch sequence (u32): odd sends new readers to
    ``base[1]``, even sends them back to ``base[0]``.
    """
    tkf.seq = u32(tkf.seq + 1)


def update_fast_timekeeper_first_half(tkr: TkReadBase, tkf: TkFast) -> None:
    """First half of ``update_fast_timekeeper()`` (5.10 to the 2026 trees).

    "Force readers off to base[1]" (latch goes odd), then
    ``memcpy(base, tkr)``.  Between the halves, readers use the old copy.
    """
    fast_tk_latch(tkf)
    tkf.base[0] = tkr.copy()


def update_fast_timekeeper_second_half(tkf: TkFast) -> None:
    """Second half of ``update_fast_timekeeper()`` (5.10 to the 2026 trees).

    "Force readers back to base[0]" (latch goes even), then
    ``memcpy(base + 1, base)``.  ``write_seqcount_latch_end()`` (6.13+) only
    tells KCSAN the section ended and changes no state.
    """
    fast_tk_latch(tkf)
    tkf.base[1] = tkf.base[0].copy()


FastUpdateStep = Literal["latch-odd", "base0-copied", "latch-even", "base1-copied"]


def update_fast_timekeeper_steps(tkr: TkReadBase, tkf: TkFast) -> Iterator[FastUpdateStep]:
    """``update_fast_timekeeper(tkr, tkf)`` as four single stores.

    Yields after each store, naming the state just reached, so a simulator
    can run a reader at any point (including mid-``memcpy`` points, which
    the latch retry must catch).  ``tkr`` is copied when ``base[0]`` is
    written, not when the generator is created.
    """
    fast_tk_latch(tkf)
    yield "latch-odd"
    tkf.base[0] = tkr.copy()
    yield "base0-copied"
    fast_tk_latch(tkf)
    yield "latch-even"
    tkf.base[1] = tkf.base[0].copy()
    yield "base1-copied"


def update_fast_timekeeper(tkr: TkReadBase, tkf: TkFast) -> None:
    """``update_fast_timekeeper(tkr, tkf)`` (kernel/time/timekeeping.c, 5.10+), whole.

    The caller (``timekeeping_update()``) sets ``tkr_mono.base_real`` first.
    """
    update_fast_timekeeper_first_half(tkr, tkf)
    update_fast_timekeeper_second_half(tkf)


def halt_fast_timekeeper(
    tk: Timekeeper,
    tkf_mono: TkFast,
    tkf_raw: TkFast,
    read_counter: Callable[[], int],
    dummy: DummyClockState,
) -> int:
    """``halt_fast_timekeeper(tk)`` (kernel/time/timekeeping.c, 5.10 to the 2026 trees).

    Snapshots ``tkr_mono`` (with ``base_real = base + offs_real``) and
    ``tkr_raw`` with the clock replaced by ``dummy_clock``, records
    ``cycles_at_suspend`` from one read of the real clocksource
    (``read_counter``), and publishes both through the latch.  Returns
    ``cycles_at_suspend``.  ``timekeeping_suspended`` is the caller's
    (``timekeeping_suspend()`` sets it before calling this).
    """
    mono = tk.tkr_mono.copy()
    dummy.cycles_at_suspend = u64(read_counter())
    mono.clock = DUMMY_CLOCK
    mono.base_real = s64(tk.tkr_mono.base + tk.offs_real)
    update_fast_timekeeper(mono, tkf_mono)

    raw = tk.tkr_raw.copy()
    raw.clock = DUMMY_CLOCK
    update_fast_timekeeper(raw, tkf_raw)
    return dummy.cycles_at_suspend


# --- reader ----------------------------------------------------------------


class FastReaderLivelockError(RuntimeError):
    """The model's fast reader retried past its limit."""


@dataclass(frozen=True, slots=True)
class FastRead:
    """A fast-timekeeper reading (u64 ns) and how many passes it retried."""

    ns: int
    retries: int = 0
    index: int = 0  # which base[] copy the successful pass used


def tk_clock_read(tkr: TkReadBase, read_counter: Callable[[], int], dummy: DummyClockState | None) -> int:
    """``tk_clock_read(tkr)``: the real clocksource, or ``dummy_clock_read()``.

    ``dummy_clock_read()`` (5.10+): ``cycles_at_suspend`` while suspended,
    else ``local_clock()``.
    """
    if tkr.clock == DUMMY_CLOCK:
        if dummy is None:
            raise ValueError("base uses dummy_clock but no DummyClockState was given")
        if dummy.timekeeping_suspended:
            return dummy.cycles_at_suspend
        if dummy.local_clock is None:
            raise ValueError("dummy_clock read while not suspended needs DummyClockState.local_clock")
        return u64(dummy.local_clock())
    return u64(read_counter())


def fast_tk_get_ns(tkr: TkReadBase, cycles: int, profile: KernelProfile) -> int:
    """Nanoseconds since ``tkr``'s update for a counter value, fast-path math.

    Before 6.10: ``fast_tk_get_delta_ns()`` = ``clocksource_delta()`` +
    ``timekeeping_delta_to_ns()`` (wrapping, also on debug kernels).  From
    6.10: ``__timekeeping_get_ns()`` = ``timekeeping_cycles_to_ns()``.
    """
    if profile.reader_math == "protected":
        return cycles_to_ns_protected(tkr, cycles, profile.reader_negative_msb)
    return cycles_to_ns_wrapping(tkr, cycles, profile.reader_negative_msb)


def fast_read_begin(tkf: TkFast) -> int:
    """``raw_read_seqcount_latch()`` (<6.13) / ``read_seqcount_latch()`` (6.13+).

    No waiting on an odd value: the low bit selects the copy.
    """
    return tkf.seq


def fast_read_attempt(
    tkf: TkFast,
    seq: int,
    read_counter: Callable[[], int],
    profile: KernelProfile,
    dummy: DummyClockState | None = None,
) -> int:
    """One pass of ``__ktime_get_fast_ns()``: ``base + ns`` from ``base[seq & 1]``.

    ``now = ktime_to_ns(tkr->base); now += <delta ns>`` in u64.
    """
    tkr = tkf.base[seq & 1]
    cycles = tk_clock_read(tkr, read_counter, dummy)
    return u64(tkr.base + fast_tk_get_ns(tkr, cycles, profile))


def fast_read_retry(tkf: TkFast, seq: int) -> bool:
    """``raw_read_seqcount_latch_retry()`` / ``read_seqcount_latch_retry()``."""
    return tkf.seq != seq


FastHookPoint = Literal["begin", "retry"]


def ktime_get_fast_ns(
    tkf: TkFast,
    read_counter: Callable[[], int],
    profile: KernelProfile,
    *,
    dummy: DummyClockState | None = None,
    hook: Callable[[FastHookPoint], None] | None = None,
    max_retries: int = 1000,
) -> FastRead:
    """``__ktime_get_fast_ns(tkf)`` (kernel/time/timekeeping.c, 5.10 to the 2026 trees).

    ``ktime_get_mono_fast_ns()`` with ``tk_fast_mono``,
    ``ktime_get_raw_fast_ns()`` with ``tk_fast_raw``.  ``hook`` runs after
    the latch was sampled (``"begin"``) and before the retry check
    (``"retry"``), where a writer can intervene.
    """
    retries = 0
    while True:
        seq = fast_read_begin(tkf)
        if hook is not None:
            hook("begin")
        now = fast_read_attempt(tkf, seq, read_counter, profile, dummy)
        if hook is not None:
            hook("retry")
        if not fast_read_retry(tkf, seq):
            return FastRead(ns=now, retries=retries, index=seq & 1)
        retries += 1
        if retries > max_retries:
            raise FastReaderLivelockError(f"fast timekeeper reader retried {max_retries} times")


@dataclass(frozen=True, slots=True)
class FastRealRead:
    """``__ktime_get_real_fast()``: realtime and monotonic from one pass (u64 ns)."""

    real: int
    mono: int
    retries: int = 0


def ktime_get_real_fast(
    tkf_mono: TkFast,
    read_counter: Callable[[], int],
    profile: KernelProfile,
    *,
    dummy: DummyClockState | None = None,
    max_retries: int = 1000,
) -> FastRealRead:
    """``__ktime_get_real_fast(&tk_fast_mono, &mono)`` (5.10 to the 2026 trees).

    One delta, added to both ``base_real`` and ``base`` outside the loop.
    """
    retries = 0
    while True:
        seq = fast_read_begin(tkf_mono)
        tkr = tkf_mono.base[seq & 1]
        basem, baser = tkr.base, tkr.base_real
        delta = fast_tk_get_ns(tkr, tk_clock_read(tkr, read_counter, dummy), profile)
        if not fast_read_retry(tkf_mono, seq):
            return FastRealRead(real=u64(baser + delta), mono=u64(basem + delta), retries=retries)
        retries += 1
        if retries > max_retries:
            raise FastReaderLivelockError(f"fast timekeeper reader retried {max_retries} times")


def ktime_get_offset_fast_ns(mono_fast_ns: int, offset: int) -> int:
    """``ktime_get_boot_fast_ns()`` (5.10+) / ``ktime_get_tai_fast_ns()`` (later; version unchecked).

    The fast monotonic value plus ``tk->offs_boot`` / ``offs_tai``, read
    without synchronisation (the kernel uses ``data_race()``).
    """
    return u64(mono_fast_ns + offset)
