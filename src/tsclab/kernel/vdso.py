"""The x86-64 vDSO: the data page the kernel writes and the reader user space runs.

Models, for x86-64 guests from 5.10 to the 2026 trees:

* the data page (``include/vdso/datapage.h``): two per-clock records,
  ``CS_HRES_COARSE`` and ``CS_RAW`` (``struct vdso_data[CS_BASES]`` before
  ~6.15 (version unchecked), ``struct vdso_clock clock_data[CS_BASES]`` after; same fields);
* the writer (``kernel/time/vsyscall.c``): ``update_vsyscall()`` with
  ``update_vdso_data()`` (renamed ``update_vdso_time_data()`` ~6.15), and
  the seqcount helpers ``vdso_write_begin()``/``vdso_write_end()``
  (``include/vdso/helpers.h``);
* the reader (``lib/vdso/gettimeofday.c``): ``do_hres()``, ``do_coarse()``
  and the clock-id dispatch of ``__cvdso_clock_gettime_common()``;
* the x86 hooks (``arch/x86/include/asm/vdso/gettimeofday.h``):
  ``__arch_get_hw_counter()`` (with the ``& S64_MAX`` masking from 6.5),
  ``vread_pvclock()``, ``arch_vdso_clocksource_ok()`` (always true on x86),
  ``arch_vdso_cycles_ok()`` and the three versions of the delta math,
  selected by :attr:`KernelProfile.vdso_delta`:

  - ``x86-5.3`` (5.3-6.4): ``vdso_calc_delta()`` returns
    ``(cycles - last) * mult`` (u64, wraps) if ``cycles > last``, else 0;
  - ``x86-6.5`` (6.5-6.9, "x86/vdso: Fix gettimeofday masking"):
    ``delta = (cycles - last) & S64_MAX``; bit 62 set means negative
    motion and gives 0; else ``delta * mult`` (wraps);
  - ``x86-6.10`` (6.10+, "x86/vdso: Make delta calculation overflow safe"):
    ``delta = cycles - last``; above ``max_cycles`` either negative motion
    (bit 62: return ``base >> shift``) or the exact
    ``mul_u64_u32_add_u64_shr(delta & S64_MAX, ...)``.

The reader is exposed at two levels so a simulator can interleave a writer:
:func:`vdso_read_begin` / :func:`do_hres_attempt` / :func:`vdso_read_retry`
are the pieces of one pass of the ``do { } while (vdso_read_retry())`` loop,
and :func:`do_hres` runs the loop, calling an optional hook at each point
where a concurrent writer could act.

Not modelled: time namespaces (``VDSO_CLOCKMODE_TIMENS``, ``do_hres_timens``),
``hrtimer_res``/``clock_getres``, the timezone fields and auxiliary clocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, TypeVar

from tsclab.arith import (
    NSEC_PER_SEC,
    S32_MAX,
    S64_MAX,
    U64_MAX,
    mul_u64_u32_add_u64_shr,
    mul_u64_u64_shr,
    s64,
    u32,
    u64,
)
from tsclab.clocksource import Clocksource, pvclock_scale_delta
from tsclab.kernel.profiles import KernelProfile, VdsoDelta
from tsclab.kernel.tk_state import Timekeeper

# --- constants -------------------------------------------------------------

# enum vdso_clock_mode (include/vdso/clocksource.h) with x86's
# VDSO_ARCH_CLOCKMODES (arch/x86/include/asm/vdso/clocksource.h).
VDSO_CLOCKMODE_NONE = 0
VDSO_CLOCKMODE_TSC = 1
VDSO_CLOCKMODE_PVCLOCK = 2
VDSO_CLOCKMODE_HVCLOCK = 3
VDSO_CLOCKMODE_TIMENS = S32_MAX  # INT_MAX; not modelled beyond the constant

# include/uapi/linux/time.h
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME_ID = 2
CLOCK_THREAD_CPUTIME_ID = 3
CLOCK_MONOTONIC_RAW = 4
CLOCK_REALTIME_COARSE = 5
CLOCK_MONOTONIC_COARSE = 6
CLOCK_BOOTTIME = 7
CLOCK_REALTIME_ALARM = 8
CLOCK_BOOTTIME_ALARM = 9
CLOCK_TAI = 11
MAX_CLOCKS = 16

# include/vdso/datapage.h
VDSO_BASES = CLOCK_TAI + 1
VDSO_HRES = (1 << CLOCK_REALTIME) | (1 << CLOCK_MONOTONIC) | (1 << CLOCK_BOOTTIME) | (1 << CLOCK_TAI)
VDSO_COARSE = (1 << CLOCK_REALTIME_COARSE) | (1 << CLOCK_MONOTONIC_COARSE)
VDSO_RAW = 1 << CLOCK_MONOTONIC_RAW
CS_HRES_COARSE = 0
CS_RAW = 1
CS_BASES = CS_RAW + 1

# arch/x86/include/asm/pvclock-abi.h
PVCLOCK_TSC_STABLE_BIT = 1 << 0
PVCLOCK_GUEST_STOPPED = 1 << 1

_BIT62 = 1 << 62
_T = TypeVar("_T")


# --- the data page ---------------------------------------------------------


@dataclass(slots=True)
class VdsoClock:
    """One per-clock record: ``struct vdso_data`` (<6.15) / ``struct vdso_clock``.

    ``basetime`` maps a clock id to ``struct vdso_timestamp`` (u64 sec, u64
    nsec).  For the high-resolution clocks (REALTIME, MONOTONIC, BOOTTIME,
    TAI, MONOTONIC_RAW) ``nsec`` is *shifted* nanoseconds (ns << shift); for
    the coarse clocks it is plain nanoseconds.  ``max_cycles`` exists only
    with ``CONFIG_GENERIC_VDSO_OVERFLOW_PROTECT`` (x86 from 6.10); without
    it the field is never written and stays 0 here.
    """

    seq: int = 0  # u32
    clock_mode: int = VDSO_CLOCKMODE_NONE  # s32
    cycle_last: int = 0  # u64
    max_cycles: int = 0  # u64
    mask: int = 0  # u64
    mult: int = 0  # u32
    shift: int = 0  # u32
    basetime: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class PvclockVcpuTimeInfo:
    """``struct pvclock_vcpu_time_info`` of vCPU 0, as mapped into the vvar area."""

    version: int = 0  # u32
    tsc_timestamp: int = 0  # u64
    system_time: int = 0  # u64
    tsc_to_system_mul: int = 0  # u32
    tsc_shift: int = 0  # s8
    flags: int = PVCLOCK_TSC_STABLE_BIT  # u8


@dataclass(slots=True)
class HvclockPage:
    """The Hyper-V reference TSC page (the fields ``hv_read_counter_page_tsc()`` uses).

    ``tsc_sequence == 0`` marks the page invalid.
    """

    tsc_sequence: int = 1  # u32
    tsc_scale: int = 0  # u64, 64.64 fixed point
    tsc_offset: int = 0  # s64


@dataclass(slots=True)
class VdsoData:
    """The vvar data: ``CS_BASES`` clock records plus the paravirt clock pages."""

    clocks: list[VdsoClock] = field(default_factory=lambda: [VdsoClock() for _ in range(CS_BASES)])
    pvclock_page: PvclockVcpuTimeInfo | None = None
    hvclock_page: HvclockPage | None = None

    @property
    def hres(self) -> VdsoClock:
        """``vdata[CS_HRES_COARSE]``."""
        return self.clocks[CS_HRES_COARSE]

    @property
    def raw(self) -> VdsoClock:
        """``vdata[CS_RAW]``."""
        return self.clocks[CS_RAW]


# --- writer ----------------------------------------------------------------


def vdso_write_begin(vdata: VdsoData) -> None:
    """``vdso_write_begin()`` (include/vdso/helpers.h, 5.10+): both seqs go odd.

    Increments ``seq`` of ``CS_HRES_COARSE`` then ``CS_RAW`` (u32).
    """
    for vc in vdata.clocks:
        vc.seq = u32(vc.seq + 1)


def vdso_write_end(vdata: VdsoData) -> None:
    """``vdso_write_end()`` (include/vdso/helpers.h, 5.10+): both seqs go even."""
    for vc in vdata.clocks:
        vc.seq = u32(vc.seq + 1)


def _normalize_shifted(sec: int, nsec: int, shift: int) -> tuple[int, int]:
    """The ``while (nsec >= NSEC_PER_SEC << shift)`` loops of ``update_vdso_data()``.

    Subtracting until below one (shifted) second is the same as a floor
    division here, since both operands are non-negative u64 values.
    """
    one = u64(NSEC_PER_SEC << shift)
    carry, nsec = divmod(nsec, one)
    return u64(sec + carry), nsec


def update_vdso_data(tk: Timekeeper, vdata: VdsoData, profile: KernelProfile) -> None:
    """``update_vdso_data()`` (5.10+) / ``update_vdso_time_data()`` (later trees).

    kernel/time/vsyscall.c: the high-resolution part of the update, skipped
    by the caller when the clock mode is ``VDSO_CLOCKMODE_NONE``.  Copies
    the conversion parameters of ``tkr_mono``/``tkr_raw`` (``max_cycles``
    only under ``CONFIG_GENERIC_VDSO_OVERFLOW_PROTECT``, i.e. x86 from 6.10)
    and writes the shifted-ns basetimes of MONOTONIC, BOOTTIME,
    MONOTONIC_RAW and TAI.
    """
    hres, raw = vdata.hres, vdata.raw
    for vc, tkr in ((hres, tk.tkr_mono), (raw, tk.tkr_raw)):
        vc.cycle_last = u64(tkr.cycle_last)
        if profile.vdso_overflow_protect:
            vc.max_cycles = u64(tkr.clock.max_cycles)
        vc.mask = u64(tkr.mask)
        vc.mult = u32(tkr.mult)
        vc.shift = u32(tkr.shift)

    shift = tk.tkr_mono.shift
    wtm = tk.wall_to_monotonic
    # CLOCK_MONOTONIC: xtime + wall_to_monotonic, nsec kept shifted.
    sec = u64(tk.xtime_sec + wtm.sec)
    nsec = u64(tk.tkr_mono.xtime_nsec + u64(u64(wtm.nsec) << shift))
    sec, nsec = _normalize_shifted(sec, nsec, shift)
    hres.basetime[CLOCK_MONOTONIC] = (sec, nsec)

    # CLOCK_BOOTTIME: the normalised MONOTONIC value plus monotonic_to_boot.
    mtb = tk.monotonic_to_boot
    sec = u64(sec + mtb.sec)
    nsec = u64(nsec + u64(u64(mtb.nsec) << shift))
    hres.basetime[CLOCK_BOOTTIME] = _normalize_shifted(sec, nsec, shift)

    # CLOCK_MONOTONIC_RAW lives in the CS_RAW record.
    raw.basetime[CLOCK_MONOTONIC_RAW] = (u64(tk.raw_sec), u64(tk.tkr_raw.xtime_nsec))

    # CLOCK_TAI: (s64)tai_offset added to the realtime seconds.
    hres.basetime[CLOCK_TAI] = (u64(tk.xtime_sec + tk.tai_offset), u64(tk.tkr_mono.xtime_nsec))


def update_vsyscall_data(tk: Timekeeper, vdata: VdsoData, clock_mode: int, profile: KernelProfile) -> None:
    """The body of ``update_vsyscall()`` between ``vdso_write_begin/end`` (5.10+).

    kernel/time/vsyscall.c: writes ``clock_mode`` into both records (the
    kernel takes it from ``tk->tkr_mono.clock->vdso_clock_mode``; here it is
    an argument), CLOCK_REALTIME (shifted ns, written even in mode NONE
    since 5.10 because ``time()`` needs it), REALTIME_COARSE and
    MONOTONIC_COARSE (plain ns, normalised with ``__iter_div_u64_rem``),
    then the high-resolution part unless the mode is NONE.
    """
    hres = vdata.hres
    for vc in vdata.clocks:
        vc.clock_mode = clock_mode

    shift = tk.tkr_mono.shift
    xtime_nsec = u64(tk.tkr_mono.xtime_nsec)
    hres.basetime[CLOCK_REALTIME] = (u64(tk.xtime_sec), xtime_nsec)
    hres.basetime[CLOCK_REALTIME_COARSE] = (u64(tk.xtime_sec), xtime_nsec >> shift)

    wtm = tk.wall_to_monotonic
    sec = u64(tk.xtime_sec + wtm.sec)
    nsec = u64((xtime_nsec >> shift) + u64(wtm.nsec))
    quotient, rem, _ = iter_div_u64_rem(nsec, NSEC_PER_SEC)
    hres.basetime[CLOCK_MONOTONIC_COARSE] = (u64(sec + quotient), rem)

    if clock_mode != VDSO_CLOCKMODE_NONE:
        update_vdso_data(tk, vdata, profile)


def update_vsyscall(tk: Timekeeper, vdata: VdsoData, clock_mode: int, profile: KernelProfile) -> None:
    """``update_vsyscall(tk)`` (kernel/time/vsyscall.c, 5.10 to the 2026 trees).

    ``vdso_write_begin()``, :func:`update_vsyscall_data`,
    ``vdso_write_end()``.  To interleave a reader, call the three parts
    separately.
    """
    vdso_write_begin(vdata)
    update_vsyscall_data(tk, vdata, clock_mode, profile)
    vdso_write_end(vdata)


# --- arithmetic helpers ----------------------------------------------------


def iter_div_u64_rem(dividend: int, divisor: int) -> tuple[int, int, int]:
    """``__iter_div_u64_rem(dividend, divisor, &rem)`` (include/vdso/math64.h).

    Divides by repeated subtraction and returns a **u32** quotient.  Here
    the result is computed directly; the third value is the number of loop
    iterations the C code runs (the untruncated quotient), which is what a
    long pause costs the vDSO reader.  Returns (u32 quotient, remainder,
    iterations).
    """
    dividend, divisor = u64(dividend), u32(divisor)
    if divisor == 0:
        raise ZeroDivisionError("__iter_div_u64_rem by zero (the C loop never ends)")
    loops, rem = divmod(dividend, divisor)
    return u32(loops), rem, loops


# --- x86 counter reads -----------------------------------------------------


def pvclock_read_cycles(pvti: PvclockVcpuTimeInfo, tsc: int) -> int:
    """``__pvclock_read_cycles(src, tsc)`` (arch/x86/include/asm/pvclock.h)."""
    delta = u64(tsc - pvti.tsc_timestamp)
    return u64(pvti.system_time + pvclock_scale_delta(delta, pvti.tsc_to_system_mul, pvti.tsc_shift))


def vread_pvclock(pvti: PvclockVcpuTimeInfo, tsc: int, variant: VdsoDelta) -> int:
    """``vread_pvclock()`` (arch/x86/include/asm/vdso/gettimeofday.h, 5.10+).

    ``U64_MAX`` (invalid) unless vCPU 0's pvti has ``PVCLOCK_TSC_STABLE_BIT``;
    from 6.5 a valid result is masked with ``S64_MAX``.  The pvti version
    retry loop is assumed to succeed on its first pass.
    """
    if not pvti.flags & PVCLOCK_TSC_STABLE_BIT:
        return U64_MAX
    ret = pvclock_read_cycles(pvti, tsc)
    return ret if variant == "x86-5.3" else ret & S64_MAX


def vread_hvclock(page: HvclockPage, tsc: int, variant: VdsoDelta) -> int:
    """``vread_hvclock()`` via ``hv_read_tsc_page()`` (arch/x86, 5.10+; page layout unverified).

    ``((tsc * scale) >> 64) + offset``; ``U64_MAX`` when the page is
    invalid (sequence 0).  From 6.5 a valid result is masked with
    ``S64_MAX``.  The page's sequence retry loop is not modelled.
    """
    if page.tsc_sequence == 0:
        return U64_MAX
    ret = u64(mul_u64_u64_shr(tsc, page.tsc_scale, 64) + page.tsc_offset)
    return ret if variant == "x86-5.3" else ret & S64_MAX


def arch_get_hw_counter(
    vdata: VdsoData, clock_mode: int, read_counter: Callable[[], int], variant: VdsoDelta
) -> int:
    """``__arch_get_hw_counter(clock_mode, vd)`` (x86, 5.10 to the 2026 trees).

    ``read_counter`` is ``rdtsc_ordered()``; it is called only for the modes
    that read the TSC.  TSC: the raw value, ``& S64_MAX`` from 6.5.
    PVCLOCK/HVCLOCK: through the vvar pages (U64_MAX if a page is missing
    in the model, i.e. the mapping would not exist).  Any other mode
    (including NONE): ``U64_MAX``.
    """
    if clock_mode == VDSO_CLOCKMODE_TSC:
        tsc = u64(read_counter())
        return tsc if variant == "x86-5.3" else tsc & S64_MAX
    if clock_mode == VDSO_CLOCKMODE_PVCLOCK and vdata.pvclock_page is not None:
        return vread_pvclock(vdata.pvclock_page, u64(read_counter()), variant)
    if clock_mode == VDSO_CLOCKMODE_HVCLOCK and vdata.hvclock_page is not None:
        return vread_hvclock(vdata.hvclock_page, u64(read_counter()), variant)
    return U64_MAX


def vdso_cycles_ok(cycles: int) -> bool:
    """``arch_vdso_cycles_ok()`` (x86, 5.10 to the 2026 trees): ``(s64)cycles >= 0``."""
    return s64(cycles) >= 0


def vdso_clocksource_ok(vc: VdsoClock) -> bool:
    """``arch_vdso_clocksource_ok()`` (x86, 5.10 to the 2026 trees): always true.

    x86 overrides the generic ``clock_mode != NONE`` test; mode NONE is
    caught instead by ``__arch_get_hw_counter()`` returning ``U64_MAX``.
    """
    del vc
    return True


def vdso_calc_ns_checked(vc: VdsoClock, cycles: int, base: int, variant: VdsoDelta) -> tuple[int, int]:
    """Nanoseconds (shifted base plus delta, shifted down), per x86 version,
    and what a wrapping multiply cost: (ns, exact ns - ns), the second 0
    unless ``delta * mult + base`` passed 2**64.

    * ``x86-5.3``: ``vdso_calc_delta()`` 5.3-6.4, then
      ``vdso_shift_ns(base + delta_ns, shift)`` in ``do_hres()``;
    * ``x86-6.5``: ``vdso_calc_delta()`` 6.5-6.9 (PeterZ's masking fix);
    * ``x86-6.10``: ``vdso_calc_ns()`` 6.10+ (Adrian Hunter's overflow
      protection), which also folds in the shift and never wraps.
    """
    last, mult, shift = vc.cycle_last, vc.mult, vc.shift
    if variant == "x86-6.10":
        delta = u64(cycles - last)
        if delta > vc.max_cycles:
            if delta & _BIT62:
                return u64(base) >> shift, 0
            return mul_u64_u32_add_u64_shr(delta & S64_MAX, mult, base, shift), 0
        return u64(u64(delta * mult) + base) >> shift, 0
    if variant == "x86-5.3":
        delta = cycles - last if cycles > last else 0
    else:
        delta = u64(cycles - last) & S64_MAX
        if delta & _BIT62:
            delta = 0
    # u64(base + u64(delta * mult)): both the product and the sum may wrap.
    total = delta * mult + u64(base)
    ns = u64(total) >> shift
    return ns, (total >> shift) - ns


def vdso_calc_ns(vc: VdsoClock, cycles: int, base: int, variant: VdsoDelta) -> int:
    """The nanoseconds of :func:`vdso_calc_ns_checked`."""
    return vdso_calc_ns_checked(vc, cycles, base, variant)[0]


def vdso_clock_mode_for(clock: Clocksource) -> int:
    """``cs->vdso_clock_mode`` of the x86 clocksources a guest uses.

    ``tsc`` and ``tsc-early`` (arch/x86/kernel/tsc.c): TSC; ``kvm-clock``
    (arch/x86/kernel/kvmclock.c): PVCLOCK, which the guest sets only when
    the host offers ``PVCLOCK_TSC_STABLE_BIT``; every other clocksource
    (hpet, acpi_pm, ...): NONE, so every vDSO read falls back to the syscall.
    """
    return {
        "tsc": VDSO_CLOCKMODE_TSC,
        "tsc-early": VDSO_CLOCKMODE_TSC,
        "kvm-clock": VDSO_CLOCKMODE_PVCLOCK,
    }.get(clock.name, VDSO_CLOCKMODE_NONE)


# --- reader ----------------------------------------------------------------


class FallbackReason(Enum):
    """Why the vDSO gave up and ``clock_gettime()`` fell back to the syscall."""

    # x86: __arch_get_hw_counter() has no reader for the mode and returns
    # U64_MAX, which vdso_cycles_ok() rejects (x86's vdso_clocksource_ok()
    # is always true, so this is the path mode NONE takes).
    CLOCK_MODE_NONE = "clock-mode-none"
    # The mode's reader returned U64_MAX or another value with the sign bit
    # set: pvclock without PVCLOCK_TSC_STABLE_BIT, an invalid Hyper-V page,
    # or (before 6.5) a raw TSC value >= 2**63.
    INVALID_CYCLES = "invalid-cycles"
    # A clock id the vDSO does not handle (CPU-time clocks, alarms, ...).
    UNSUPPORTED_CLOCK = "unsupported-clock"


@dataclass(frozen=True, slots=True)
class VdsoTime:
    """A vDSO answer: ``struct __kernel_timespec`` plus what it cost."""

    sec: int  # tv_sec (s64)
    nsec: int  # tv_nsec
    retries: int = 0  # passes repeated because vdso_read_retry() saw a new seq
    iter_div_loops: int = 0  # iterations of __iter_div_u64_rem()
    spins: int = 0  # cpu_relax() spins waiting for an odd seq to go even


@dataclass(frozen=True, slots=True)
class VdsoFallback:
    """The vDSO returned failure: the caller makes the syscall."""

    reason: FallbackReason
    retries: int = 0
    spins: int = 0


VdsoResult = VdsoTime | VdsoFallback

HookPoint = Literal["spin", "begin", "retry"]
Hook = Callable[[HookPoint], None]


class VdsoLivelockError(RuntimeError):
    """The model's reader spun or retried past its limit (no writer ever finished)."""


@dataclass(frozen=True, slots=True)
class HresSample:
    """What one pass of the ``do_hres()`` loop computed: u64 sec, u64 ns."""

    sec: int
    ns: int


def record_for(clock_id: int) -> int:
    """The record a high-resolution clock reads: ``CS_RAW`` for MONOTONIC_RAW."""
    return CS_RAW if clock_id == CLOCK_MONOTONIC_RAW else CS_HRES_COARSE


def vdso_read_begin(vc: VdsoClock) -> int | None:
    """One look at ``seq`` in ``vdso_read_begin()``: the seq if even, else None.

    The kernel spins (``cpu_relax()``) while the seq is odd; a caller of
    this step API decides what happens during the spin.
    """
    seq = vc.seq
    return None if seq & 1 else seq


def vdso_read_retry(vc: VdsoClock, start: int) -> bool:
    """``vdso_read_retry(vd, start)``: true if the seq moved since ``start``."""
    return vc.seq != start


def do_hres_attempt(
    vdata: VdsoData,
    clock_id: int,
    read_counter: Callable[[], int],
    profile: KernelProfile,
) -> HresSample | VdsoFallback:
    """One pass of the ``do_hres()`` loop body, after the seq was taken.

    lib/vdso/gettimeofday.c 5.10+ (``vdso_get_timestamp()`` in later trees):
    ``vdso_clocksource_ok()``, ``__arch_get_hw_counter()``,
    ``vdso_cycles_ok()``, then the delta math on ``basetime[clock_id]``.
    The counter is read before the record's fields, as in C.
    """
    vc = vdata.clocks[record_for(clock_id)]
    variant = profile.vdso_delta
    if not vdso_clocksource_ok(vc):
        return VdsoFallback(FallbackReason.CLOCK_MODE_NONE)
    mode = vc.clock_mode
    cycles = arch_get_hw_counter(vdata, mode, read_counter, variant)
    if not vdso_cycles_ok(cycles):
        known = mode in (VDSO_CLOCKMODE_TSC, VDSO_CLOCKMODE_PVCLOCK, VDSO_CLOCKMODE_HVCLOCK)
        return VdsoFallback(FallbackReason.INVALID_CYCLES if known else FallbackReason.CLOCK_MODE_NONE)
    base_sec, base_nsec = vc.basetime.get(clock_id, (0, 0))
    ns = vdso_calc_ns(vc, cycles, base_nsec, variant)
    return HresSample(sec=base_sec, ns=ns)


def vdso_set_timespec(sec: int, ns: int) -> tuple[int, int, int]:
    """``ts->tv_sec = sec + __iter_div_u64_rem(ns, NSEC_PER_SEC, &ns)`` (5.10+).

    Done outside the seq loop.  Returns (tv_sec as s64, tv_nsec, loops).
    """
    quotient, rem, loops = iter_div_u64_rem(ns, NSEC_PER_SEC)
    return s64(u64(sec + quotient)), rem, loops


def _begin(vc: VdsoClock, hook: Hook | None, max_spins: int) -> tuple[int, int]:
    spins = 0
    while (seq := vdso_read_begin(vc)) is None:
        if spins >= max_spins:
            raise VdsoLivelockError(f"vDSO seq stayed odd for {max_spins} spins")
        spins += 1
        if hook is not None:
            hook("spin")
    return seq, spins


def _seq_read_loop(
    vc: VdsoClock,
    attempt: Callable[[], _T | VdsoFallback],
    hook: Hook | None,
    max_spins: int,
    max_retries: int,
) -> tuple[_T | VdsoFallback, int, int]:
    """The ``do { seq = vdso_read_begin(); ... } while (vdso_read_retry())`` loop.

    Shared by ``do_hres()`` and ``do_coarse()``: spin while the seq is odd,
    run one ``attempt``, retry if the seq moved.  A fallback ends the loop
    at once, as the C ``return false`` does.  Returns (result, retries,
    spins); past the limits raises :class:`VdsoLivelockError`.
    """
    retries = spins = 0
    while True:
        seq, spun = _begin(vc, hook, max_spins)
        spins += spun
        if hook is not None:
            hook("begin")
        result = attempt()
        if isinstance(result, VdsoFallback):
            return result, retries, spins
        if hook is not None:
            hook("retry")
        if not vdso_read_retry(vc, seq):
            return result, retries, spins
        retries += 1
        if retries > max_retries:
            raise VdsoLivelockError(f"vDSO reader retried {max_retries} times")


def do_hres(
    vdata: VdsoData,
    clock_id: int,
    read_counter: Callable[[], int],
    profile: KernelProfile,
    *,
    hook: Hook | None = None,
    max_spins: int = 1000,
    max_retries: int = 1000,
) -> VdsoResult:
    """``do_hres()`` (lib/vdso/gettimeofday.c, 5.10 to the 2026 trees), x86 hooks.

    The ``do { seq = vdso_read_begin(); ... } while (vdso_read_retry())``
    loop, then ``__iter_div_u64_rem`` outside it.  ``hook`` (if given) is
    called with ``"spin"`` on every spin over an odd seq, ``"begin"`` right
    after a seq snapshot was taken and ``"retry"`` just before the retry
    check: the points where a concurrent writer can change the page.
    ``read_counter`` may have side effects too (it runs inside the pass).
    A spin or retry count beyond the limits raises :class:`VdsoLivelockError`.
    """
    vc = vdata.clocks[record_for(clock_id)]
    sample, retries, spins = _seq_read_loop(
        vc, lambda: do_hres_attempt(vdata, clock_id, read_counter, profile), hook, max_spins, max_retries
    )
    if isinstance(sample, VdsoFallback):
        return VdsoFallback(sample.reason, retries=retries, spins=spins)
    sec, nsec, loops = vdso_set_timespec(sample.sec, sample.ns)
    return VdsoTime(sec=sec, nsec=nsec, retries=retries, iter_div_loops=loops, spins=spins)


def do_coarse(
    vdata: VdsoData,
    clock_id: int,
    *,
    hook: Hook | None = None,
    max_spins: int = 1000,
    max_retries: int = 1000,
) -> VdsoTime:
    """``do_coarse()`` (lib/vdso/gettimeofday.c, 5.10+): copy the stored timestamp.

    REALTIME_COARSE / MONOTONIC_COARSE from the ``CS_HRES_COARSE`` record;
    no counter read, no division (the writer normalised already).
    """
    vc = vdata.hres
    stamp, retries, spins = _seq_read_loop(
        vc, lambda: vc.basetime.get(clock_id, (0, 0)), hook, max_spins, max_retries
    )
    assert not isinstance(stamp, VdsoFallback)  # copying a timestamp cannot fall back
    sec, nsec = stamp
    return VdsoTime(sec=s64(sec), nsec=nsec, retries=retries, spins=spins)


def vdso_clock_gettime(
    vdata: VdsoData,
    clock_id: int,
    read_counter: Callable[[], int],
    profile: KernelProfile,
    *,
    hook: Hook | None = None,
) -> VdsoResult:
    """``__cvdso_clock_gettime_common()`` (5.10+): dispatch on the clock id.

    HRES clocks read ``CS_HRES_COARSE`` with :func:`do_hres`, the coarse
    clocks use :func:`do_coarse`, MONOTONIC_RAW reads ``CS_RAW``; any other
    id (or one >= ``MAX_CLOCKS``) falls back to the syscall.
    """
    if not 0 <= clock_id < MAX_CLOCKS:
        return VdsoFallback(FallbackReason.UNSUPPORTED_CLOCK)
    msk = 1 << clock_id
    if msk & (VDSO_HRES | VDSO_RAW):
        return do_hres(vdata, clock_id, read_counter, profile, hook=hook)
    if msk & VDSO_COARSE:
        return do_coarse(vdata, clock_id, hook=hook)
    return VdsoFallback(FallbackReason.UNSUPPORTED_CLOCK)
