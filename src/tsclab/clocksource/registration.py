"""Clocksource registration math: what the kernel computes and prints.

Models ``kernel/time/clocksource.c`` from Linux 4.1 (when ``max_cycles``
joined ``struct clocksource`` and the registration line gained it) to the
2026 trees:

* ``clocks_calc_mult_shift()`` - unchanged since 2.6.3x;
* ``__clocksource_update_freq_scale()`` - the maxsec estimate with its
  10-minute cap for counters wider than 32 bits, ``maxadj`` (11% of mult)
  and the loop that halves mult until ``mult +/- maxadj`` fits a u32;
* ``clocks_calc_max_nsecs()`` - ``max_cycles`` and ``max_idle_ns`` (50%
  safety margin, computed with the slowest adjusted mult);
* ``clocksource_update_max_deferment()`` - from 6.13 (and 6.12.5) also
  ``max_raw_delta``, the negative-motion cutoff at 87.5% of the mask.

Every intermediate is kept at the C width: the frequency and ``maxsec``
arguments are u32, ``sec`` is u64, ``do_div`` divides by a u32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tsclab.arith import (
    NSEC_PER_SEC,
    U32_MAX,
    U64_MAX,
    do_div,
    mask_bits,
    u32,
    u64,
)

# __clocksource_update_freq_scale(): counters wider than 32 bits are limited
# to a 10-minute conversion range so that shift (and NTP granularity) stays
# fine.  This is why every 64-bit counter ends up with shift 23 or 24.
MAXSEC_CAP_WIDE = 600

# clocksource_max_adjustment(): NTP may steer mult by at most 11%.
MAXADJ_PERCENT = 11

Unit = Literal["hz", "khz"]
SCALE_FOR_UNIT: dict[str, int] = {"hz": 1, "khz": 1000}


class ClocksourceError(ValueError):
    """A registration request the kernel would refuse or cannot compute."""


def clocks_calc_mult_shift(frm: int, to: int, maxsec: int) -> tuple[int, int]:
    """``clocks_calc_mult_shift(&mult, &shift, from, to, maxsec)``.

    Returns (mult, shift) such that ``ns = cycles * mult >> shift`` converts
    ``frm``-rate cycles to ``to``-rate units and ``maxsec * frm * mult``
    stays below 2**64.  All three arguments are u32 in C.

    Invariant relied on by callers: ``mult < 2**sftacc`` where ``sftacc`` is
    32 minus the bit length of ``(maxsec * frm) >> 32``.
    """
    frm, to, maxsec = u32(frm), u32(to), u32(maxsec)
    if frm == 0:
        raise ClocksourceError("clocks_calc_mult_shift: zero source frequency")

    # How many bits of mult the conversion range leaves us.
    tmp = u64(maxsec * frm) >> 32
    sftacc = 32
    while tmp:
        tmp >>= 1
        sftacc -= 1

    # Highest shift (best precision) whose mult still fits in sftacc bits.
    # The C for-loop leaves sft at 0 if it never breaks; keep that.
    sft = 32
    while sft > 0:
        tmp = u64(to << sft)
        tmp = u64(tmp + frm // 2)
        tmp, _ = do_div(tmp, frm)
        if (tmp >> sftacc) == 0:
            break
        sft -= 1
    return u32(tmp), sft


def clocksource_max_adjustment(mult: int) -> int:
    """``clocksource_max_adjustment()``: 11% of mult, truncated, as u32."""
    ret, _ = do_div(u64(u32(mult) * MAXADJ_PERCENT), 100)
    return u32(ret)


def clocks_calc_max_nsecs(mult: int, shift: int, maxadj: int, mask: int) -> tuple[int, int]:
    """``clocks_calc_max_nsecs()``: returns (max_idle_ns, max_cycles).

    ``max_cycles`` is the largest delta whose product with ``mult + maxadj``
    cannot overflow 64 bits, capped at the mask.  ``max_idle_ns`` converts it
    with the *slowest* adjusted mult (``mult - maxadj``) and halves it: the
    kernel's 50% safety margin for NOHZ idle deferment.
    """
    divisor = u32(mult + maxadj)
    if divisor == 0:
        raise ClocksourceError("clocks_calc_max_nsecs: mult + maxadj is zero")
    max_cycles, _ = do_div(U64_MAX, divisor)
    max_cycles = min(max_cycles, u64(mask))
    # clocksource_cyc2ns(): a plain u64 multiply, which cannot wrap here
    # because mult - maxadj < mult + maxadj.
    max_nsecs = u64(max_cycles * u32(mult - maxadj)) >> shift
    return max_nsecs >> 1, max_cycles


def max_raw_delta_for(mask: int) -> int:
    """``clocksource_update_max_deferment()`` 6.13+: 87.5% of the mask.

    Summed from three shifted copies, so each term rounds down on its own
    (for a 24-bit mask: 0x7fffff + 0x3fffff + 0x1fffff = 0xdffffd).
    """
    mask = u64(mask)
    return (mask >> 1) + (mask >> 2) + (mask >> 3)


@dataclass(frozen=True, slots=True)
class Clocksource:
    """A registered clocksource: the fields ``struct clocksource`` carries.

    ``freq`` and ``scale`` are the arguments the driver passed
    (``clocksource_register_khz`` uses scale 1000, ``_hz`` scale 1), so
    ``freq_hz = freq * scale``.
    """

    name: str
    bits: int
    mask: int
    freq: int
    scale: int
    mult: int
    shift: int
    maxadj: int
    max_cycles: int
    max_idle_ns: int
    max_raw_delta: int

    @property
    def freq_hz(self) -> int:
        """Counter frequency in Hz."""
        return self.freq * self.scale

    @property
    def unit(self) -> Unit:
        """The unit the frequency was registered in."""
        return "khz" if self.scale == 1000 else "hz"

    def dmesg_line(self) -> str:
        """The line ``__clocksource_update_freq_scale()`` prints (4.1+).

        ``pr_info("%s: mask: 0x%llx max_cycles: 0x%llx, max_idle_ns: %lld ns")``
        with the ``clocksource: `` prefix from ``pr_fmt``.
        """
        return (
            f"clocksource: {self.name}: mask: 0x{self.mask:x} "
            f"max_cycles: 0x{self.max_cycles:x}, max_idle_ns: {self.max_idle_ns} ns"
        )


def update_freq_scale(name: str, mask: int, scale: int, freq: int) -> Clocksource:
    """``__clocksource_update_freq_scale(cs, scale, freq)`` for a fresh cs.

    Covers the ``freq != 0`` path, i.e. every clocksource registered with
    ``clocksource_register_hz()`` / ``_khz()``.  ``scale`` and ``freq`` are
    u32 in C; values that do not fit are refused rather than silently
    truncated, because no driver can pass them.
    """
    if not 0 < scale <= U32_MAX:
        raise ClocksourceError(f"scale must be 1..{U32_MAX}, got {scale}")
    if not 0 < freq <= U32_MAX:
        raise ClocksourceError(f"frequency must be 1..{U32_MAX} (a u32 in units of {scale} Hz), got {freq}")
    mask = u64(mask)

    # Longest interval (s) the counter covers before wrapping; two
    # successive do_div()s, each truncating.
    sec, _ = do_div(mask, freq)
    sec, _ = do_div(sec, scale)
    if sec == 0:
        sec = 1
    elif sec > MAXSEC_CAP_WIDE and mask > U32_MAX:
        sec = MAXSEC_CAP_WIDE
    # sec * scale is computed in u64 and passed as the u32 maxsec argument.
    mult, shift = clocks_calc_mult_shift(freq, NSEC_PER_SEC // scale, u32(sec * scale))

    maxadj = clocksource_max_adjustment(mult)
    # Halve mult until an 11% adjustment either way still fits a u32.
    while u32(mult + maxadj) < mult or u32(mult - maxadj) > mult:
        mult >>= 1
        shift -= 1
        maxadj = clocksource_max_adjustment(mult)

    max_idle_ns, max_cycles = clocks_calc_max_nsecs(mult, shift, maxadj, mask)
    return Clocksource(
        name=name,
        bits=mask.bit_length(),
        mask=mask,
        freq=freq,
        scale=scale,
        mult=mult,
        shift=shift,
        maxadj=maxadj,
        max_cycles=max_cycles,
        max_idle_ns=max_idle_ns,
        max_raw_delta=max_raw_delta_for(mask),
    )


def register(
    name: str,
    bits: int,
    *,
    freq_hz: int | None = None,
    freq_khz: int | None = None,
) -> Clocksource:
    """Register a clocksource as ``clocksource_register_hz/_khz()`` would.

    Exactly one of ``freq_hz`` (``clocksource_register_hz``, scale 1) or
    ``freq_khz`` (``clocksource_register_khz``, scale 1000, as the x86 TSC
    does) must be given.  Raises :class:`ClocksourceError` on input the
    kernel could not take.
    """
    if not name:
        raise ClocksourceError("clocksource name must not be empty")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise ClocksourceError(f"bits must be an integer in 1..64, got {bits!r}")
    if (freq_hz is None) == (freq_khz is None):
        raise ClocksourceError("give exactly one of freq_hz or freq_khz")
    scale, freq = (1, freq_hz) if freq_hz is not None else (1000, freq_khz)
    assert freq is not None  # narrowed by the check above
    if isinstance(freq, bool) or not isinstance(freq, int):
        raise ClocksourceError(f"frequency must be an integer, got {freq!r}")
    if freq <= 0:
        unit = "Hz" if scale == 1 else "kHz"
        raise ClocksourceError(f"frequency must be positive, got {freq} {unit}")
    return update_freq_scale(name, mask_bits(bits), scale, freq)
