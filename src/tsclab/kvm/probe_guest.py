"""Run the probe guest: a VM with one vCPU, asked for TSC readings, with the host's clocks beside.

Each :meth:`ProbeGuest.sample` brackets the guest's RDTSC between two
KVM_GET_CLOCK calls (kvmclock, and host realtime and TSC when KVM pairs
them), so a test can say "the guest read a value between these two host
reads", as the kernel's ``kvm_clock_test`` and
``system_counter_offset_test`` do; and it reads the guest's pvclock page
right after the guest's RDTSC, before the vCPU runs again, to compute
the kvmclock the guest would have read for that TSC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from tsclab.kvm import constants as c
from tsclab.kvm import guest_code as g
from tsclab.kvm.clock import ClockData, monotonic_raw_ns, realtime_ns
from tsclab.kvm.cpu_state import complete_pending_io
from tsclab.kvm.cpuid import CpuidEntry
from tsclab.kvm.deadline import deadline
from tsclab.kvm.errors import GuestError, KvmError
from tsclab.kvm.exits import HltExit, IntrExit, IoExit, VcpuExit
from tsclab.kvm.memory import GuestMemory
from tsclab.kvm.pvclock import PvclockTimeInfo, pvclock_read_cycles, read_consistent
from tsclab.kvm.system import Kvm
from tsclab.kvm.vcpu import Vcpu
from tsclab.kvm.vm import Vm

RUN_TIMEOUT_S = 10.0
TSS_ADDR = 0xFFFBD000  # QEMU's choice: 3 pages below the BIOS, outside guest RAM


@dataclass(frozen=True, slots=True)
class GuestSample:
    """One guest TSC reading and the host reads around it.

    ``before``/``after`` are KVM_GET_CLOCK immediately before entering
    the guest and immediately after its first exit (its RDTSC lies
    between); ``before_ns``/``after_ns`` the host's CLOCK_MONOTONIC_RAW at
    the same points. ``pvclock`` is the guest's pvclock page as it was
    when the guest read the TSC (None when kvmclock is off) and
    ``kvmclock`` what the guest's kvmclock read for ``tsc``.
    ``before_realtime``/``after_realtime`` are host CLOCK_REALTIME read by
    the VMM just outside the two KVM_GET_CLOCK calls: a bracket that holds
    even when KVM_GET_CLOCK carries no ``KVM_CLOCK_REALTIME`` (0 when not
    taken).
    """

    tsc: int
    before: ClockData
    after: ClockData
    before_ns: int
    after_ns: int
    pvclock: PvclockTimeInfo | None
    kvmclock: int | None
    before_realtime: int = 0
    after_realtime: int = 0


class ProbeGuest:
    """The probe guest in its own VM; :meth:`close` closes the VM (vCPU, fds, memory).

    Build with :meth:`create`, adjust the vCPU (TSC offset or frequency,
    CPUID) if needed, then :meth:`start`, which runs the guest to its first
    request (past its kvmclock WRMSR).
    """

    def __init__(self, vm: Vm, vcpu: Vcpu, memory: GuestMemory, *, kvmclock: bool, timeout_s: float) -> None:
        self.vm = vm
        self.vcpu = vcpu
        self.memory = memory
        self.kvmclock = kvmclock
        self.timeout_s = timeout_s
        self._pending_in: IoExit | None = None
        self._parked = False

    @classmethod
    def create(
        cls,
        kvm: Kvm,
        *,
        kvmclock: bool = True,
        cpuid: tuple[CpuidEntry, ...] | None = None,
        timeout_s: float = RUN_TIMEOUT_S,
        before_vcpu: Callable[[Vm], None] | None = None,
    ) -> ProbeGuest:
        """A VM with the guest loaded and one vCPU in long mode at its entry; not yet run.

        ``cpuid`` defaults to everything KVM_GET_SUPPORTED_CPUID offers
        (which includes the KVM paravirt leaves with KVM_FEATURE_CLOCKSOURCE2).
        ``before_vcpu`` runs between VM and vCPU creation (e.g. a VM-wide
        KVM_SET_TSC_KHZ, which KVM only takes before the first vCPU).
        """
        vm = kvm.create_vm()
        try:
            if kvm.check_extension(c.KVM_CAP_SET_TSS_ADDR):
                vm.set_tss_addr(TSS_ADDR)
            memory = vm.add_memory(g.MEMORY_SIZE)
            for gpa, entry in g.page_tables().items():
                memory.write_gpa(gpa, entry)
            memory.write_gpa(g.CODE_GPA, g.assemble(g.PVCLOCK_GPA if kvmclock else None))
            if before_vcpu is not None:
                before_vcpu(vm)
            vcpu = vm.create_vcpu(0)
            vcpu.set_cpuid2(kvm.get_supported_cpuid() if cpuid is None else cpuid)
            _enter_long_mode(vcpu)
        except BaseException:
            vm.close()
            raise
        return cls(vm, vcpu, memory, kvmclock=kvmclock, timeout_s=timeout_s)

    def close(self) -> None:
        self.vm.close()

    def __enter__(self) -> ProbeGuest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- running the protocol

    def start(self) -> None:
        """Run the guest to its first request (it has written the kvmclock MSR by then)."""
        self._pending_in = self._run_until_request("the first request (after the kvmclock WRMSR)")

    def sample(self) -> GuestSample:
        """Ask the guest for its TSC; see :class:`GuestSample`."""
        request = self._take_request()
        self.vcpu.answer_in(request, g.REQUEST_TSC)
        return self._collect_sample()

    def park(self) -> None:
        """Answer the pending request with "read the TSC" and complete the ``in`` without running on.

        The vCPU state is then consistent (api.rst: pending I/O completes on
        re-entry) and can be saved; the guest's next instruction, here or
        in the VM its state is restored into, leads to its RDTSC. Take the
        reading with :meth:`resume_sample`.
        """
        request = self._take_request()
        self.vcpu.answer_in(request, g.REQUEST_TSC)
        complete_pending_io(self.vcpu)
        self._parked = True

    def assume_parked(self) -> None:
        """This guest's state was restored from a parked guest (see :meth:`park`)."""
        self._pending_in = None
        self._parked = True

    def resume_sample(self) -> GuestSample:
        """Run a parked guest to its TSC reading; the same bracketing as :meth:`sample`."""
        if not self._parked:
            raise GuestError("the guest is not parked (call park() or assume_parked() first)")
        self._parked = False
        return self._collect_sample()

    def _collect_sample(self) -> GuestSample:
        before_realtime = realtime_ns()
        before = self.vm.get_clock()
        before_ns = monotonic_raw_ns()
        low = self._run_expect_out(g.TSC_LOW_PORT)
        after_ns = monotonic_raw_ns()
        after = self.vm.get_clock()
        after_realtime = realtime_ns()
        page = self.pvclock()
        high = self._run_expect_out(g.TSC_HIGH_PORT)
        self._pending_in = self._run_until_request("the next request")
        tsc = (high.value << 32) | low.value
        kvmclock = pvclock_read_cycles(page, tsc) if page is not None and page.enabled else None
        return GuestSample(
            tsc, before, after, before_ns, after_ns, page, kvmclock, before_realtime, after_realtime
        )

    def halt(self) -> HltExit:
        """Ask the guest to HLT; returns the KVM_EXIT_HLT, with the guest parked at its next request."""
        request = self._take_request()
        self.vcpu.answer_in(request, g.REQUEST_HALT)
        exit_ = self._run("HLT")
        if not isinstance(exit_, HltExit):
            raise self._unexpected("KVM_EXIT_HLT", exit_)
        self._pending_in = self._run_until_request("the request after HLT")
        return exit_

    def pvclock(self) -> PvclockTimeInfo | None:
        """The guest's pvclock page now (None when the guest runs without kvmclock)."""
        if not self.kvmclock:
            return None
        return read_consistent(lambda: self.memory.read_gpa(g.PVCLOCK_GPA, 32))

    # --- internals

    def _take_request(self) -> IoExit:
        if self._pending_in is None:
            raise GuestError("the guest is not waiting for a request (call start() first)")
        request, self._pending_in = self._pending_in, None
        return request

    def _run(self, what: str) -> VcpuExit:
        while True:
            with deadline(self.timeout_s) as alarm:
                exit_ = self.vcpu.run()
            if not isinstance(exit_, IntrExit):
                return exit_
            if alarm.expired:
                raise GuestError(
                    f"waiting for {what}: KVM_RUN did not return within {self.timeout_s:g} s "
                    "(this KVM does not run the guest's code)"
                )

    def _run_until_request(self, what: str) -> IoExit:
        exit_ = self._run(what)
        if isinstance(exit_, IoExit) and exit_.is_in and exit_.port == g.REQUEST_PORT and exit_.size == 1:
            return exit_
        raise self._unexpected(what, exit_)

    def _run_expect_out(self, port: int) -> IoExit:
        what = f"an out to port {port:#x}"
        exit_ = self._run(what)
        if isinstance(exit_, IoExit) and not exit_.is_in and exit_.port == port and exit_.size == 4:
            return exit_
        raise self._unexpected(what, exit_)

    def _unexpected(self, wanted: str, exit_: VcpuExit) -> GuestError:
        try:
            rip = f" at rip {int(self.vcpu.get_regs().rip):#x}"
        except KvmError:
            rip = ""
        return GuestError(f"expected {wanted}, got {exit_.describe()}{rip}")


def _enter_long_mode(vcpu: Vcpu) -> None:
    """64-bit mode at the guest's entry: paging on with the identity map, flat 64-bit code segment."""
    sregs = vcpu.get_sregs()
    code = sregs.cs
    code.base, code.limit, code.selector = 0, 0xFFFFFFFF, 0x8
    code.type, code.present, code.dpl, code.db, code.s, code.l, code.g = 0xB, 1, 0, 0, 1, 1, 1
    for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        seg.base, seg.limit, seg.selector = 0, 0xFFFFFFFF, 0x10
        seg.type, seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g = 0x3, 1, 0, 1, 1, 0, 1
    sregs.cr3 = g.PML4_GPA
    sregs.cr4 = g.CR4_PAE
    sregs.cr0 = g.CR0_PE | g.CR0_ET | g.CR0_NE | g.CR0_PG
    sregs.efer = g.EFER_LME | g.EFER_LMA
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip, regs.rsp, regs.rflags = g.CODE_GPA, g.STACK_TOP, g.RFLAGS_FIXED
    vcpu.set_regs(regs)
