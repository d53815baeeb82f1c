"""The guest's hardware as it stands at a moment: which KVM VM it runs in, and its devices.

The guest kernel reads counters through this object only, so a restore or
a migration can swap the VM underneath it (``attach``) while guest memory -
the kernel's state - carries on.

Emulated devices (HPET, ACPI PM timer) count the VMM's virtual clock: QEMU
derives them from ``QEMU_CLOCK_VIRTUAL``, which stops while the VM is
stopped (``vm_stop``), is carried across migration and snapshots, and -
being based on the host's CLOCK_MONOTONIC - stands still while the host
sleeps.  A SIGSTOPped VMM does not stop it: the process simply is not
running, and the clock reads the elapsed time when it runs again.

A VMM may also give the guest a VMCLOCK device (QEMU's ``hw/acpi/vmclock.c``
in its basic mode): a page whose ``disruption_marker`` the VMM changes after
every migration or snapshot load; the device is part of the VM's state and
carries its marker across.
"""

from __future__ import annotations

from tsclab.arith import NSEC_PER_SEC
from tsclab.host.kvm_vm import KvmVm
from tsclab.kernel.vdso import PvclockVcpuTimeInfo


class DeviceClock:
    """The VMM's virtual clock: true time, less the intervals it was stopped."""

    def __init__(self) -> None:
        self._base_true = 0
        self._base_ns = 0
        self._running = True
        self.stopped: list[tuple[int, int]] = []  # (start, end) true-time intervals it stood still

    def ns(self, t_ns: int) -> int:
        return self._base_ns + (t_ns - self._base_true if self._running else 0)

    def stop(self, t_ns: int) -> None:
        if self._running:
            self._base_ns, self._base_true, self._running = self.ns(t_ns), t_ns, False

    def start(self, t_ns: int) -> None:
        if not self._running:
            self.stopped.append((self._base_true, t_ns))
            self._base_true, self._running = t_ns, True


class Platform:
    """The current VM, the device clock, and when the vCPUs were not running."""

    def __init__(self, kvm: KvmVm, *, vmclock: bool = False) -> None:
        self.kvm = kvm
        self.devices = DeviceClock()
        self.vmclock_present = vmclock
        self.vmclock_marker = 0  # VMCLOCK's disruption_marker
        self.running = True
        self._stopped_since = 0
        # (start, end) true-time intervals during which no vCPU ran.
        self.stopped: list[tuple[int, int]] = []

    def attach(self, kvm: KvmVm) -> None:
        """A restore or migration: the guest now runs in ``kvm``."""
        self.kvm = kvm

    def vmclock_post_load(self) -> int:
        """QEMU's ``vmclock_post_load()``: the loaded device's ``disruption_marker`` moves on; returns it."""
        self.vmclock_marker += 1
        return self.vmclock_marker

    def wallclock_ns(self, t_ns: int) -> int:
        """What ``kvm_get_wallclock()`` gives the guest: the current host's CLOCK_REALTIME.

        KVM publishes host realtime less kvmclock at each ``MSR_KVM_WALL_CLOCK_NEW``
        write (``kvm_write_wall_clock()``), which the guest makes on every
        read, and the guest adds its pvclock reading back.
        """
        return self.kvm.host.realtime_ns(t_ns)

    def stop_vcpus(self, t_ns: int) -> None:
        if self.running:
            self.running, self._stopped_since = False, t_ns

    def start_vcpus(self, t_ns: int) -> None:
        if not self.running:
            self.running = True
            self.stopped.append((self._stopped_since, t_ns))

    def stopped_ns_between(self, start_ns: int, end_ns: int) -> int:
        """True time within [start, end) during which the vCPUs did not run."""
        total = 0
        for lo, hi in self.stopped:
            total += max(0, min(hi, end_ns) - max(lo, start_ns))
        return total

    def guest_tsc(self, vcpu: int, t_ns: int) -> int:
        return self.kvm.guest_tsc(vcpu, t_ns)

    def pvti(self, vcpu: int) -> PvclockVcpuTimeInfo | None:
        return self.kvm.pvti[vcpu]

    def device_counter(self, freq_hz: int, mask: int, t_ns: int) -> int:
        """An emulated counter at ``freq_hz`` on the device clock, as the guest reads it."""
        return self.devices.ns(t_ns) * freq_hz // NSEC_PER_SEC & mask
