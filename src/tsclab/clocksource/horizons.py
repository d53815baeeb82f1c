"""The counter deltas at which a guest's timekeeping changes behaviour.

A VM pause with the counter running on (no guest involvement) makes the
next read see ``delta = (now - cycle_last) & mask``.  Each horizon below is
the smallest such delta at which some kernel code path starts doing
something different, and the shortest pause - counted from the last
timekeeping update, i.e. the last tick - that produces it.

Which kernel code each horizon comes from:

``wrap``
    ``mask + 1`` cycles: the counter comes round; whole wraps are invisible
    to every kernel version.
``reader_negative``
    50% of the width: ``delta & ~(mask >> 1)``.  x86 readers treat it as
    negative motion (pre-6.10 via ``clocksource_delta()`` with
    ``CONFIG_CLOCKSOURCE_VALIDATE_LAST_CYCLE``; 6.10+ inside
    ``timekeeping_cycles_to_ns()``) and return the last update's time.
``reader_negative_6_10``
    The 6.10+ reader only tests the sign bit *inside* its
    ``delta > max_cycles`` branch, so it freezes at
    ``max(50% + 1, max_cycles + 1)`` - and never for a counter whose
    ``max_cycles`` equals its mask (HPET, ACPI PM), whose reader then takes
    any delta as forward motion.
``writer_negative_pre_6_13``
    50%: ``timekeeping_advance()`` on x86 before 6.13 (and 6.12.5) gets 0
    from ``clocksource_delta()`` and accumulates nothing.
``writer_negative_6_13``
    ``max_raw_delta + 1`` (87.5%): the same test from 6.13 and 6.12.5, on
    every architecture.
``legacy_overflow``
    ``ceil(2**64 / mult)``: the pre-6.10 reader's ``delta * mult`` wraps
    64 bits.  With ``xtime_nsec`` added the first wrong read comes up to
    one ``xtime_nsec / mult`` earlier; this is the bound for xtime_nsec = 0
    and the registered mult (NTP moves ``tkr_mono.mult`` by at most
    ``maxadj``, in practice by one).  None when the counter wraps first.
``slow_path``
    ``max_cycles + 1``: the 6.10+ reader leaves the 64-bit fast path for
    the 128-bit ``mul_u64_u32_add_u64_shr()``.  None when
    ``max_cycles == mask`` (the branch can never be taken).
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource.registration import Clocksource

# What a pause longer than each horizon does to a guest, in words.  Fields:
# {wrap} - the counter's wrap period; {backstep} - 2**(64 - shift) ns.
CONSEQUENCES: dict[str, str] = {
    "wrap": "each whole wrap ({wrap}) is lost on every kernel version",
    "reader_negative": "x86 readers before 6.10 take the delta as negative and read the last tick's time",
    "reader_negative_6_10": "6.10+ readers take the delta as negative and read the last tick's time",
    "writer_negative_pre_6_13": (
        "the x86 writer before 6.13 takes the delta as negative and accumulates nothing until "
        "the counter comes round: one whole wrap ({wrap}) is lost, and readers that counted "
        "the delta as forward step back by it"
    ),
    "writer_negative_6_13": (
        "the 6.13+ writer does the same: nothing accumulates until the counter comes round "
        "and one whole wrap ({wrap}) is lost"
    ),
    "legacy_overflow": (
        "pre-6.10 readers wrap delta*mult and read {backstep} behind true time until the "
        "next tick: time steps back, then forward"
    ),
    "slow_path": "6.10+ readers take the 128-bit slow path and stay exact",
}

# Said when a horizon cannot be reached because max_cycles equals the mask.
NEVER_REACHED: dict[str, str] = {
    "reader_negative_6_10": (
        "6.10+ readers never see negative motion on this counter (max_cycles = mask) and "
        "read any delta as time moving forward"
    ),
}


def cycles_to_pause_ns(cycles: int, freq_hz: int) -> int:
    """Shortest pause (ns) over which a ``freq_hz`` counter advances ``cycles``.

    ``ceil(cycles * 1e9 / freq_hz)``: real time, not the kernel's mult/shift
    estimate of it.
    """
    return -((-cycles * NSEC_PER_SEC) // freq_hz)


def cycles_to_true_ns(cycles: int, freq_hz: int) -> int:
    """Real time (ns, truncated) that ``cycles`` of a ``freq_hz`` counter take."""
    return (cycles * NSEC_PER_SEC) // freq_hz


@dataclass(frozen=True, slots=True)
class Horizon:
    """A counter delta at which behaviour changes, and the pause reaching it."""

    key: str
    title: str
    cycles: int | None  # None: no delta within the counter's range triggers it
    pause_ns: int | None


@dataclass(frozen=True, slots=True)
class Horizons:
    """All horizons of one registered clocksource, shortest-pause first."""

    clocksource: Clocksource
    wrap: Horizon
    reader_negative: Horizon
    reader_negative_6_10: Horizon
    writer_negative_pre_6_13: Horizon
    writer_negative_6_13: Horizon
    legacy_overflow: Horizon
    slow_path: Horizon

    def all(self) -> tuple[Horizon, ...]:
        """Every horizon, in a fixed order (for tables and JSON)."""
        return (
            self.wrap,
            self.reader_negative,
            self.reader_negative_6_10,
            self.writer_negative_pre_6_13,
            self.writer_negative_6_13,
            self.legacy_overflow,
            self.slow_path,
        )


def legacy_overflow_cycles(mult: int) -> int:
    """Smallest delta with ``delta * mult >= 2**64`` (a pre-6.10 reader wraps)."""
    return -(-(1 << 64) // mult)


def horizons_for(cs: Clocksource) -> Horizons:
    """Compute every horizon of ``cs`` (pure integer arithmetic)."""
    mask = cs.mask
    half = (mask >> 1) + 1  # first delta with the MSB of the width set

    def make(key: str, title: str, cycles: int | None) -> Horizon:
        if cycles is None or cycles > mask:
            return Horizon(key, title, None, None)
        return Horizon(key, title, cycles, cycles_to_pause_ns(cycles, cs.freq_hz))

    wrap_cycles = mask + 1
    wrap = Horizon("wrap", "counter wraps", wrap_cycles, cycles_to_pause_ns(wrap_cycles, cs.freq_hz))
    overflow = legacy_overflow_cycles(cs.mult)
    slow = cs.max_cycles + 1 if cs.max_cycles < mask else None
    reader_6_10 = max(half, cs.max_cycles + 1)
    return Horizons(
        clocksource=cs,
        wrap=wrap,
        reader_negative=make("reader_negative", "reader negative motion (50%)", half),
        reader_negative_6_10=make(
            "reader_negative_6_10", "6.10+ reader negative motion (50%, only past max_cycles)", reader_6_10
        ),
        writer_negative_pre_6_13=make(
            "writer_negative_pre_6_13", "writer negative motion, x86 before 6.13 (50%)", half
        ),
        writer_negative_6_13=make(
            "writer_negative_6_13", "writer negative motion, 6.13+ (87.5%)", cs.max_raw_delta + 1
        ),
        legacy_overflow=make("legacy_overflow", "pre-6.10 reader overflow (delta*mult wraps)", overflow),
        slow_path=make("slow_path", "6.10+ reader 128-bit slow path (delta > max_cycles)", slow),
    )
