"""The NTP state the timekeeper depends on (``kernel/time/ntp.c``), bit-exact.

What is modelled, and from which sources (read for this module):

* ``kernel/time/ntp.c`` of the 5.11 .. 6.12 era (file-scope statics) and of
  6.13+ (the same code moved into ``struct ntp_data`` by tglx's series
  ``68f66f97c568`` "ntp: Introduce struct ntp_data" and its follow-ups; no
  functional change): ``ntp_update_frequency()``, ``ntp_update_offset()``,
  ``ntp_update_offset_fll()``, ``ntp_clear()``, ``ntp_tick_length()``,
  ``ntp_get_next_leap()``, ``second_overflow()``, ``process_adj_status()``,
  ``process_adjtimex_modes()``, ``__do_adjtimex()``, ``is_error_status()``;
* ``kernel/time/timekeeping.c``: ``timekeeping_validate_timex()`` and the
  order of work in ``do_adjtimex()``; ``accumulate_nsecs_to_secs()`` for how
  the leap returned by ``second_overflow()`` is applied;
* ``include/linux/timex.h`` (``shift_right()``, ``SHIFT_PLL`` ...,
  ``PPM_SCALE``, ``MAXPHASE``, ``NTP_PHASE_LIMIT``) and
  ``include/uapi/linux/timex.h`` (``ADJ_*``, ``STA_*``, ``TIME_*``,
  ``struct __kernel_timex``).

Two behaviours changed inside the modelled range; both are switches on
:class:`NtpState` (``NtpState.for_kernel()`` picks them by mainline version):

* ``clamp_adjtimex_inputs`` - v6.11-rc3, Justin Stitt's "ntp: Clamp maxerror
  and esterror to operating range" and "ntp: Safeguard against time_constant
  overflow".  Before, ``ADJ_MAXERROR``/``ADJ_ESTERROR`` stored the user's
  value unchecked and ``ADJ_TIMECONST`` added 4 before clamping (an s64
  wrap for huge inputs);
* ``signed_offset_readback`` - v6.13-rc1, ``f5807b0606da`` "ntp: Remove
  invalid cast in time offset math".  Before, adjtimex reported a negative
  PLL offset in microsecond mode as ``(u32)offset / 1000`` (a large positive
  number); after, as ``div_s64(offset, 1000)``.

Both fixes were also sent to the stable trees, so recent 5.10.y/6.1.y point
releases behave like mainline 6.13 here; ``for_kernel()`` follows mainline.

Left out: the PPS kernel consumer (``CONFIG_NTP_PPS``: ``hardpps()``, the
``pps_*`` state and the PPS terms of ``is_error_status()``; Kconfig only
offers it without ``NO_HZ_COMMON`` [unchecked], which guest kernels have), the
RTC/CMOS sync work, audit records and the ``CAP_SYS_TIME`` checks.

Layer: knows ``arith`` only; the timekeeper calls in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tsclab.arith import NSEC_PER_SEC, NSEC_PER_USEC, S32_MAX, S64_MAX, S64_MIN, U32_MAX, div64_s64, s64, u64

# --- include/uapi/linux/timex.h ---------------------------------------------

ADJ_OFFSET = 0x0001
ADJ_FREQUENCY = 0x0002
ADJ_MAXERROR = 0x0004
ADJ_ESTERROR = 0x0008
ADJ_STATUS = 0x0010
ADJ_TIMECONST = 0x0020
ADJ_TAI = 0x0080
ADJ_SETOFFSET = 0x0100
ADJ_MICRO = 0x1000
ADJ_NANO = 0x2000
ADJ_TICK = 0x4000
# include/linux/timex.h (kernel-internal names for the adjtime() modes)
ADJ_ADJTIME = 0x8000
ADJ_OFFSET_SINGLESHOT_BIT = 0x0001  # the kernel's ADJ_OFFSET_SINGLESHOT
ADJ_OFFSET_READONLY = 0x2000
# the userspace values (glibc's adjtime() passes these)
ADJ_OFFSET_SINGLESHOT = 0x8001
ADJ_OFFSET_SS_READ = 0xA001

STA_PLL = 0x0001
STA_PPSFREQ = 0x0002
STA_PPSTIME = 0x0004
STA_FLL = 0x0008
STA_INS = 0x0010
STA_DEL = 0x0020
STA_UNSYNC = 0x0040
STA_FREQHOLD = 0x0080
STA_PPSSIGNAL = 0x0100
STA_PPSJITTER = 0x0200
STA_PPSWANDER = 0x0400
STA_PPSERROR = 0x0800
STA_CLOCKERR = 0x1000
STA_NANO = 0x2000
STA_MODE = 0x4000
STA_CLK = 0x8000
STA_RONLY = (
    STA_PPSSIGNAL
    | STA_PPSJITTER
    | STA_PPSWANDER
    | STA_PPSERROR
    | STA_CLOCKERR
    | STA_NANO
    | STA_MODE
    | STA_CLK
)

TIME_OK = 0
TIME_INS = 1
TIME_DEL = 2
TIME_OOP = 3
TIME_WAIT = 4
TIME_ERROR = 5

# --- include/linux/timex.h ---------------------------------------------------

NTP_SCALE_SHIFT = 32
SHIFT_PLL = 2
SHIFT_FLL = 2
MAXTC = 10
SHIFT_USEC = 16
PPM_SCALE = NSEC_PER_USEC << (NTP_SCALE_SHIFT - SHIFT_USEC)  # 65_536_000: adjtimex freq unit -> time_freq
PPM_SCALE_INV_SHIFT = 19
PPM_SCALE_INV = (1 << (PPM_SCALE_INV_SHIFT + NTP_SCALE_SHIFT)) // PPM_SCALE + 1
MAXPHASE = 500_000_000  # ns
MAXFREQ = 500_000  # ns/s
MAXFREQ_SCALED = MAXFREQ << NTP_SCALE_SHIFT
MINSEC = 256
MAXSEC = 2048
NTP_PHASE_LIMIT = (MAXPHASE // NSEC_PER_USEC) << 5  # 16_000_000 us

# --- include/linux/jiffies.h, include/asm-generic/param.h, ktime.h ---------

USER_HZ = 100
USER_TICK_USEC = (1_000_000 + USER_HZ // 2) // USER_HZ  # 10_000
USEC_PER_SEC = 1_000_000
TIME64_MAX = S64_MAX
KTIME_MAX = S64_MAX
KTIME_SEC_MAX = KTIME_MAX // NSEC_PER_SEC

# --- kernel/time/ntp.c --------------------------------------------------------

SECS_PER_DAY = 86_400
MAX_TICKADJ = 500  # us of adjtime() slew per second
MAX_TAI_OFFSET = 100_000

# timekeeping_validate_timex(): the ADJ_TICK window (+-10% of 1e6/USER_HZ) and
# the ADJ_FREQUENCY range that keeps freq * PPM_SCALE inside an s64 (C
# division truncates toward zero, hence div64_s64).
TICK_USEC_MIN = 900_000 // USER_HZ
TICK_USEC_MAX = 1_100_000 // USER_HZ
FREQ_MIN = div64_s64(S64_MIN, PPM_SCALE)
FREQ_MAX = div64_s64(S64_MAX, PPM_SCALE)

S32_MIN = -S32_MAX - 1


def max_tickadj_scaled(hz: int) -> int:
    """``MAX_TICKADJ_SCALED``: 500 us per second as a per-tick shifted-ns step.

    ``((MAX_TICKADJ * NSEC_PER_USEC) << NTP_SCALE_SHIFT) / NTP_INTERVAL_FREQ``
    (s64 arithmetic, positive, so floor and truncation agree).
    """
    return ((MAX_TICKADJ * NSEC_PER_USEC) << NTP_SCALE_SHIFT) // hz


def shift_right(x: int, s: int) -> int:
    """``shift_right(x, s)`` of ``include/linux/timex.h`` on an s64.

    ``x < 0 ? -(-x >> s) : x >> s``: a negative value is shifted by magnitude,
    so the result rounds toward zero (``-5 >> 1`` is -3, ``shift_right(-5, 1)``
    is -2).  ``-S64_MIN`` wraps to itself in two's complement, so that one
    input goes through an arithmetic shift of a negative number, exactly as
    the compiled C does.
    """
    x = s64(x)
    if x >= 0:
        return x >> s
    return s64(-(s64(-x) >> s))


def c_div(dividend: int, divisor: int) -> int:
    """C ``/`` on signed 64-bit operands: truncation toward zero."""
    return div64_s64(dividend, divisor)


def c_rem(dividend: int, divisor: int) -> int:
    """C ``%`` (and ``div_s64_rem()``'s remainder): the sign of the dividend."""
    return s64(dividend - c_div(dividend, divisor) * divisor)


def clamp(value: int, low: int, high: int) -> int:
    """The kernel's ``clamp(val, lo, hi)``."""
    return min(max(value, low), high)


def ktime_set(secs: int, nsecs: int) -> int:
    """``ktime_set()``: seconds + ns as a ktime_t, saturating at ``KTIME_MAX``."""
    if secs >= KTIME_SEC_MAX:
        return KTIME_MAX
    return s64(secs * NSEC_PER_SEC + nsecs)


class NtpInputError(ValueError):
    """An adjtimex request the kernel refuses with ``-EINVAL``."""


@dataclass(frozen=True, slots=True)
class Timex:
    """The fields of ``struct __kernel_timex`` (uapi) that ntp.c reads or writes.

    C types: ``modes`` is ``unsigned int``, ``status``/``shift``/``tai`` are
    ``int``, everything else ``long long``.  ``time_usec`` is ``time.tv_usec``:
    microseconds, or nanoseconds when ``STA_NANO`` (read-back) or ``ADJ_NANO``
    (``ADJ_SETOFFSET`` input) says so.  The PPS fields always read back as 0
    here (the ``!CONFIG_NTP_PPS`` ``pps_fill_timex()``).
    """

    modes: int = 0
    offset: int = 0
    freq: int = 0
    maxerror: int = 0
    esterror: int = 0
    status: int = 0
    constant: int = 0
    precision: int = 0
    tolerance: int = 0
    time_sec: int = 0
    time_usec: int = 0
    tick: int = 0
    ppsfreq: int = 0
    jitter: int = 0
    shift: int = 0
    stabil: int = 0
    jitcnt: int = 0
    calcnt: int = 0
    errcnt: int = 0
    stbcnt: int = 0
    tai: int = 0


_S32_FIELDS = ("status", "shift", "tai")
_S64_FIELDS = (
    "offset",
    "freq",
    "maxerror",
    "esterror",
    "constant",
    "precision",
    "tolerance",
    "time_sec",
    "time_usec",
    "tick",
    "ppsfreq",
    "jitter",
    "stabil",
    "jitcnt",
    "calcnt",
    "errcnt",
    "stbcnt",
)


def _check_c_widths(txc: Timex) -> None:
    """Model-side guard: every field must be representable in its C type."""
    if not 0 <= txc.modes <= U32_MAX:
        raise NtpInputError(f"timex.modes {txc.modes:#x} does not fit an unsigned int")
    for name in _S32_FIELDS:
        value = getattr(txc, name)
        if not S32_MIN <= value <= S32_MAX:
            raise NtpInputError(f"timex.{name} = {value} does not fit an int")
    for name in _S64_FIELDS:
        value = getattr(txc, name)
        if not S64_MIN <= value <= S64_MAX:
            raise NtpInputError(f"timex.{name} = {value} does not fit a long long")


def validate_timex(txc: Timex) -> None:
    """``timekeeping_validate_timex()`` (5.10 .. 6.13+), without the permission checks.

    Raises :class:`NtpInputError` where the kernel returns ``-EINVAL``:

    * ``ADJ_ADJTIME`` without the single-shot bit (``ADJ_OFFSET_SINGLESHOT``);
    * ``ADJ_TICK`` (outside adjtime mode) with ``tick`` outside
      ``900000/USER_HZ .. 1100000/USER_HZ`` (9000 .. 10000 .. 11000 us);
    * ``ADJ_SETOFFSET`` with ``time.tv_usec < 0`` or ``>= NSEC_PER_SEC``
      (``ADJ_NANO``) / ``>= USEC_PER_SEC``;
    * ``ADJ_FREQUENCY`` with ``freq`` outside ``LLONG_MIN/PPM_SCALE ..
      LLONG_MAX/PPM_SCALE`` (the 64-bit-long check).

    The ``-EPERM`` (``CAP_SYS_TIME``) checks are omitted.  Fields that do not
    fit their C types are refused too (the kernel can never see them).
    """
    _check_c_widths(txc)
    modes = txc.modes
    if modes & ADJ_ADJTIME:
        # "singleshot must not be used with any other mode bits": the kernel
        # only checks that the single-shot bit is present.
        if not modes & ADJ_OFFSET_SINGLESHOT_BIT:
            raise NtpInputError(f"adjtime mode {modes:#x} without ADJ_OFFSET_SINGLESHOT")
    elif modes & ADJ_TICK and not TICK_USEC_MIN <= txc.tick <= TICK_USEC_MAX:
        raise NtpInputError(f"ADJ_TICK tick={txc.tick} us outside {TICK_USEC_MIN}..{TICK_USEC_MAX} (+-10%)")
    if modes & ADJ_SETOFFSET:
        limit, unit = (NSEC_PER_SEC, "ns") if modes & ADJ_NANO else (USEC_PER_SEC, "us")
        if not 0 <= txc.time_usec < limit:
            raise NtpInputError(
                f"ADJ_SETOFFSET sub-second part {txc.time_usec} {unit} outside 0..{limit - 1}"
            )
    if modes & ADJ_FREQUENCY and not FREQ_MIN <= txc.freq <= FREQ_MAX:
        raise NtpInputError(f"ADJ_FREQUENCY freq={txc.freq} outside {FREQ_MIN}..{FREQ_MAX} (scaled ppm)")


def requested_set_offset(txc: Timex) -> tuple[int, int] | None:
    """The ``ADJ_SETOFFSET`` step ``do_adjtimex()`` hands to the timekeeper.

    ``(tv_sec, tv_nsec)`` with ``tv_usec * 1000`` unless ``ADJ_NANO``; None when
    the mode bit is clear.  ``do_adjtimex()`` injects it (via
    ``timekeeping_inject_offset()``) *before* it reads CLOCK_REALTIME for
    ``__do_adjtimex()``, so a timekeeper applies this first, then calls
    :meth:`NtpState.adjtimex` with the stepped time.  Call after
    :func:`validate_timex`.
    """
    if not txc.modes & ADJ_SETOFFSET:
        return None
    nsec = txc.time_usec if txc.modes & ADJ_NANO else txc.time_usec * NSEC_PER_USEC
    return txc.time_sec, nsec


@dataclass(frozen=True, slots=True)
class AdjtimexResult:
    """What one ``do_adjtimex()`` call produced, for the timekeeper and the caller.

    ``state`` is the syscall's return value (``TIME_OK`` .. ``TIME_ERROR``);
    ``txc`` the timex as the kernel writes it back.  ``tai_offset`` is the
    (possibly new) ``tk->tai_offset``; when ``tai_changed`` the timekeeper
    calls ``__timekeeping_set_tai_offset()``.  ``set_offset`` is the
    ``ADJ_SETOFFSET`` step (see :func:`requested_set_offset`).
    ``advance_freq`` is ``do_adjtimex()``'s own test, ``modes &
    (ADJ_FREQUENCY | ADJ_TICK)``: the timekeeper then runs
    ``timekeeping_advance(TK_ADV_FREQ)``.  ``tick_length_changed`` says
    whether ``ntp_tick_length()`` moved at all (also via ``ADJ_OFFSET``), which
    the kernel leaves to the next tick.
    """

    state: int
    txc: Timex
    tai_offset: int
    tai_changed: bool
    set_offset: tuple[int, int] | None
    advance_freq: bool
    tick_length_changed: bool


@dataclass(slots=True)
class NtpState:
    """The NTP state of one timekeeper: ntp.c's statics / ``struct ntp_data``.

    Constructed as after ``ntp_init()``: the static initialisers
    (``time_state = TIME_OK``, ``time_status = STA_UNSYNC``,
    ``time_constant = 2``, ``tick_usec = USER_TICK_USEC``) followed by
    ``ntp_clear()``.  ``hz`` is ``HZ`` (= ``NTP_INTERVAL_FREQ``);
    ``ntp_tick_adj`` the ``ntp_tick_adj=`` boot parameter, already shifted
    left by ``NTP_SCALE_SHIFT`` as ``ntp_tick_adj_setup()`` stores it.

    Widths: ``tick_length``/``tick_length_base`` u64; ``time_offset``,
    ``time_freq``, ``ntp_tick_adj`` s64; ``time_constant``, ``time_maxerror``,
    ``time_esterror``, ``time_adjust`` ``long`` (s64 on x86-64);
    ``time_reftime``/``ntp_next_leap_sec`` time64_t; ``tick_usec``/``tick_nsec``
    unsigned long.  ``tick_nsec`` is maintained as up to 6.12 (6.13 removed
    it, ``a849a0273d0f``, as unused).
    """

    hz: int = 250
    clamp_adjtimex_inputs: bool = True
    signed_offset_readback: bool = True
    ntp_tick_adj: int = 0
    time_state: int = field(default=TIME_OK, init=False)
    time_status: int = field(default=STA_UNSYNC, init=False)
    time_offset: int = field(default=0, init=False)
    time_constant: int = field(default=2, init=False)
    time_maxerror: int = field(default=NTP_PHASE_LIMIT, init=False)
    time_esterror: int = field(default=NTP_PHASE_LIMIT, init=False)
    time_freq: int = field(default=0, init=False)
    time_reftime: int = field(default=0, init=False)
    time_adjust: int = field(default=0, init=False)
    tick_usec: int = field(default=USER_TICK_USEC, init=False)
    tick_nsec: int = field(default=0, init=False)
    tick_length: int = field(default=0, init=False)
    tick_length_base: int = field(default=0, init=False)
    ntp_next_leap_sec: int = field(default=TIME64_MAX, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.hz <= 10_000:
            raise ValueError(f"HZ must be 1..10000, got {self.hz}")
        self.ntp_tick_adj = s64(self.ntp_tick_adj)
        self.ntp_clear()

    @classmethod
    def for_kernel(cls, version: tuple[int, int], hz: int = 250) -> NtpState:
        """The state of a mainline kernel ``version``, selecting its adjtimex fixes.

        Clamping from 6.11, the signed offset read-back from 6.13 (see the
        module docstring; stable point releases may carry both earlier).
        """
        return cls(
            hz=hz,
            clamp_adjtimex_inputs=version >= (6, 11),
            signed_offset_readback=version >= (6, 13),
        )

    # --- frequency and tick length ------------------------------------------

    @property
    def max_tickadj_scaled(self) -> int:
        """``MAX_TICKADJ_SCALED`` for this ``HZ``."""
        return max_tickadj_scaled(self.hz)

    def ntp_tick_length(self) -> int:
        """``ntp_tick_length()`` (all versions): ns per tick << 32, a u64."""
        return self.tick_length

    def ntp_update_frequency(self) -> None:
        """``ntp_update_frequency()`` (5.10 .. 6.13+): recompute the tick length.

        ``second_length = (u64)(tick_usec * 1000 * USER_HZ) << 32``, plus
        ``ntp_tick_adj`` and ``time_freq`` (s64 added to u64: wraps); the new
        base is ``second_length / HZ`` (``div_u64``).  The difference to the
        old base is applied to ``tick_length`` immediately, so a slew already
        folded into ``tick_length`` by ``second_overflow()`` survives.
        """
        second_length = u64(u64(self.tick_usec * NSEC_PER_USEC * USER_HZ) << NTP_SCALE_SHIFT)
        second_length = u64(second_length + self.ntp_tick_adj)
        second_length = u64(second_length + self.time_freq)
        self.tick_nsec = (second_length // self.hz) >> NTP_SCALE_SHIFT
        new_base = second_length // self.hz  # NTP_INTERVAL_FREQ == HZ
        self.tick_length = u64(self.tick_length + new_base - self.tick_length_base)
        self.tick_length_base = new_base

    def ntp_clear(self) -> None:
        """``ntp_clear()`` / ``__ntp_clear()`` (5.10 .. 6.13+).

        Stops adjtime(), sets ``STA_UNSYNC``, resets both error estimates to
        ``NTP_PHASE_LIMIT``, drops the PLL phase and any pending leap second.
        ``time_state``, ``time_freq`` and ``time_constant`` are kept.
        """
        self.time_adjust = 0
        self.time_status |= STA_UNSYNC
        self.time_maxerror = NTP_PHASE_LIMIT
        self.time_esterror = NTP_PHASE_LIMIT
        self.ntp_update_frequency()
        self.tick_length = self.tick_length_base
        self.time_offset = 0
        self.ntp_next_leap_sec = TIME64_MAX

    def ntp_get_next_leap(self) -> int:
        """``ntp_get_next_leap()`` (5.10 .. 6.13+): the pending insertion as a ktime_t.

        ``ktime_set(ntp_next_leap_sec, 0)`` while an insertion is armed
        (``TIME_INS`` with ``STA_INS``), else ``KTIME_MAX``.  The timekeeper
        keeps it as ``next_leap_ktime`` so readers see the leap second at its
        exact instant, before the next tick runs ``second_overflow()``.
        """
        if self.time_state == TIME_INS and self.time_status & STA_INS:
            return ktime_set(self.ntp_next_leap_sec, 0)
        return KTIME_MAX

    @property
    def synced(self) -> bool:
        """``ntp_synced()``: ``STA_UNSYNC`` clear."""
        return not self.time_status & STA_UNSYNC

    # --- the per-second work ------------------------------------------------

    def second_overflow(self, secs: int) -> int:
        """``second_overflow(secs)`` (5.10 .. 6.13+, PPS omitted): NTP's work per second.

        Called by ``accumulate_nsecs_to_secs()`` after ``xtime_sec`` has been
        incremented to ``secs``.  Runs the leap-second state machine, grows
        ``time_maxerror`` by ``MAXFREQ / NSEC_PER_USEC`` (500 us), setting
        ``STA_UNSYNC`` once it passes ``NTP_PHASE_LIMIT``, and computes the
        ``tick_length`` for the coming second: the base, plus the PLL phase
        chunk ``shift_right(time_offset, SHIFT_PLL + time_constant)`` (taken
        out of ``time_offset``), plus the adjtime() slew (``MAX_TICKADJ_SCALED``
        while ``|time_adjust| > 500`` us, then the remainder).

        Returns the leap: -1 when a second is inserted (at ``secs ==
        ntp_next_leap_sec``, the first second of the new UTC day), +1 when one
        is deleted (at 23:59:59), else 0.  The timekeeper applies it as
        ``xtime_sec += leap; wall_to_monotonic -= leap; tai_offset -= leap``:
        an insertion steps CLOCK_REALTIME back to 23:59:59 (shown again as
        "23:59:60") and *increments* ``tai_offset``, so MONOTONIC and TAI run
        on unbroken; a deletion steps REALTIME forward and decrements it.
        """
        leap = self._advance_leap_state(secs)
        self._grow_maxerror()
        self.tick_length = self.tick_length_base
        self._slew_pll_offset()
        self._slew_adjtime()
        return leap

    def _advance_leap_state(self, secs: int) -> int:
        """The ``switch (time_state)`` of ``second_overflow()``; returns the leap."""
        state, status = self.time_state, self.time_status
        if state == TIME_OK:
            if status & STA_INS:
                # Arm for the next midnight after secs (div_s64_rem: C remainder).
                self.time_state = TIME_INS
                self.ntp_next_leap_sec = s64(secs + SECS_PER_DAY - c_rem(secs, SECS_PER_DAY))
            elif status & STA_DEL:
                # secs + 1 so that the deletion lands on 23:59:59 of the day.
                self.time_state = TIME_DEL
                self.ntp_next_leap_sec = s64(secs + SECS_PER_DAY - c_rem(secs + 1, SECS_PER_DAY))
        elif state == TIME_INS:
            if not status & STA_INS:
                self.ntp_next_leap_sec = TIME64_MAX
                self.time_state = TIME_OK
            elif secs == self.ntp_next_leap_sec:
                # "Clock: inserting leap second 23:59:60 UTC"
                self.time_state = TIME_OOP
                return -1
        elif state == TIME_DEL:
            if not status & STA_DEL:
                self.ntp_next_leap_sec = TIME64_MAX
                self.time_state = TIME_OK
            elif secs == self.ntp_next_leap_sec:
                # "Clock: deleting leap second 23:59:59 UTC"
                self.ntp_next_leap_sec = TIME64_MAX
                self.time_state = TIME_WAIT
                return 1
        elif state == TIME_OOP:
            self.ntp_next_leap_sec = TIME64_MAX
            self.time_state = TIME_WAIT
        elif state == TIME_WAIT and not status & (STA_INS | STA_DEL):
            self.time_state = TIME_OK
        return 0

    def _grow_maxerror(self) -> None:
        """``time_maxerror += MAXFREQ / NSEC_PER_USEC``, clamped at the phase limit.

        A ``long`` add: before the 6.11 clamp a user could store a maxerror
        near ``LONG_MAX`` and this wraps negative (the overflow that fix was
        about), so it wraps here too.
        """
        self.time_maxerror = s64(self.time_maxerror + MAXFREQ // NSEC_PER_USEC)
        if self.time_maxerror > NTP_PHASE_LIMIT:
            self.time_maxerror = NTP_PHASE_LIMIT
            self.time_status |= STA_UNSYNC

    def _slew_pll_offset(self) -> None:
        """``ntp_offset_chunk()`` without PPS: move a 2**-(2+tc) part of the phase."""
        delta = shift_right(self.time_offset, SHIFT_PLL + self.time_constant)
        self.time_offset = s64(self.time_offset - delta)
        self.tick_length = u64(self.tick_length + delta)

    def _slew_adjtime(self) -> None:
        """The adjtime() slew: 500 us per second until less remains, then the rest."""
        adjust = self.time_adjust
        if adjust == 0:
            return
        if adjust > MAX_TICKADJ:
            self.time_adjust = adjust - MAX_TICKADJ
            self.tick_length = u64(self.tick_length + self.max_tickadj_scaled)
        elif adjust < -MAX_TICKADJ:
            self.time_adjust = adjust + MAX_TICKADJ
            self.tick_length = u64(self.tick_length - self.max_tickadj_scaled)
        else:
            # (s64)(time_adjust * NSEC_PER_USEC / HZ) << 32: the division
            # truncates toward zero, the shift of a negative s64 wraps.
            per_tick_ns = c_div(adjust * NSEC_PER_USEC, self.hz)
            self.tick_length = u64(self.tick_length + s64(per_tick_ns << NTP_SCALE_SHIFT))
            self.time_adjust = 0

    # --- the PLL/FLL ----------------------------------------------------------

    def ntp_update_offset(self, offset: int, now_sec: int) -> None:
        """``ntp_update_offset()`` (5.10 .. 6.13+): feed one phase sample to the PLL/FLL.

        ``offset`` is the adjtimex ``offset`` (us, or ns with ``STA_NANO``);
        ``now_sec`` is CLOCK_REALTIME seconds (``__ktime_get_real_seconds()``).
        No-op without ``STA_PLL``.  The offset is clamped to +-1 s before the
        us->ns multiply, then to +-``MAXPHASE``; the frequency gets the FLL
        term (``secs >= MINSEC`` and ``STA_FLL`` or ``secs > MAXSEC``) plus the
        PLL term ``(offset * secs) << (32 - 2 * (SHIFT_PLL + 2 +
        time_constant))`` with ``secs`` capped at ``1 << (SHIFT_PLL + 1 +
        time_constant)``, and is clamped to +-``MAXFREQ_SCALED``; the whole
        offset becomes ``time_offset = div_s64(offset << 32, HZ)``.  The caller
        (``process_adjtimex_modes()``) runs ``ntp_update_frequency()`` after.
        """
        if not self.time_status & STA_PLL:
            return
        offset = s64(offset)
        if not self.time_status & STA_NANO:
            # "Make sure the multiplication below won't overflow"
            offset = clamp(offset, -USEC_PER_SEC, USEC_PER_SEC) * NSEC_PER_USEC
        offset = clamp(offset, -MAXPHASE, MAXPHASE)

        secs = s64(now_sec - self.time_reftime)  # (long)(time64_t - time64_t)
        if self.time_status & STA_FREQHOLD:
            secs = 0
        self.time_reftime = now_sec

        freq_adj = self._fll_term(offset, secs)
        secs = min(secs, 1 << (SHIFT_PLL + 1 + self.time_constant))
        pll_shift = NTP_SCALE_SHIFT - 2 * (SHIFT_PLL + 2 + self.time_constant)
        # s64 product, then a left shift that wraps for a negative or huge
        # product (secs < 0 after the clock was stepped back).
        freq_adj = s64(freq_adj + s64(s64(offset * secs) << pll_shift))
        freq_adj = min(s64(freq_adj + self.time_freq), MAXFREQ_SCALED)
        self.time_freq = max(freq_adj, -MAXFREQ_SCALED)
        self.time_offset = c_div(offset << NTP_SCALE_SHIFT, self.hz)

    def _fll_term(self, offset: int, secs: int) -> int:
        """``ntp_update_offset_fll()``: the FLL frequency term; sets/clears ``STA_MODE``."""
        self.time_status &= ~STA_MODE
        if secs < MINSEC:
            return 0
        if not self.time_status & STA_FLL and secs <= MAXSEC:
            return 0
        self.time_status |= STA_MODE
        return c_div(offset << (NTP_SCALE_SHIFT - SHIFT_FLL), secs)  # div64_long

    # --- adjtimex -------------------------------------------------------------

    def adjtimex(self, txc: Timex, now_sec: int, now_nsec: int, tai_offset: int = 0) -> AdjtimexResult:
        """``do_adjtimex()``'s NTP part: validation, then ``__do_adjtimex()`` (5.10 .. 6.13+).

        ``now_sec``/``now_nsec`` is CLOCK_REALTIME as ``do_adjtimex()`` reads it,
        i.e. *after* any ``ADJ_SETOFFSET`` step (apply
        :func:`requested_set_offset` first); ``tai_offset`` is
        ``tk->tai_offset``.  Raises :class:`NtpInputError` for ``-EINVAL``.

        Adjtime mode (``ADJ_ADJTIME``: ``ADJ_OFFSET_SINGLESHOT``, or
        ``ADJ_OFFSET_SS_READ`` to only read) stores ``offset`` (us) in
        ``time_adjust`` and reports the previous value.  Otherwise any mode
        bits are applied (``process_adjtimex_modes()``) and ``offset`` reports
        the remaining PLL phase.  The return value is ``time_state``, or
        ``TIME_ERROR`` when ``STA_UNSYNC``/``STA_CLOCKERR`` is set; around a
        leap second (``now_sec >= ntp_next_leap_sec``) it becomes
        ``TIME_OOP``/``TIME_WAIT`` and ``time``/``tai`` are reported as they
        will be once the timekeeper has applied the leap.
        """
        validate_timex(txc)
        tick_length_before = self.tick_length
        tai = tai_offset
        if txc.modes & ADJ_ADJTIME:
            offset_out = self._adjtime(txc)
        else:
            if txc.modes:
                tai = self._process_adjtimex_modes(txc, now_sec, tai)
            offset_out = self._offset_readback()

        state = TIME_ERROR if self._is_error_status() else self.time_state
        out = replace(
            txc,
            offset=offset_out,
            freq=self._freq_readback(),
            maxerror=self.time_maxerror,
            esterror=self.time_esterror,
            status=self.time_status,
            constant=self.time_constant,
            precision=1,
            tolerance=MAXFREQ_SCALED // PPM_SCALE,
            tick=self.tick_usec,
            tai=tai,
            ppsfreq=0,
            jitter=0,
            shift=0,
            stabil=0,
            jitcnt=0,
            calcnt=0,
            errcnt=0,
            stbcnt=0,
            time_sec=now_sec,
            time_usec=now_nsec if self.time_status & STA_NANO else c_div(now_nsec, NSEC_PER_USEC),
        )
        state, out = self._leap_readback(state, out, now_sec)
        return AdjtimexResult(
            state=state,
            txc=out,
            tai_offset=tai,
            tai_changed=tai != tai_offset,
            set_offset=requested_set_offset(txc),
            advance_freq=bool(txc.modes & (ADJ_FREQUENCY | ADJ_TICK)),
            tick_length_changed=self.tick_length != tick_length_before,
        )

    def _adjtime(self, txc: Timex) -> int:
        """The ``ADJ_ADJTIME`` branch of ``__do_adjtimex()``; returns the old ``time_adjust``."""
        saved = self.time_adjust
        if not txc.modes & ADJ_OFFSET_READONLY:
            # "adjtime() is independent from ntp_adjtime()"
            self.time_adjust = txc.offset
            self.ntp_update_frequency()
        return saved

    def _offset_readback(self) -> int:
        """The reported PLL offset: ``shift_right(time_offset * HZ, 32)``, in us or ns.

        In microsecond mode, before 6.13 ``(u32)offset / NSEC_PER_USEC`` (a
        negative offset reads back as ~4.29e6 us), from 6.13
        ``div_s64(offset, NSEC_PER_USEC)``.
        """
        offset_ns = shift_right(s64(self.time_offset * self.hz), NTP_SCALE_SHIFT)
        if self.time_status & STA_NANO:
            return offset_ns
        if self.signed_offset_readback:
            return c_div(offset_ns, NSEC_PER_USEC)
        return (offset_ns & U32_MAX) // NSEC_PER_USEC

    def _freq_readback(self) -> int:
        """``shift_right((time_freq >> 19) * PPM_SCALE_INV, 32)``: time_freq in scaled ppm.

        ``>>`` of a negative s64 is arithmetic (gcc), like Python's.
        """
        return shift_right(s64((self.time_freq >> PPM_SCALE_INV_SHIFT) * PPM_SCALE_INV), NTP_SCALE_SHIFT)

    def _is_error_status(self) -> bool:
        """``is_error_status()`` without ``CONFIG_NTP_PPS``."""
        return bool(self.time_status & (STA_UNSYNC | STA_CLOCKERR))

    def _leap_readback(self, state: int, out: Timex, now_sec: int) -> tuple[int, Timex]:
        """The "Handle leapsec adjustments" tail of ``__do_adjtimex()``."""
        if now_sec < self.ntp_next_leap_sec:
            return state, out
        if self.time_state == TIME_INS and self.time_status & STA_INS:
            state = TIME_OOP
            out = replace(out, tai=out.tai + 1, time_sec=out.time_sec - 1)
        if self.time_state == TIME_DEL and self.time_status & STA_DEL:
            state = TIME_WAIT
            out = replace(out, tai=out.tai - 1, time_sec=out.time_sec + 1)
        if self.time_state == TIME_OOP and now_sec == self.ntp_next_leap_sec:
            state = TIME_WAIT
        return state, out

    def _process_adjtimex_modes(self, txc: Timex, now_sec: int, tai: int) -> int:
        """``process_adjtimex_modes()`` (5.10 .. 6.13+); returns the new TAI offset."""
        modes = txc.modes
        if modes & ADJ_STATUS:
            self._process_adj_status(txc.status, now_sec)
        if modes & ADJ_NANO:
            self.time_status |= STA_NANO
        if modes & ADJ_MICRO:
            self.time_status &= ~STA_NANO
        if modes & ADJ_FREQUENCY:
            # validate_timex() keeps freq * PPM_SCALE inside an s64.
            self.time_freq = clamp(txc.freq * PPM_SCALE, -MAXFREQ_SCALED, MAXFREQ_SCALED)
        if modes & ADJ_MAXERROR:
            self.time_maxerror = self._error_input(txc.maxerror)
        if modes & ADJ_ESTERROR:
            self.time_esterror = self._error_input(txc.esterror)
        if modes & ADJ_TIMECONST:
            self.time_constant = self._time_constant_input(txc.constant)
        if modes & ADJ_TAI and 0 <= txc.constant <= MAX_TAI_OFFSET:
            tai = txc.constant
        if modes & ADJ_OFFSET:
            self.ntp_update_offset(txc.offset, now_sec)
        if modes & ADJ_TICK:
            self.tick_usec = u64(txc.tick)
        if modes & (ADJ_TICK | ADJ_FREQUENCY | ADJ_OFFSET):
            self.ntp_update_frequency()
        return tai

    def _error_input(self, value: int) -> int:
        """``ADJ_MAXERROR``/``ADJ_ESTERROR``: clamped to 0..NTP_PHASE_LIMIT from 6.11."""
        return clamp(value, 0, NTP_PHASE_LIMIT) if self.clamp_adjtimex_inputs else value

    def _time_constant_input(self, constant: int) -> int:
        """``ADJ_TIMECONST``: +4 in microsecond mode, clamped to 0..MAXTC.

        Before 6.11 the +4 came first, on the raw ``long`` (wrapping for
        ``LONG_MAX``, which then clamps to 0); from 6.11 the input is clamped
        first as well.
        """
        if self.clamp_adjtimex_inputs:
            constant = clamp(constant, 0, MAXTC)
        if not self.time_status & STA_NANO:
            constant = s64(constant + 4)
        return clamp(constant, 0, MAXTC)

    def _process_adj_status(self, status: int, now_sec: int) -> None:
        """``process_adj_status()``: switching the PLL off resets; on, restarts reftime."""
        if self.time_status & STA_PLL and not status & STA_PLL:
            self.time_state = TIME_OK
            self.time_status = STA_UNSYNC
            self.ntp_next_leap_sec = TIME64_MAX
        if not self.time_status & STA_PLL and status & STA_PLL:
            self.time_reftime = now_sec
        # only the writable bits come from the caller
        self.time_status &= STA_RONLY
        self.time_status |= status & ~STA_RONLY
