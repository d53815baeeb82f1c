"""Real KVM: a small Python VMM over ``/dev/kvm``, a probe guest, and what the host's KVM can do for time.

Layers inside the package, each module one job:

* ABI: :mod:`~tsclab.kvm.ioctls` (request numbers), :mod:`~tsclab.kvm.structs`
  (ctypes layouts), :mod:`~tsclab.kvm.constants` (capabilities, flags, exit
  reasons, MSRs), :mod:`~tsclab.kvm.libc` (ioctl/mmap through ctypes);
* fds, one object each, closed deterministically: :class:`Kvm` (system),
  :class:`Vm`, :class:`Vcpu`, and the mappings :class:`GuestMemory`;
  run exits decoded by :mod:`~tsclab.kvm.exits`;
* time: :class:`ClockData` (KVM_GET/SET_CLOCK), :mod:`~tsclab.kvm.pvclock`
  (the guest's kvmclock arithmetic), :mod:`~tsclab.kvm.clock_state` and
  :mod:`~tsclab.kvm.cpu_state` (save/restore building blocks for snapshot and
  migration policies);
* the probe guest: :mod:`~tsclab.kvm.guest_code` (hand-assembled bytes) and
  :class:`ProbeGuest` (runs it, brackets its readings with host reads);
* reports: :mod:`~tsclab.kvm.probe` (``tsclab kvm probe``) and
  :mod:`~tsclab.kvm.selftest` (``tsclab kvm selftest``);
* migration (``tsclab kvm migrate``): :mod:`~tsclab.kvm.wire` (the stream),
  :mod:`~tsclab.kvm.steps` (the policies' step names on a real VM),
  :mod:`~tsclab.kvm.vmm_source` and :mod:`~tsclab.kvm.vmm_destination` (the
  two VMM processes), :mod:`~tsclab.kvm.measure` (what the guest saw) and
  :mod:`~tsclab.kvm.migrate` (the command).

The layer below migration knows nothing of the model: it reads and writes
real KVM state. Migration runs the model's policy definitions
(``tsclab.host.vmm_policies``) for real, and :mod:`~tsclab.kvm.agreement`
compares what it measured with the model's prediction.
"""

from tsclab.kvm.clock import ClockData
from tsclab.kvm.clock_state import VcpuClockState, VmClockState, save_clock_state
from tsclab.kvm.errors import GuestError, KvmError, KvmUnavailableError
from tsclab.kvm.memory import GuestMemory
from tsclab.kvm.probe_guest import GuestSample, ProbeGuest
from tsclab.kvm.system import Kvm
from tsclab.kvm.vcpu import Vcpu
from tsclab.kvm.vm import Vm

__all__ = [
    "ClockData",
    "GuestError",
    "GuestMemory",
    "GuestSample",
    "Kvm",
    "KvmError",
    "KvmUnavailableError",
    "ProbeGuest",
    "Vcpu",
    "VcpuClockState",
    "Vm",
    "VmClockState",
    "save_clock_state",
]
