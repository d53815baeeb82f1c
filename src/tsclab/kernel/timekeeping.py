"""The timekeeper: accumulation, NTP steering, getters, suspend and resume.

Models ``kernel/time/timekeeping.c`` for x86-64 guests, 5.10 to 6.13, with
the per-version differences taken from a :class:`KernelProfile`:

* the writer's ``clocksource_delta()`` (50% MSB test before 6.13, 87.5%
  ``max_raw_delta`` from 6.13);
* ``timekeeping_forward_now()`` (one wrapping multiply before 6.10, chunks
  of ``max_cycles`` from 6.10);
* the reader math of :mod:`tsclab.kernel.readers`.

The counter is read through ``read_counter`` so that a simulator can move
it; nothing here knows about true time.  Model boundary: the timekeeper is
initialised directly on the given clocksource (the kernel starts on
jiffies and switches), and ``clock_was_set()`` / hrtimer notification is
reported as a flag rather than acted on.

Write sections are generators of :class:`WriteStep` so that a reader can
run between "the shadow is computed", "``tk_core.seq`` is odd" and "the
live timekeeper is replaced"; the plain methods run a section to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from tsclab.arith import NSEC_PER_SEC, div64_u64, do_div, fls64, mul_u64_u32_shr, s32, s64, u32, u64
from tsclab.clocksource import Clocksource
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.readers import ReaderFlags, TkReadBase, clocksource_delta, timekeeping_cycles_to_ns
from tsclab.kernel.timespec import ZERO, Timespec64, ktime_add_ns, timespec64_add_ns
from tsclab.kernel.tk_state import Timekeeper, TkData

NTP_SCALE_SHIFT = 32
KTIME_MAX = (1 << 63) - 1

# timekeeping_update() actions
TK_CLEAR_NTP = 1 << 0
TK_MIRROR = 1 << 1
TK_CLOCK_WAS_SET = 1 << 2


class AdvanceMode(Enum):
    """``enum timekeeping_adv_mode``."""

    TICK = "tick"  # update_wall_time(): nothing to do below one interval
    FREQ = "freq"  # do_adjtimex(): apply a frequency change now


class WriteStep(Enum):
    """Points inside a write section at which a reader may run."""

    SHADOW_UPDATED = "shadow updated"  # computed on the shadow; readers see the old state
    SEQ_ODD = "seq odd"  # write_seqcount_begin: kernel readers spin or retry
    PUBLISHED = "published"  # live timekeeper replaced; seq still odd
    SEQ_EVEN = "seq even"  # write_seqcount_end


class NtpHooks(Protocol):
    """The slice of ``ntp.c`` the timekeeper calls (see :mod:`tsclab.kernel.ntp`)."""

    def ntp_tick_length(self) -> int: ...

    def second_overflow(self, secs: int) -> int: ...

    def ntp_clear(self) -> None: ...

    def ntp_get_next_leap(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AdvanceStats:
    """The writer's work in one ``timekeeping_advance()``."""

    offset: int  # cycles since cycle_last, after clocksource_delta()
    accumulations: int  # logarithmic_accumulation() chunks taken
    second_overflows: int  # NTP second_overflow() calls
    clock_set: bool


UpdateHook = Callable[[Timekeeper, int], None]


class Timekeeping:
    """``tk_core`` and the functions of ``timekeeping.c`` that act on it."""

    def __init__(
        self,
        clock: Clocksource,
        profile: KernelProfile,
        ntp: NtpHooks,
        read_counter: Callable[[], int],
        *,
        hz: int = 250,
        realtime: Timespec64 = ZERO,
        boot_offset: Timespec64 = ZERO,
    ) -> None:
        self.profile = profile
        self.ntp = ntp
        self.read_counter = read_counter
        self.hz = hz
        self.update_hooks: list[UpdateHook] = []
        self.second_overflow_calls = 0
        self.persistent_clock: Callable[[], Timespec64] | None = None
        self.suspend_nonstop = False
        self._suspend_time = Timespec64(0, 0)
        self._suspend_start = 0
        self._old_delta = Timespec64(0, 0)
        tk = Timekeeper(
            tkr_mono=TkReadBase.for_clock(clock, 0),
            tkr_raw=TkReadBase.for_clock(clock, 0),
        )
        self.tkd = TkData(timekeeper=tk, shadow=tk.copy())
        self.timekeeping_init(clock, realtime, boot_offset)

    # --- state helpers ------------------------------------------------

    @property
    def tk(self) -> Timekeeper:
        """The live timekeeper (what readers use)."""
        return self.tkd.timekeeper

    @property
    def ntp_interval_length(self) -> int:
        """``NTP_INTERVAL_LENGTH = NSEC_PER_SEC / NTP_INTERVAL_FREQ`` (= HZ)."""
        return NSEC_PER_SEC // self.hz

    def _read(self) -> int:
        return u64(self.read_counter())

    # --- tk_* helpers (timekeeping.c) --------------------------------

    def tk_setup_internals(self, tk: Timekeeper, clock: Clocksource) -> None:
        """``tk_setup_internals()``: cycle_interval, NTP error scaling, shifts."""
        old_clock = tk.tkr_mono.clock
        tk.cs_was_changed_seq = (tk.cs_was_changed_seq + 1) & 0xFF
        now = self._read()
        for tkr in (tk.tkr_mono, tk.tkr_raw):
            tkr.clock, tkr.mask, tkr.cycle_last = clock, clock.mask, now

        ntpinterval = u64(self.ntp_interval_length << clock.shift)
        interval, _ = do_div(u64(ntpinterval + clock.mult // 2), clock.mult)
        interval = interval or 1
        tk.cycle_interval = interval
        tk.xtime_interval = u64(interval * clock.mult)
        tk.xtime_remainder = s64(ntpinterval - tk.xtime_interval)
        tk.raw_interval = u64(interval * clock.mult)

        # A clocksource switch rescales the shifted-ns remainders.
        if old_clock is not clock:
            change = clock.shift - old_clock.shift
            for tkr in (tk.tkr_mono, tk.tkr_raw):
                tkr.xtime_nsec = tkr.xtime_nsec >> -change if change < 0 else u64(tkr.xtime_nsec << change)
        tk.tkr_mono.shift = tk.tkr_raw.shift = clock.shift
        tk.ntp_error = 0
        tk.ntp_error_shift = NTP_SCALE_SHIFT - clock.shift
        tk.ntp_tick = u64(ntpinterval << tk.ntp_error_shift)
        tk.tkr_mono.mult = tk.tkr_raw.mult = clock.mult
        tk.ntp_err_mult = 0
        tk.skip_second_overflow = 0

    @staticmethod
    def tk_normalize_xtime(tk: Timekeeper) -> None:
        """``tk_normalize_xtime()``: carry whole seconds out of xtime_nsec.

        The kernel loops once per second; divmod gives the same result.
        """
        nsps = NSEC_PER_SEC << tk.tkr_mono.shift
        if tk.tkr_mono.xtime_nsec >= nsps:
            carry, tk.tkr_mono.xtime_nsec = divmod(tk.tkr_mono.xtime_nsec, nsps)
            tk.xtime_sec = u64(tk.xtime_sec + carry)
        Timekeeping.tk_normalize_raw(tk)

    @staticmethod
    def tk_normalize_raw(tk: Timekeeper) -> None:
        """The raw half of ``tk_normalize_xtime()``, also run by
        ``logarithmic_accumulation()``: whole seconds into ``raw_sec``."""
        nsps_raw = NSEC_PER_SEC << tk.tkr_raw.shift
        if tk.tkr_raw.xtime_nsec >= nsps_raw:
            carry, tk.tkr_raw.xtime_nsec = divmod(tk.tkr_raw.xtime_nsec, nsps_raw)
            tk.raw_sec = u64(tk.raw_sec + carry)

    @staticmethod
    def tk_xtime(tk: Timekeeper) -> Timespec64:
        """``tk_xtime()``: REALTIME at the last update."""
        return Timespec64(s64(tk.xtime_sec), tk.tkr_mono.xtime_nsec >> tk.tkr_mono.shift)

    @staticmethod
    def tk_set_xtime(tk: Timekeeper, ts: Timespec64) -> None:
        tk.xtime_sec = u64(ts.sec)
        tk.tkr_mono.xtime_nsec = u64(ts.nsec << tk.tkr_mono.shift)

    def tk_xtime_add(self, tk: Timekeeper, ts: Timespec64) -> None:
        tk.xtime_sec = u64(tk.xtime_sec + ts.sec)
        tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec + (ts.nsec << tk.tkr_mono.shift))
        self.tk_normalize_xtime(tk)

    @staticmethod
    def tk_set_wall_to_mono(tk: Timekeeper, wtm: Timespec64) -> None:
        """``tk_set_wall_to_mono()``: keeps offs_real = -wall_to_monotonic."""
        tk.wall_to_monotonic = wtm
        tk.offs_real = (-wtm).to_ns()
        tk.offs_tai = s64(tk.offs_real + tk.tai_offset * NSEC_PER_SEC)

    @staticmethod
    def tk_update_sleep_time(tk: Timekeeper, delta_ns: int) -> None:
        tk.offs_boot = s64(tk.offs_boot + delta_ns)
        tk.monotonic_to_boot = Timespec64.from_ns(tk.offs_boot)

    @staticmethod
    def set_tai_offset(tk: Timekeeper, offset: int) -> None:
        """``__timekeeping_set_tai_offset()``."""
        tk.tai_offset = s32(offset)
        tk.offs_tai = s64(tk.offs_real + tk.tai_offset * NSEC_PER_SEC)

    @staticmethod
    def tk_update_ktime_data(tk: Timekeeper) -> None:
        """``tk_update_ktime_data()``: bases the readers add their ns to."""
        seconds = u64(tk.xtime_sec + tk.wall_to_monotonic.sec)
        nsec = u32(tk.wall_to_monotonic.nsec)
        tk.tkr_mono.base = s64(seconds * NSEC_PER_SEC + nsec)
        nsec += u32(tk.tkr_mono.xtime_nsec >> tk.tkr_mono.shift)
        tk.ktime_sec = u64(seconds + (1 if nsec >= NSEC_PER_SEC else 0))
        tk.tkr_raw.base = s64(tk.raw_sec * NSEC_PER_SEC)

    def timekeeping_update(self, tk: Timekeeper, action: int) -> None:
        """``timekeeping_update()``: derived data, vDSO and fast timekeepers."""
        if action & TK_CLEAR_NTP:
            tk.ntp_error = 0
            self.ntp.ntp_clear()
        next_leap = self.ntp.ntp_get_next_leap()
        tk.next_leap_ktime = next_leap if next_leap == KTIME_MAX else s64(next_leap - tk.offs_real)
        self.tk_update_ktime_data(tk)
        tk.tkr_mono.base_real = s64(tk.tkr_mono.base + tk.offs_real)
        for hook in self.update_hooks:
            hook(tk, action)
        if action & TK_CLOCK_WAS_SET:
            tk.clock_was_set_seq = u32(tk.clock_was_set_seq + 1)

    # --- write sections -----------------------------------------------

    def _publish(self, action: int) -> Iterator[WriteStep]:
        """Make the shadow live inside a seqcount write section."""
        self.tkd.seq = u32(self.tkd.seq + 1)
        yield WriteStep.SEQ_ODD
        self.timekeeping_update(self.tkd.shadow, action)
        self.tkd.timekeeper = self.tkd.shadow.copy()
        yield WriteStep.PUBLISHED
        self.tkd.seq = u32(self.tkd.seq + 1)
        yield WriteStep.SEQ_EVEN

    def _publish_now(self, action: int) -> None:
        """Run :meth:`_publish` to the end (no reader interleaves)."""
        for _ in self._publish(action):
            pass

    def timekeeping_init(self, clock: Clocksource, wall: Timespec64, boot_offset: Timespec64) -> None:
        """``timekeeping_init()``, started directly on ``clock``."""
        tk = self.tkd.shadow
        self.tk_setup_internals(tk, clock)
        self.tk_set_xtime(tk, wall)
        tk.raw_sec = 0
        self.tk_set_wall_to_mono(tk, boot_offset - wall)
        self._publish_now(TK_MIRROR | TK_CLOCK_WAS_SET)

    def timekeeping_forward_now(self, tk: Timekeeper) -> None:
        """``timekeeping_forward_now()``: fold the pending delta into xtime.

        Before 6.10 one ``delta * mult`` in u64 (which wraps past the
        overflow horizon); from 6.10 chunks of at most ``max_cycles``.
        """
        now = self._read()
        delta = self._writer_delta(tk, now)
        tk.tkr_mono.cycle_last = tk.tkr_raw.cycle_last = now
        if self.profile.forward_now == "single":
            tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec + u64(delta * tk.tkr_mono.mult))
            tk.tkr_raw.xtime_nsec = u64(tk.tkr_raw.xtime_nsec + u64(delta * tk.tkr_raw.mult))
            self.tk_normalize_xtime(tk)
            return
        max_cycles = tk.tkr_mono.clock.max_cycles
        while delta > 0:
            incr = min(delta, max_cycles)
            tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec + u64(incr * tk.tkr_mono.mult))
            tk.tkr_raw.xtime_nsec = u64(tk.tkr_raw.xtime_nsec + u64(incr * tk.tkr_raw.mult))
            self.tk_normalize_xtime(tk)
            delta -= incr

    def _writer_delta(self, tk: Timekeeper, now: int) -> int:
        clock = tk.tkr_mono.clock
        return clocksource_delta(
            now, tk.tkr_mono.cycle_last, tk.tkr_mono.mask, self.profile.writer_negative, clock.max_raw_delta
        )

    def accumulate_nsecs_to_secs(self, tk: Timekeeper) -> int:
        """``accumulate_nsecs_to_secs()``: one ``second_overflow()`` per second.

        A leap second moves REALTIME by ``leap`` and TAI's offset by
        ``-leap`` so that TAI stays continuous.
        """
        nsecps = NSEC_PER_SEC << tk.tkr_mono.shift
        clock_set = 0
        while tk.tkr_mono.xtime_nsec >= nsecps:
            tk.tkr_mono.xtime_nsec -= nsecps
            tk.xtime_sec = u64(tk.xtime_sec + 1)
            if tk.skip_second_overflow:
                tk.skip_second_overflow = 0
                continue
            self.second_overflow_calls += 1
            leap = self.ntp.second_overflow(s64(tk.xtime_sec))
            if leap:
                tk.xtime_sec = u64(tk.xtime_sec + leap)
                self.tk_set_wall_to_mono(tk, tk.wall_to_monotonic - Timespec64(leap, 0))
                self.set_tai_offset(tk, tk.tai_offset - leap)
                clock_set = TK_CLOCK_WAS_SET
        return clock_set

    def logarithmic_accumulation(self, tk: Timekeeper, offset: int, shift: int) -> tuple[int, int]:
        """``logarithmic_accumulation()``: take one ``cycle_interval << shift``."""
        interval = u64(tk.cycle_interval << shift)
        if offset < interval:
            return offset, 0
        offset -= interval
        tk.tkr_mono.cycle_last = u64(tk.tkr_mono.cycle_last + interval)
        tk.tkr_raw.cycle_last = u64(tk.tkr_raw.cycle_last + interval)
        tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec + u64(tk.xtime_interval << shift))
        clock_set = self.accumulate_nsecs_to_secs(tk)
        tk.tkr_raw.xtime_nsec = u64(tk.tkr_raw.xtime_nsec + u64(tk.raw_interval << shift))
        self.tk_normalize_raw(tk)
        # ntp_error (s64) += ntp_tick << shift; -= (interval + remainder) << (...):
        # both right-hand sides are u64 in C, so the sums wrap as u64.
        err = u64(tk.ntp_error + u64(tk.ntp_tick << shift))
        err = u64(err - u64(u64(tk.xtime_interval + tk.xtime_remainder) << (tk.ntp_error_shift + shift)))
        tk.ntp_error = s64(err)
        return offset, clock_set

    def timekeeping_apply_adjustment(self, tk: Timekeeper, offset: int, mult_adj: int) -> None:
        """``timekeeping_apply_adjustment()`` (4.19+): keep "now" continuous.

        Changing mult by ``mult_adj`` at ``offset`` cycles past cycle_last
        moves the reading by ``offset * mult_adj``; xtime_nsec absorbs it.
        """
        if mult_adj == 0:
            return
        interval = s64(tk.cycle_interval * mult_adj)
        offset = s64(offset * mult_adj)
        if mult_adj > 0 and u32(tk.tkr_mono.mult + mult_adj) < mult_adj:
            return  # WARN_ON_ONCE: NTP adjustment would overflow mult
        tk.tkr_mono.mult = u32(tk.tkr_mono.mult + mult_adj)
        tk.xtime_interval = u64(tk.xtime_interval + interval)
        tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec - offset)

    def timekeeping_adjust(self, tk: Timekeeper, offset: int) -> None:
        """``timekeeping_adjust()`` (4.19+): mult from NTP's tick length, +1 if behind."""
        ntp_tl = self.ntp.ntp_tick_length()
        if tk.ntp_tick == ntp_tl:
            mult = u32(tk.tkr_mono.mult - tk.ntp_err_mult)
        else:
            tk.ntp_tick = ntp_tl
            mult = u32(
                div64_u64(u64((tk.ntp_tick >> tk.ntp_error_shift) - tk.xtime_remainder), tk.cycle_interval)
            )
        tk.ntp_err_mult = 1 if tk.ntp_error > 0 else 0
        mult = u32(mult + tk.ntp_err_mult)
        self.timekeeping_apply_adjustment(tk, s64(offset), s32(mult - tk.tkr_mono.mult))
        # xtime_nsec may have gone "negative": borrow a second, skip its NTP work.
        if s64(tk.tkr_mono.xtime_nsec) < 0:
            tk.tkr_mono.xtime_nsec = u64(tk.tkr_mono.xtime_nsec + (NSEC_PER_SEC << tk.tkr_mono.shift))
            tk.xtime_sec = u64(tk.xtime_sec - 1)
            tk.skip_second_overflow = 1

    def advance_steps(self, mode: AdvanceMode = AdvanceMode.TICK) -> Iterator[WriteStep | AdvanceStats]:
        """``timekeeping_advance()`` as steps; the last item is its stats.

        The shadow is updated first (readers still see the old state), then
        published inside the seqcount write section.
        """
        if self.tkd.suspended:
            yield AdvanceStats(0, 0, 0, False)
            return
        tk = self.tkd.shadow
        offset = self._writer_delta(tk, self._read())
        if offset < self.tk.cycle_interval and mode is AdvanceMode.TICK:
            yield AdvanceStats(offset, 0, 0, False)
            return
        start_offset = offset
        overflows_before = self.second_overflow_calls
        # ilog2(0) is fls64(0) - 1 = -1 in the kernel's non-constant form.
        shift = max(0, (fls64(offset) - 1) - (fls64(tk.cycle_interval) - 1))
        maxshift = (64 - (fls64(self.ntp.ntp_tick_length()) - 1 + 1)) - 1
        shift = min(shift, maxshift)
        clock_set = 0
        chunks = 0
        while offset >= tk.cycle_interval:
            offset, cs = self.logarithmic_accumulation(tk, offset, shift)
            clock_set |= cs
            chunks += 1
            if offset < u64(tk.cycle_interval << shift):
                shift -= 1
        self.timekeeping_adjust(tk, offset)
        clock_set |= self.accumulate_nsecs_to_secs(tk)
        yield WriteStep.SHADOW_UPDATED
        yield from self._publish(clock_set)
        yield AdvanceStats(
            start_offset, chunks, self.second_overflow_calls - overflows_before, bool(clock_set)
        )

    def timekeeping_advance(self, mode: AdvanceMode = AdvanceMode.TICK) -> AdvanceStats:
        """Run ``timekeeping_advance()`` to completion."""
        stats = AdvanceStats(0, 0, 0, False)
        for item in self.advance_steps(mode):
            if isinstance(item, AdvanceStats):
                stats = item
        return stats

    def update_wall_time(self) -> AdvanceStats:
        """``update_wall_time()``: the tick's call into the timekeeper."""
        return self.timekeeping_advance(AdvanceMode.TICK)

    def _locked_update(self, change: Callable[[Timekeeper], bool], action: int) -> bool:
        """A write section that forwards time, applies ``change``, publishes.

        ``change`` returns False to refuse (the kernel's ``-EINVAL``); the
        forwarded time is published either way, as the kernel's ``out:``
        label does.
        """
        tk = self.tkd.shadow
        self.timekeeping_forward_now(tk)
        applied = change(tk)
        self._publish_now(action | TK_MIRROR)
        return applied

    def do_settimeofday64(self, ts: Timespec64) -> bool:
        """``do_settimeofday64()``; False (-EINVAL) if it would make wtm positive."""

        def change(tk: Timekeeper) -> bool:
            delta = ts - self.tk_xtime(tk)
            if tk.wall_to_monotonic > delta:
                return False
            self.tk_set_wall_to_mono(tk, tk.wall_to_monotonic - delta)
            self.tk_set_xtime(tk, ts)
            return True

        return self._locked_update(change, TK_CLEAR_NTP | TK_CLOCK_WAS_SET)

    def timekeeping_inject_offset(self, ts: Timespec64) -> bool:
        """``timekeeping_inject_offset()`` (ADJ_SETOFFSET)."""
        if not 0 <= ts.nsec < NSEC_PER_SEC:
            return False

        def change(tk: Timekeeper) -> bool:
            wtm = tk.wall_to_monotonic
            if wtm > ts:
                return False
            self.tk_xtime_add(tk, ts)
            self.tk_set_wall_to_mono(tk, wtm - ts)
            return True

        return self._locked_update(change, TK_CLEAR_NTP | TK_CLOCK_WAS_SET)

    def change_clocksource(self, clock: Clocksource) -> None:
        """``change_clocksource()`` (run under stop_machine in the kernel)."""

        def change(tk: Timekeeper) -> bool:
            self.tk_setup_internals(tk, clock)
            return True

        self._locked_update(change, TK_CLEAR_NTP | TK_CLOCK_WAS_SET)

    # --- suspend / resume --------------------------------------------

    def _read_persistent(self) -> Timespec64:
        return self.persistent_clock() if self.persistent_clock else Timespec64(0, 0)

    def timekeeping_suspend(self) -> None:
        """``timekeeping_suspend()``: forward, freeze, start suspend timing."""
        self._suspend_time = self._read_persistent()
        tk = self.tkd.shadow
        self.timekeeping_forward_now(tk)
        self.tkd.suspended = True
        self._suspend_start = tk.tkr_mono.cycle_last
        if self.persistent_clock is not None:
            delta = self.tk_xtime(tk) - self._suspend_time
            delta_delta = delta - self._old_delta
            if abs(delta_delta.sec) >= 2:
                self._old_delta = delta
            else:
                self._suspend_time = self._suspend_time + delta_delta
        self._publish_now(TK_MIRROR)

    def _stop_suspend_timing(self, cycle_now: int) -> int:
        """``clocksource_stop_suspend_timing()`` with the current clock as the suspend clock."""
        if not self.suspend_nonstop or cycle_now <= self._suspend_start:
            return 0
        clock = self.tk.tkr_mono.clock
        delta = clocksource_delta(
            cycle_now, self._suspend_start, clock.mask, self.profile.writer_negative, clock.max_raw_delta
        )
        return mul_u64_u32_shr(delta, clock.mult, clock.shift)

    def timekeeping_resume(self) -> Timespec64 | None:
        """``timekeeping_resume()``: inject the sleep, re-base ``cycle_last``.

        Returns the injected sleep time (None if no source measured it).
        """
        ts_new = self._read_persistent()
        tk = self.tkd.shadow
        cycle_now = self._read()
        nsec = self._stop_suspend_timing(cycle_now)
        delta: Timespec64 | None = None
        if nsec > 0:
            delta = Timespec64.from_ns(nsec)
        elif ts_new > self._suspend_time:
            delta = ts_new - self._suspend_time
        if delta is not None:
            self.inject_sleeptime(tk, delta)
        tk.tkr_mono.cycle_last = tk.tkr_raw.cycle_last = cycle_now
        tk.ntp_error = 0
        self.tkd.suspended = False
        self._publish_now(TK_MIRROR | TK_CLOCK_WAS_SET)
        return delta

    def nap_resume(self, skip_cycles: int, sleep: Timespec64) -> None:
        """The nap protocol's re-base (docs/nap-protocol.md steps 6-8); in no kernel yet.

        ``timekeeping_resume()`` re-bases ``cycle_last`` to the counter
        and drops the cycles since the suspend; here only the nap's own
        ``skip_cycles`` are dropped (``cycle_last`` moves on by them first),
        so the guest's run time on both sides of the nap - parked but not
        yet frozen, woken but not yet re-based - still reaches MONOTONIC,
        exactly.  Then ``sleep`` goes into REALTIME and BOOTTIME as a
        resume injects it, ``ntp_error`` is cleared, and the result is
        published with ``TK_MIRROR | TK_CLOCK_WAS_SET`` (which also resets
        the fast timekeeper).
        """
        tk = self.tkd.shadow
        mask = tk.tkr_mono.mask
        tk.tkr_mono.cycle_last = tk.tkr_raw.cycle_last = (tk.tkr_mono.cycle_last + skip_cycles) & mask
        self.timekeeping_forward_now(tk)
        if sleep.to_ns() > 0:
            self.inject_sleeptime(tk, sleep)
        tk.ntp_error = 0
        self.tkd.suspended = False
        self._publish_now(TK_MIRROR | TK_CLOCK_WAS_SET)

    def timekeeping_inject_sleeptime64(self, delta: Timespec64, *, clear_ntp: bool = True) -> None:
        """``timekeeping_inject_sleeptime64()``: forward, then inject a sleep into REALTIME and BOOTTIME.

        The path an RTC-measured resume takes (4.x - 6.13+), which clears
        NTP.  ``clear_ntp=False`` publishes as ``timekeeping_resume()`` does
        instead (``TK_MIRROR | TK_CLOCK_WAS_SET``): the nap protocol's
        fallback injects the part of a nap the counter did not show that way.
        """

        def change(tk: Timekeeper) -> bool:
            self.inject_sleeptime(tk, delta)
            return True

        self._locked_update(change, (TK_CLEAR_NTP if clear_ntp else 0) | TK_CLOCK_WAS_SET)

    def inject_sleeptime(self, tk: Timekeeper, delta: Timespec64) -> None:
        """``__timekeeping_inject_sleeptime()``: REALTIME and BOOTTIME move, MONOTONIC not."""
        self.tk_xtime_add(tk, delta)
        self.tk_set_wall_to_mono(tk, tk.wall_to_monotonic - delta)
        self.tk_update_sleep_time(tk, delta.to_ns())

    # --- readers ------------------------------------------------------

    def timekeeping_get_ns(self, tkr: TkReadBase) -> tuple[int, ReaderFlags]:
        """``timekeeping_get_ns()``: ns since the last update for a fresh read."""
        return timekeeping_cycles_to_ns(tkr, self._read(), self.profile)

    def ktime_get(self) -> int:
        """CLOCK_MONOTONIC: ``tkr_mono.base + ns``."""
        ns, _ = self.timekeeping_get_ns(self.tk.tkr_mono)
        return ktime_add_ns(self.tk.tkr_mono.base, ns)

    def ktime_get_with_offset(self, offset: int) -> int:
        """``ktime_get_with_offset()``: base + offset + ns."""
        ns, _ = self.timekeeping_get_ns(self.tk.tkr_mono)
        return ktime_add_ns(s64(self.tk.tkr_mono.base + offset), ns)

    def ktime_get_real(self) -> int:
        """CLOCK_REALTIME as ktime."""
        return self.ktime_get_with_offset(self.tk.offs_real)

    def ktime_get_boottime(self) -> int:
        """CLOCK_BOOTTIME as ktime."""
        return self.ktime_get_with_offset(self.tk.offs_boot)

    def ktime_get_clocktai(self) -> int:
        """CLOCK_TAI as ktime."""
        return self.ktime_get_with_offset(self.tk.offs_tai)

    def ktime_get_raw(self) -> int:
        """CLOCK_MONOTONIC_RAW: ``tkr_raw.base + ns``."""
        ns, _ = self.timekeeping_get_ns(self.tk.tkr_raw)
        return ktime_add_ns(self.tk.tkr_raw.base, ns)

    def ktime_get_real_ts64(self) -> Timespec64:
        """``ktime_get_real_ts64()``: xtime_sec plus ns, carried by add_ns."""
        ns, _ = self.timekeeping_get_ns(self.tk.tkr_mono)
        return timespec64_add_ns(Timespec64(s64(self.tk.xtime_sec), 0), ns)

    def ktime_get_coarse_real_ts64(self) -> Timespec64:
        """CLOCK_REALTIME_COARSE: the last update, no counter read."""
        return self.tk_xtime(self.tk)

    def ktime_get_coarse_ts64(self) -> Timespec64:
        """CLOCK_MONOTONIC_COARSE."""
        now, wtm = self.tk_xtime(self.tk), self.tk.wall_to_monotonic
        return Timespec64.normalized(now.sec + wtm.sec, now.nsec + wtm.nsec)

    def read_all_ns(self) -> dict[str, int]:
        """Every clock once, as ns (one counter read per clock, as syscalls do)."""
        return {
            "REALTIME": self.ktime_get_real(),
            "MONOTONIC": self.ktime_get(),
            "BOOTTIME": self.ktime_get_boottime(),
            "MONOTONIC_RAW": self.ktime_get_raw(),
            "TAI": self.ktime_get_clocktai(),
            "REALTIME_COARSE": self.ktime_get_coarse_real_ts64().to_ns(),
            "MONOTONIC_COARSE": self.ktime_get_coarse_ts64().to_ns(),
        }
