"""One Linux guest, driven event by event: ticks, timers, readers and the detectors.

The kernel-side arithmetic is the kernel model's (:mod:`tsclab.kernel`); this
module decides *when* each piece runs, the way the kernel's interrupt and
timer machinery would:

* **Clock events.**  Each vCPU programs its local APIC in TSC-deadline mode
  (``lapic_next_deadline()``): the next hrtimer expiry, as a ktime delta,
  becomes ``rdtsc() + ticks * TSC_DIVISOR``.  The deadline lives in guest
  TSC units, as the MSR does, so a TSC that moves under the guest (a
  restore, a migration) moves the interrupt with it; the host fires it
  when the guest TSC reaches it (:meth:`KvmVm.true_time_at_guest_tsc`).
* **hrtimers** (tick, soft-lockup watchdog, workload timers) expire against
  ``ktime_get()`` read in the interrupt: a frozen clock fires nothing, a
  jumped clock fires every overdue timer once (``hrtimer_forward``, no
  replay of missed periods).
* **Jiffies** catch up in ``tick_do_update_jiffies64()``, which calls
  ``update_wall_time()``; timer-wheel timers (clocksource watchdog,
  khungtaskd, D-state waits) expire on jiffies, rounded up to their
  wheel level's granularity (``calc_index()``).
* **NOHZ idle.**  An idle vCPU has no periodic tick; an interrupt that
  wakes it runs ``tick_nohz_update_jiffies()``, which also touches its
  soft-lockup watchdog - why an idle vCPU does not report a lockup after a
  pause and a busy one does.
* **Console.**  Every kernel message goes to a serial console whose write
  path calls ``touch_nmi_watchdog()``: it touches the printing vCPU's
  soft-lockup watchdog.

Model boundaries: one timekeeper shared by all vCPUs (a read on vCPU *v*
reads *v*'s counter); a timer-wheel timer runs on the first vCPU whose
tick or wake-up comes after it is due; a busy vCPU's first instruction
after its vCPU resumes is its reader's clock read, before any pending
interrupt (what the real guest showed under QEMU).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from tsclab.arith import NSEC_PER_SEC, u64
from tsclab.clocksource import Clocksource, counter_kind, pvclock_tsc_khz
from tsclab.clocksource.counters import ACPI_PM_HZ, HPET_QEMU_PERIOD_FS, hpet_freq_from_period
from tsclab.clocksource.pvclock import PvclockScale
from tsclab.clocksource.registration import clocks_calc_mult_shift
from tsclab.kernel.cs_watchdog import ClocksourceWatchdog
from tsclab.kernel.hung_task import BlockedTask, HungTaskDetector
from tsclab.kernel.kvmclock import KvmclockGuest
from tsclab.kernel.lockup_rules import counter_wrap_ns
from tsclab.kernel.nap_alternatives import (
    VMCLOCK_POLL_NS,
    SuspendToRam,
    VmclockConsumer,
    beyond_max_sane,
    max_sane_cycles,
)
from tsclab.kernel.ntp import ADJ_MAXERROR, ADJ_STATUS, STA_PLL, STA_UNSYNC, NtpState, Timex
from tsclab.kernel.profiles import KernelProfile
from tsclab.kernel.rcu_stall import RcuStallDetector, RcuStallVariant
from tsclab.kernel.softlockup import SoftlockupWatchdog
from tsclab.kernel.timekeeping import Timekeeping
from tsclab.kernel.timespec import Timespec64, ktime_add_ns
from tsclab.kernel.tk_state import Timekeeper
from tsclab.kernel.vdso import (
    CLOCK_BOOTTIME,
    CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_RAW,
    CLOCK_REALTIME,
    CLOCK_TAI,
    PvclockVcpuTimeInfo,
    VdsoData,
    VdsoFallback,
    VdsoLivelockError,
    arch_get_hw_counter,
    update_vsyscall,
    vdso_calc_ns_checked,
    vdso_clock_gettime,
    vdso_clock_mode_for,
)
from tsclab.nap.guest import NapGuest
from tsclab.nap.page import WOKEN, NapPage
from tsclab.scenario.model import GuestSpec, Workload
from tsclab.sim.engine import Engine, EventHandle
from tsclab.sim.platform import Platform
from tsclab.sim.trace import (
    CLOCKS,
    KernelMessage,
    RunTrace,
    Sample,
    Stall,
    TimelineEvent,
    TimerFire,
)
from tsclab.sim.trace import (
    NtpState as NtpRecord,
)

TSC_DIVISOR = 8  # arch/x86/kernel/apic/apic.c: the deadline clockevent counts TSC/8
CLOCKEVENT_MIN_TICKS = 0xF  # its min_delta_ticks
NTP_POLL_NS = 64 * NSEC_PER_SEC  # how often the NTP daemon refreshes maxerror
NTP_MAXERROR_US = 10_000  # what a synchronised daemon reports
NTP_GROWTH_NOTE_US = 1_000  # maxerror grows 500 us a second: note updates that covered over 2 s
# Event priorities at one true instant: a resumed busy vCPU reads first,
# then interrupts, then the VMM's next step.
PRIO_RESUME_READ = -10
PRIO_IRQ = 0
PRIO_READER = 5

_VDSO_IDS = {
    "REALTIME": CLOCK_REALTIME,
    "MONOTONIC": CLOCK_MONOTONIC,
    "BOOTTIME": CLOCK_BOOTTIME,
    "MONOTONIC_RAW": CLOCK_MONOTONIC_RAW,
    "TAI": CLOCK_TAI,
}
# Timer wheel (kernel/time/timer.c, 4.8+): 64 buckets a level, 8x coarser per level.
_LVL_BITS, _LVL_CLK_SHIFT = 6, 3


def wheel_bucket_expiry(expires: int, now: int, hz: int = 250) -> int:
    """``calc_wheel_index()``: the jiffy a timer due at ``expires`` actually fires at.

    Every level rounds up to its granularity, level 0 included (``(expires
    >> shift) + 1``), so a timer never fires early.  Past the last level
    (8 levels at HZ <= 100, else 9) the timeout is capped at
    ``WHEEL_TIMEOUT_MAX``.
    """
    depth = 8 if hz <= 100 else 9
    delta = expires - now
    cutoff = ((1 << _LVL_BITS) - 1) << ((depth - 1) * _LVL_CLK_SHIFT)  # LVL_START(LVL_DEPTH)
    if delta >= cutoff:
        expires = now + cutoff - (1 << ((depth - 1) * _LVL_CLK_SHIFT))  # WHEEL_TIMEOUT_MAX
        delta = expires - now
    level = 0
    while level < depth - 1 and delta >= ((1 << _LVL_BITS) - 1) << (level * _LVL_CLK_SHIFT):
        level += 1
    shift = level * _LVL_CLK_SHIFT
    return ((expires >> shift) + 1) << shift


@dataclass(order=True)
class HrTimer:
    expires: int  # ktime (CLOCK_MONOTONIC ns)
    seq: int
    name: str = field(compare=False)
    period: int = field(compare=False)
    callback: Callable[[int, int], None] = field(compare=False)  # (vcpu, now_kt)
    armed_true: int = field(default=0, compare=False)
    armed_kt: int = field(default=0, compare=False)
    report: bool = field(default=False, compare=False)  # record its lateness


@dataclass(order=True)
class WheelTimer:
    bucket: int  # the jiffy it fires at
    seq: int
    name: str = field(compare=False)
    callback: Callable[[int, int], None] = field(compare=False)  # (vcpu, its expires)
    expires: int = field(default=0, compare=False)


@dataclass
class Vcpu:
    index: int
    busy: bool
    timers: list[HrTimer] = field(default_factory=list)
    deadline_tsc: int | None = None
    irq_event: EventHandle | None = None
    reader_event: EventHandle | None = None
    reader: Workload | None = None
    reader_phase: int = 0  # the reader reads at phase + k * every
    owes_qs: bool = False


class GuestKernel:
    """The guest's kernel state and the events that drive it."""

    def __init__(
        self,
        spec: GuestSpec,
        profile: KernelProfile,
        platform: Platform,
        engine: Engine,
        trace: RunTrace,
    ) -> None:
        self.spec = spec
        self.profile = profile
        self.platform = platform
        self.engine = engine
        self.trace = trace
        self.hz = spec.hz
        self.tick_ns = NSEC_PER_SEC // spec.hz
        self.t = 0  # true time of the code running now
        self.cpu = 0  # the vCPU it runs on
        self._seq = 0
        self.kvmclock = KvmclockGuest(profile)
        self._boot_vcpus()
        self.tsc_cs = counter_kind("tsc").register(self._calibrated_tsc_khz())
        self.clock = self._register_clocksource(spec.clocksource)
        self.wd_cs: Clocksource | None = self._watchdog_clocksource(spec.watchdog)
        self._note_counter(self.clock)
        self.ntp = NtpState(hz=spec.hz)
        self.tkg = Timekeeping(
            self.clock,
            profile,
            self.ntp,
            self._read_clocksource,
            hz=spec.hz,
            realtime=Timespec64(spec.epoch_s, 0),
        )
        self.vdso = VdsoData()
        self._vdso_mode = vdso_clock_mode_for(self.clock)
        self.tkg.update_hooks.append(self._update_vsyscall)
        self._update_vsyscall(self.tkg.tk, 0)
        self.sched_clock_offset = 0
        self.sched_clock_offset = self.sched_clock()
        self._init_clockevent()
        self.jiffies = 0
        self.last_jiffies_update = 0
        self.vcpus = [Vcpu(v, busy=False) for v in range(spec.vcpus)]
        self.softlockup = [SoftlockupWatchdog(v, spec.watchdog_thresh_s) for v in range(spec.vcpus)]
        self.rcu = RcuStallDetector(
            spec.rcu_stall_timeout_s, spec.hz, variant=RcuStallVariant.for_version(profile.version)
        )
        self.rcu_gp = False
        self.hung = HungTaskDetector(spec.hung_task_timeout_s, spec.hz)
        self.tasks: list[BlockedTask] = []
        self.wheel: list[WheelTimer] = []
        self.cs_watchdog = (
            ClocksourceWatchdog(self.tsc_cs, self.wd_cs, profile, spec.hz) if self.wd_cs is not None else None
        )
        self._io_events: dict[int, tuple[EventHandle, int, Callable[[], None]]] = {}
        # The nap page lives in guest memory; only a guest with the protocol registers it.
        self.nap_page = NapPage()
        self.nap = NapGuest(self, self.nap_page) if profile.nap_protocol else None
        # The thread's alternatives to the nap: every kernel can suspend to RAM;
        # a VMCLOCK consumer only where the profile runs one.
        self.s3 = SuspendToRam(self, self._kvm_wallclock)
        self.vmclock = VmclockConsumer(self.tkg) if profile.vmclock_consumer else None

    # --- boot ---------------------------------------------------------

    def _boot_vcpus(self) -> None:
        """Each vCPU enables kvmclock (``MSR_KVM_SYSTEM_TIME_NEW``) and enters the guest."""
        kvm = self.platform.kvm
        for v in range(self.spec.vcpus):
            kvm.enable_pvclock(v, 0)
            kvm.vcpu_run(v, 0)

    def _calibrated_tsc_khz(self) -> int:
        """A KVM guest takes its TSC rate from the pvclock scale (``kvm_get_tsc_khz``)."""
        page = self._pvti(0)
        return pvclock_tsc_khz(PvclockScale(page.tsc_shift, page.tsc_to_system_mul))

    def _register_clocksource(self, name: str) -> Clocksource:
        if name == "tsc":
            return self.tsc_cs
        if name == "kvm-clock":
            return counter_kind("kvm-clock").register()
        if name == "hpet":
            return counter_kind("hpet").register(hpet_freq_from_period(HPET_QEMU_PERIOD_FS))
        return counter_kind("acpi_pm").register(ACPI_PM_HZ)

    def _watchdog_clocksource(self, name: str) -> Clocksource | None:
        """The watchdog's reference: QEMU's HPET or ACPI PM timer; none where the VMM has neither."""
        if name == "none":
            return None
        return self._register_clocksource(name)

    def _init_clockevent(self) -> None:
        """The lapic-deadline clockevent: ``tsc_khz * (1000 / TSC_DIVISOR)`` Hz, 600 s config cap."""
        freq = self.tsc_cs.freq_hz // TSC_DIVISOR
        self.ce_mult, self.ce_shift = clocks_calc_mult_shift(NSEC_PER_SEC, freq, 600)

    def start(self, workload: tuple[Workload, ...], rng: random.Random) -> None:
        """Boot-time setup at true time 0: workloads, detectors, NTP.

        The seed places each reader's loop within its period.
        """
        for w in workload:
            vcpu = self.vcpus[w.vcpu]
            if w.kind == "reader":
                vcpu.busy, vcpu.reader = True, w
            elif w.kind == "timer":
                name = w.name or f"timer{w.vcpu}"
                self._add_hrtimer(w.vcpu, w.every_ns, w.every_ns, name, self._workload_timer, report=True)
            elif w.kind == "blocked-task":
                task = BlockedTask(pid=100 + len(self.tasks), comm=w.name or f"io-wait{w.vcpu}")
                self.tasks.append(task)
                self._start_io(task, w.every_ns)
        for vcpu in self.vcpus:
            if vcpu.busy:
                self._add_hrtimer(vcpu.index, self.tick_ns, self.tick_ns, "tick", self._tick)
            period = self.softlockup[vcpu.index].sample_period_ns
            self._add_hrtimer(vcpu.index, period, period, "watchdog", self._watchdog_timer)
        if not any(v.busy for v in self.vcpus):
            # Someone keeps time: the first vCPU ticks (tick_do_timer_cpu).
            self._add_hrtimer(0, self.tick_ns, self.tick_ns, "tick", self._tick)
        self._add_hrtimer(0, NTP_POLL_NS, NTP_POLL_NS, "ntpd", self._ntp_daemon)
        if self.spec.ntp:
            self._ntp_daemon(0, 0)
        if self.cs_watchdog is not None:
            self._add_wheel(self.cs_watchdog.interval_jiffies, "clocksource-watchdog", self._cs_watchdog_run)
        self._add_wheel(self.hung.next_check_jiffies(0), "khungtaskd", self._khungtaskd)
        for vcpu in self.vcpus:
            self._program(vcpu.index)
            reader = vcpu.reader
            if reader is not None:
                vcpu.reader_phase = (
                    reader.phase_ns if reader.phase_ns is not None else rng.randrange(reader.every_ns)
                )
                self._schedule_reader(vcpu.index, vcpu.reader_phase)
        if self.vmclock is not None and self.platform.vmclock_present:
            # A daemon with its own phase, drawn after the readers' so that theirs do not change.
            first = 1 + rng.randrange(VMCLOCK_POLL_NS)
            self._add_hrtimer(0, first, VMCLOCK_POLL_NS, "vmclock-poll", self._vmclock_poll)
            self._program(0)

    # --- counters and clocks -------------------------------------------

    def _pvti(self, vcpu: int) -> PvclockVcpuTimeInfo:
        page = self.platform.pvti(vcpu)
        if page is None:
            raise RuntimeError(f"vCPU {vcpu} has no pvclock page")
        return page

    def _tsc(self) -> int:
        return self.platform.guest_tsc(self.cpu, self.t)

    def _read_clocksource(self) -> int:
        """``tk->tkr_mono.clock->read()`` on the current vCPU."""
        return self._read_counter(self.clock.name)

    def _read_counter(self, name: str) -> int:
        if name == "tsc":
            return u64(self._tsc())
        if name == "kvm-clock":
            return self.kvmclock.read(self._pvti(self.cpu), self._tsc(), self._guest_stopped_seen)
        device = self.clock if self.clock.name == name else self.wd_cs
        assert device is not None, name
        assert device.name == name, name
        return self.platform.device_counter(device.freq_hz, device.mask, self.t)

    def ktime_get(self) -> int:
        return self.tkg.ktime_get()

    def sched_clock(self) -> int:
        """``local_clock()`` on a KVM guest: ``kvm_sched_clock_read()``."""
        return self.kvmclock.sched_clock_ns(
            self._pvti(self.cpu), self._tsc(), self.sched_clock_offset, self._guest_stopped_seen
        )

    def _update_vsyscall(self, tk: Timekeeper, _action: int) -> None:
        update_vsyscall(tk, self.vdso, self._vdso_mode, self.profile)

    def _note_counter(self, cs: Clocksource) -> None:
        """The narrowest counter timekeeping ran on is what the wrap-loss check judges by."""
        bits = cs.mask.bit_length()
        if bits < self.trace.counter_bits:
            self.trace.counter_bits = bits
            self.trace.counter_wrap_ns = counter_wrap_ns(cs.freq_hz, bits) if bits < 64 else 0

    @property
    def on_device_counter(self) -> bool:
        """Timekeeping reads an emulated counter (HPET, ACPI PM), which the VMM's device clock drives."""
        return self.clock.name in ("hpet", "acpi_pm")

    def switch_clocksource(self, cs: Clocksource) -> None:
        """The watchdog's work: ``change_clocksource()`` to the best remaining one."""
        self.clock = cs
        self._note_counter(cs)
        self.tkg.change_clocksource(cs)
        self._vdso_mode = vdso_clock_mode_for(cs)
        self._update_vsyscall(self.tkg.tk, 0)
        self._message(self.cpu, "clocksource-switch", f"clocksource: Switched to clocksource {cs.name}")

    # --- the detectors' shared touch path ---------------------------------

    def _guest_stopped_seen(self) -> None:
        self.pvclock_touch_watchdogs(self.cpu)

    def pvclock_touch_watchdogs(self, vcpu: int) -> None:
        """``pvclock_touch_watchdogs()``: this vCPU's soft-lockup, and the global detectors."""
        self.softlockup[vcpu].touch_sync()
        self._touch_global_detectors()

    def touch_all_watchdogs(self) -> None:
        """Every CPU's soft-lockup watchdog and the global detectors (the nap's step 9)."""
        for watchdog in self.softlockup:
            watchdog.touch_sync()
        self._touch_global_detectors()

    def _touch_global_detectors(self) -> None:
        """The clocksource watchdog, RCU's stall timeout and the hung-task detector."""
        if self.cs_watchdog is not None:
            self.cs_watchdog.touch()
        self.rcu.reset(self.jiffies)
        self.hung.reset()

    def tsc_rate_changed(self, tsc_khz: int) -> None:
        """The TSC runs at another rate now: register it again (``__clocksource_update_freq_khz``)
        and, if timekeeping reads it, switch to the new registration; the deadline clockevent too."""
        self.tsc_cs = counter_kind("tsc").register(tsc_khz)
        self._init_clockevent()
        if self.clock.name == "tsc":
            self.switch_clocksource(self.tsc_cs)

    @property
    def nap_capable(self) -> bool:
        """The guest runs the nap protocol and registered its page."""
        return self.nap is not None

    def nap_park(self, t_ns: int) -> None:
        """``stop_machine(nap_park)``: every vCPU in the rendezvous, timekeeping parked, acknowledged."""
        assert self.nap is not None
        self.vcpus_stopped(t_ns, reason="nap: parked in stop_machine")
        self.cpu = 0
        self.nap.park()

    def _check_paused(self) -> bool:
        """``kvm_check_and_clear_guest_paused()`` on the current vCPU, with the nap's check point.

        True when ``PVCLOCK_GUEST_STOPPED`` was set or a nap was applied
        here (docs/nap-protocol.md step 12): either way the caller's
        watchdog was just touched.
        """
        paused = self.kvmclock.check_and_clear_guest_paused(
            self.platform.pvti(self.cpu), self._guest_stopped_seen
        )
        return self._nap_checkpoint() or paused

    def _nap_checkpoint(self) -> bool:
        """Step 12 of the nap protocol: apply a wake-up the guest did not park for."""
        if self.nap is None or not self.nap.check():
            return False
        generation = self.nap_page.applied_generation
        self._message(self.cpu, "nap", f"nap: generation {generation} applied late (unannounced)")
        return True

    def _message(self, vcpu: int, kind: str, text: str, value: int = 0) -> None:
        """printk to the serial console, whose write path touches this vCPU's watchdog."""
        self.trace.messages.append(KernelMessage(self.t, vcpu, kind, text, value))
        self.softlockup[vcpu].touch()

    # --- hrtimers and the clockevent ---------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _add_hrtimer(
        self,
        vcpu: int,
        expires: int,
        period: int,
        name: str,
        callback: Callable[[int, int], None],
        *,
        report: bool = False,
    ) -> None:
        timer = HrTimer(expires, self._next_seq(), name, period, callback, self.t, 0, report)
        heapq.heappush(self.vcpus[vcpu].timers, timer)

    def _program(self, vcpu: int) -> None:
        """``clockevents_program_event()`` + ``lapic_next_deadline()`` for the first timer."""
        state = self.vcpus[vcpu]
        if not state.timers:
            state.deadline_tsc = None
            return
        self.cpu = vcpu
        delta = max(state.timers[0].expires - self.ktime_get(), 0)
        ticks = max((delta * self.ce_mult) >> self.ce_shift, CLOCKEVENT_MIN_TICKS)
        state.deadline_tsc = u64(self._tsc() + ticks * TSC_DIVISOR)
        self._arm_irq(vcpu)

    def _arm_irq(self, vcpu: int) -> None:
        """The host's side: fire when the guest TSC reaches the deadline, if the vCPU runs."""
        state = self.vcpus[vcpu]
        if state.irq_event is not None:
            self.engine.cancel(state.irq_event)
            state.irq_event = None
        if state.deadline_tsc is None or not self.platform.running:
            return
        when = self.platform.kvm.true_time_at_guest_tsc(vcpu, state.deadline_tsc, self.t)
        if when is not None:
            state.irq_event = self.engine.at(
                when, lambda: self._interrupt(vcpu), priority=PRIO_IRQ, label=f"irq{vcpu}"
            )

    def _interrupt(self, vcpu: int) -> None:
        """``hrtimer_interrupt()`` on ``vcpu``: irq entry, expired timers, softirqs, reprogram."""
        self.t, self.cpu = self.engine.now, vcpu
        state = self.vcpus[vcpu]
        state.irq_event = None
        if not state.busy:
            self._nohz_irq_enter(vcpu)
        now_kt = self.ktime_get()
        while state.timers and state.timers[0].expires <= now_kt:
            timer = heapq.heappop(state.timers)
            if timer.report:
                self._record_fire(vcpu, timer)
            timer.callback(vcpu, now_kt)
            if timer.period:
                # hrtimer_forward(): the next period after now, missed ones skipped.
                missed = (now_kt - timer.expires) // timer.period + 1
                timer.expires += missed * timer.period
                timer.armed_true, timer.armed_kt = self.t, now_kt
                heapq.heappush(state.timers, timer)
        self._run_wheel(vcpu)
        self._program(vcpu)

    def _nohz_irq_enter(self, vcpu: int) -> None:
        """``tick_nohz_update_jiffies()``: catch jiffies up, touch this vCPU's watchdog."""
        if not self._duty_cpu_busy():
            self.tick_do_update_jiffies64(self.ktime_get())
        self.softlockup[vcpu].touch()

    def _record_fire(self, vcpu: int, timer: HrTimer) -> None:
        """Lateness in running time: the running time since it was armed, past its period.

        Time the vCPUs were stopped between arming and firing does not count:
        a pause the guest did not see makes no timer late.
        """
        running = self.t - timer.armed_true - self.platform.stopped_ns_between(timer.armed_true, self.t)
        due_in = timer.expires - timer.armed_kt
        late = max(running - due_in, 0)
        due = timer.armed_true + due_in
        self.trace.timers.append(TimerFire(self.t, vcpu, timer.name, due, late))

    # --- the tick and jiffies ---------------------------------------------

    def _duty_cpu_busy(self) -> bool:
        return any(v.busy for v in self.vcpus)

    def _is_duty(self, vcpu: int) -> bool:
        """``tick_do_timer_cpu``: the first busy vCPU; any vCPU when all idle."""
        busy = [v.index for v in self.vcpus if v.busy]
        return vcpu == (busy[0] if busy else vcpu)

    def tick_do_update_jiffies64(self, now_kt: int) -> None:
        delta = now_kt - self.last_jiffies_update
        if delta < self.tick_ns:
            return
        ticks = delta // self.tick_ns
        self.last_jiffies_update += ticks * self.tick_ns
        self.jiffies += ticks
        was_unsync, before = bool(self.ntp.time_status & STA_UNSYNC), self.ntp.time_maxerror
        self.tkg.update_wall_time()
        self._nap_checkpoint()
        unsync, after = bool(self.ntp.time_status & STA_UNSYNC), self.ntp.time_maxerror
        # Worth recording: a change of sync state, or an update that accumulated seconds at once.
        if unsync != was_unsync or after - before > NTP_GROWTH_NOTE_US:
            self.trace.ntp.append(NtpRecord(self.t, unsync, after, after - before))

    def _tick(self, vcpu: int, now_kt: int) -> None:
        """``tick_sched_timer()``: timekeeping duty, then ``update_process_times()``."""
        if self._is_duty(vcpu):
            self.tick_do_update_jiffies64(now_kt)
            if self.rcu_gp:
                self.rcu.fqs(self.jiffies)  # the grace-period kthread's force-quiescent-state scan
        self._rcu_tick(vcpu)

    def _rcu_tick(self, vcpu: int) -> None:
        """``rcu_sched_clock_irq()``: the stall check, then this CPU's quiescent state.

        With ``rcu_busy`` a grace period is always in flight: the next one
        starts as soon as one ends (callbacks keep queueing).  A quiet guest
        has none, so nothing can stall.
        """
        if not self.spec.rcu_busy:
            return
        if not self.rcu_gp:
            self._rcu_gp_start()
        state = self.vcpus[vcpu]
        report = self.rcu.check(vcpu, self.jiffies, state.owes_qs, self._check_paused)
        if report is not None:
            self._message(vcpu, "rcu-stall", report.text, report.stalled_jiffies)
        state.owes_qs = False  # a tick in user mode is a quiescent state
        if not any(v.owes_qs for v in self.vcpus):
            self.rcu.gp_ended()
            self._rcu_gp_start()

    def _rcu_gp_start(self) -> None:
        """A new grace period: every busy vCPU owes a quiescent state (idle ones are in one)."""
        self.rcu_gp = True
        self.rcu.gp_started(self.jiffies)
        for v in self.vcpus:
            v.owes_qs = v.busy

    def _watchdog_timer(self, vcpu: int, _now_kt: int) -> None:
        """``watchdog_timer_fn()``; its stopper work (``softlockup_fn``) runs right after."""
        report = self.softlockup[vcpu].timer_fn(self.sched_clock(), self._check_paused)
        if report is not None:
            self._message(vcpu, "softlockup", report.text, report.stuck_s)
        self.softlockup[vcpu].softlockup_fn(self.sched_clock())

    def _workload_timer(self, vcpu: int, now_kt: int) -> None:
        """A workload's periodic timer: its lateness is recorded before the callback."""

    def _ntp_daemon(self, _vcpu: int, _now_kt: int) -> None:
        """A synchronised NTP daemon's periodic ``adjtimex()``: status PLL, maxerror refreshed.

        It does not step or slew REALTIME after a pause (as chrony does not,
        without ``makestep``, for large offsets).
        """
        if not self.spec.ntp:
            return
        real = self.tkg.ktime_get_real_ts64()
        self.ntp.adjtimex(
            Timex(modes=ADJ_STATUS | ADJ_MAXERROR, status=STA_PLL, maxerror=NTP_MAXERROR_US),
            real.sec,
            real.nsec,
        )

    def _vmclock_poll(self, _vcpu: int, _now_kt: int) -> None:
        """The VMCLOCK consumer's poll, a user-space timer: a new disruption marker steps REALTIME."""
        assert self.vmclock is not None  # armed only with a consumer
        before = self.tkg.ktime_get_real()
        reference = self._kvm_wallclock()
        if not self.vmclock.poll(self.platform.vmclock_marker, reference):
            return
        step = reference.to_ns() - before
        self.trace.events.append(
            TimelineEvent(
                self.t,
                "guest",
                "vmclock-step",
                f"disruption_marker {self.vmclock.marker}: do_settimeofday64() stepped REALTIME by {step} ns",
            )
        )
        # TK_CLEAR_NTP: unsynchronised until the NTP daemon's next adjtimex().
        self.trace.ntp.append(
            NtpRecord(self.t, bool(self.ntp.time_status & STA_UNSYNC), self.ntp.time_maxerror)
        )

    # --- the timer wheel -------------------------------------------------

    def _add_wheel(self, expires: int, name: str, callback: Callable[[int, int], None]) -> None:
        """``mod_timer(expires)``: due at jiffy ``expires``, fired at its wheel bucket's jiffy."""
        bucket = self.jiffies + 1  # already due: the next tick's softirq
        if expires > self.jiffies:
            bucket = wheel_bucket_expiry(expires, self.jiffies, self.hz)
        heapq.heappush(self.wheel, WheelTimer(bucket, self._next_seq(), name, callback, expires))

    def _run_wheel(self, vcpu: int) -> None:
        """``run_timer_softirq()`` on ``vcpu``: every wheel timer whose jiffy has come."""
        while self.wheel and self.wheel[0].bucket <= self.jiffies:
            timer = heapq.heappop(self.wheel)
            self.cpu = vcpu
            timer.callback(vcpu, timer.expires)

    def _cs_watchdog_run(self, vcpu: int, expires: int) -> None:
        """``clocksource_watchdog()``: compare the TSC with the watchdog counter."""
        watchdog, wd_cs = self.cs_watchdog, self.wd_cs
        assert watchdog is not None  # armed only with a watchdog
        assert wd_cs is not None
        if watchdog.unstable:
            return
        self._nap_checkpoint()  # applying a nap touches this watchdog: the next run re-bases
        cs_now = self._read_counter("tsc")
        wd_now = self.platform.device_counter(wd_cs.freq_hz, wd_cs.mask, self.t)
        outcome = watchdog.run(cs_now, wd_now, vcpu)
        if outcome.printed:
            kind = "clocksource-unstable" if outcome.kind == "unstable" else "long-readout"
            self._message(vcpu, kind, outcome.printed, outcome.cs_nsec)
        if outcome.kind == "unstable":
            if self.clock.name == "tsc":
                self.switch_clocksource(wd_cs)
            return
        self._add_wheel(
            watchdog.next_expires(expires, self.jiffies), "clocksource-watchdog", self._cs_watchdog_run
        )

    def _khungtaskd(self, vcpu: int, _expires: int) -> None:
        for report in self.hung.check(self.jiffies, self.tasks):
            self._message(vcpu, "hung-task", report.text, report.blocked_s)
        self._add_wheel(self.hung.next_check_jiffies(self.jiffies), "khungtaskd", self._khungtaskd)

    # --- device I/O (runs only while the VM runs) ---------------------------

    def _start_io(self, task: BlockedTask, every_ns: int) -> None:
        """The task blocks in D state on a request the device completes after ``every_ns`` of running."""
        task.blocked = True
        task.last_switch_time = task.last_switch_time or self.jiffies

        def complete() -> None:
            self._io_events.pop(task.pid, None)
            task.switch_count += 1  # it ran, and blocked again on its next request
            self._start_io(task, every_ns)

        self._queue_io(task.pid, every_ns, complete)

    def _queue_io(self, key: int, remaining: int, fn: Callable[[], None]) -> None:
        when = self.t + remaining
        handle = self.engine.at(when, fn, priority=PRIO_READER, label=f"io{key}")
        self._io_events[key] = (handle, when, fn)

    # --- readers -----------------------------------------------------------

    def _schedule_reader(self, vcpu: int, delay: int) -> None:
        state = self.vcpus[vcpu]
        if state.reader is None or not self.platform.running:
            return
        state.reader_event = self.engine.at(
            self.t + delay, lambda: self._reader_step(vcpu), priority=PRIO_READER, label=f"read{vcpu}"
        )

    def _reader_step(self, vcpu: int) -> None:
        self.t = self.engine.now
        self.read_clocks(vcpu)
        reader = self.vcpus[vcpu].reader
        assert reader is not None
        self._schedule_reader(vcpu, reader.every_ns)

    def read_clocks(self, vcpu: int) -> None:
        """The busy reader on ``vcpu`` reads each of its clocks once, now."""
        reader = self.vcpus[vcpu].reader
        if reader is None:
            return
        self.cpu = vcpu
        if self.profile.max_sane_reader:
            self._max_sane_wait(vcpu)
        for clock in reader.clocks or CLOCKS:
            sample = self._read_vdso(vcpu, clock) if reader.path == "vdso" else None
            self.trace.samples.append(sample or self._read_kernel(vcpu, clock))

    def _max_sane_wait(self, vcpu: int) -> None:
        """A max-sane reader's test: past the host's ``max_sane_delta`` it waits for the update.

        The update it waits for is a tick's: after a nap every vCPU's clock
        event is overdue and its interrupt pending, and the reader (user
        space, or a syscall) runs with interrupts on, so the first tick ends
        the wait.  The model runs that update here, before the read.  A
        kernel reader with interrupts off on the only CPU that could update
        would wait forever (tglx, 10 Dec 2020: the NOHZ entry path "would
        simply livelock"); no workload here reads with interrupts off.
        """
        limit = max_sane_cycles(self.nap_page.max_sane_delta, self.tsc_cs.freq_hz, self.clock.freq_hz)
        tkr = self.tkg.tk.tkr_mono
        delta = (self._read_clocksource() - tkr.cycle_last) & tkr.mask
        if not beyond_max_sane(delta, limit, tkr.mask):
            return
        self.trace.events.append(
            TimelineEvent(
                self.t, "guest", "max-sane-wait", f"vCPU {vcpu}: {delta} cycles past the update, over {limit}"
            )
        )
        self.tick_do_update_jiffies64(self.ktime_get())

    def _read_kernel(self, vcpu: int, clock: str) -> Sample:
        tk = self.tkg.tk
        tkr = tk.tkr_raw if clock == "MONOTONIC_RAW" else tk.tkr_mono
        ns, flags = self.tkg.timekeeping_get_ns(tkr)
        offset = {"REALTIME": tk.offs_real, "BOOTTIME": tk.offs_boot, "TAI": tk.offs_tai}.get(clock, 0)
        value = ktime_add_ns(tkr.base + offset, ns)
        path = "" if flags.path == "fast" else flags.path
        return Sample(self.t, vcpu, clock, "kernel", value, path, flags.wrap_loss_ns)

    def _read_vdso(self, vcpu: int, clock: str) -> Sample | None:
        """``clock_gettime()`` through the vDSO; None when it falls back to the syscall."""
        self.vdso.pvclock_page = self.platform.pvti(vcpu)
        try:
            result = vdso_clock_gettime(self.vdso, _VDSO_IDS[clock], self._tsc, self.profile)
        except VdsoLivelockError:
            self.trace.stalls.append(Stall(self.t, vcpu, f"vdso {clock}", 0))
            return None
        if isinstance(result, VdsoFallback):
            return None
        loss = 0
        if clock == "MONOTONIC":
            hres = self.vdso.hres
            cycles = arch_get_hw_counter(self.vdso, self._vdso_mode, self._tsc, self.profile.vdso_delta)
            _, loss = vdso_calc_ns_checked(
                hres, cycles, hres.basetime[CLOCK_MONOTONIC][1], self.profile.vdso_delta
            )
        return Sample(self.t, vcpu, clock, "vdso", result.sec * NSEC_PER_SEC + result.nsec, "", loss)

    # --- the VM stops and runs again -----------------------------------------

    def vcpus_stopped(self, t_ns: int, *, reason: str) -> None:
        """No vCPU runs from ``t_ns``: the last reads, then nothing is scheduled on them.

        A guest parked for a nap (in ``stop_machine``) or suspended to RAM has
        stopped already: nothing more happens.
        """
        self.t = t_ns
        if self.asleep:
            self.platform.stop_vcpus(t_ns)
            self.trace.events.append(TimelineEvent(t_ns, "guest", "vcpus-stopped", reason))
            return
        for vcpu in self.vcpus:
            if vcpu.busy:
                self.read_clocks(vcpu.index)
            for handle in (vcpu.irq_event, vcpu.reader_event):
                if handle is not None:
                    self.engine.cancel(handle)
            vcpu.irq_event = vcpu.reader_event = None
        for key, (handle, when, fn) in list(self._io_events.items()):
            self.engine.cancel(handle)
            self._io_events[key] = (handle, when - t_ns, fn)  # remaining running time
        self.platform.stop_vcpus(t_ns)
        self.trace.events.append(TimelineEvent(t_ns, "guest", "vcpus-stopped", reason))

    def vcpus_run(self, t_ns: int, *, reason: str, resume_irq: bool = False) -> None:
        """Every vCPU enters the guest again at ``t_ns`` (KVM handles its requests first).

        ``resume_irq``: the VMM made an interrupt pending on every vCPU first.
        """
        self.t = t_ns
        self.platform.start_vcpus(t_ns)
        self.trace.events.append(TimelineEvent(t_ns, "guest", "vcpus-run", reason))
        for vcpu in self.vcpus:
            self.platform.kvm.vcpu_run(vcpu.index, t_ns)
        if self.nap is not None and self.nap.parked and self.nap_page.host_state == WOKEN:
            # The vCPU spinning in nap_park sees the GO bit: re-base before anyone reads.
            self.cpu = 0
            injected = self.nap.wake()
            self.trace.events.append(
                TimelineEvent(
                    t_ns, "guest", "nap-wake", f"generation {self.nap_page.generation}, {injected} ns slept"
                )
            )
            for vcpu in self.vcpus:
                self._program(vcpu.index)  # hrtimers_resume(): deadlines from the re-based clock
        if self.s3.suspended:
            self._s3_resume(t_ns)
        if resume_irq:
            self._deliver_resume_irq(t_ns)
        for key, (_handle, remaining, fn) in list(self._io_events.items()):
            self._queue_io(key, remaining, fn)
        for vcpu in self.vcpus:
            if vcpu.busy:
                self.engine.at(
                    t_ns,
                    partial(self._first_read, vcpu.index),
                    priority=PRIO_RESUME_READ,
                    label=f"resume{vcpu.index}",
                )
            self.cpu = vcpu.index
            self._arm_irq(vcpu.index)

    # --- the thread's alternatives to the nap ------------------------------------

    @property
    def asleep(self) -> bool:
        """Parked for a nap, or suspended to RAM: the vCPUs stopping changes nothing more."""
        return (self.nap is not None and self.nap.parked) or self.s3.suspended

    def _kvm_wallclock(self) -> Timespec64:
        """``read_persistent_clock64()`` on a KVM guest: ``kvm_get_wallclock()``, the host's realtime."""
        return Timespec64.from_ns(self.platform.wallclock_ns(self.t))

    def s3_suspend(self, t_ns: int) -> None:
        """The guest's suspend to RAM reaches S3: last reads, ``timekeeping_suspend()``, vCPUs halted."""
        self.vcpus_stopped(t_ns, reason="S3: suspended to RAM")
        self.cpu = 0
        self.s3.suspend()

    def _s3_resume(self, t_ns: int) -> None:
        """Woken from S3: ``timekeeping_resume()`` before any task runs, then ``hrtimers_resume()``."""
        self.cpu = 0
        slept = self.s3.resume()
        self.trace.events.append(
            TimelineEvent(
                t_ns, "guest", "s3-resume", f"timekeeping_resume(): {slept} ns slept (kvm wall clock)"
            )
        )
        for vcpu in self.vcpus:
            self._program(vcpu.index)

    def _deliver_resume_irq(self, t_ns: int) -> None:
        """The VMM's resume interrupt, pending on every vCPU as it enters the guest again.

        Taken as this model takes every pending interrupt: after a resumed
        busy vCPU's first read (what the real guest under QEMU showed), so
        that read still sees the counter's whole delta - as a reader with
        interrupts off would, which is what Andy Lutomirski asked about.
        """
        for vcpu in self.vcpus:
            self.engine.at(
                t_ns,
                partial(self._resume_irq, vcpu.index),
                priority=PRIO_IRQ,
                label=f"resume-irq{vcpu.index}",
            )

    def _resume_irq(self, vcpu: int) -> None:
        """The resume interrupt's handler: catch up, touch the watchdogs, fire what is due, re-arm.

        It knows nothing of the nap but what the counter shows: the catch-up
        is ``update_wall_time()`` through ``tick_do_update_jiffies64()``, so a
        nap the counter showed lands in MONOTONIC, and every timer due
        meanwhile fires at once.  Without a handler (any profile but
        ``resume-irq``) the vector is spurious and nothing happens.
        """
        self.t, self.cpu = self.engine.now, vcpu
        if not self.platform.running:
            return
        if not self.profile.resume_irq_handler:
            self.trace.events.append(TimelineEvent(self.t, "guest", "resume-irq", f"vCPU {vcpu}: no handler"))
            return
        self.tick_do_update_jiffies64(self.ktime_get())
        self.pvclock_touch_watchdogs(vcpu)
        state = self.vcpus[vcpu]
        if state.irq_event is not None:
            self.engine.cancel(state.irq_event)
            state.irq_event = None
        self._interrupt(vcpu)
        self.trace.events.append(TimelineEvent(self.t, "guest", "resume-irq", f"vCPU {vcpu}: caught up"))

    def _first_read(self, vcpu: int) -> None:
        """The resumed reader's read, then back on its own grid of reads."""
        self.t = self.engine.now
        self.read_clocks(vcpu)
        state = self.vcpus[vcpu]
        assert state.reader is not None
        every = state.reader.every_ns
        self._schedule_reader(vcpu, every - (self.t - state.reader_phase) % every)

    def boot_values(self) -> dict[str, int]:
        """Each clock at true time 0 (the timekeeper was initialised there)."""
        epoch = self.spec.epoch_s * NSEC_PER_SEC
        return {"REALTIME": epoch, "TAI": epoch, "MONOTONIC": 0, "BOOTTIME": 0, "MONOTONIC_RAW": 0}
