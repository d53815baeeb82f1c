"""The clocksource watchdog for one watched clocksource, per kernel version.

Models ``clocksource_watchdog()`` in ``kernel/time/clocksource.c`` (the
timer callback that compares a ``CLOCK_SOURCE_MUST_VERIFY`` clocksource,
usually the TSC, with the watchdog clocksource, usually HPET or acpi_pm),
in the variants ``KernelProfile.watchdog`` names:

* ``threshold-62ms`` (before 5.14): ``|cs_nsec - wd_nsec| >
  WATCHDOG_THRESHOLD`` with ``WATCHDOG_THRESHOLD = NSEC_PER_SEC >> 4``.
* ``uncertainty-margin`` (5.14, Paul McKenney's series, 2e27e793e280 -
  6.7): the limit is ``cs->uncertainty_margin + watchdog->uncertainty_margin``
  (a u32); a margin left 0 by the driver defaults to one counter period,
  bounded below by ``2 * WATCHDOG_MAX_SKEW``.
* ``interval-skip`` (644649553508 "Skip watchdog check for large watchdog
  intervals", tip timers/urgent 25 Jan 2024, so v6.8, and stable backports):
  as above, but ``max(cs_nsec, wd_nsec) > WATCHDOG_INTERVAL_MAX_NS`` skips
  the comparison, printing "Long readout interval" only when the interval
  is more than twice the longest one printed so far.
* ``rewrite-2026`` (tglx, "Rewrite watchdog code completely"): the
  frequency check ``watchdog_check_freq()`` - deltas beyond either
  clocksource's ``max_idle_ns`` reset the baseline; otherwise the skew must
  stay below ``max_delta >> ppm_shift`` (500 or 4000 ppm) plus the watchdog
  readout time.  Its inter-CPU skew check needs two CPUs' reads and is not
  modelled.

The delta of each counter goes through ``clocksource_delta()``
(``KernelProfile.writer_negative``: the x86 MSB test before 6.13, 87.5 %
after), then to nanoseconds by ``KernelProfile.watchdog_delta``:
``clocksource_cyc2ns()`` (a u64 multiply that wraps) or
``cycles_to_nsec_safe()`` (6.10+: 128-bit product past ``max_cycles``).

Each :meth:`ClocksourceWatchdog.run` is one timer callback with one reading
of each counter: the read-back retries of ``cs_watchdog_read()`` (and the
rewrite's readout window) assume the two reads took no time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tsclab.arith import NSEC_PER_SEC, mul_u64_u32_shr, s64, u32, u64
from tsclab.clocksource.registration import Clocksource
from tsclab.kernel.profiles import KernelProfile, Watchdog, WatchdogDelta, WriterNegative
from tsclab.kernel.readers import clocksource_delta

# Threshold before 5.14: 0.0625 s.  From 5.14, NSEC_PER_SEC >> 5 is only the
# margin of a clocksource registered without a frequency.
WATCHDOG_THRESHOLD_PRE_5_14 = NSEC_PER_SEC >> 4
WATCHDOG_THRESHOLD = NSEC_PER_SEC >> 5

# Margins drivers set explicitly (tsc.c clocksource_tsc_early, 5.14+).
EXPLICIT_UNCERTAINTY_MARGIN_NS = {"tsc-early": 32 * 1_000_000}

# WATCHDOG_MAX_SKEW by variant: 50 us hard-coded in 5.14/5.15, then
# CONFIG_CLOCKSOURCE_WATCHDOG_MAX_SKEW_US with default 100 (fc153c1c58cb),
# raised to 125 by c37e85c135ce (6.3).  Which one a stable kernel carries
# is a build fact; pass max_skew_ns to override.
DEFAULT_MAX_SKEW_NS: dict[Watchdog, int] = {
    "threshold-62ms": 100_000,
    "uncertainty-margin": 100_000,
    "interval-skip": 125_000,
    "rewrite-2026": 125_000,
}

# The 2026 rewrite: approximate ppm limits as shifts of the interval.
SHIFT_500PPM = 11
SHIFT_4000PPM = 8

# The lines the kernel prints use pr_fmt "clocksource: " and a 22-space indent.
_PFX = "clocksource: "
_INDENT = " " * 22

MessageStyle = Literal["pre-5.14", "5.14", "6.3"]
# pre-5.14: wd_now/cs_now lines only; 5.14 (Paul McKenney's series): the
# nanosecond deltas and the current clocksource; 6.3 (dd029269947a): the
# "skewed ... over watchdog" summary line as well.
DEFAULT_MESSAGE_STYLE: dict[Watchdog, MessageStyle] = {
    "threshold-62ms": "pre-5.14",
    "uncertainty-margin": "5.14",
    "interval-skip": "6.3",
    "rewrite-2026": "6.3",
}

OutcomeKind = Literal["init", "ok", "skipped-long-readout", "unstable", "reset"]


@dataclass(frozen=True, slots=True)
class WatchdogOutcome:
    """What one watchdog run decided, and what it printed (dmesg lines, or "")."""

    kind: OutcomeKind
    cs_nsec: int
    wd_nsec: int
    printed: str


def watchdog_interval_jiffies(hz: int) -> int:
    """``WATCHDOG_INTERVAL``: ``HZ >> 1``."""
    return hz >> 1


def watchdog_interval_max_ns(hz: int) -> int:
    """``WATCHDOG_INTERVAL_MAX_NS``: ``(2 * WATCHDOG_INTERVAL) * (NSEC_PER_SEC / HZ)``."""
    return 2 * watchdog_interval_jiffies(hz) * (NSEC_PER_SEC // hz)


def default_uncertainty_margin(cs: Clocksource, max_skew_ns: int) -> int:
    """``__clocksource_update_freq_scale()``'s margin for a driver that set none (5.14+).

    One counter period, ``NSEC_PER_SEC / (scale * freq)`` with the product
    in u32, bounded below by ``2 * WATCHDOG_MAX_SKEW``; a u32.
    """
    explicit = EXPLICIT_UNCERTAINTY_MARGIN_NS.get(cs.name)
    if explicit is not None:
        return explicit
    period = NSEC_PER_SEC // u32(cs.scale * cs.freq)
    return u32(max(period, 2 * max_skew_ns))


def cyc2ns_delta(
    cs: Clocksource, start: int, end: int, negative: WriterNegative, to_ns: WatchdogDelta
) -> int:
    """A counter interval in ns as the watchdog computes it, as the s64 it is stored in.

    ``wrapping``: ``clocksource_cyc2ns(delta, mult, shift)``, u64 product;
    ``safe``: ``cycles_to_nsec_safe()``, exact past ``max_cycles``.
    """
    delta = clocksource_delta(end, start, cs.mask, negative, cs.max_raw_delta)
    if to_ns == "safe" and delta >= cs.max_cycles:
        return s64(mul_u64_u32_shr(delta, cs.mult, cs.shift))
    return s64(u64(delta * cs.mult) >> cs.shift)


def div_s64_ms(ns: int) -> int:
    """``div_s64_rem(ns, 1000 * 1000, &rem)``: C division, truncating toward zero."""
    q = abs(ns) // 1_000_000
    return q if ns >= 0 else -q


class ClocksourceWatchdog:
    """``clocksource_watchdog()`` for one watched clocksource ``cs`` against ``wd``.

    State: the ``CLOCK_SOURCE_WATCHDOG`` flag (a baseline exists),
    ``cs_last``/``wd_last``, ``watchdog_reset_pending`` (a counter:
    :meth:`touch` increments it, a run that saw it non-zero decrements it),
    ``watchdog_max_interval`` (interval-skip), ``unstable``.

    Options (keyword-only; defaults follow the profile's variant):
    ``max_skew_ns`` (``WATCHDOG_MAX_SKEW``), ``cs_margin_ns`` /
    ``wd_margin_ns`` (``uncertainty_margin``), ``current_clocksource`` (name
    printed as current; default ``cs``), ``system_running`` (``system_state >
    SYSTEM_SCHEDULING``), ``calibrated`` (both carry
    ``CLOCK_SOURCE_CALIBRATED``: 500 ppm instead of 4000 ppm in the rewrite),
    ``message_style``.
    """

    def __init__(
        self,
        cs: Clocksource,
        wd: Clocksource,
        profile: KernelProfile,
        hz: int,
        *,
        max_skew_ns: int | None = None,
        cs_margin_ns: int | None = None,
        wd_margin_ns: int | None = None,
        current_clocksource: str | None = None,
        system_running: bool = True,
        calibrated: bool = True,
        message_style: MessageStyle | None = None,
    ) -> None:
        self.cs = cs
        self.wd = wd
        self.profile = profile
        self.hz = hz
        self.interval_jiffies = watchdog_interval_jiffies(hz)
        skew = DEFAULT_MAX_SKEW_NS[profile.watchdog] if max_skew_ns is None else max_skew_ns
        self.cs_margin_ns = default_uncertainty_margin(cs, skew) if cs_margin_ns is None else cs_margin_ns
        self.wd_margin_ns = default_uncertainty_margin(wd, skew) if wd_margin_ns is None else wd_margin_ns
        self.current_clocksource = cs.name if current_clocksource is None else current_clocksource
        self.system_running = system_running
        self.ppm_shift = SHIFT_500PPM if calibrated else SHIFT_4000PPM
        self.message_style = (
            DEFAULT_MESSAGE_STYLE[profile.watchdog] if message_style is None else message_style
        )
        self.unstable = False
        self.has_baseline = False  # CLOCK_SOURCE_WATCHDOG
        self.cs_last = 0
        self.wd_last = 0
        self.reset_pending = 0
        self.watchdog_max_interval = 0
        self.expires_reset = False

    # --- the public surface -------------------------------------------------

    def touch(self) -> None:
        """``clocksource_touch_watchdog()`` -> ``clocksource_resume_watchdog()``.

        The next full run only re-baselines (``watchdog_reset_pending``).
        """
        self.reset_pending += 1

    def run(self, cs_now: int, wd_now: int, cpu: int) -> WatchdogOutcome:
        """One ``clocksource_watchdog()`` callback on ``cpu`` with the counters as read."""
        self.expires_reset = False
        if self.unstable:
            # Already marked: the kernel only kicks the kwatchdog work again.
            return WatchdogOutcome("unstable", 0, 0, "")
        reset_pending = self.reset_pending
        if self.profile.watchdog == "rewrite-2026":
            outcome = self._check_freq(cs_now, wd_now, reset_pending)
        else:
            outcome = self._check_classic(cs_now, wd_now, cpu, reset_pending)
        # Cleared only after a full walk over the watched clocksources.
        if reset_pending:
            self.reset_pending -= 1
        return outcome

    def next_expires(self, expires: int, jiffies_now: int) -> int:
        """The timer's next expiry after a run whose timer had expired at ``expires``.

        ``watchdog_timer.expires += WATCHDOG_INTERVAL``: relative to the old
        expiry, so after a long gap the timer fires again at once, run after
        run, until it catches up - except where interval-skip set
        ``expires = jiffies`` first.
        """
        base = jiffies_now if self.expires_reset else expires
        return u64(base + self.interval_jiffies)

    # --- classic watchdog (before the 2026 rewrite) -------------------------

    def _ns(self, cs: Clocksource, last: int, now: int) -> int:
        return cyc2ns_delta(cs, last, now, self.profile.writer_negative, self.profile.watchdog_delta)

    def _check_classic(self, cs_now: int, wd_now: int, cpu: int, reset_pending: int) -> WatchdogOutcome:
        if not self.has_baseline or reset_pending:
            kind: OutcomeKind = "reset" if self.has_baseline else "init"
            self._set_baseline(cs_now, wd_now)
            return WatchdogOutcome(kind, 0, 0, "")
        wd_nsec = self._ns(self.wd, self.wd_last, wd_now)
        cs_nsec = self._ns(self.cs, self.cs_last, cs_now)
        cs_last, wd_last = self.cs_last, self.wd_last
        self.cs_last, self.wd_last = cs_now, wd_now
        if self.profile.watchdog == "interval-skip":
            skipped = self._skip_long_interval(cs_nsec, wd_nsec)
            if skipped is not None:
                return skipped
        if abs(cs_nsec - wd_nsec) <= self._classic_limit():
            return WatchdogOutcome("ok", cs_nsec, wd_nsec, "")
        lines = self._skew_lines(cpu, cs_nsec, wd_nsec, (cs_now, cs_last), (wd_now, wd_last))
        return self._mark_unstable(cs_nsec, wd_nsec, lines)

    def _set_baseline(self, cs_now: int, wd_now: int) -> None:
        self.has_baseline = True
        self.cs_last, self.wd_last = cs_now, wd_now

    def _classic_limit(self) -> int:
        if self.profile.watchdog == "threshold-62ms":
            return WATCHDOG_THRESHOLD_PRE_5_14
        return u32(self.cs_margin_ns + self.wd_margin_ns)  # md is a u32

    def _skip_long_interval(self, cs_nsec: int, wd_nsec: int) -> WatchdogOutcome | None:
        interval = max(cs_nsec, wd_nsec)
        if interval <= watchdog_interval_max_ns(self.hz):
            return None
        printed = ""
        if self.system_running and interval > 2 * self.watchdog_max_interval:
            self.watchdog_max_interval = interval
            printed = (
                f"{_PFX}Long readout interval, skipping watchdog check: cs_nsec: {cs_nsec} wd_nsec: {wd_nsec}"
            )
        # watchdog_timer.expires = jiffies: the next run is a full interval away.
        self.expires_reset = True
        return WatchdogOutcome("skipped-long-readout", cs_nsec, wd_nsec, printed)

    def _skew_lines(
        self, cpu: int, cs_nsec: int, wd_nsec: int, cs_pair: tuple[int, int], wd_pair: tuple[int, int]
    ) -> list[str]:
        cs, wd = self.cs, self.wd
        style = self.message_style
        ns_wd = f" wd_nsec: {wd_nsec}" if style != "pre-5.14" else ""
        ns_cs = f" cs_nsec: {cs_nsec}" if style != "pre-5.14" else ""
        lines = [
            f"timekeeping watchdog on CPU{cpu}: Marking clocksource '{cs.name}' as unstable "
            "because the skew is too large:",
            f"{_INDENT}'{wd.name}'{ns_wd} wd_now: {wd_pair[0]:x} wd_last: {wd_pair[1]:x} mask: {wd.mask:x}",
            f"{_INDENT}'{cs.name}'{ns_cs} cs_now: {cs_pair[0]:x} cs_last: {cs_pair[1]:x} mask: {cs.mask:x}",
        ]
        if style == "6.3":
            skew = cs_nsec - wd_nsec
            lines.append(
                f"{_INDENT}Clocksource '{cs.name}' skewed {skew} ns ({div_s64_ms(skew)} ms) over watchdog "
                f"'{wd.name}' interval of {wd_nsec} ns ({div_s64_ms(wd_nsec)} ms)"
            )
        if style != "pre-5.14":
            lines.append(self._current_line())
        return [_PFX + line for line in lines]

    def _current_line(self) -> str:
        current, name = self.current_clocksource, self.cs.name
        if current == name:
            return f"{_INDENT}'{name}' is current clocksource."
        if current:
            return f"{_INDENT}'{current}' (not '{name}') is current clocksource."
        return f"{_INDENT}No current clocksource."

    def _mark_unstable(self, cs_nsec: int, wd_nsec: int, lines: list[str]) -> WatchdogOutcome:
        """``__clocksource_unstable()``: flag it and run the driver's ``mark_unstable``."""
        self.unstable = True
        self.has_baseline = False  # CLOCK_SOURCE_WATCHDOG is cleared with VALID_FOR_HRES
        if self.cs.name in ("tsc", "tsc-early"):
            # tsc_cs_mark_unstable(), arch/x86/kernel/tsc.c (pr_fmt "tsc: ").
            lines.append("tsc: Marking TSC unstable due to clocksource watchdog")
        return WatchdogOutcome("unstable", cs_nsec, wd_nsec, "\n".join(lines))

    # --- the 2026 rewrite: watchdog_check_freq() ----------------------------

    def _check_freq(self, cs_now: int, wd_now: int, reset_pending: int) -> WatchdogOutcome:
        """``watchdog_check_freq()`` with an instantaneous readout window (``wd_seq = 0``)."""
        wd_seq = 0
        wd_last, cs_last = self.wd_last, self.cs_last
        first = not self.has_baseline
        self.wd_last, self.cs_last = wd_now, cs_now
        if first or reset_pending:
            self.has_baseline = True
            return WatchdogOutcome("init" if first else "reset", 0, 0, "")
        # Always the overflow-safe conversion: the rewrite postdates 6.10.
        negative = self.profile.writer_negative
        wd_delta = cyc2ns_delta(self.wd, wd_last, wd_now, negative, "safe")
        cs_delta = cyc2ns_delta(self.cs, cs_last, cs_now, negative, "safe")
        max_delta = max(wd_delta, cs_delta)
        if max_delta > self.cs.max_idle_ns or max_delta > self.wd.max_idle_ns:
            # Either counter may have overflowed: start again, no verdict.
            return WatchdogOutcome("reset", cs_delta, wd_delta, "")
        if abs(wd_delta - cs_delta) < (max_delta >> self.ppm_shift) + wd_seq:
            return WatchdogOutcome("ok", cs_delta, wd_delta, "")
        lines = [
            f"{_PFX}Marking clocksource {self.cs.name} unstable due to frequency skew",
            f"{_PFX}Watchdog    {self.wd.name:>20} interval: {u64(wd_delta):>16}ns",
            f"{_PFX}Clocksource {self.cs.name:>20} interval: {u64(cs_delta):>16}ns",
        ]
        return self._mark_unstable(cs_delta, wd_delta, lines)
