"""VMM policies: what each VMM does to guest time, step by step, as data.

A policy is a named, versioned list of steps for each operation; the steps
themselves (one KVM ioctl or a short sequence of them) are the mechanism in
:mod:`tsclab.host.vmm_steps`.  Adding a VMM, or a version whose order
changed, is adding one entry here.

Operations, in the order the simulator runs them:

* ``pause`` / ``resume`` - the VMM stops its vCPUs and later runs them again;
* ``save`` - on the source, the VM stopped: capture clock and TSC state
  (a snapshot, or the stop-and-copy phase of a live migration);
* ``restore`` - on the destination, a new VM created: put the state back;
* ``restore_resume`` - the last steps before the destination's vCPUs run.

Facts (virtualization-time.md sections 2 and 4-5): QEMU reads kvmclock
with ``KVM_GET_CLOCK`` on stop and writes it back without
``KVM_CLOCK_REALTIME`` on cont, then calls ``KVM_KVMCLOCK_CTRL`` on every
vCPU (``kvmclock_vm_state_change``); it moves the TSC by value through
host-initiated ``MSR_IA32_TSC`` writes, leaning on KVM's 1-second sync.
Firecracker calls ``KVM_KVMCLOCK_CTRL`` on pause (PR #4460) and, from
PR #5494, before resuming a restored VM; it restores kvmclock with
``KVM_SET_CLOCK``, adding the elapsed realtime only with ``clock_realtime``.
Cloud Hypervisor saves kvmclock on pause and sets it on resume, notifies
the guest (``KVMCLOCK_CTRL``), restores TSC MSRs, and later (#8437)
re-syncs the vCPUs' TSC offsets.  ``upstream-doc`` is the 7-step
algorithm of KVM's documentation; ``scale-aware`` the same with TSC
scaling (David Woodhouse's correction); ``tsc-state`` the seed's
``KVM_{GET|SET}_TSC_STATE`` (v2) inside QEMU's flow.

The seed thread's alternatives to the nap protocol (docs/simulator.md,
"Alternatives to the nap") are policies too, each a known VMM's steps plus
one flag the simulator obeys: ``resume-irq`` (an interrupt into every vCPU
after every resume, Andy Lutomirski), ``max-sane`` (the most TSC cycles a
reader may see, published; Andy and tglx), ``guest-s3`` (the guest
suspended to RAM before a snapshot; Paolo Bonzini) and ``vmclock`` (QEMU's
VMCLOCK device bumping its disruption marker after every load).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Steps = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VmmPolicy:
    name: str  # "qemu", "firecracker", ...
    version: str
    summary: str
    pause: Steps
    resume: Steps
    save: Steps
    restore: Steps
    restore_resume: Steps
    # Operations the policy promises MONOTONIC will not count - QEMU freezes
    # kvmclock on purpose; the nap and the alternatives that stand in for it
    # promise suspend's semantics - unless the scenario asks for
    # clock_realtime.  The monotonic-jump check judges against this.
    hides: frozenset[str] = frozenset()
    emulated_timers: bool = True  # the VM has an HPET and an ACPI PM timer
    nap: bool = False  # asks the guest to park first, tells it what changed after (docs/nap-protocol.md)
    devices_stop_on_pause: bool = True  # the device clock stops while the VMM pauses
    # The thread's alternatives to the nap (docs/simulator.md, "Alternatives to the nap"):
    resume_irq: bool = False  # an interrupt into every vCPU after each resume, before the vCPUs run
    max_sane_ns: int = 0  # publish max_sane_delta: this much guest-TSC time, in cycles (0: not published)
    guest_s3: frozenset[str] = frozenset()  # operations before which the guest is suspended to RAM
    vmclock: bool = False  # a VMCLOCK device whose disruption marker changes after every load
    sources: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


QEMU = VmmPolicy(
    name="qemu",
    version="7.2",
    summary="kvmclock frozen across stop/cont and migration; TSC by value through MSR writes",
    pause=("get-tsc-msrs", "get-clock"),
    resume=("set-clock", "kvmclock-ctrl"),
    save=("get-clock", "get-tsc-msrs", "get-tsc-khz"),
    restore=("set-tsc-khz-or-warn", "set-tsc-msrs", "enable-pvclock"),
    restore_resume=("set-clock-or-realtime", "kvmclock-ctrl"),
    hides=frozenset({"pause", "snapshot", "migrate"}),
    sources=("qemu hw/i386/kvm/clock.c kvmclock_vm_state_change", "target/i386/kvm/kvm.c kvm_get_tsc"),
)

_FIRECRACKER = VmmPolicy(
    name="firecracker",
    version="1.12",
    summary="KVMCLOCK_CTRL on pause only; a restored VM resumes with GUEST_STOPPED never written",
    pause=("kvmclock-ctrl",),
    resume=(),
    save=("get-clock", "get-tsc-msrs", "get-tsc-khz"),
    restore=("set-tsc-khz-beyond-250ppm", "set-tsc-msrs", "enable-pvclock", "set-clock-or-realtime"),
    restore_resume=(),
    hides=frozenset({"snapshot"}),
    emulated_timers=False,
    devices_stop_on_pause=False,
    sources=("firecracker PR #4460", "firecracker issue #5322"),
)
FIRECRACKER_FIXED = replace(
    _FIRECRACKER,
    version="1.13",
    summary="with PR #5494: KVMCLOCK_CTRL before resuming a restored VM",
    restore_resume=("kvmclock-ctrl",),
    sources=("firecracker PR #5494",),
)

CLOUD_HYPERVISOR_MSR = VmmPolicy(
    name="cloud-hypervisor",
    version="msr",
    summary="TSC restored by MSR writes only (KVM's 1-second sync decides the offsets)",
    pause=("get-clock", "kvmclock-ctrl"),
    resume=("set-clock",),
    save=("get-clock", "get-tsc-msrs", "get-tsc-khz"),
    restore=("set-tsc-khz-or-warn", "set-tsc-msrs", "enable-pvclock"),
    restore_resume=("set-clock-or-realtime", "kvmclock-ctrl"),
    hides=frozenset({"pause", "snapshot", "migrate"}),
    emulated_timers=False,
    devices_stop_on_pause=False,
    sources=("kernel bugzilla 217423", "cloud-hypervisor PR #1369"),
)
# Each later version states only what changed.
CLOUD_HYPERVISOR_OFFSETS = replace(
    CLOUD_HYPERVISOR_MSR,
    version="msr+offsets",
    summary="TSC written twice: MSRs, then each vCPU's KVM_VCPU_TSC_OFFSET from its own clock reading",
    restore=(*CLOUD_HYPERVISOR_MSR.restore, "per-vcpu-tsc-offsets"),
    sources=("cloud-hypervisor PR #8383",),
)
CLOUD_HYPERVISOR_SYNC = replace(
    CLOUD_HYPERVISOR_OFFSETS,
    version="offset-sync",
    summary="with PR #8437: after restore every vCPU gets vCPU 0's TSC offset",
    restore=(*CLOUD_HYPERVISOR_OFFSETS.restore, "equalize-tsc-offsets"),
    sources=("cloud-hypervisor PR #8437",),
)

UPSTREAM_DOC = VmmPolicy(
    name="upstream-doc",
    version="5.16",
    summary="KVM's documented 7 steps: kvmclock advanced by realtime, offsets moved to match",
    pause=(),
    resume=(),
    save=("get-clock", "get-tsc-offsets", "get-tsc-khz"),
    restore=("enable-pvclock", "set-clock-realtime", "set-tsc-offsets-doc"),
    restore_resume=(),
    # An algorithm for the TSC and kvmclock only: it says nothing of legacy
    # timers, so it is modelled on a VMM without them.
    emulated_timers=False,
    devices_stop_on_pause=False,
    sources=("Documentation/virt/kvm/devices/vcpu.rst section 4",),
)
SCALE_AWARE = replace(
    UPSTREAM_DOC,
    name="scale-aware",
    version="1",
    summary="the documented algorithm with TSC scaling: rate set first, offsets from scaled TSCs",
    restore=("set-tsc-khz-or-warn", "enable-pvclock", "set-clock-realtime", "set-tsc-offsets-scaled"),
    sources=("David Woodhouse, KVM_VCPU_TSC_SCALE RFC, 13 Sep 2023",),
)
# The seed's QEMU side: QEMU's flow with the TSC moved by the proposed ioctls.
TSC_STATE = replace(
    QEMU,
    name="tsc-state",
    version="v2",
    summary="the seed's KVM_{GET|SET}_TSC_STATE in QEMU's flow: TSC moved on by realtime, kvmclock frozen",
    save=("get-clock", "get-tsc-state", "get-tsc-khz"),
    restore=("set-tsc-khz-or-warn", "set-tsc-state", "enable-pvclock"),
    hides=frozenset({"pause"}),
    sources=("[PATCH v2 0/3] RFC: Precise TSC migration <20201203171118.372391-1-mlevitsk@redhat.com>",),
)

# The nap protocol's host side, on the scale-aware offset algorithm: the
# guest is asked first and told after; KVMCLOCK_CTRL before the vCPUs run.
NAP = replace(
    SCALE_AWARE,
    name="nap",
    version="1",
    summary="the nap protocol: ask the guest to park, nap, publish what changed, then let it go",
    pause=(),
    resume=("kvmclock-ctrl",),
    restore_resume=("kvmclock-ctrl",),
    hides=frozenset({"pause", "snapshot", "migrate", "host-suspend"}),
    # A QEMU-like VMM that implements the protocol: legacy timers too.
    emulated_timers=True,
    devices_stop_on_pause=True,
    nap=True,
    sources=("docs/nap-protocol.md", "tglx, 10 Dec 2020: 'a notification about we take a nap'"),
)

# --- the seed thread's alternatives to the nap ---------------------------------

# Andy Lutomirski, 10 Dec 2020, asking tglx whether "a synchronous interrupt
# or NMI on resume" could do instead.  The nap policy's host side without the
# asking: the TSC moved on by the elapsed time (scale-aware), and after every
# resume - the VMM's, or KVM's after a host suspend - an interrupt pending on
# every vCPU before it runs.  It promises what the nap does (MONOTONIC does
# not count a nap); the guest's handler can keep that promise only if the
# counter did not show the nap, which on this offset algorithm it does.
RESUME_IRQ = replace(
    SCALE_AWARE,
    name="resume-irq",
    version="1",
    summary="scale-aware offsets; after every resume an interrupt into every vCPU before it runs",
    hides=NAP.hides,
    emulated_timers=True,
    devices_stop_on_pause=True,
    resume_irq=True,
    sources=(
        "Andy Lutomirski, 10 Dec 2020: 'a synchronous interrupt or NMI on resume'",
        "tglx, 10 Dec 2020: 'Tell it before it takes a nap is simpler and does not require an NMI'",
    ),
)
# How much guest-TSC time max-sane@1 publishes as max_sane_delta.  A busy
# guest updates timekeeping every tick (4 ms at HZ=250); an all-idle NOHZ one
# may go longer, and a reader then waits for an update it did not need -
# time, not correctness.  1 s is this policy's choice, not a documented one.
MAX_SANE_NS = 1_000_000_000
# Andy's "max TSC value that makes sense right now" in the timekeeping data,
# agreed by tglx (10 Dec 2020 <87360djqve.fsf@nanos.tec.linutronix.de>),
# published by a QEMU-like VMM: nothing else about the nap is told.
MAX_SANE = replace(
    QEMU,
    name="max-sane",
    version="1",
    summary="QEMU's flow, publishing max_sane_delta: the most TSC cycles a reader may see between updates",
    max_sane_ns=MAX_SANE_NS,
    sources=(
        "tglx, 10 Dec 2020 <87360djqve.fsf@nanos.tec.linutronix.de>: Andy's 'max TSC value that makes sense'",
        "docs/nap-protocol.md section 1: the nap page's max_sane_delta",
    ),
)
# Paolo Bonzini, 10 Dec 2020: for snapshot-over-the-weekend "just put it in
# S3 ... Do what bare metal does".  QEMU asks the guest to suspend to RAM
# (qemu-guest-agent's guest-suspend-ram), waits for QMP's SUSPEND event,
# snapshots, and wakes the restored guest (QMP system_wakeup).  Live
# migration cannot: its downtime is the point.  A pause is not announced with
# a length (QMP stop has none) and a host suspend is not the VMM's to see.
GUEST_S3 = replace(
    QEMU,
    name="guest-s3",
    version="1",
    summary="QEMU's flow; before a snapshot the guest suspends to RAM, and is woken after the restore",
    guest_s3=frozenset({"snapshot"}),
    sources=(
        "Paolo Bonzini, 10 Dec 2020 <eb0cbfaa-251a-810b-3c12-4ee63d082bc8@redhat.com>: 'just put it in S3'",
        "qemu-guest-agent guest-suspend-ram; QMP system_wakeup",
    ),
)
# QEMU's VMCLOCK device in its basic mode: kvmclock handled as QEMU does,
# and hw/acpi/vmclock.c vmclock_post_load() changing disruption_marker after
# every migration or snapshot load.  After the fact: nothing is announced.
VMCLOCK = replace(
    QEMU,
    name="vmclock",
    version="1",
    summary="QEMU's flow with a VMCLOCK device: disruption_marker changed after every migration or load",
    vmclock=True,
    sources=(
        "QEMU hw/acpi/vmclock.c vmclock_post_load()",
        "Linux drivers/ptp/ptp_vmclock.c; include/uapi/linux/vmclock-abi.h",
    ),
)

POLICIES: dict[str, tuple[VmmPolicy, ...]] = {
    "qemu": (QEMU,),
    "firecracker": (_FIRECRACKER, FIRECRACKER_FIXED),
    "cloud-hypervisor": (CLOUD_HYPERVISOR_MSR, CLOUD_HYPERVISOR_OFFSETS, CLOUD_HYPERVISOR_SYNC),
    "upstream-doc": (UPSTREAM_DOC,),
    "scale-aware": (SCALE_AWARE,),
    "tsc-state": (TSC_STATE,),
    "nap": (NAP,),
    "resume-irq": (RESUME_IRQ,),
    "max-sane": (MAX_SANE,),
    "guest-s3": (GUEST_S3,),
    "vmclock": (VMCLOCK,),
}


class UnknownPolicyError(ValueError):
    """A VMM policy name or version that is not defined."""


def policy_names() -> list[str]:
    """Every accepted spelling: each name (its latest version) and each name@version."""
    names: list[str] = []
    for name, versions in POLICIES.items():
        names.append(name)
        names.extend(p.label for p in versions)
    return names


def resolve_policy(spec: str) -> VmmPolicy:
    """``name`` (latest version) or ``name@version`` -> the policy; the error lists the choices."""
    name, _, version = spec.strip().partition("@")
    versions = POLICIES.get(name)
    if versions is None:
        raise UnknownPolicyError(
            f"unknown VMM policy {spec!r}; expected one of: {', '.join(POLICIES)} (optionally name@version)"
        )
    if not version:
        return versions[-1]
    for policy in versions:
        if policy.version == version:
            return policy
    known = ", ".join(p.label for p in versions)
    raise UnknownPolicyError(f"unknown version {version!r} of VMM policy {name!r}; expected one of: {known}")
