"""The nap protocol as a bounded model for the interleaving explorer (docs/nap-protocol.md).

Every step of both sides of the protocol is an action of its own, so
:func:`tsclab.sim.explore.explore` runs every interleaving of:

* ``host`` - request, wait for the acknowledgement or the deadline,
  freeze, the nap (the TSC moved on by it or frozen across it), wake-up;
  ``naps`` times, never waiting for the guest to apply one;
* ``nap`` (vCPU0's nap work) - ``stop_machine(nap_park)``,
  ``timekeeping_suspend()``, the acknowledgement, the spin on ``WOKEN``
  (re-acknowledging a newer request), the re-base and the rest of the
  wake-up;
* ``tick`` (vCPU0) - ``timekeeping_advance()`` in its write-section steps,
  then the fallback check; once per epoch (between two wake-ups);
* ``reader`` (vCPU1) - ``ktime_get()``, ``ktime_get_boottime()``,
  ``ktime_get_real()`` in their seqcount steps, and ``nmi`` -
  ``ktime_get_mono_fast_ns()``, which may run inside ``stop_machine``;
* ``watchdogs`` (vCPU1) - the soft-lockup timer, the clocksource watchdog
  and the RCU stall check, each once after every wake-up, with
  ``kvm_check_and_clear_guest_paused()`` where the kernel calls it;
* ``hrtimer`` (vCPU1) - the clockevent interrupt for a CLOCK_MONOTONIC and
  a CLOCK_REALTIME timer;
* ``clock`` - the counter (and true time) moving on by 1 ms.

The arithmetic is the kernel model's: the readers are
``timekeeping_cycles_to_ns()`` of the chosen profile, updates are
:meth:`Timekeeping.advance_steps`, the park is
:meth:`Timekeeping.timekeeping_suspend`, the wake-up's re-base is
:meth:`Timekeeping.nap_resume` and the fallback's injection is
:meth:`Timekeeping.timekeeping_inject_sleeptime64` - each run on a
timekeeper rebuilt from the slice the state keeps (:class:`GuestTk`).
The nap page's totals and the guest's applied totals follow
:mod:`tsclab.nap.host` and :class:`tsclab.nap.guest.NapGuest`.

The model also carries ground truth the guest cannot see - true time,
the naps' true lengths, which naps were acknowledged - and the properties
of docs/nap-protocol.md section 5 are predicates over it.  Property 7 is
the explorer's liveness check of the ``host`` process; the others are
safety properties named ``P1-...`` to ``P9-...``.

:class:`Protocol` switches single steps of the protocol off: each is a
negative control the tests use to show the explorer would catch the bug
(the property that then fails is named in its field's comment).

Scope limits, stated: a 1 GHz TSC (one cycle, one ns), NTP idle, two
vCPUs, one reader of each clock, at most ``naps`` naps (1 or 2), two
counter steps of 1 ms; updates of the fast timekeeper are atomic (its
latch race is the ``fast-timekeeper-backwards`` model's business);
MONOTONIC_RAW and TAI move with MONOTONIC and REALTIME and are not read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from tsclab.kernel.ntp import NtpState
from tsclab.kernel.profiles import get_profile
from tsclab.kernel.timekeeping import AdvanceMode, Timekeeping, WriteStep
from tsclab.kernel.timespec import Timespec64
from tsclab.kernel.tk_state import Timekeeper
from tsclab.nap.guest import unapplied_sleep
from tsclab.sim.explore import Action, Model, action
from tsclab.sim.explore_models import HOUR, HZ, SECOND, TSC, TkMono, cycle_interval, fmt_ns, ktime_read

MS = 1_000_000
TSC_KHZ = 1_000_000
SOFTLOCKUP_NS = 20 * SECOND  # 2 * watchdog_thresh (10 s)
RCU_STALL_NS = 21 * SECOND  # CONFIG_RCU_CPU_STALL_TIMEOUT
CS_THRESHOLD_NS = 125 * MS  # WATCHDOG_THRESHOLD (62.5 ms) plus both uncertainty margins, 6.13
MONO_TIMER_NS = 500 * MS  # a CLOCK_MONOTONIC hrtimer due 0.5 s of guest run time after boot
REAL_TIMER_NS = 1 * SECOND  # a CLOCK_REALTIME hrtimer due 1 s after boot: during any nap here

CLOCKS = ("MONOTONIC", "BOOTTIME", "REALTIME")
WATCHDOGS = ("softlockup", "clocksource", "rcu")

# Host states of the page (docs/nap-protocol.md section 1), and the host process's own place.
RUNNING, NAP_REQUESTED, NAPPING, WOKEN = "RUNNING", "NAP_REQUESTED", "NAPPING", "WOKEN"


@dataclass(frozen=True, slots=True)
class Protocol:
    """Which steps of the protocol run; every field off is a negative control."""

    halt_fast: bool = True  # step 2; off: P1 (an NMI reads the nap, then the re-base steps back)
    skip_nap_cycles: bool = True  # step 6; off: P3 (MONOTONIC counts an acknowledged nap)
    fallback: bool = True  # step 12; off: P3 and P4 for an unacknowledged nap
    fallback_skips: bool = (
        False  # on: the fallback re-bases as the wake-up does, dropping what readers saw: P1
    )
    touch_watchdogs: bool = True  # step 9 (and the host's KVMCLOCK_CTRL); off: P5
    checkpoint_in_cs_watchdog: bool = True  # step 12 in clocksource_watchdog(); off: P5
    clock_was_set: bool = True  # step 10; off: P6 (a REALTIME timer late by the nap)
    publish_bound: bool = True  # step 8; off: P4 (adjtimex() understates the error)
    reack: bool = True  # step 4's re-acknowledgement; off: the host waits for an ack that never comes
    totals: bool = True  # the page's running totals; off (only the last nap's fields): P9
    deadline: bool = True  # host step 2's bound; off: P7 (deadlock:host with a silent guest)


@dataclass(frozen=True, slots=True)
class Scope:
    """One bounded scope: how the guest answers, what the host does with the TSC, how often."""

    answers: str = "always"  # "always" (parks before the deadline), "late" (may miss it), "never"
    tsc: str = "moved"  # "moved": the guest TSC moves on by the nap; "frozen": it does not
    naps: int = 1
    nap_true_ns: int = 2 * HOUR  # longer than max_cycles (33 min): a raw delta takes the slow path
    measure_error_ns: int = MS // 2  # nap_ns = true length + this (the hosts' sync error)
    error_bound_ns: int = MS  # realtime_error_ns the host publishes
    profile: str = "nap"
    readers: tuple[str, ...] = ("MONOTONIC", "MONOTONIC")
    nmi_reads: int = 1
    clock_steps: int = 1
    watchdogs: bool = False
    timers: bool = False
    protocol: Protocol = Protocol()


@dataclass(frozen=True, slots=True)
class GuestTk:
    """The timekeeper slice: ``tkr_mono``, ``xtime_sec``, ``wall_to_monotonic``, ``offs_boot``.

    ``epoch`` and ``applied`` are ground truth, not kernel state: how many
    wake-ups had happened when ``cycle_last`` was read, and how many naps
    this timekeeper has accounted.
    """

    mono: TkMono
    wtm_sec: int
    wtm_nsec: int
    offs_boot: int
    epoch: int = 0
    applied: int = 0

    @property
    def offs_real(self) -> int:
        return -(self.wtm_sec * SECOND + self.wtm_nsec)

    def read(self, clock: str, cycles: int, profile: str) -> int:
        """The clock's value at ``cycles`` as the profile's reader computes it."""
        mono, _ = ktime_read(self.mono, cycles, get_profile(profile))
        return mono + {"MONOTONIC": 0, "BOOTTIME": self.offs_boot, "REALTIME": self.offs_real}[clock]


def _load(tk: GuestTk, counter: int, profile: str) -> Timekeeping:
    """A kernel-model timekeeper holding ``tk``'s slice, its counter at ``counter``."""
    prof = get_profile(profile)
    engine = Timekeeping(
        TSC, prof, NtpState.for_kernel(prof.version, hz=HZ), read_counter=lambda: counter, hz=HZ
    )
    shadow = engine.tkd.shadow
    tk.mono.write_into(shadow)
    engine.tk_set_wall_to_mono(shadow, Timespec64(tk.wtm_sec, tk.wtm_nsec))
    engine.tk_update_sleep_time(shadow, tk.offs_boot)
    engine.tk_update_ktime_data(shadow)
    return engine


def _slice(kt: Timekeeper, epoch: int, applied: int) -> GuestTk:
    wtm = kt.wall_to_monotonic
    return GuestTk(TkMono.of(kt), wtm.sec, wtm.nsec, kt.offs_boot, epoch, applied)


@cache
def boot(profile: str) -> GuestTk:
    """``timekeeping_init()`` at counter 0, realtime 0: all three clocks read the counter."""
    return _slice(_load(GuestTk(TkMono(0, 0, 0, 0, 0), 0, 0, 0), 0, profile).tk, 0, 0)


@cache
def tk_advance(tk: GuestTk, now: int, profile: str, epoch: int) -> GuestTk | None:
    """``timekeeping_advance(TK_ADV_TICK)`` at ``now``; None if less than an interval is pending."""
    engine = _load(tk, tk.mono.cycle_last, profile)
    engine.read_counter = lambda: now
    published = False
    for item in engine.advance_steps(AdvanceMode.TICK):
        published = published or item is WriteStep.PUBLISHED
    return _slice(engine.tk, epoch, tk.applied) if published else None


@cache
def tk_suspend(tk: GuestTk, now: int, profile: str, epoch: int) -> GuestTk:
    """``timekeeping_suspend()`` at ``now`` (the park's step 1)."""
    engine = _load(tk, now, profile)
    engine.timekeeping_suspend()
    return _slice(engine.tk, epoch, tk.applied)


@cache
def tk_nap_resume(tk: GuestTk, now: int, skip: int, sleep_ns: int, profile: str, epoch: int) -> GuestTk:
    """:meth:`Timekeeping.nap_resume`: skip the nap's cycles, forward, inject (steps 6-8)."""
    engine = _load(tk, now, profile)
    engine.nap_resume(skip, Timespec64.from_ns(sleep_ns))
    return _slice(engine.tk, epoch, epoch)


@cache
def tk_inject(tk: GuestTk, now: int, sleep_ns: int, profile: str, epoch: int) -> GuestTk:
    """The fallback's ``timekeeping_inject_sleeptime64()`` at ``now`` (forward, then inject)."""
    engine = _load(tk, now, profile)
    engine.timekeeping_inject_sleeptime64(Timespec64.from_ns(sleep_ns), clear_ntp=False)
    return _slice(engine.tk, epoch, epoch)


# --- the state ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """The nap page's fields the model uses (host's, then guest's)."""

    generation: int = 0
    host_state: str = RUNNING
    unacked: bool = False
    nap_ns: int = 0
    tsc_at_freeze: int = 0
    tsc_at_wake: int = 0
    slept_ns: int = 0
    slept_tsc: int = 0
    slept_error_ns: int = 0
    woken_generation: int = 0
    guest_state: str = "RUNNING"
    acked_generation: int = 0
    applied_generation: int = 0


@dataclass(frozen=True, slots=True)
class Applied:
    """The guest's private record of the totals it has applied (:class:`NapGuest`)."""

    ns: int = 0
    tsc: int = 0
    error_ns: int = 0
    generation: int = 0  # the woken generation these totals were read with
    tsc_at_park: int = 0


@dataclass(frozen=True, slots=True)
class NapState:
    # ground truth
    real: int
    counter: int
    clock_steps: int
    naps: tuple[tuple[int, int, bool], ...]  # per woken nap: (true length, counter cycles shown, acked)
    # host
    host: str  # "idle", "requested", "frozen", "done"
    frozen_real: int
    # shared memory
    page: Page
    guest_stopped: tuple[bool, bool]  # PVCLOCK_GUEST_STOPPED per vCPU
    seq: int
    tk: GuestTk
    fast: GuestTk
    fast_halted: bool
    esterror: int  # ns: what adjtimex() reports as the realtime error bound
    applied: Applied
    # vCPU0: the nap work and the tick
    nap: str  # "idle", "entered", "suspended", "parked", "rebased"
    stopped: bool  # stop_machine holds every CPU
    tick: str  # "idle", "read", "shadow", "odd", "published", "check"
    tick_now: int
    tick_epoch: int  # the last epoch the tick ran in (-1: none yet)
    shadow: GuestTk
    # vCPU1: reader
    reader: int  # index of the read in progress
    r_step: str  # "begin", "clock", "compute", "retry"
    r_seq: int
    r_cycles: int
    r_truth: tuple[int, int]  # (true time, wake-ups) at the counter read
    r_tk: tuple[int, int]  # (epoch, applied) of the timekeeper used
    r_value: int
    r_floor: int
    latest: tuple[int, int, int, int]  # the highest completed read of each clock, and of the fast one
    nmi_left: int
    # vCPU1: watchdogs (reference, touched) and timers
    wd_ref: tuple[int, int, int]
    wd_touched: tuple[bool, bool, bool]
    wd_epoch: tuple[int, int, int]  # the last epoch each watchdog checked in
    jiffies_ns: int
    ce_tsc: int  # the TSC-deadline programmed on vCPU1
    retrigger: bool  # clock_was_set()'s IPI is pending on vCPU1
    fired: tuple[bool, bool]  # the MONOTONIC timer, the REALTIME timer
    bad: frozenset[str]  # properties a completed read or check violated (sticky)
    note: str  # what broke first, for the counterexample's final state

    @property
    def wakes(self) -> int:
        return len(self.naps)

    @property
    def ran(self) -> int:
        """True time the guest ran: true time less every nap."""
        return self.real - sum(n for n, _, _ in self.naps)


def _violate(s: NapState, prop: str, note: str) -> NapState:
    if prop in s.bad:
        return s
    return replace(s, bad=s.bad | {prop}, note=s.note or note)


def initial_state(scope: Scope) -> NapState:
    tk = boot(scope.profile)
    start = cycle_interval()  # one tick after boot: an update is due
    return NapState(
        real=start,
        counter=start,
        clock_steps=0,
        naps=(),
        host="idle",
        frozen_real=0,
        page=Page(),
        guest_stopped=(False, False),
        seq=0,
        tk=tk,
        fast=tk,
        fast_halted=False,
        esterror=0,
        applied=Applied(),
        nap="idle",
        stopped=False,
        tick="idle",
        tick_now=0,
        tick_epoch=-1,
        shadow=tk,
        reader=0,
        r_step="begin",
        r_seq=0,
        r_cycles=0,
        r_truth=(0, 0),
        r_tk=(0, 0),
        r_value=0,
        r_floor=0,
        latest=(0, 0, 0, 0),
        nmi_left=scope.nmi_reads,
        wd_ref=(start, 0, 0),
        wd_touched=(False, False, False),
        wd_epoch=(0, 0, 0),
        jiffies_ns=0,
        ce_tsc=MONO_TIMER_NS,  # the earlier of the two timers; MONOTONIC reads the counter until a nap
        retrigger=False,
        fired=(False, False),
        bad=frozenset(),
        note="",
    )


# --- the guest's protocol code -----------------------------------------------


def _unapplied_sleep(s: NapState, scope: Scope, skipped: int) -> int:
    """The guest's :func:`unapplied_sleep`: from the totals, or (the control) the last nap's fields alone."""
    page = s.page
    if scope.protocol.totals:
        return unapplied_sleep(page.slept_ns, page.slept_tsc, s.applied.ns, s.applied.tsc, skipped, TSC_KHZ)
    return unapplied_sleep(page.nap_ns, page.tsc_at_wake - page.tsc_at_freeze, 0, 0, skipped, TSC_KHZ)


def _touch_all(s: NapState) -> NapState:
    """``pvclock_touch_watchdogs()``: every watchdog re-bases at its next check."""
    return replace(s, wd_touched=(True, True, True))


def _take_totals(s: NapState, scope: Scope) -> NapState:
    """The apply's accounting, read once with the sleep it injects: the totals and the bound.

    Read in the same step as the injection, so a nap the host takes
    between the re-base and the end of the wake-up is left for the next
    apply instead of being marked applied without being counted.
    """
    page = s.page
    if scope.protocol.publish_bound:
        s = replace(s, esterror=s.esterror + page.slept_error_ns - s.applied.error_ns)
    applied = replace(
        s.applied,
        ns=page.slept_ns,
        tsc=page.slept_tsc,
        error_ns=page.slept_error_ns,
        generation=page.woken_generation,
    )
    return replace(s, applied=applied)


def _finish_apply(s: NapState, scope: Scope) -> NapState:
    """Steps 9-11 after a re-base or a fallback injection: touch, re-arm, say applied."""
    if scope.protocol.touch_watchdogs:
        s = _touch_all(s)
    if scope.protocol.clock_was_set:
        s = replace(s, retrigger=True)
    return replace(s, page=replace(s.page, applied_generation=s.applied.generation))


def _nap_pending(s: NapState) -> bool:
    """A wake-up the guest has not applied (whatever the host does meanwhile)."""
    return s.page.woken_generation != s.page.applied_generation


def _fallback(s: NapState, scope: Scope) -> tuple[NapState, str]:
    """Step 12 at a check point: apply a nap the guest did not park for (one write section)."""
    if not (scope.protocol.fallback and _nap_pending(s)):
        return s, ""
    if scope.protocol.fallback_skips:
        skip = s.page.slept_tsc - s.applied.tsc
        missing = _unapplied_sleep(s, scope, skip)
        tk = tk_nap_resume(s.tk, s.counter, skip, missing, scope.profile, s.wakes)
    else:
        missing = _unapplied_sleep(s, scope, 0)
        tk = tk_inject(s.tk, s.counter, missing, scope.profile, s.wakes) if missing else s.tk
    tk = replace(tk, applied=s.wakes)
    s = _take_totals(replace(s, tk=tk, fast=tk, seq=s.seq + 2), scope)
    s = _finish_apply(s, scope)
    return s, f"nap generation {s.page.applied_generation} applied late: {fmt_ns(missing)} injected"


# --- processes ---------------------------------------------------------------

# Shared variables for the reduction's independence relation.
VM = "vm"  # host run state: every guest action waits on it
PAGE, TK, SEQ, COUNTER, FAST, WD, TIMER = "page", "tk", "seq", "counter", "fast", "wd", "timer"
GUEST_SIDE = (PAGE, TK, SEQ, FAST, WD, TIMER, "stopped")  # what an apply may write


def _frozen(s: NapState) -> bool:
    return s.host == "frozen"


def _host_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    proto, page = scope.protocol, s.page
    if s.host == "idle" and s.wakes < scope.naps:
        gen = page.generation + 1
        nxt = replace(
            s, host="requested", page=replace(page, generation=gen, host_state=NAP_REQUESTED, unacked=False)
        )
        return [
            action("host", f"request: generation {gen}, NAP_REQUESTED, nap interrupt", nxt, writes={PAGE})
        ]
    if s.host != "requested" and s.host != "frozen":
        return []
    if s.host == "frozen":
        return [_wake(s, scope)]
    out = []
    if page.acked_generation == page.generation and page.guest_state == "PARKED":
        out.append(_freeze(s, unacked=False))
    elif proto.deadline and scope.answers != "always":
        out.append(_freeze(s, unacked=True))
    return out


def _freeze(s: NapState, *, unacked: bool) -> Action[NapState]:
    page = replace(s.page, host_state=NAPPING, unacked=unacked, tsc_at_freeze=s.counter)
    label = "deadline passed: freeze UNACKED" if unacked else "acknowledged: freeze"
    label += f", tsc_at_freeze {s.counter}"
    nxt = replace(s, host="frozen", frozen_real=s.real, page=page)
    return action("host", label, nxt, reads={PAGE, COUNTER}, writes={VM, PAGE})


def _wake(s: NapState, scope: Scope) -> Action[NapState]:
    """Step 5: the nap's figures and the totals, ``WOKEN``, KVMCLOCK_CTRL, then run the vCPUs."""
    length = scope.nap_true_ns
    shown = length if scope.tsc == "moved" else 0
    nap_ns = length + scope.measure_error_ns
    page = s.page
    page = replace(
        page,
        host_state=WOKEN,
        nap_ns=nap_ns,
        tsc_at_wake=s.counter + shown,
        slept_ns=page.slept_ns + nap_ns,
        slept_tsc=page.slept_tsc + shown,
        slept_error_ns=page.slept_error_ns + scope.error_bound_ns,
        woken_generation=page.generation,
    )
    stopped_flag = scope.protocol.touch_watchdogs
    nxt = replace(
        s,
        host="done" if s.wakes + 1 == scope.naps else "idle",
        real=s.real + length,
        counter=s.counter + shown,
        naps=(*s.naps, (length, shown, not page.unacked)),
        page=page,
        guest_stopped=(stopped_flag, stopped_flag),
    )
    label = (
        f"wake after {fmt_ns(length)}: TSC {'+' + str(shown) if shown else 'frozen'}, "
        f"nap_ns {fmt_ns(nap_ns)}, WOKEN, KVMCLOCK_CTRL, run"
    )
    return action("host", label, nxt, reads={PAGE, COUNTER}, writes={VM, PAGE, COUNTER, "stopped_flag"})


def _nap_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """vCPU0's nap work: park (steps 1-4) and wake-up (steps 5-11)."""
    if scope.answers == "never" or _frozen(s):
        return []
    page, p = s.page, "nap"
    if s.nap == "idle":
        if page.host_state == NAP_REQUESTED and page.acked_generation != page.generation and s.tick == "idle":
            nxt = replace(s, nap="entered", stopped=True)
            label = "stop_machine(nap_park): every CPU in the rendezvous"
            return [action(p, label, nxt, reads={VM, PAGE, "tick"}, writes={"stopped"})]
        return []
    if s.nap == "entered":
        tk = tk_suspend(s.tk, s.counter, scope.profile, s.wakes)
        halted = scope.protocol.halt_fast
        applied = replace(s.applied, tsc_at_park=page.slept_tsc)
        nxt = replace(s, nap="suspended", tk=tk, fast=tk, fast_halted=halted, seq=s.seq + 2, applied=applied)
        label = f"timekeeping_suspend(): cycle_last = {s.counter}" + (
            ", halt_fast_timekeeper()" if halted else ""
        )
        return [action(p, label, nxt, reads={VM, PAGE, COUNTER}, writes={TK, SEQ, FAST})]
    if s.nap == "suspended":
        nxt = replace(
            s, nap="parked", page=replace(page, guest_state="PARKED", acked_generation=page.generation)
        )
        return [action(p, f"acknowledge: PARKED, acked_generation {page.generation}", nxt, writes={PAGE})]
    if s.nap == "parked":
        if page.host_state == WOKEN:
            return [_rebase(s, scope)]
        if (
            page.host_state == NAP_REQUESTED
            and page.acked_generation != page.generation
            and scope.protocol.reack
        ):
            nxt = replace(s, page=replace(page, acked_generation=page.generation))
            label = f"still parked: acknowledge generation {page.generation} too"
            return [action(p, label, nxt, reads={VM, PAGE}, writes={PAGE})]
        return []
    if s.nap == "rebased":
        nxt = _finish_apply(s, scope)
        nxt = replace(nxt, nap="idle", stopped=False, page=replace(nxt.page, guest_state="RUNNING"))
        label = "touch the watchdogs, clock_was_set(), applied, leave stop_machine"
        return [action(p, label, nxt, reads={VM, PAGE}, writes={PAGE, WD, TIMER, "stopped", "esterror"})]
    return []


def _rebase(s: NapState, scope: Scope) -> Action[NapState]:
    """Steps 5-7: skip the naps since the park, forward the rest, inject the sleep."""
    skip = s.page.slept_tsc - s.applied.tsc_at_park if scope.protocol.skip_nap_cycles else 0
    sleep = _unapplied_sleep(s, scope, skip)
    tk = tk_nap_resume(s.tk, s.counter, skip, sleep, scope.profile, s.wakes)
    page = replace(s.page, guest_state="RESUMING")
    nxt = replace(s, nap="rebased", tk=tk, fast=tk, fast_halted=False, seq=s.seq + 2, page=page)
    nxt = _take_totals(nxt, scope)
    label = (
        f"WOKEN: re-base skipping {skip} cycles, inject {fmt_ns(sleep)}, bound NTP, reset the fast timekeeper"
    )
    return action("nap", label, nxt, reads={VM, PAGE, COUNTER}, writes={TK, SEQ, FAST, PAGE, "esterror"})


def _tick_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """vCPU0's tick: ``timekeeping_advance()`` in its write-section steps, then step 12."""
    if _frozen(s) or s.stopped:
        return []
    t = "tick"
    if s.tick == "idle":
        if s.tick_epoch == s.wakes:
            return []
        nxt = replace(s, tick="read", tick_now=s.counter, tick_epoch=s.wakes)
        label = f"timekeeping_advance: lock tk_core, tk_clock_read() = {s.counter}"
        return [action(t, label, nxt, reads={VM, COUNTER, "stopped"}, writes={"tick"})]
    if s.tick == "read":
        shadow = tk_advance(s.tk, s.tick_now, scope.profile, s.tick_epoch)
        if shadow is None:
            label = "timekeeping_advance: less than one interval, unlock"
            return [action(t, label, replace(s, tick="check"), reads={VM, TK}, writes={"tick"})]
        label = f"timekeeping_advance: shadow cycle_last = {shadow.mono.cycle_last}"
        return [action(t, label, replace(s, tick="shadow", shadow=shadow), reads={VM, TK})]
    if s.tick == "shadow":
        return [
            action(t, "write_seqcount_begin", replace(s, tick="odd", seq=s.seq + 1), reads={VM}, writes={SEQ})
        ]
    if s.tick == "odd":
        jiffies = s.shadow.read("MONOTONIC", s.tick_now, scope.profile)
        nxt = replace(s, tick="published", tk=s.shadow, fast=s.shadow, jiffies_ns=jiffies)
        return [
            action(
                t, "tk_core.timekeeper = shadow; fast timekeeper updated", nxt, reads={VM}, writes={TK, FAST}
            )
        ]
    if s.tick == "published":
        nxt = replace(s, tick="check", seq=s.seq + 1)
        return [action(t, "write_seqcount_end, unlock", nxt, reads={VM}, writes={SEQ, "tick"})]
    if s.tick == "check":
        nxt, label = _fallback(s, scope)
        nxt = replace(nxt, tick="idle")
        label = "nap check: " + (label or "nothing pending")
        return [
            action(t, label, nxt, reads={VM, PAGE, TK, COUNTER}, writes={"tick", *GUEST_SIDE, "esterror"})
        ]
    return []


def _reader_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """vCPU1: each clock of ``scope.readers`` read once, in the seqcount reader's steps."""
    if _frozen(s) or s.stopped or s.reader >= len(scope.readers):
        return []
    r, clock = "reader", scope.readers[s.reader]
    base = {VM, "stopped"}
    if s.r_step == "begin":
        if s.seq & 1:
            return []
        floor = s.latest[CLOCKS.index(clock)]
        nxt = replace(s, r_step="clock", r_seq=s.seq, r_floor=floor)
        return [action(r, f"{clock}: read_seqcount_begin", nxt, reads=base | {SEQ, "latest"})]
    if s.r_step == "clock":
        nxt = replace(s, r_step="compute", r_cycles=s.counter, r_truth=(s.real, s.wakes))
        return [action(r, f"{clock}: tk_clock_read() = {s.counter}", nxt, reads=base | {COUNTER, "naps"})]
    if s.r_step == "compute":
        value = s.tk.read(clock, s.r_cycles, scope.profile)
        nxt = replace(s, r_step="retry", r_value=value, r_tk=(s.tk.epoch, s.tk.applied))
        return [action(r, f"{clock}: base + timekeeping_get_ns() = {fmt_ns(value)}", nxt, reads=base | {TK})]
    if s.seq != s.r_seq:
        nxt = replace(s, r_step="begin")
        return [action(r, f"{clock}: read_seqcount_retry() -> retry", nxt, reads=base | {SEQ})]
    nxt = _judge_read(replace(s, r_step="begin", reader=s.reader + 1), scope, clock)
    label = f"{clock} returns {fmt_ns(s.r_value)}"
    return [action(r, label, nxt, reads=base | {SEQ, "naps", "esterror"}, writes={"latest", "bad"})]


def _judge_read(s: NapState, scope: Scope, clock: str) -> NapState:
    """Properties 1-4 on a completed read, against the truth at its counter read."""
    value, (real, wakes), (epoch, applied) = s.r_value, s.r_truth, s.r_tk
    i = CLOCKS.index(clock)
    latest = list(s.latest)
    latest[i] = max(latest[i], value)
    s = replace(s, latest=(latest[0], latest[1], latest[2], latest[3]))
    if value < s.r_floor:
        s = _violate(s, "P1-no-time-backwards", f"{clock} {fmt_ns(value)} after {fmt_ns(s.r_floor)}")
    s = _judge_span(s, epoch, wakes, clock)
    naps = s.naps[:wakes]
    ran = real - sum(n for n, _, _ in naps)
    if clock == "MONOTONIC":
        # An unacknowledged nap is in MONOTONIC if the counter showed it to a reader, else not.
        shown = [shown for _, shown, acked in naps if not acked]
        allowed = {
            ran + sum(shown[k] for k in range(len(shown)) if mask >> k & 1) for mask in range(1 << len(shown))
        }
        if value not in allowed:
            s = _violate(s, "P3-nap-counted", f"MONOTONIC {fmt_ns(value)}, guest ran {fmt_ns(ran)}")
    if applied == wakes and clock == "BOOTTIME":
        expect = real + wakes * scope.measure_error_ns
        if value != expect:
            s = _violate(s, "P3-nap-counted", f"BOOTTIME {fmt_ns(value)}, naps counted: {fmt_ns(expect)}")
    if applied == wakes and clock == "REALTIME" and abs(value - real) > s.esterror:
        note = f"REALTIME off by {fmt_ns(value - real)}, adjtimex() bound {fmt_ns(s.esterror)}"
        s = _violate(s, "P4-realtime-within-bound", note)
    return s


def _judge_span(s: NapState, epoch: int, wakes: int, clock: str) -> NapState:
    """Property 2: no completed read extrapolates across an acknowledged nap."""
    if any(acked for _, _, acked in s.naps[epoch:wakes]):
        return _violate(s, "P2-no-reader-sees-nap", f"{clock} read across an acknowledged nap")
    return s


def _nmi_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """An NMI on any vCPU, even inside ``stop_machine``: ``ktime_get_mono_fast_ns()``."""
    if _frozen(s) or s.nmi_left == 0:
        return []
    cycles = s.fast.mono.cycle_last if s.fast_halted else s.counter
    value = s.fast.read("MONOTONIC", cycles, scope.profile)
    nxt = replace(s, nmi_left=s.nmi_left - 1, latest=(*s.latest[:3], max(s.latest[3], value)))
    if value < s.latest[3]:
        nxt = _violate(nxt, "P1-no-time-backwards", f"fast {fmt_ns(value)} after {fmt_ns(s.latest[3])}")
    if not s.fast_halted:
        nxt = _judge_span(nxt, s.fast.epoch, s.wakes, "ktime_get_mono_fast_ns()")
    label = f"NMI: ktime_get_mono_fast_ns() = {fmt_ns(value)}" + (" (halted)" if s.fast_halted else "")
    return [action("nmi", label, nxt, reads={VM, FAST, COUNTER, "latest", "naps"}, writes={"latest", "bad"})]


def _kvm_check(s: NapState, scope: Scope) -> tuple[NapState, bool]:
    """``kvm_check_and_clear_guest_paused()`` on vCPU1, with the protocol's step 12 in it."""
    stopped = s.guest_stopped[1]
    if stopped:
        s = _touch_all(replace(s, guest_stopped=(s.guest_stopped[0], False)))
    s, applied = _fallback(s, scope)
    return s, stopped or bool(applied)


def _watchdog_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """vCPU1's watchdogs, each once after every wake-up (they need tk_core.lock for step 12)."""
    if not scope.watchdogs or _frozen(s) or s.stopped or s.tick in ("read", "shadow", "odd", "published"):
        return []
    return [_watchdog_check(s, scope, i) for i in range(3) if s.wd_epoch[i] < s.wakes]


def _watchdog_check(s: NapState, scope: Scope, i: int) -> Action[NapState]:
    """One watchdog's check, in any order with the others."""
    name = WATCHDOGS[i]
    epochs = list(s.wd_epoch)
    epochs[i] = s.wakes
    s = replace(s, wd_epoch=(epochs[0], epochs[1], epochs[2]))
    if name == "softlockup":
        s, _ = _kvm_check(s, scope)  # 5.14+: first thing in watchdog_timer_fn()
        nxt, what = _watchdog_judge(s, 0, s.counter, SOFTLOCKUP_NS, "BUG: soft lockup")
    elif name == "clocksource":
        if scope.protocol.checkpoint_in_cs_watchdog:
            s, _ = _fallback(s, scope)
        nxt, what = _watchdog_judge(s, 1, s.counter - s.ran, CS_THRESHOLD_NS, "clocksource unstable")
    else:
        nxt, what = _watchdog_judge(s, 2, s.jiffies_ns, RCU_STALL_NS, "rcu stall")
        if what.endswith("!"):
            checked, paused = _kvm_check(s, scope)  # check_cpu_stall(): only once a stall is seen
            nxt, what = (
                (checked, "stall seen, but kvm_check_and_clear_guest_paused()") if paused else (nxt, what)
            )
    label = f"{name} watchdog: {what}"
    return action(
        "watchdogs",
        label,
        nxt,
        reads={VM, "stopped", "tick", "stopped_flag", COUNTER, "naps", *GUEST_SIDE},
        writes={"stopped_flag", "bad", *GUEST_SIDE, "esterror"},
    )


def _watchdog_judge(s: NapState, i: int, now: int, threshold: int, report: str) -> tuple[NapState, str]:
    """A touched watchdog re-bases; otherwise it reports when its clock moved past the threshold."""
    refs, touched = list(s.wd_ref), list(s.wd_touched)
    if touched[i]:
        refs[i], touched[i] = now, False
        return replace(
            s, wd_ref=(refs[0], refs[1], refs[2]), wd_touched=(touched[0], touched[1], touched[2])
        ), "touched: re-base"
    if abs(now - refs[i]) > threshold:
        return _violate(
            s, "P5-no-watchdog", f"{report} after {fmt_ns(now - refs[i])}"
        ), f"{report} ({fmt_ns(now - refs[i])})!"
    return s, "quiet"


def _timer_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    """vCPU1's clockevent interrupt: ``hrtimer_interrupt()`` with fresh offsets (property 6)."""
    if not scope.timers or _frozen(s) or s.stopped or all(s.fired):
        return []
    if not (s.retrigger or s.counter >= s.ce_tsc):
        return []
    mono = s.tk.read("MONOTONIC", s.counter, scope.profile)
    real = mono + s.tk.offs_real
    fired = list(s.fired)
    nxt = s
    notes = []
    if not fired[0] and mono >= MONO_TIMER_NS:
        fired[0] = True
        notes.append("MONOTONIC timer fires")
        unacked_shown = sum(shown for _, shown, acked in s.naps if not acked)
        if s.ran + unacked_shown < MONO_TIMER_NS:
            nxt = _violate(nxt, "P6-timers", f"MONOTONIC timer fired after {fmt_ns(s.ran)} of run time")
    if not fired[1] and real >= REAL_TIMER_NS:
        fired[1] = True
        notes.append("REALTIME timer fires")
        if s.real + s.esterror < REAL_TIMER_NS:
            nxt = _violate(nxt, "P6-timers", f"REALTIME timer fired at true {fmt_ns(s.real)}")
    deadlines = []
    if not fired[0]:
        deadlines.append(MONO_TIMER_NS - mono)
    if not fired[1]:
        deadlines.append(REAL_TIMER_NS - real)
    ce = s.counter + max(min(deadlines), 0) if deadlines else s.ce_tsc
    nxt = replace(nxt, fired=(fired[0], fired[1]), ce_tsc=ce, retrigger=False)
    label = "hrtimer_interrupt: " + (", ".join(notes) or "nothing expired") + f", TSC deadline {ce}"
    return [
        action(
            "hrtimer",
            label,
            nxt,
            reads={VM, "stopped", TIMER, COUNTER, TK, "naps", "esterror"},
            writes={TIMER, "bad"},
        )
    ]


def _clock_actions(s: NapState, scope: Scope) -> list[Action[NapState]]:
    if _frozen(s) or s.clock_steps >= scope.clock_steps:
        return []
    nxt = replace(s, real=s.real + MS, counter=s.counter + MS, clock_steps=s.clock_steps + 1)
    return [action("clock", "1 ms passes", nxt, reads={VM, COUNTER}, writes={COUNTER})]


# --- properties ----------------------------------------------------------------


def _no(prop: str) -> Callable[[NapState], bool]:
    def holds(s: NapState) -> bool:
        return prop not in s.bad

    holds.__name__ = prop
    return holds


def _settled(s: NapState) -> bool:
    """No nap in flight on the guest's side: every woken nap applied, nobody mid-write."""
    return (
        not _frozen(s)
        and not s.stopped
        and s.nap == "idle"
        and s.tick in ("idle", "check")
        and s.tk.applied == s.wakes
    )


def _timers_on_time(s: NapState) -> bool:
    """Property 6: once the nap is applied, a REALTIME timer it made due is about to fire."""
    if not _settled(s) or s.fired[1] or s.real < REAL_TIMER_NS:
        return "P6-timers" not in s.bad
    return "P6-timers" not in s.bad and (s.retrigger or s.counter >= s.ce_tsc)


def _recovers(s: NapState) -> bool:
    """Property 8: the first update after a wake-up (and its check) has applied the nap."""
    if s.wakes == 0 or s.tick != "idle" or s.tick_epoch != s.wakes or s.stopped or _frozen(s):
        return True
    return s.tk.applied == s.wakes


def _counted_once(s: NapState, scope: Scope) -> bool:
    """Property 9: when settled, BOOTTIME holds every nap exactly once (at the host's nap_ns)."""
    if not _settled(s):
        return True
    boot = s.tk.read("BOOTTIME", s.counter, scope.profile)
    return boot - s.real == s.wakes * scope.measure_error_ns


SAFETY = (
    "P1-no-time-backwards",
    "P2-no-reader-sees-nap",
    "P3-nap-counted",
    "P4-realtime-within-bound",
    "P5-no-watchdog",
)


def nap_model(scope: Scope = Scope(), name: str = "nap") -> Model[NapState]:
    """The protocol in ``scope``: every process above, properties 1-6 and 9, liveness for 7."""
    processes = ("host", "nap", "tick", "reader", "nmi", "watchdogs", "hrtimer", "clock")

    def actions(s: NapState) -> list[Action[NapState]]:
        return (
            _host_actions(s, scope)
            + _nap_actions(s, scope)
            + _tick_actions(s, scope)
            + _reader_actions(s, scope)
            + _nmi_actions(s, scope)
            + _watchdog_actions(s, scope)
            + _timer_actions(s, scope)
            + _clock_actions(s, scope)
        )

    def done(s: NapState, process: str) -> bool:
        if process == "host":
            return s.host == "done"
        if process == "nap":
            return s.nap == "idle"
        if process == "tick":
            return s.tick == "idle" and s.tick_epoch == s.wakes
        if process == "reader":
            return s.reader == len(scope.readers)
        if process == "nmi":
            return s.nmi_left == 0
        if process == "watchdogs":
            return not scope.watchdogs or all(e == s.wakes for e in s.wd_epoch)
        return True

    def describe(s: NapState) -> str:
        page = s.page
        bad = f" VIOLATED: {s.note}" if s.note else ""
        return (
            f"host={s.host} gen={page.generation} host_state={page.host_state} unacked={page.unacked} "
            f"acked={page.acked_generation} applied={page.applied_generation} nap={s.nap} tick={s.tick} "
            f"counter={s.counter} cycle_last={s.tk.mono.cycle_last} true={fmt_ns(s.real)} "
            f"ran={fmt_ns(s.ran)}{bad}"
        )

    properties = (
        *((prop, _no(prop)) for prop in SAFETY),
        ("P6-timers", _timers_on_time),
        ("P8-unresponsive-recovers", _recovers),
        ("P9-once-per-nap", lambda s: _counted_once(s, scope)),
    )
    return Model(
        name=name,
        initial=initial_state(scope),
        actions=actions,
        processes=processes,
        done=done,
        properties=properties,
        describe=describe,
    )


def _scoped(name: str, **fields: Any) -> Callable[[], Model[NapState]]:
    def build() -> Model[NapState]:
        return nap_model(Scope(**fields), name)

    return build


# The scopes ``tsclab explore`` offers and the tests prove (docs/nap-protocol.md section 6).
NAP_MODELS: dict[str, Callable[[], Model[Any]]] = {
    "nap-monotonic": _scoped("nap-monotonic", answers="late", nmi_reads=2),
    "nap-boottime-realtime": _scoped(
        "nap-boottime-realtime", answers="late", readers=("BOOTTIME", "REALTIME")
    ),
    "nap-frozen-tsc": _scoped("nap-frozen-tsc", answers="late", tsc="frozen", readers=CLOCKS, nmi_reads=0),
    "nap-unresponsive": _scoped("nap-unresponsive", answers="never", readers=CLOCKS, nmi_reads=0),
    "nap-two-naps": _scoped("nap-two-naps", answers="late", naps=2, readers=("BOOTTIME",), nmi_reads=0),
    "nap-watchdogs-timers": _scoped(
        "nap-watchdogs-timers", answers="late", readers=(), nmi_reads=0, watchdogs=True, timers=True
    ),
    "nap-watchdogs-timers-frozen-tsc": _scoped(
        "nap-watchdogs-timers-frozen-tsc",
        answers="late",
        tsc="frozen",
        readers=(),
        nmi_reads=0,
        watchdogs=True,
        timers=True,
    ),
}


def _control(name: str, protocol: Protocol, **fields: Any) -> Callable[[], Model[NapState]]:
    return _scoped(name, protocol=protocol, **fields)


_P = Protocol()
_LEAN: dict[str, Any] = {"readers": (), "nmi_reads": 0}

# Negative controls: the protocol with one step missing, and the property that must then fail.
NAP_CONTROLS: dict[str, tuple[Callable[[], Model[Any]], str]] = {
    "nap-control-no-halt-fast": (
        _control("nap-control-no-halt-fast", replace(_P, halt_fast=False), nmi_reads=2, readers=()),
        "P1-no-time-backwards",
    ),
    "nap-control-no-skip": (
        _control(
            "nap-control-no-skip", replace(_P, skip_nap_cycles=False), readers=("MONOTONIC",), nmi_reads=0
        ),
        "P3-nap-counted",
    ),
    "nap-control-fallback-skips": (
        _control(
            "nap-control-fallback-skips", replace(_P, fallback_skips=True), answers="never", nmi_reads=0
        ),
        "P1-no-time-backwards",
    ),
    "nap-control-no-fallback": (
        _control("nap-control-no-fallback", replace(_P, fallback=False), answers="never", **_LEAN),
        "P8-unresponsive-recovers",
    ),
    "nap-control-no-bound": (
        _control(
            "nap-control-no-bound", replace(_P, publish_bound=False), readers=("REALTIME",), nmi_reads=0
        ),
        "P4-realtime-within-bound",
    ),
    "nap-control-no-touch": (
        _control("nap-control-no-touch", replace(_P, touch_watchdogs=False), watchdogs=True, **_LEAN),
        "P5-no-watchdog",
    ),
    "nap-control-no-cs-checkpoint": (
        _control(
            "nap-control-no-cs-checkpoint",
            replace(_P, checkpoint_in_cs_watchdog=False),
            answers="never",
            watchdogs=True,
            **_LEAN,
        ),
        "P5-no-watchdog",
    ),
    "nap-control-no-clock-was-set": (
        _control(
            "nap-control-no-clock-was-set",
            replace(_P, clock_was_set=False),
            tsc="frozen",
            timers=True,
            **_LEAN,
        ),
        "P6-timers",
    ),
    "nap-control-no-deadline": (
        _control("nap-control-no-deadline", replace(_P, deadline=False), answers="never", **_LEAN),
        "deadlock:host",
    ),
    "nap-control-no-reack": (
        _control("nap-control-no-reack", replace(_P, reack=False), naps=2, clock_steps=0, **_LEAN),
        "deadlock:host",
    ),
    "nap-control-last-nap-only": (
        _control(
            "nap-control-last-nap-only",
            replace(_P, totals=False),
            answers="late",
            naps=2,
            clock_steps=0,
            **_LEAN,
        ),
        "P9-once-per-nap",
    ),
    "nap-control-wrapping-reader": (
        _scoped("nap-control-wrapping-reader", answers="never", profile="linux-6.1", nmi_reads=0),
        "P3-nap-counted",
    ),
}
