"""The model's prediction for a real migration, and whether the measurement agrees (issue 7, item 6).

The same operations, at the same instants, on the model: a
:class:`tsclab.host.kvm_vm.KvmVm` for the source VM and one for the
destination, on one :class:`tsclab.host.hosts.HostClock` standing for this
host, and the policy's steps performed by the model's own
:class:`tsclab.host.vmm_steps.StepRunner` - each real step's name fed at the
host-realtime instant it was measured at. The model's guest then "reads"
its kvmclock and TSC at the instants the real guest did, and the jump it
predicts is compared with the jump measured.

This host's facts go into the model:

* the TSC frequency (``KVM_GET_TSC_KHZ``), and how fast the host TSC runs
  against host realtime, measured from KVM_GET_CLOCK's (realtime, host
  TSC) pairs at the start and the end of the run (the model's
  ``drift_ppb``: its realtime is true time, its kvmclock base counts TSC
  cycles at the calibrated rate - as on a real host, whose realtime NTP
  disciplines and whose kvmclock runs on the raw TSC);
* no TSC scaling where ``KVM_CAP_TSC_CONTROL`` is 0;
* where KVM does not apply TSC offsets or host TSC writes (this host:
  ``kvm_pvm`` runs the guest's RDTSC natively in ring 3),
  the model's KVM with ``ignores_tsc_writes``: every guest TSC equal to
  the host's and every offset, ``MSR_IA32_TSC`` or TSC-state write accepted
  and ignored.

The tolerance is the measured host-clock error: the two readings'
placement errors (:mod:`tsclab.kvm.measure`), plus half the realtime
window of every real step that read or set kvmclock without KVM saying
exactly when (the model acts at the window's middle), plus 1 ns of
rounding per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import KvmVm
from tsclab.host.vmm_policies import VmmPolicy
from tsclab.host.vmm_steps import SavedState
from tsclab.host.vmm_steps import StepRunner as ModelStepRunner
from tsclab.kvm.facts import HostFacts
from tsclab.kvm.measure import Measurement
from tsclab.kvm.steps import StepRecord
from tsclab.scenario.model import HostSpec

#: Real steps whose instant decides kvmclock (read it, or set it).
CLOCK_STEPS = frozenset({"get-clock", "set-clock", "set-clock-realtime", "set-clock-or-realtime"})
#: A model host boots this long before the run's first instant (any value: nothing depends on it).
MODEL_UPTIME_NS = 3600 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class Timeline:
    """A real migration's instants (host realtime ns) and steps, as the model needs them."""

    policy: VmmPolicy
    source_created: int
    source_started: int
    source_steps: tuple[StepRecord, ...]  # pause, save (and resume, when the source resumed)
    destination_created: int | None
    destination_steps: tuple[StepRecord, ...]  # restore, restore_resume (empty if not resumed there)
    resumed_on: str  # "destination" or "source"
    drift_ppb: int  # host TSC against host realtime


@dataclass(frozen=True, slots=True)
class ModelRun:
    kvmclock_before: int
    kvmclock_after: int
    tsc_before: int
    tsc_after: int
    log: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Agreement:
    """Measured against predicted, for the guest's kvmclock and its TSC."""

    predicted_kvmclock_discontinuity_ns: int
    measured_kvmclock_discontinuity_ns: int
    predicted_tsc_advance_ns: int
    measured_tsc_advance_ns: int
    intended_tsc_discontinuity_ns: int  # on a KVM that applies TSC offsets and writes
    tolerance_ns: int
    tsc_model: str  # "host TSC" or "offsets applied"
    notes: tuple[str, ...] = field(default=())

    @property
    def kvmclock_difference_ns(self) -> int:
        return self.measured_kvmclock_discontinuity_ns - self.predicted_kvmclock_discontinuity_ns

    @property
    def tsc_difference_ns(self) -> int:
        return self.measured_tsc_advance_ns - self.predicted_tsc_advance_ns

    @property
    def kvmclock_agrees(self) -> bool:
        return abs(self.kvmclock_difference_ns) <= self.tolerance_ns

    @property
    def tsc_agrees(self) -> bool:
        return abs(self.tsc_difference_ns) <= self.tolerance_ns

    @property
    def agrees(self) -> bool:
        return self.kvmclock_agrees and self.tsc_agrees

    def to_dict(self) -> dict[str, Any]:
        return {
            "predicted_kvmclock_discontinuity_ns": self.predicted_kvmclock_discontinuity_ns,
            "measured_kvmclock_discontinuity_ns": self.measured_kvmclock_discontinuity_ns,
            "kvmclock_difference_ns": self.kvmclock_difference_ns,
            "predicted_tsc_advance_ns": self.predicted_tsc_advance_ns,
            "measured_tsc_advance_ns": self.measured_tsc_advance_ns,
            "tsc_difference_ns": self.tsc_difference_ns,
            "intended_tsc_discontinuity_ns": self.intended_tsc_discontinuity_ns,
            "tolerance_ns": self.tolerance_ns,
            "tsc_model": self.tsc_model,
            "kvmclock_agrees": self.kvmclock_agrees,
            "tsc_agrees": self.tsc_agrees,
            "agrees": self.agrees,
            "notes": list(self.notes),
        }


def model_host(facts: HostFacts, drift_ppb: int, epoch_ns: int) -> HostClock:
    """This host as the model's :class:`HostSpec`, its realtime ``epoch_ns + t``."""
    spec = HostSpec(
        name="this-host",
        tsc_khz=facts.tsc_khz,
        drift_ppb=drift_ppb,
        uptime_ns=MODEL_UPTIME_NS,
        scaling="vmx" if facts.tsc_scaling else "none",
        clocksource="tsc" if facts.clocksource_tsc_based else "hpet",
        kvm=facts.kvm_version,
    )
    return HostClock(spec, epoch_ns)


def run_model(
    timeline: Timeline, facts: HostFacts, before_ns: int, after_ns: int, *, offsets_apply: bool
) -> ModelRun:
    """The model's guest kvmclock and TSC at the two readings' instants (host realtime ns)."""
    epoch = timeline.source_created - 1_000_000
    host = model_host(facts, timeline.drift_ppb, epoch)
    log: list[str] = []
    runner = ModelStepRunner(lambda t, who, text: log.append(f"{t + epoch} {who}: {text}"))
    known = runner.names

    def t(realtime: int) -> int:
        return realtime - epoch

    def steps(vm: KvmVm, saved: SavedState, records: Sequence[StepRecord], phases: Sequence[str]) -> None:
        for record in records:
            if record.phase in phases and record.step in known:
                runner.run((record.step,), vm, saved, t(record.instant))

    source = KvmVm(host, 1, t(timeline.source_created), ignores_tsc_writes=not offsets_apply)
    source.enable_pvclock(0, t(timeline.source_started))
    source.vcpu_run(0, t(timeline.source_started))
    source.vcpu_run(0, t(before_ns))
    kvmclock_before = source.kvmclock_ns(0, t(before_ns))
    tsc_before = source.guest_tsc(0, t(before_ns))
    saved = SavedState()
    steps(source, saved, timeline.source_steps, ("pause", "save"))
    if timeline.resumed_on == "destination":
        if timeline.destination_created is None:
            raise ValueError("the guest resumed on a destination that was never created")
        saved.pvti = [None if page is None else replace(page) for page in source.pvti]
        after_vm = KvmVm(host, 1, t(timeline.destination_created), ignores_tsc_writes=not offsets_apply)
        after_vm.set_guest_memory_pvti(0, saved.pvti[0])
        steps(after_vm, saved, timeline.destination_steps, ("restore", "restore_resume"))
    else:
        after_vm = source
        steps(source, saved, timeline.source_steps, ("resume",))
    after_vm.vcpu_run(0, t(after_ns))
    return ModelRun(
        kvmclock_before,
        after_vm.kvmclock_ns(0, t(after_ns)),
        tsc_before,
        after_vm.guest_tsc(0, t(after_ns)),
        tuple(log),
    )


def tolerance_ns(timeline: Timeline, measurement: Measurement) -> int:
    """The measured host-clock error: placements, clock steps' half windows, 1 ns per step."""
    records = [*timeline.source_steps, *timeline.destination_steps]
    steps = sum(r.half_width for r in records if r.step in CLOCK_STEPS)
    return measurement.error_ns + steps + len(records) + 2


def agreement(timeline: Timeline, facts: HostFacts, measurement: Measurement) -> Agreement:
    """Predict with this host's facts; compare with ``measurement``."""
    before, after = measurement.before.realtime, measurement.after.realtime
    here = run_model(timeline, facts, before, after, offsets_apply=facts.tsc_offset_effective)
    intended = run_model(timeline, facts, before, after, offsets_apply=True)
    khz = facts.tsc_khz
    elapsed = after - before
    predicted_tsc_ns = (here.tsc_after - here.tsc_before) * 1_000_000 // khz
    intended_tsc_ns = (intended.tsc_after - intended.tsc_before) * 1_000_000 // khz
    notes = (
        []
        if facts.tsc_offset_effective
        else ["this KVM does not apply TSC offsets or TSC writes: the model's guest reads the host's TSC"]
    )
    return Agreement(
        predicted_kvmclock_discontinuity_ns=here.kvmclock_after - here.kvmclock_before - elapsed,
        measured_kvmclock_discontinuity_ns=measurement.kvmclock_discontinuity_ns,
        predicted_tsc_advance_ns=predicted_tsc_ns,
        measured_tsc_advance_ns=measurement.tsc_advance_ns,
        intended_tsc_discontinuity_ns=intended_tsc_ns - elapsed,
        tolerance_ns=tolerance_ns(timeline, measurement),
        tsc_model="offsets applied" if facts.tsc_offset_effective else "host TSC",
        notes=tuple(notes),
    )
