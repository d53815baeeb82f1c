"""A raw pause of one guest: the counter jumps, the guest is not told.

The story ``tsclab advise`` tells, on one vCPU with a periodic tick:

1. boot at true time 0 (REALTIME = ``epoch``) and tick for ``warmup``;
2. read every clock ``phase`` after the last tick, then stop the guest;
3. the counter keeps running for ``pause``; no tick, no code runs;
4. on resume a busy reader reads every clock before the overdue tick
   runs (``after-resume``), the tick runs ``update_wall_time()``, the
   reader reads again (``after-first-tick``);
5. ticking resumes on the tick grid; the reader reads just before each
   tick (so a clock stuck until an update shows as frozen), until the
   counter has come round once more for counters that can wrap, or for
   ``settle`` otherwise (``steady``).

True time is an integer count of ns; the counter is
``floor(t * freq_hz / 1e9) mod 2**bits`` - no drift, no offset.  Every
guest-side value comes from the kernel model.

Each read is taken twice: through the kernel getters (the syscall) and
through the vDSO, whose data page every timekeeper update rewrites.  Where
the clocksource has no vDSO clock mode (HPET, ACPI PM) every vDSO read
falls back to the syscall, so only the kernel values are kept.  kvm-clock
is modelled on a 1 GHz TSC with the identity pvclock scale
(``kvm_get_time_scale(1e9, 1e9)``), so its vDSO reads the same counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import Clocksource, kvm_get_time_scale
from tsclab.kernel.ntp import ADJ_MAXERROR, ADJ_STATUS, STA_PLL, STA_UNSYNC, NtpState, Timex
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.readers import timekeeping_cycles_to_ns
from tsclab.kernel.timekeeping import AdvanceStats, Timekeeping
from tsclab.kernel.timespec import Timespec64
from tsclab.kernel.vdso import (
    CLOCK_BOOTTIME,
    CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_RAW,
    CLOCK_REALTIME,
    CLOCK_TAI,
    VDSO_CLOCKMODE_PVCLOCK,
    PvclockVcpuTimeInfo,
    VdsoData,
    VdsoFallback,
    arch_get_hw_counter,
    update_vsyscall,
    vdso_calc_ns_checked,
    vdso_clock_gettime,
    vdso_clock_mode_for,
)

DEFAULT_EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z
# The first tick after resume runs second_overflow() once per paused second,
# as the kernel does; past 100 days that is more than 8.6 million calls
# (about 15 s here), so longer pauses are refused rather than left to hang.
MAX_PAUSE_NS = 100 * 86_400 * NSEC_PER_SEC
# CONFIG_HZ on x86 is 100, 250, 300 or 1000; other values in this range
# still give a whole-ns NTP interval and a tractable warm-up.
HZ_RANGE = (10, 10_000)
CLOCKS = ("REALTIME", "MONOTONIC", "BOOTTIME", "MONOTONIC_RAW", "TAI")
_VDSO_CLOCK_IDS = {
    "REALTIME": CLOCK_REALTIME,
    "MONOTONIC": CLOCK_MONOTONIC,
    "BOOTTIME": CLOCK_BOOTTIME,
    "MONOTONIC_RAW": CLOCK_MONOTONIC_RAW,
    "TAI": CLOCK_TAI,
}


@dataclass(frozen=True, slots=True)
class PauseSetup:
    """Everything that defines one raw-pause run."""

    clocksource: Clocksource
    profile: KernelProfile
    pause_ns: int
    phase_ns: int
    # The phase counts from the last tick, or - as a guest's MONOTONIC minus
    # MONOTONIC_COARSE does - from the time of the last update's cycle_last,
    # which lags the tick by what accumulation left over (< one interval).
    phase_from_update: bool = False
    hz: int = 250
    warmup_ns: int = 2 * NSEC_PER_SEC
    settle_ns: int = 2 * NSEC_PER_SEC
    epoch_s: int = DEFAULT_EPOCH_S


@dataclass(frozen=True, slots=True)
class Read:
    """One read of every clock, with true time and the expected values."""

    label: str
    true_ns: int  # true time since boot
    counter: int
    values: dict[str, int]  # clock -> ns as the guest reads it
    expected: dict[str, int]  # clock -> ns had nothing gone wrong (exact, unbounded arithmetic)
    reader_path: str  # the branch the MONOTONIC reader took (ReaderFlags.path)
    overflow_shortfall_ns: int  # exact minus wrapped MONOTONIC reading (0 unless it wrapped)
    vdso: dict[str, int] | None  # clock -> ns through the vDSO; None: it falls back to the syscall
    vdso_overflow_shortfall_ns: int  # the same as overflow_shortfall_ns, for the vDSO's MONOTONIC


@dataclass(slots=True)
class PauseTrace:
    """What the run observed."""

    setup: PauseSetup
    reads: list[Read] = field(default_factory=list)
    first_tick: AdvanceStats | None = None
    maxerror_before_us: int = 0
    maxerror_after_us: int = 0
    unsync_after: bool = False
    steady_reads: list[Read] = field(default_factory=list)


class _Counter:
    """The guest-visible counter as a function of true time."""

    def __init__(self, cs: Clocksource) -> None:
        self.freq_hz = cs.freq_hz
        self.mask = cs.mask
        self.true_ns = 0

    def unwrapped(self, t_ns: int) -> int:
        return t_ns * self.freq_hz // NSEC_PER_SEC

    def read(self) -> int:
        return self.unwrapped(self.true_ns) & self.mask


class _Vdso:
    """The guest's vDSO data page, kept current by the timekeeper's updates."""

    def __init__(self, tkg: Timekeeping, counter: _Counter) -> None:
        self.profile = tkg.profile
        self.counter = counter
        self.mode = vdso_clock_mode_for(tkg.tk.tkr_mono.clock)
        self.data = VdsoData()
        if self.mode == VDSO_CLOCKMODE_PVCLOCK:
            scale = kvm_get_time_scale(NSEC_PER_SEC, NSEC_PER_SEC)
            self.data.pvclock_page = PvclockVcpuTimeInfo(
                tsc_to_system_mul=scale.tsc_to_system_mul, tsc_shift=scale.tsc_shift
            )
        update_vsyscall(tkg.tk, self.data, self.mode, self.profile)
        tkg.update_hooks.append(lambda tk, _action: update_vsyscall(tk, self.data, self.mode, self.profile))

    def read(self) -> tuple[dict[str, int], int] | None:
        """Every clock through the vDSO and the MONOTONIC wrap loss; None on fallback."""
        values: dict[str, int] = {}
        for name, clock_id in _VDSO_CLOCK_IDS.items():
            result = vdso_clock_gettime(self.data, clock_id, self.counter.read, self.profile)
            if isinstance(result, VdsoFallback):
                return None
            values[name] = result.sec * NSEC_PER_SEC + result.nsec
        hres = self.data.hres
        cycles = arch_get_hw_counter(self.data, self.mode, self.counter.read, self.profile.vdso_delta)
        _, loss = vdso_calc_ns_checked(
            hres, cycles, hres.basetime[CLOCK_MONOTONIC][1], self.profile.vdso_delta
        )
        return values, loss


def run_raw_pause(setup: PauseSetup) -> PauseTrace:
    """Run the story above; return every read and the writer's work."""
    cs = setup.clocksource
    counter = _Counter(cs)
    ntp = NtpState(hz=setup.hz)
    tkg = Timekeeping(
        cs,
        setup.profile,
        ntp,
        counter.read,
        hz=setup.hz,
        realtime=Timespec64(setup.epoch_s, 0),
    )
    vdso = _Vdso(tkg, counter)
    tick_ns = NSEC_PER_SEC // setup.hz
    trace = PauseTrace(setup=setup)

    # Warm up on the tick grid.
    t = 0
    while t + tick_ns <= setup.warmup_ns:
        t += tick_ns
        counter.true_ns = t
        tkg.update_wall_time()
    last_tick = t
    # A synchronised NTP daemon has cleared STA_UNSYNC and set a small
    # maxerror (here 10 ms) shortly before the pause.
    real = tkg.ktime_get_real_ts64()
    ntp.adjtimex(Timex(modes=ADJ_STATUS | ADJ_MAXERROR, status=STA_PLL, maxerror=10_000), real.sec, real.nsec)

    # The read just before the pause fixes the reference for "expected".
    counter.true_ns = last_tick
    phase = setup.phase_ns
    if setup.phase_from_update:
        tkr = tkg.tk.tkr_mono
        lag_ns = (((counter.read() - tkr.cycle_last) & tkr.mask) * tkr.mult) >> tkr.shift
        phase = max(phase - lag_ns, 0)
    counter.true_ns = last_tick + phase
    before = _read(tkg, vdso, "before-pause", counter, None)
    trace.reads.append(before)
    trace.maxerror_before_us = ntp.time_maxerror

    # The pause: the counter runs on, the guest does nothing.
    counter.true_ns += setup.pause_ns
    trace.reads.append(_read(tkg, vdso, "after-resume", counter, before))
    trace.first_tick = tkg.update_wall_time()
    trace.maxerror_after_us = ntp.time_maxerror
    trace.unsync_after = bool(ntp.time_status & STA_UNSYNC)
    trace.reads.append(_read(tkg, vdso, "after-first-tick", counter, before))

    # Back on the tick grid: read just before each tick, then tick.
    resume = counter.true_ns
    horizon = resume + setup.settle_ns
    if cs.bits <= 32:
        wrap_ns = -((-(cs.mask + 1) * NSEC_PER_SEC) // cs.freq_hz)
        horizon = resume + wrap_ns + setup.settle_ns
    next_tick = (resume // tick_ns + 1) * tick_ns
    while next_tick <= horizon:
        counter.true_ns = next_tick
        trace.steady_reads.append(_read(tkg, vdso, "tick", counter, before))
        tkg.update_wall_time()
        next_tick += tick_ns
    counter.true_ns = horizon
    trace.reads.append(_read(tkg, vdso, "steady", counter, before))
    return trace


def _read(tkg: Timekeeping, vdso: _Vdso, label: str, counter: _Counter, ref: Read | None) -> Read:
    values = {
        "REALTIME": tkg.ktime_get_real(),
        "MONOTONIC": tkg.ktime_get(),
        "BOOTTIME": tkg.ktime_get_boottime(),
        "MONOTONIC_RAW": tkg.ktime_get_raw(),
        "TAI": tkg.ktime_get_clocktai(),
    }
    now = counter.unwrapped(counter.true_ns)
    if ref is None:
        expected = dict(values)
    else:
        # Unbounded arithmetic from the reference read: what the reading
        # would be with no wrap, no clamp and no overflow.  NTP-steered
        # clocks run at the mult timekeeping_adjust() aims for: NTP's tick
        # length less xtime_remainder, per cycle_interval - the remainder
        # is left out on purpose, so with no NTP frequency correction they
        # run at the registered mult, as MONOTONIC_RAW does.
        tk = tkg.tk
        cycles = now - ref.counter
        target_mult = ((tk.ntp_tick >> tk.ntp_error_shift) - tk.xtime_remainder) // tk.cycle_interval
        steered = (cycles * target_mult) >> tk.tkr_mono.shift
        raw = (cycles * tk.tkr_raw.mult) >> tk.tkr_raw.shift
        expected = {name: ref.values[name] + (raw if name == "MONOTONIC_RAW" else steered) for name in values}
    # The branch the MONOTONIC reader took for this counter value.
    _, flags = timekeeping_cycles_to_ns(tkg.tk.tkr_mono, now & counter.mask, tkg.profile)
    vdso_read = vdso.read()
    vdso_values, vdso_loss = vdso_read if vdso_read is not None else (None, 0)
    return Read(
        label, counter.true_ns, now, values, expected, flags.path, flags.wrap_loss_ns, vdso_values, vdso_loss
    )
