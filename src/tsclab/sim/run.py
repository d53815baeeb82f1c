"""One scenario under one kernel profile and one VMM policy, from boot to the end.

The story: the guest boots at true time 0 on the scenario's first host,
runs its workload, and goes through the scenario's events; each event is
the VMM's (or the host's) steps in the policy's order, at the true times
they take, with the guest's vCPUs stopped in between.  The run ends
``settle`` after the last event.

Events:

* ``pause`` - the VMM stops the vCPUs (``policy.pause`` steps), waits,
  then ``policy.resume`` and the vCPUs run;
* ``stop`` - the VMM process is stopped (SIGSTOP): no step runs, every
  counter runs on;
* ``snapshot`` - pause and ``policy.save``; the VM is torn down; after the
  duration a new VM on the target host gets ``policy.restore`` and
  ``policy.restore_resume`` and the guest's memory (its pvclock pages);
* ``migrate`` - the destination VM is created when pre-copy starts; the
  guest runs through pre-copy, then stop-and-copy: pause and save on the
  source, the downtime, restore on the destination;
* ``host-suspend`` - KVM's PM notifier, the host sleeps, KVM's resume
  path; the VMM does nothing (it is not told).

Policies that follow the seed thread's alternatives to the nap add one
step each, where the VMM would take it: ``resume_irq`` an interrupt pending
on every vCPU as it runs again (after anything but a SIGSTOP, which nobody
knew of); ``max_sane_ns`` the page's ``max_sane_delta`` at boot and after
every restore; ``guest_s3`` the guest suspended to RAM before the freeze
and woken after; ``vmclock`` the disruption marker moved on after every
restore or migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from tsclab.arith import NSEC_PER_SEC
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import KvmVm
from tsclab.host.vmm_policies import VmmPolicy, resolve_policy
from tsclab.host.vmm_steps import SavedState, StepRunner
from tsclab.kernel.nap_alternatives import S3_ANSWER_TIMEOUT_NS, S3_SUSPEND_NS
from tsclab.kernel.profiles import get_profile
from tsclab.nap import host as nap_host
from tsclab.scenario.model import Event, Scenario
from tsclab.sim.engine import Engine
from tsclab.sim.guest_kernel import GuestKernel
from tsclab.sim.platform import Platform
from tsclab.sim.trace import Interruption, RunTrace, TimelineEvent

PRIO_VMM = 20  # at one instant, the guest's own events come first
KVMCLOCK_SYNC_PERIOD_NS = 300 * NSEC_PER_SEC  # KVMCLOCK_SYNC_PERIOD: KVM's periodic clock update


def event_end_ns(event: Event) -> int:
    return event.at_ns + event.precopy_ns + event.duration_ns


def run_end_ns(scenario: Scenario) -> int:
    last = max((event_end_ns(e) for e in scenario.events), default=0)
    return last + scenario.settle_ns


def not_applicable(scenario: Scenario, policy: VmmPolicy) -> str:
    """Why a combination cannot run, or ""."""
    guest = scenario.guest
    if not policy.emulated_timers:
        for what, name in (("clocksource", guest.clocksource), ("watchdog", guest.watchdog)):
            if name in ("hpet", "acpi_pm"):
                return f"{policy.label} gives the guest no {name} (its {what})"
    return ""


class Run:
    """The world of one combination: hosts, the current VM, the guest, the engine."""

    def __init__(self, scenario: Scenario, kernel: str, vmm: str, seed: int) -> None:
        self.scenario = scenario
        self.policy = resolve_policy(vmm)
        self.profile = get_profile(kernel)
        guest = scenario.guest
        self.trace = RunTrace(
            scenario=scenario.name,
            kernel=kernel,
            vmm=self.policy.label,
            seed=seed,
            vcpus=guest.vcpus,
            epoch_ns=guest.epoch_s * NSEC_PER_SEC,
            realtime_bound_ns=scenario.realtime_bound_ns,
        )
        self.trace.skipped = not_applicable(scenario, self.policy)
        self.engine = Engine(seed=seed)
        self.hosts = {h.name: HostClock(h, self.trace.epoch_ns) for h in scenario.hosts}
        self.host = self.hosts[scenario.hosts[0].name]
        self._busy = False  # an event is in progress: the next one waits
        self._counter_stop: int | None = None  # when the guest's device counter stopped
        self._finished_ns = 0  # when the last event ended (the vCPUs ran again)
        self._vm_alive = True  # false between a snapshot's save and its restore
        self._nap_from: tuple[HostClock, int, int] | None = None  # (host, realtime, TSC kHz) at the freeze
        self._waiting: list[Event] = []

    def log(self, t_ns: int, actor: str, text: str) -> None:
        self.trace.events.append(TimelineEvent(t_ns, actor, "note", text))

    def execute(self) -> RunTrace:
        if self.trace.skipped:
            return self.trace
        spec = self.scenario.guest
        self.kvm = KvmVm(self.host, spec.vcpus, 0, tsc_khz=spec.tsc_khz)
        self.platform = Platform(self.kvm, vmclock=self.policy.vmclock)
        self.guest = GuestKernel(spec, self.profile, self.platform, self.engine, self.trace)
        self._publish_max_sane()
        self.guest.start(spec.workload, self.engine.rng)
        self.trace.boot_values = self.guest.boot_values()
        for event in self.scenario.events:
            self.engine.at(event.at_ns, partial(self._begin, event), priority=PRIO_VMM, label=event.action)
        self.engine.at(KVMCLOCK_SYNC_PERIOD_NS, self._kvmclock_sync, priority=PRIO_VMM, label="kvmclock-sync")
        end = run_end_ns(self.scenario)
        self.engine.run(until_ns=end)
        if self._busy or self._waiting:
            # An event that waited for its predecessor runs late: let it finish, then settle.
            while (self._busy or self._waiting) and self.engine.step():
                pass
            end = self._finished_ns + self.scenario.settle_ns
            self.engine.run(until_ns=end)
        self.trace.end_ns = end
        self._flush_kvm_log()
        self.trace.events.sort(key=lambda e: e.t_ns)  # stable: same-time entries keep their order
        return self.trace

    # --- events ------------------------------------------------------------

    def _begin(self, event: Event) -> None:
        """Start ``event`` - or, while the previous one is still finishing, queue it.

        A VMM's resume steps take true time, so an event written to start
        exactly when the previous one ends would otherwise begin before the
        vCPUs run again.
        """
        t = self.engine.now
        if self._busy:
            self._waiting.append(event)
            self.log(t, "vmm", f"{event.action} waits for the previous operation to finish")
            return
        self._busy = True
        self.trace.events.append(TimelineEvent(t, "vmm", event.action, _describe(event)))
        if event.action == "stop":  # a SIGSTOP: nobody is asked anything
            self._stop(event, t)
        elif event.action == "migrate":  # the guest runs through pre-copy; it is asked at the stop
            self._migrate(event, t)
        else:
            handler = {"pause": self._pause, "snapshot": self._snapshot, "host-suspend": self._host_suspend}
            self._when_frozen(event, t, partial(handler[event.action], event))

    # --- the nap protocol's host side ----------------------------------------

    def _when_frozen(self, event: Event, t: int, freeze: Callable[[int], None]) -> None:
        """Stop the VM for ``event`` at ``t`` - after asking the guest first, if the policy asks.

        The nap policy asks the guest to park; ``guest-s3`` asks it to
        suspend to RAM (:meth:`_suspend_first`); the others just stop it.
        """
        if self.policy.nap:
            self._nap_first(event, t, freeze)
        elif event.action in self.policy.guest_s3:
            self._suspend_first(event, t, freeze)
        else:
            freeze(t)

    def _nap_first(self, event: Event, t: int, freeze: Callable[[int], None]) -> None:
        """The nap request: the guest parks within ``PARK_NS`` when it runs the protocol and
        answers; otherwise the host waits the deadline (or not at all when the guest never
        registered a page) and naps it anyway."""
        if not self.guest.nap_capable:
            self.log(t, "vmm", "nap: the guest registered no nap page; napping without asking")
            freeze(t)
            return
        generation = nap_host.request(self.guest.nap_page, event.action, event.duration_ns)
        self.trace.events.append(TimelineEvent(t, "vmm", "nap-request", f"generation {generation}"))
        if event.unresponsive:
            deadline = t + nap_host.ACK_DEADLINE_NS
            self.engine.at(deadline, partial(self._freeze_unacked, generation, freeze), priority=PRIO_VMM)
            return

        def parked() -> None:
            now = self.engine.now
            self.guest.nap_park(now)
            self.trace.events.append(TimelineEvent(now, "guest", "nap-ack", f"generation {generation}"))
            freeze(now)

        self.engine.at(t + nap_host.PARK_NS, parked, priority=PRIO_VMM, label="nap-park")

    def _suspend_first(self, event: Event, t: int, freeze: Callable[[int], None]) -> None:
        """Paolo Bonzini's "just put it in S3": the guest suspends to RAM, then the VMM freezes it.

        The request is qemu-guest-agent's ``guest-suspend-ram``; the guest
        takes ``S3_SUSPEND_NS`` to get there (running all the while), and the
        VMM waits for QMP's SUSPEND event.  A guest that does not answer is
        frozen awake after ``S3_ANSWER_TIMEOUT_NS``.  Both waits are the
        host's cost, on the timeline.
        """
        self.trace.events.append(TimelineEvent(t, "vmm", "guest-s3-request", "guest-suspend-ram"))
        if event.unresponsive:

            def give_up() -> None:
                now = self.engine.now
                self.trace.events.append(
                    TimelineEvent(now, "vmm", "guest-s3-timeout", f"no SUSPEND event after {now - t} ns")
                )
                freeze(now)

            self.engine.at(t + S3_ANSWER_TIMEOUT_NS, give_up, priority=PRIO_VMM, label="s3-timeout")
            return

        def suspended() -> None:
            now = self.engine.now
            self.guest.s3_suspend(now)
            self.trace.events.append(
                TimelineEvent(now, "guest", "s3-suspended", f"in S3 after {now - t} ns of suspending")
            )
            freeze(now)

        self.engine.at(t + S3_SUSPEND_NS, suspended, priority=PRIO_VMM, label="s3-suspended")

    def _freeze_unacked(self, generation: int, freeze: Callable[[int], None]) -> None:
        now = self.engine.now
        self.trace.events.append(
            TimelineEvent(now, "vmm", "nap-deadline", f"generation {generation} not acknowledged")
        )
        freeze(now)

    def _nap_frozen(self, t: int) -> None:
        """Step 3 at the moment the vCPUs stop: what the wake-up will compare against."""
        if not (self.policy.nap and self.guest.nap_capable):
            return
        page = self.guest.nap_page
        nap_host.freeze(page, self.kvm.guest_tsc(0, t))
        self._nap_from = (self.host, self.host.realtime_ns(t), self._effective_tsc_khz())

    def _effective_tsc_khz(self) -> int:
        """The rate vCPU 0's TSC really runs at: the host's through the scaling ratio.

        Not ``KVM_GET_TSC_KHZ``, which reports what was asked for even when
        a host without scaling could not provide it.
        """
        ratio, frac_bits = self.kvm.get_tsc_scale(0)
        return self.host.tsc_khz * ratio >> frac_bits

    def _nap_wake(self, t: int) -> None:
        """Step 5 just before the vCPUs run: publish what changed, then WOKEN."""
        if self._nap_from is None:
            return
        source, real_at_freeze, khz = self._nap_from
        self._nap_from = None
        nap_host.wake(
            self.guest.nap_page,
            nap_ns=max(self.host.realtime_ns(t) - real_at_freeze, 0),
            realtime_error_ns=abs(self.host.spec.realtime_error_ns - source.spec.realtime_error_ns),
            tsc_at_wake=self.kvm.guest_tsc(0, t),
            tsc_khz=self._effective_tsc_khz(),
            rate_changed=self._effective_tsc_khz() != khz,
            new_host=self.host is not source,
        )

    # --- the other alternatives' host sides ----------------------------------------

    def _publish_max_sane(self) -> None:
        """``max_sane_delta`` in the page, as guest-TSC cycles at the rate the TSC really runs.

        A single aligned 8-byte store, so no ``seq`` round is needed.
        """
        if self.policy.max_sane_ns:
            khz = self._effective_tsc_khz()
            self.guest.nap_page.max_sane_delta = self.policy.max_sane_ns * khz // 1_000_000

    def _vmclock_loaded(self, t: int) -> None:
        """QEMU's ``vmclock_post_load()`` on the destination: the disruption marker moves on."""
        if self.policy.vmclock:
            marker = self.platform.vmclock_post_load()
            self.trace.events.append(
                TimelineEvent(t, "vmm", "vmclock-disruption", f"disruption_marker {marker}")
            )

    def _steps(self, event: Event) -> StepRunner:
        return StepRunner(self.log, clock_realtime=event.clock_realtime)

    def _hidden(self, event: Event) -> bool:
        return event.action in self.policy.hides and not event.clock_realtime

    def _stop_guest(self, t: int, reason: str, *, devices: bool) -> None:
        self.guest.vcpus_stopped(t, reason=reason)
        self._nap_frozen(t)
        if devices:
            self.platform.devices.stop(t)
            # Time the guest's own clocksource counter stood still (not time its wraps lost).
            self._counter_stop = t if self.guest.on_device_counter else None

    def _run_guest(self, t: int, reason: str, event: Event) -> None:
        """The end of every event: the vCPUs run again, and the next queued event may start."""
        self._flush_kvm_log()
        if self._counter_stop is not None:
            self.trace.counter_stopped.append((self._counter_stop, t))
            self._counter_stop = None
        self._nap_wake(t)
        if self.guest.s3.suspended:
            self.trace.events.append(TimelineEvent(t, "vmm", "guest-s3-wake", "system_wakeup"))
        self.platform.devices.start(t)
        # A SIGCONT is nobody's resume: no VMM code ran, no interrupt was made pending.
        resume_irq = self.policy.resume_irq and event.action != "stop"
        self.guest.vcpus_run(t, reason=reason, resume_irq=resume_irq)
        self._busy = False
        self._finished_ns = t
        if self._waiting:
            self.engine.at(t, partial(self._begin, self._waiting.pop(0)), priority=PRIO_VMM, label="queued")

    def _interruption(self, start: int, end: int, event: Event, *, nap: bool) -> None:
        self.trace.interruptions.append(Interruption(start, end, event.action, self._hidden(event), nap))

    def _pause(self, event: Event, t: int) -> None:
        self._stop_guest(t, "VMM pause", devices=self.policy.devices_stop_on_pause)
        saved = SavedState()
        steps = self._steps(event)
        steps.run(self.policy.pause, self.kvm, saved, t)

        def resume() -> None:
            start = self.engine.now
            done = steps.run(self.policy.resume, self.kvm, saved, start)
            self._interruption(t, done, event, nap=False)
            self._run_guest(done, "VMM resume", event)

        self.engine.at(t + event.duration_ns, resume, priority=PRIO_VMM, label="resume")

    def _stop(self, event: Event, t: int) -> None:
        self._stop_guest(t, "VMM process stopped (SIGSTOP)", devices=False)

        def cont() -> None:
            self._interruption(t, self.engine.now, event, nap=False)
            self._run_guest(self.engine.now, "SIGCONT", event)

        self.engine.at(t + event.duration_ns, cont, priority=PRIO_VMM, label="cont")

    def _save(self, event: Event, t: int) -> tuple[SavedState, StepRunner, int]:
        """Pause, then capture the state and the guest's memory (its pvclock pages)."""
        self._stop_guest(t, f"{event.action}: VM stopped", devices=True)
        saved = SavedState()
        steps = self._steps(event)
        done = steps.run(self.policy.pause, self.kvm, saved, t)
        done = steps.run(self.policy.save, self.kvm, saved, done)
        saved.pvti = [None if page is None else replace(page) for page in self.kvm.pvti]
        return saved, steps, done

    def _restore(self, kvm: KvmVm, saved: SavedState, steps: StepRunner, t: int) -> int:
        """Guest memory into ``kvm``, the policy's restore steps, and the last steps before running."""
        self._flush_kvm_log()
        for vcpu, page in enumerate(saved.pvti):
            kvm.set_guest_memory_pvti(vcpu, page)
        self.kvm = kvm
        self.platform.attach(kvm)
        done = steps.run(self.policy.restore, kvm, saved, t)
        self._vmclock_loaded(done)
        self._publish_max_sane()
        return steps.run(self.policy.restore_resume, kvm, saved, done)

    def _snapshot(self, event: Event, t: int) -> None:
        saved, steps, _ = self._save(event, t)
        self._flush_kvm_log()
        self._vm_alive = False  # torn down: only the snapshot remains
        target = self.hosts[event.to] if event.to else self.host

        def restore() -> None:
            start = self.engine.now
            self.host = target
            kvm = KvmVm(target, self.scenario.guest.vcpus, start)
            self._vm_alive = True
            done = self._restore(kvm, saved, steps, start)
            self._interruption(t, done, event, nap=True)
            self._run_guest(done, f"restored on {target.name}", event)

        self.engine.at(t + event.duration_ns, restore, priority=PRIO_VMM, label="restore")

    def _migrate(self, event: Event, t: int) -> None:
        target = self.hosts[event.to or self.host.name]
        # The destination is started (-incoming) when migration begins.
        destination = KvmVm(target, self.scenario.guest.vcpus, t)

        def stop_and_copy(stop: int) -> None:
            saved, steps, _ = self._save(event, stop)

            def switch_over() -> None:
                start = self.engine.now
                self.host = target
                done = self._restore(destination, saved, steps, start)
                self._interruption(stop, done, event, nap=True)
                self._run_guest(done, f"migrated to {target.name}", event)

            self.engine.at(stop + event.duration_ns, switch_over, priority=PRIO_VMM, label="switch-over")

        def end_of_precopy() -> None:
            self._when_frozen(event, self.engine.now, stop_and_copy)

        self.engine.at(t + event.precopy_ns, end_of_precopy, priority=PRIO_VMM, label="stop-and-copy")

    def _host_suspend(self, event: Event, t: int) -> None:
        host, kvm = self.host, self.kvm
        kvm.suspend_notifier(t)
        self._stop_guest(t, f"host {host.name} suspends", devices=True)
        host.suspend(t, event.duration_ns)

        def wake() -> None:
            now = self.engine.now
            kvm.host_resumed(now)
            self._interruption(t, now, event, nap=True)
            self._run_guest(now, f"host {host.name} resumed", event)

        self.engine.at(t + event.duration_ns, wake, priority=PRIO_VMM, label="host-resume")

    def _kvmclock_sync(self) -> None:
        """KVM's ``kvmclock_sync_fn()`` on the VM that exists now; running vCPUs take the update
        at their next entry, which on a running guest is at once."""
        t = self.engine.now
        if self._vm_alive and not self.host.suspended_at(t):
            self.kvm.kvmclock_periodic_sync(t)
            if self.platform.running:
                for vcpu in range(self.kvm.nr_vcpus):
                    self.kvm.vcpu_run(vcpu, t)
        self.engine.at(
            t + KVMCLOCK_SYNC_PERIOD_NS, self._kvmclock_sync, priority=PRIO_VMM, label="kvmclock-sync"
        )

    def _flush_kvm_log(self) -> None:
        """KVM's own log of ioctls and requests, onto the run's timeline."""
        kvm = getattr(self, "kvm", None)
        if kvm is None:
            return
        for t_ns, name, detail in kvm.log:
            self.trace.events.append(TimelineEvent(t_ns, "kvm", name, detail))
        kvm.log.clear()


def _describe(event: Event) -> str:
    parts = [f"for {event.duration_ns / NSEC_PER_SEC:g} s"]
    if event.precopy_ns:
        parts.append(f"after {event.precopy_ns / NSEC_PER_SEC:g} s of pre-copy")
    if event.to:
        parts.append(f"to {event.to}")
    if event.clock_realtime:
        parts.append("clock_realtime")
    return ", ".join(parts)


def run_combination(scenario: Scenario, kernel: str, vmm: str, seed: int = 0) -> RunTrace:
    """Run one (kernel profile, VMM policy) combination of ``scenario``."""
    return Run(scenario, kernel, vmm, seed).execute()
