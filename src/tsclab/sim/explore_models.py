"""Three bounded models for the interleaving explorer, each with a bug it must find.

Built from the kernel model where the arithmetic decides the outcome:

* the clocksource is a registered 1 GHz TSC (``clocksource_register_khz``,
  :func:`tsclab.clocksource.register`): one cycle is one nanosecond, mult
  ``2**23``, shift 23, ``max_cycles`` 1 981 102 219 259 (about 33 min); the
  reader's u64 ``delta * mult`` wraps past ``2**41`` cycles (about 36.6 min);
* readers are the real ``timekeeping_cycles_to_ns()`` of
  :mod:`tsclab.kernel.readers`, per profile (wrapping, debug-capping,
  protected), and the real ``ktime_get_fast_ns()`` of
  :mod:`tsclab.kernel.fast_timekeeper`;
* the writer is the real ``timekeeping_advance()``
  (:meth:`Timekeeping.advance_steps`) run on a timekeeper rebuilt from the
  model state (:func:`timekeeping_advance_from`), and the NTP slope change
  is the real ``timekeeping_apply_adjustment()``.

What a model keeps of ``struct timekeeper`` is the slice readers use,
:class:`TkMono`.  NTP is idle (``tick_length`` equals the clock's nominal
interval), so ``ntp_error`` stays 0 and mult does not move across an
update: nothing outside the slice changes what the next update computes
(``tests/sim/test_explore_models.py`` checks this against one continuous
timekeeper).  MONOTONIC equals REALTIME (booted at realtime 0).

Scopes are small on purpose: two or three processes, a handful of reads,
one pause.  :data:`MODELS` names the models the ``tsclab explore`` command
offers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import Any

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import register
from tsclab.kernel.fast_timekeeper import TkFast, fast_tk_latch, ktime_get_fast_ns
from tsclab.kernel.ntp import NtpState
from tsclab.kernel.profiles import KernelProfile, get_profile
from tsclab.kernel.readers import TkReadBase, clocksource_delta, timekeeping_cycles_to_ns
from tsclab.kernel.timekeeping import AdvanceMode, Timekeeping, WriteStep
from tsclab.kernel.timespec import ktime_add_ns
from tsclab.kernel.tk_state import Timekeeper
from tsclab.sim.explore import Action, Model, action

HZ = 250
TSC = register("tsc", 64, freq_khz=1_000_000)
SECOND = NSEC_PER_SEC  # cycles of TSC per second (1 GHz)
HOUR = 3600 * SECOND

VM = "vm"  # the host's run/pause flag: every guest action waits on it


def fmt_ns(ns: int) -> str:
    """Nanoseconds as exact seconds, ``-12.000000345 s``."""
    sign = "-" if ns < 0 else ""
    sec, nsec = divmod(abs(ns), NSEC_PER_SEC)
    return f"{sign}{sec}.{nsec:09d} s"


# --- the timekeeper slice and the real arithmetic on it ----------------------


@dataclass(frozen=True, slots=True)
class TkMono:
    """The reader-visible slice of ``struct timekeeper``: ``tkr_mono`` and ``xtime_sec``.

    ``cycle_last``, ``mult``, ``xtime_nsec`` (shifted ns) and ``base`` are
    what ``timekeeping_get_ns()`` and the fast timekeeper read;
    ``xtime_sec`` is what ``tk_update_ktime_data()`` derives ``base`` from.
    """

    cycle_last: int
    mult: int
    xtime_nsec: int
    xtime_sec: int
    base: int

    @classmethod
    def of(cls, tk: Timekeeper) -> TkMono:
        m = tk.tkr_mono
        return cls(m.cycle_last, m.mult, m.xtime_nsec, tk.xtime_sec, m.base)

    def tkr(self) -> TkReadBase:
        """As a ``struct tk_read_base`` (``base_real = base``: offs_real is 0 here)."""
        return TkReadBase(
            TSC, TSC.mask, self.cycle_last, self.mult, TSC.shift, self.xtime_nsec, self.base, self.base
        )

    def write_into(self, tk: Timekeeper) -> None:
        """Overwrite the slice in a real timekeeper (mono and raw cycle_last alike)."""
        tk.tkr_mono.cycle_last = tk.tkr_raw.cycle_last = self.cycle_last
        tk.tkr_mono.mult = self.mult
        tk.tkr_mono.xtime_nsec = self.xtime_nsec
        tk.xtime_sec = self.xtime_sec
        tk.tkr_mono.base = self.base


def _engine(profile: KernelProfile, counter: int) -> Timekeeping:
    """A fresh timekeeper on :data:`TSC`, booted with the counter at ``counter``."""
    ntp = NtpState.for_kernel(profile.version, hz=HZ)
    return Timekeeping(TSC, profile, ntp, read_counter=lambda: counter, hz=HZ)


@cache
def boot_timekeeper(profile_name: str, counter: int) -> TkMono:
    """``timekeeping_init()`` with the counter at ``counter``: MONOTONIC 0 there."""
    return TkMono.of(_engine(get_profile(profile_name), counter).tk)


@cache
def cycle_interval() -> int:
    """``tk->cycle_interval``: TSC cycles per tick at ``HZ``."""
    return _engine(get_profile("linux-6.10"), 0).tk.cycle_interval


@cache
def timekeeping_advance_from(tk: TkMono, now: int, profile_name: str) -> TkMono | None:
    """``timekeeping_advance(TK_ADV_TICK)`` from ``tk`` with the counter at ``now``.

    The real :meth:`Timekeeping.advance_steps` on a timekeeper rebuilt
    from the slice; returns what it publishes (``tk_core.timekeeper`` after
    ``timekeeping_update()``), or None if it returns early (less than one
    ``cycle_interval`` pending: nothing is published).
    """
    engine = _engine(get_profile(profile_name), tk.cycle_last)
    tk.write_into(engine.tkd.shadow)
    engine.read_counter = lambda: now
    published = False
    for item in engine.advance_steps(AdvanceMode.TICK):
        published = published or item is WriteStep.PUBLISHED
    return TkMono.of(engine.tk) if published else None


def tick_due(tk: TkMono, counter: int, profile: KernelProfile) -> bool:
    """The writer's ``clocksource_delta()`` reaches one ``cycle_interval``."""
    delta = clocksource_delta(counter, tk.cycle_last, TSC.mask, profile.writer_negative, TSC.max_raw_delta)
    return delta >= cycle_interval()


def ktime_read(tk: TkMono, cycles: int, profile: KernelProfile) -> tuple[int, str]:
    """``ktime_get()``'s arithmetic: ``tkr_mono.base + timekeeping_get_ns()``, and the branch taken."""
    ns, flags = timekeeping_cycles_to_ns(tk.tkr(), cycles, profile)
    return ktime_add_ns(tk.base, ns), flags.path


def ktime_exact(tk: TkMono, cycles: int) -> int:
    """What the reading means: the same extrapolation in unbounded integers."""
    delta = (cycles - tk.cycle_last) & TSC.mask
    return tk.base + ((delta * tk.mult + tk.xtime_nsec) >> TSC.shift)


def _read_label(tk: TkMono, cycles: int, value: int, path: str) -> str:
    """``base + timekeeping_get_ns() = <value> [<branch>; delta vs max_cycles]``."""
    delta = (cycles - tk.cycle_last) & TSC.mask
    relation = ">" if delta > TSC.max_cycles else "<="
    return f"base + timekeeping_get_ns() = {fmt_ns(value)} [{path}; delta {delta} {relation} max_cycles]"


# --- 1. NOHZ entry: a spinning reader on the only CPU that can update --------


@dataclass(frozen=True, slots=True)
class NohzState:
    """Model 1: the VM, ``tk_core``, cpu0's wait loop, the pending timekeeping tick.

    ``reader`` is cpu0's place in ``while (ktime_get() < expires)``:
    ``begin``/``clock``/``compute``/``check`` inside one ``ktime_get()``,
    ``out`` once the loop is left; ``tick`` is the pending
    ``update_wall_time()``: ``pending``, ``shadow``, ``odd``,
    ``published``, ``done``.
    """

    paused: bool
    counter: int
    seq: int
    live: TkMono
    shadow: TkMono
    reader: str
    reader_seq: int
    cycles: int
    now: int
    tick: str


def _nohz_reader_actions(s: NohzState, profile: KernelProfile, expires: int) -> list[Action[NohzState]]:
    """cpu0 in ``tick_nohz_idle_enter()`` with interrupts off, spinning on ``ktime_get()``.

    One ``ktime_get()`` (kernel/time/timekeeping.c): ``read_seqcount_begin``
    (spins while the sequence is odd: modelled as not enabled),
    ``tk_clock_read()``, ``base + timekeeping_get_ns()``,
    ``read_seqcount_retry``; then the caller's test against ``expires``.
    """
    cpu = "cpu0"
    if s.reader == "begin" and not s.seq & 1:
        nxt = replace(s, reader="clock", reader_seq=s.seq)
        return [action(cpu, "ktime_get: read_seqcount_begin(&tk_core.seq)", nxt, reads={VM, "seq"})]
    if s.reader == "clock":
        nxt = replace(s, reader="compute", cycles=s.counter)
        return [action(cpu, f"ktime_get: tk_clock_read() = {s.counter}", nxt, reads={VM, "counter"})]
    if s.reader == "compute":
        now, path = ktime_read(s.live, s.cycles, profile)
        label = "ktime_get: " + _read_label(s.live, s.cycles, now, path)
        return [action(cpu, label, replace(s, reader="check", now=now), reads={VM, "tk"})]
    if s.reader == "check":
        again = replace(s, reader="begin", reader_seq=0, cycles=0, now=0)
        if s.seq != s.reader_seq:
            label = "ktime_get: read_seqcount_retry() -> retry"
        elif s.now < expires:
            label = f"ktime_get() = {fmt_ns(s.now)} < expires {fmt_ns(expires)}: cpu_relax(), loop"
        else:
            label = f"ktime_get() = {fmt_ns(s.now)} >= expires: leave the loop, interrupts on"
            again = replace(again, reader="out")
        return [action(cpu, label, again, reads={VM, "seq"})]
    return []


def _tick_actions(s: NohzState, cpu: str, profile: KernelProfile) -> list[Action[NohzState]]:
    """The pending tick on ``tick_do_timer_cpu``: ``update_wall_time()`` -> ``timekeeping_advance()``.

    Steps as :meth:`Timekeeping.advance_steps` yields them: counter read and
    shadow update under ``tk_core.lock``, ``write_seqcount_begin``, the
    live timekeeper replaced, ``write_seqcount_end``.
    """
    if s.tick == "pending":
        shadow = timekeeping_advance_from(s.shadow, s.counter, profile.name)
        if shadow is None:
            label = "update_wall_time: less than one interval, nothing to do"
            return [action(cpu, label, replace(s, tick="done"), reads={VM, "counter"})]
        label = (
            f"update_wall_time: timekeeping_advance() at {s.counter}: shadow cycle_last {shadow.cycle_last}"
        )
        return [action(cpu, label, replace(s, tick="shadow", shadow=shadow), reads={VM, "counter"})]
    if s.tick == "shadow":
        nxt = replace(s, tick="odd", seq=s.seq + 1)
        return [action(cpu, "write_seqcount_begin(&tk_core.seq)", nxt, reads={VM}, writes={"seq"})]
    if s.tick == "odd":
        nxt = replace(s, tick="published", live=s.shadow)
        return [action(cpu, "tk_core.timekeeper = shadow_timekeeper", nxt, reads={VM}, writes={"tk"})]
    if s.tick == "published":
        nxt = replace(s, tick="done", seq=s.seq + 1)
        return [action(cpu, "write_seqcount_end(&tk_core.seq)", nxt, reads={VM}, writes={"seq"})]
    return []


def nohz_reader_livelock(
    profile_name: str = "linux-6.1-debug",
    *,
    reader_on_update_cpu: bool = True,
    pause_cycles: int = 2 * HOUR,
    expires: int = HOUR,
) -> Model[NohzState]:
    """tglx, 2020-12-10: "Hint: NOHZ entry path. That would simply livelock".

    cpu0 entered ``tick_nohz_idle_enter()`` (interrupts off) and waits,
    as a caller spinning "until timekeeping catches up" would, in
    ``while (ktime_get() < expires) cpu_relax();`` for a timer ``expires``
    (1 h after boot).  The VM is then paused for ``pause_cycles`` (2 h) of
    TSC.  The reader has a delta limit: with ``linux-6.1-debug`` it is
    ``CONFIG_DEBUG_TIMEKEEPING``'s ``timekeeping_get_delta()`` (4.1-6.9),
    which caps ``delta`` at ``max_cycles``, so ``ktime_get()`` stands
    still at ``cycle_last + max_cycles`` (1981 s) until an update moves
    ``cycle_last`` - and the only update is the tick of
    ``tick_do_timer_cpu``.

    ``reader_on_update_cpu=True``: cpu0 is ``tick_do_timer_cpu``; its tick
    is pending but masked until the loop ends, which it never does:
    ``livelock:cpu0``.  False: cpu1 holds the duty and updates; the
    reader's next pass sees 7200 s and leaves.  A ``linux-6.10`` reader
    takes the 128-bit slow path and leaves without any update; a pre-6.10
    wrapping reader (``linux-6.1``) livelocks as well for this ``expires``:
    its reading stays below ``base + 2**41`` ns (2199 s) whatever the
    counter does.

    Model boundaries: the counter stays at its post-pause value while the
    reader spins (once ``delta > max_cycles`` the capped read does not
    depend on it); the tick updates once.
    """
    profile = get_profile(profile_name)
    tick_cpu = "cpu0" if reader_on_update_cpu else "cpu1"
    boot = boot_timekeeper(profile_name, 0)
    initial = NohzState(
        paused=True,
        counter=1_000_000,  # the pause hit 1 ms after boot
        seq=0,
        live=boot,
        shadow=boot,
        reader="begin",
        reader_seq=0,
        cycles=0,
        now=0,
        tick="pending",
    )

    def actions(s: NohzState) -> list[Action[NohzState]]:
        if s.paused:
            label = f"resume after {fmt_ns(pause_cycles)}: counter += {pause_cycles}"
            nxt = replace(s, paused=False, counter=s.counter + pause_cycles)
            return [action("host", label, nxt, writes={VM, "counter"})]
        out = _nohz_reader_actions(s, profile, expires)
        # cpu0's interrupts are off inside the loop: its tick waits for "out".
        if tick_cpu == "cpu1" or s.reader == "out":
            out += _tick_actions(s, tick_cpu, profile)
        return out

    def done(s: NohzState, process: str) -> bool:
        if process == "host":
            return not s.paused
        tick_done = s.tick == "done" or process != tick_cpu
        return tick_done and (process != "cpu0" or s.reader == "out")

    def describe(s: NohzState) -> str:
        return (
            f"counter={s.counter} live.cycle_last={s.live.cycle_last} seq={s.seq} "
            f"cpu0={s.reader} tick({tick_cpu})={s.tick} expires={fmt_ns(expires)}"
        )

    variant = "livelock" if reader_on_update_cpu else "no-livelock"
    return Model(
        name=f"nohz-{variant} ({profile_name})",
        initial=initial,
        actions=actions,
        processes=("cpu0", "cpu1", "host"),
        done=done,
        describe=describe,
    )


# --- 2. a pause inside the timekeeper's write section ------------------------


@dataclass(frozen=True, slots=True)
class WriteSectionState:
    """Model 2: VM run state, ``tk_core``, the writer on vCPU0, the reader on vCPU1.

    ``host``: ``running`` (may still pause), ``paused``, ``resumed``.
    ``held``: vCPU1 does not run until the first update after the resume.
    ``writer``: ``idle``, ``read`` (counter read under ``tk_core.lock``),
    ``shadow``, ``odd``, ``published``.  ``reader``: ``begin``, ``clock``,
    ``compute``, ``retry``; ``reads`` holds each completed ``ktime_get()``
    as (value returned, exact value).
    """

    counter: int
    seq: int
    live: TkMono
    shadow: TkMono
    host: str
    held: bool
    writer: str
    writer_now: int
    reader: str
    reader_seq: int
    cycles: int
    value: int
    exact: int
    reads: tuple[tuple[int, int], ...]


def _writer_actions(s: WriteSectionState, profile: KernelProfile) -> list[Action[WriteSectionState]]:
    """vCPU0's tick: ``timekeeping_advance()`` (5.10-6.13) in the steps of ``advance_steps()``.

    Counter read and shadow update under ``tk_core.lock`` (readers still see
    the old timekeeper), ``write_seqcount_begin``, ``tk_core.timekeeper =
    shadow``, ``write_seqcount_end``.  A tick finding less than one
    ``cycle_interval`` returns early and changes nothing: not modelled.
    """
    w = "writer"
    if s.writer == "idle" and tick_due(s.shadow, s.counter, profile):
        nxt = replace(s, writer="read", writer_now=s.counter)
        label = f"timekeeping_advance: lock tk_core, tk_clock_read() = {s.counter}"
        return [action(w, label, nxt, reads={VM, "counter"})]
    if s.writer == "read":
        shadow = timekeeping_advance_from(s.shadow, s.writer_now, profile.name)
        assert shadow is not None  # a tick is only taken when due
        label = f"timekeeping_advance: shadow accumulated to cycle_last = {shadow.cycle_last}"
        return [action(w, label, replace(s, writer="shadow", shadow=shadow), reads={VM})]
    if s.writer == "shadow":
        nxt = replace(s, writer="odd", seq=s.seq + 1)
        return [action(w, "write_seqcount_begin(&tk_core.seq)", nxt, reads={VM}, writes={"seq"})]
    if s.writer == "odd":
        nxt = replace(s, writer="published", live=s.shadow)
        return [action(w, "tk_core.timekeeper = shadow_timekeeper", nxt, reads={VM}, writes={"tk"})]
    if s.writer == "published":
        label = "write_seqcount_end(&tk_core.seq), unlock" + (": readers released" if s.held else "")
        nxt = replace(s, writer="idle", seq=s.seq + 1, held=False)
        return [action(w, label, nxt, reads={VM, "held"}, writes={"seq", "held"})]
    return []


def _reader_actions(
    s: WriteSectionState, profile: KernelProfile, reads: int
) -> list[Action[WriteSectionState]]:
    """vCPU1's ``ktime_get()`` (kernel/time/timekeeping.c), ``reads`` times.

    ``read_seqcount_begin`` (spins while the sequence is odd: modelled as
    not enabled), ``tk_clock_read()``, ``base + timekeeping_get_ns()`` with
    the profile's reader math, ``read_seqcount_retry``.  While ``held``,
    vCPU1 does not run at all, wherever it stopped.
    """
    r = "reader"
    if s.held:
        return []  # vCPU1 does not run until vCPU0's update has published
    if s.reader == "begin" and len(s.reads) < reads and not s.seq & 1:
        nxt = replace(s, reader="clock", reader_seq=s.seq)
        return [action(r, "read_seqcount_begin(&tk_core.seq)", nxt, reads={VM, "held", "seq"})]
    if s.reader == "clock":
        nxt = replace(s, reader="compute", cycles=s.counter)
        return [action(r, f"tk_clock_read() = {s.counter}", nxt, reads={VM, "held", "counter"})]
    if s.reader == "compute":
        value, path = ktime_read(s.live, s.cycles, profile)
        exact = ktime_exact(s.live, s.cycles)
        label = _read_label(s.live, s.cycles, value, path)
        nxt = replace(s, reader="retry", value=value, exact=exact)
        return [action(r, label, nxt, reads={VM, "held", "tk"})]
    if s.reader == "retry":
        again = replace(s, reader="begin", reader_seq=0, cycles=0, value=0, exact=0)
        if s.seq != s.reader_seq:
            return [action(r, "read_seqcount_retry() -> retry", again, reads={VM, "held", "seq"})]
        label = f"ktime_get() returns {fmt_ns(s.value)}"
        if s.value != s.exact:
            label += f" (exact: {fmt_ns(s.exact)})"
        nxt = replace(again, reads=(*s.reads, (s.value, s.exact)))
        return [action(r, label, nxt, reads={VM, "held", "seq"})]
    return []


def _host_actions(s: WriteSectionState, pause_cycles: int) -> list[Action[WriteSectionState]]:
    """The host stops every vCPU at any point, and resumes ``pause_cycles`` of TSC later.

    On resume, vCPU1 is held until vCPU0's next timekeeping update has
    published (the wake-up order of the nap protocol, DESIGN.md: re-base,
    then read).
    """
    if s.host == "running":
        return [action("host", "pause the VM", replace(s, host="paused"), writes={VM})]
    if s.host == "paused":
        label = f"resume after {fmt_ns(pause_cycles)}: counter += {pause_cycles}, vCPU1 held until an update"
        nxt = replace(s, host="resumed", counter=s.counter + pause_cycles, held=True)
        return [action("host", label, nxt, writes={VM, "counter", "held"})]
    return []


def _reads_exact(s: WriteSectionState) -> bool:
    return all(value == exact for value, exact in s.reads)


def _reads_monotonic(s: WriteSectionState) -> bool:
    return all(a[0] <= b[0] for a, b in zip(s.reads, s.reads[1:], strict=False))


def pause_inside_write_section(
    profile_name: str = "linux-6.1", *, pause_cycles: int = HOUR, reads: int = 2
) -> Model[WriteSectionState]:
    """tglx, 2020-12-10: "not designed to be taken out in the middle of the updates".

    vCPU0 runs the tick's ``timekeeping_advance()`` (one tick due at the
    start), vCPU1 runs ``ktime_get()`` ``reads`` times, and the host can
    pause the VM at any point and resume it ``pause_cycles`` (1 h) of TSC
    later.  After the resume vCPU1 is held until vCPU0's next update has
    published, so in this scope a pause *outside* the write section is
    harmless on every profile: that update reads the post-pause counter and
    re-bases ``cycle_last`` (the tests check it for ``linux-6.1``).  A
    pause *inside* it (after the counter read, before
    ``write_seqcount_end``) makes the update that releases the readers
    publish a ``cycle_last`` from before the pause: readers compute a delta
    of the whole pause from it.

    Properties: ``reader-value-exact`` - every ``ktime_get()`` returns the
    exact extrapolation of the timekeeper it used (no u64 overflow garbage;
    the guarantee ``delta <= max_cycles`` exists to give the fast path);
    ``time-monotonic`` - successive reads never go backwards.

    * ``linux-6.1`` (wrapping reader): ``delta * mult`` wraps past ``2**41``
      cycles; the read loses ``2**41`` ns (2199 s).  ``time-monotonic``
      breaks too for pauses ending just short of a wrap multiple, e.g.
      ``2**41 - 1_000_000`` cycles (the read lands 1 ms *before* the
      previous one).
    * ``linux-6.10`` (protected reader): ``delta > max_cycles`` takes the
      128-bit slow path and the value is exact: no violation.
    """
    profile = get_profile(profile_name)
    boot = boot_timekeeper(profile_name, 0)
    initial = WriteSectionState(
        counter=cycle_interval(),  # one tick since boot: the tick is due
        seq=0,
        live=boot,
        shadow=boot,
        host="running",
        held=False,
        writer="idle",
        writer_now=0,
        reader="begin",
        reader_seq=0,
        cycles=0,
        value=0,
        exact=0,
        reads=(),
    )

    def actions(s: WriteSectionState) -> list[Action[WriteSectionState]]:
        # Host first: among equally short counterexamples, BFS then reports the earliest pause.
        out = _host_actions(s, pause_cycles)
        if s.host != "paused":
            out += _writer_actions(s, profile) + _reader_actions(s, profile, reads)
        return out

    def done(s: WriteSectionState, process: str) -> bool:
        if process == "writer":
            return s.writer == "idle"
        if process == "reader":
            return len(s.reads) == reads
        return s.host != "paused"

    def describe(s: WriteSectionState) -> str:
        reads_text = ", ".join(fmt_ns(value) for value, _ in s.reads)
        return (
            f"counter={s.counter} live.cycle_last={s.live.cycle_last} seq={s.seq} host={s.host} "
            f"held={s.held} writer={s.writer} reads=[{reads_text}]"
        )

    return Model(
        name=f"write-section-pause ({profile_name})",
        initial=initial,
        actions=actions,
        processes=("writer", "reader", "host"),
        done=done,
        properties=(("reader-value-exact", _reads_exact), ("time-monotonic", _reads_monotonic)),
        describe=describe,
    )


# --- 3. the NMI-safe fast timekeeper goes backwards --------------------------


@dataclass(frozen=True, slots=True)
class FastState:
    """Model 3: the counter, ``tk_fast_mono`` (latch and both copies), the writer, the NMI's reads.

    ``writer``: 0 before ``timekeeping_adjust()``, 1 after it, 2-5 after
    each store of ``update_fast_timekeeper()``; ``update`` is the new
    ``tkr_mono``.  ``reads``: (ns, base index) per completed NMI read.
    """

    counter: int
    ticks: int
    latch: int
    base: tuple[TkMono, TkMono]
    update: TkMono | None
    writer: int
    reads: tuple[tuple[int, int], ...]


def _tkf(s: FastState) -> TkFast:
    return TkFast(seq=s.latch, base=[s.base[0].tkr(), s.base[1].tkr()])


def fast_store(s: FastState) -> tuple[str, FastState]:
    """The next store of ``update_fast_timekeeper(tkr, tkf)`` (5.10 to the 2026 trees).

    The four stores of :func:`update_fast_timekeeper_steps`: latch++ (odd:
    readers to ``base[1]``), ``base[0] = tkr``, latch++ (even: readers back
    to ``base[0]``), ``base[1] = base[0]``.
    """
    assert s.update is not None
    tkf = _tkf(s)
    if s.writer in (1, 3):
        fast_tk_latch(tkf)
        target = "base[1]" if tkf.seq & 1 else "base[0]"
        return f"update_fast_timekeeper: latch = {tkf.seq}, readers use {target}", replace(
            s, latch=tkf.seq, writer=s.writer + 1
        )
    if s.writer == 2:
        label = f"update_fast_timekeeper: base[0] = tkr_mono (mult {s.update.mult})"
        return label, replace(s, base=(s.update, s.base[1]), writer=3)
    return "update_fast_timekeeper: base[1] = base[0]", replace(s, base=(s.base[0], s.base[0]), writer=5)


_FAST_STORE_FOOTPRINT = {
    1: ({"latch"}, set()),
    2: ({"base0"}, set()),
    3: ({"latch"}, set()),
    4: ({"base1"}, {"base0"}),
}


def fast_timekeeper_backwards(
    profile_name: str = "linux-6.10",
    *,
    ppm: int = 500,
    clock_step: int = 1_000_000,
    clock_steps: int = 2,
    nmi_reads: int = 2,
) -> Model[FastState]:
    """The NMI-safe fast timekeeper is not monotonic across a slope change (documented).

    A writer lowers ``tkr_mono.mult`` by ``ppm`` (``do_adjtimex()``
    ``ADJ_FREQUENCY`` -> ``timekeeping_advance(TK_ADV_FREQ)`` ->
    ``timekeeping_apply_adjustment()``, which keeps the reading continuous
    at the counter it read), then publishes it through
    ``update_fast_timekeeper()``'s latch.  The counter advances by
    ``clock_step`` (1 ms) at most ``clock_steps`` times; an NMI reads
    ``ktime_get_mono_fast_ns()`` ``nmi_reads`` times, at any point.  A read
    on the old copy after the counter passed the adjustment point
    extrapolates with the old, steeper slope and is ahead of a later read
    on the new copy: ``fast-monotonic`` fails by ``clock_step * ppm`` ns
    (500 ns), as the comment above ``ktime_get_mono_fast_ns()`` warns.
    """
    profile = get_profile(profile_name)
    boot = boot_timekeeper(profile_name, 0)
    engine = _engine(profile, 0)
    adj = -(boot.mult * ppm // 1_000_000)
    initial = FastState(
        counter=2_000_000,  # 2 ms into the tick
        ticks=0,
        latch=0,
        base=(boot, boot),
        update=None,
        writer=0,
        reads=(),
    )

    def adjust(s: FastState) -> Action[FastState]:
        tk = engine.tk.copy()
        s.base[0].write_into(tk)
        offset = s.counter - s.base[0].cycle_last
        engine.timekeeping_apply_adjustment(tk, offset, adj)
        update = TkMono.of(tk)
        label = (
            f"do_adjtimex(ADJ_FREQUENCY {-ppm} ppm): timekeeping_apply_adjustment() at counter {s.counter}: "
            f"mult {boot.mult} -> {update.mult}"
        )
        return action("writer", label, replace(s, update=update, writer=1), reads={"counter"})

    def actions(s: FastState) -> list[Action[FastState]]:
        out: list[Action[FastState]] = []
        if s.writer == 0:
            out.append(adjust(s))
        elif s.writer < 5:
            writes, reads = _FAST_STORE_FOOTPRINT[s.writer]
            label, nxt = fast_store(s)
            out.append(action("writer", label, nxt, reads=reads, writes=writes))
        if len(s.reads) < nmi_reads:
            read = ktime_get_fast_ns(_tkf(s), lambda: s.counter, profile)
            label = (
                f"NMI: ktime_get_mono_fast_ns() = {read.ns} from base[{read.index}] at counter {s.counter}"
            )
            nxt = replace(s, reads=(*s.reads, (read.ns, read.index)))
            out.append(action("nmi", label, nxt, reads={"latch", "base0", "base1", "counter"}))
        if s.ticks < clock_steps:
            nxt = replace(s, counter=s.counter + clock_step, ticks=s.ticks + 1)
            out.append(
                action("clock", f"counter += {clock_step}", nxt, reads={"counter"}, writes={"counter"})
            )
        return out

    def done(s: FastState, process: str) -> bool:
        if process == "writer":
            return s.writer == 5
        if process == "nmi":
            return len(s.reads) == nmi_reads
        return True

    def monotonic(s: FastState) -> bool:
        return all(a[0] <= b[0] for a, b in zip(s.reads, s.reads[1:], strict=False))

    def describe(s: FastState) -> str:
        reads_text = ", ".join(f"{ns} (base[{i}])" for ns, i in s.reads)
        return f"counter={s.counter} latch={s.latch} writer={s.writer} reads=[{reads_text}]"

    return Model(
        name=f"fast-timekeeper-backwards ({profile_name})",
        initial=initial,
        actions=actions,
        processes=("writer", "nmi", "clock"),
        done=done,
        properties=(("fast-monotonic", monotonic),),
        describe=describe,
    )


MODELS: dict[str, Callable[[], Model[Any]]] = {
    "nohz-livelock": nohz_reader_livelock,
    "nohz-no-livelock": partial(nohz_reader_livelock, reader_on_update_cpu=False),
    "write-section-pause-6.1": partial(pause_inside_write_section, "linux-6.1"),
    "write-section-pause-6.10": partial(pause_inside_write_section, "linux-6.10"),
    "fast-timekeeper-backwards": fast_timekeeper_backwards,
}
