"""The destination VMM: waits for one migration over TCP, restores the probe guest, runs it.

``python -m tsclab.kvm.vmm_destination --listen HOST [--tsc-khz K] [--fault F]``, started by
:mod:`tsclab.kvm.migrate`. It builds a fresh VM for the probe guest (never run), listens on
an ephemeral port and prints ``LISTENING HOST PORT`` as its first line; then
(``docs/kvm.md``, "Migration"):

1. ``HELLO`` -> ``WELCOME`` (the TSC frequency it offers, whether it can scale);
2. ``RAM`` into guest memory, ``CPU`` into the vCPU (registers, then the kvmclock MSRs are kept
   for the policy's ``enable-pvclock``);
3. ``CLOCK``: first the admission check - a guest whose TSC frequency this host cannot provide
   (more than 250 ppm off, and no TSC scaling: ``KVM_CAP_TSC_CONTROL`` 0) is refused, as QEMU's
   ``cpu_post_load()`` (target/i386/machine.c) refuses a migrated TSC frequency that differs
   from the configured one; then the policy's ``restore`` steps -> ``READY``;
4. ``GO`` -> under ``nap`` the nap page's wake-up, the policy's ``restore_resume`` steps, the
   guest's first reading (it continues from its parked ``in`` to its RDTSC) -> ``DONE``.

Anything that goes wrong before ``GO`` arrives intact ends here with
``ERROR`` to the source (best effort) and the VM discarded: the guest never
ran here, and the source resumes it. ``--tsc-khz`` overrides only the
frequency this destination *advertises* (the tests' stand-in for other
hardware); the refusal logic is the real one.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

from tsclab.host.vmm_policies import VmmPolicy
from tsclab.kvm import constants as c
from tsclab.kvm import nap_vmm
from tsclab.kvm.carried import CarriedState
from tsclab.kvm.clock import realtime_ns
from tsclab.kvm.cpu_state import CpuState, restore_cpu_state
from tsclab.kvm.errors import KvmUnavailableError
from tsclab.kvm.facts import boot_id
from tsclab.kvm.host_info import host_info
from tsclab.kvm.measure import sample_to_dict
from tsclab.kvm.probe_guest import ProbeGuest
from tsclab.kvm.steps import TSC_KHZ_TOLERANCE_PPM, StepRunner
from tsclab.kvm.system import DEVICE, Kvm
from tsclab.kvm.vmm_process import (
    EXIT_FAILED,
    EXIT_NO_KVM,
    EXIT_OK,
    EXPECTED_ERRORS,
    emit,
    error_fields,
    migrate_policy,
    perf_ns,
)
from tsclab.kvm.wire import (
    Channel,
    ConnectionDroppedError,
    Fault,
    FaultInjectedError,
    MessageType,
    PeerError,
    WireError,
    decode_ram,
)


class RefusedError(WireError):
    """This destination will not take the guest (the reason names what was expected)."""


def admission(source_khz: int | None, here_khz: int, scaling: bool) -> str | None:
    """Why this destination refuses a guest whose TSC ran at ``source_khz`` (None: it does not)."""
    if source_khz is None:
        return None
    if abs(here_khz - source_khz) * 1_000_000 <= TSC_KHZ_TOLERANCE_PPM * source_khz:
        return None
    if scaling:
        return None  # the policy's rate step (KVM_SET_TSC_KHZ) can provide it
    return (
        f"TSC frequency mismatch: the guest's TSC runs at {source_khz} kHz, this destination's at "
        f"{here_khz} kHz, and its KVM cannot scale the TSC (KVM_CAP_TSC_CONTROL 0): expected "
        f"{source_khz} kHz within {TSC_KHZ_TOLERANCE_PPM} ppm"
    )


class Destination:
    """One migration's destination side; :meth:`run` returns the result record."""

    def __init__(
        self,
        kvm: Kvm,
        listen: str,
        *,
        advertised_khz: int | None,
        fault: Fault | None,
        timeout_s: float,
    ) -> None:
        self.kvm = kvm
        self.listen = listen
        self.advertised_khz = advertised_khz
        self.fault = fault
        self.timeout_s = timeout_s
        self.stage = "start"
        self.resumed = False
        self.policy: VmmPolicy | None = None
        self.announced = False  # the LISTENING line is out
        self.result: dict[str, Any] = {
            "side": "destination",
            "ok": False,
            "error": None,
            "error_kind": None,
            "stage": None,
            "refused": None,
            "guest_resumed_here": False,
            "samples": {},
            "steps": [],
            "clock_message_ns": 0,
            "nap_page": None,
        }

    def run(self) -> dict[str, Any]:
        with ProbeGuest.create(self.kvm) as guest:
            self.result["vm_created_realtime"] = realtime_ns()
            khz = guest.vcpu.get_tsc_khz()
            scaling = bool(self.kvm.check_extension(c.KVM_CAP_TSC_CONTROL))
            advertised = khz if self.advertised_khz is None else self.advertised_khz
            self.result.update({"tsc_khz": khz, "advertised_tsc_khz": advertised, "tsc_scaling": scaling})
            state = CarriedState()
            runner = StepRunner(guest.vm, state, side="destination", tsc_khz=khz, tsc_scaling=scaling)
            runner.warm_up()
            with socket.create_server((self.listen, 0)) as listener:
                listener.settimeout(self.timeout_s)
                print(f"LISTENING {self.listen} {listener.getsockname()[1]}", flush=True)
                self.announced = True
                self.stage = "accept"
                try:
                    conn, _peer = listener.accept()
                except OSError as err:
                    self.result.update(error_fields(err, self.stage))
                    return self.result
            conn.settimeout(self.timeout_s)
            channel = Channel(conn, "source", self.fault)
            try:
                self._stream(guest, runner, channel, advertised, scaling)
                self.result["ok"] = True
            except EXPECTED_ERRORS as err:
                self.result.update(error_fields(err, self.stage))
                if isinstance(err, RefusedError):
                    self.result["refused"] = str(err)
                if not self.resumed and not isinstance(
                    err, (FaultInjectedError, ConnectionDroppedError, PeerError)
                ):
                    channel.send_error(str(err), self.stage)  # a NAK: the guest did not run here
            finally:
                self.result["steps"] = [record.to_dict() for record in runner.records]
                self.result["wire"] = {
                    "sent": channel.sent,
                    "received": channel.received,
                    "bytes_sent": channel.bytes_sent,
                    "bytes_received": channel.bytes_received,
                }
                channel.close()
        return self.result

    def _stream(
        self, guest: ProbeGuest, runner: StepRunner, channel: Channel, advertised: int, scaling: bool
    ) -> None:
        memory, state = guest.memory, runner.state
        self.stage = "HELLO"
        hello = channel.receive(MessageType.HELLO).json()
        policy = self.policy = migrate_policy(str(hello["policy"]))
        self.result["policy"] = policy.label
        if int(hello["memory_size"]) != memory.size or int(hello["vcpus"]) != len(guest.vm.vcpus):
            raise RefusedError(
                f"the source's guest has {hello['memory_size']} bytes and {hello['vcpus']} vCPU(s); "
                f"this destination built {memory.size} bytes and {len(guest.vm.vcpus)}"
            )
        self.stage = "WELCOME"
        channel.send_json(
            MessageType.WELCOME,
            {
                "tsc_khz": advertised,
                "tsc_scaling": scaling,
                "boot_id": boot_id(),
                "kernel": host_info().kernel,
            },
        )
        for index in range(int(hello["ram_chunks"])):
            self.stage = f"RAM.{index}"
            offset, data = decode_ram(channel.receive(MessageType.RAM).payload)
            memory.write(offset, data)
        self.stage = "CPU"
        for vcpu_record in channel.receive(MessageType.CPU).json()["vcpus"]:
            vcpu = guest.vm.vcpus[int(vcpu_record["vcpu_id"])]
            restore_cpu_state(vcpu, CpuState.from_dict(vcpu_record))
            state.pvclock_msrs[vcpu.vcpu_id] = {int(i, 16): int(v) for i, v in vcpu_record["msrs"].items()}
        self.stage = "CLOCK"
        frame = channel.receive(MessageType.CLOCK)
        start = perf_ns()
        carried = CarriedState.from_dict(frame.json())
        carried.pvclock_msrs = state.pvclock_msrs
        runner.state = state = carried
        self.result["clock_message_ns"] = channel.last_receive_ns + perf_ns() - start
        refusal = admission(state.tsc_khz or state.source_tsc_khz, advertised, scaling)
        if refusal is not None:
            raise RefusedError(refusal)
        runner.run("restore", policy.restore)
        self.stage = "READY"
        channel.send_json(MessageType.READY, {"restored": True})
        self.stage = "GO"
        channel.receive(MessageType.GO)

        # --- committed: the guest is this side's now
        self.stage = "resume"
        if policy.nap and state.freeze_realtime is not None:
            ioctls: list[str] = []
            now_rt, tsc, _host, _error = runner.guest_tsc_instant(guest.vcpu, ioctls)
            runner.records.append(
                nap_vmm.wake(
                    memory,
                    "destination",
                    freeze_realtime=state.freeze_realtime,
                    now_realtime=now_rt,
                    tsc_at_wake=tsc,
                    tsc_khz=runner.tsc_khz,
                    rate_changed=state.tsc_khz is not None and state.tsc_khz != runner.tsc_khz,
                    new_host=str(hello["source"]["boot_id"]) != boot_id(),
                )
            )
        runner.run("restore_resume", policy.restore_resume)
        guest.assume_parked()
        first = guest.resume_sample()
        self.resumed = True
        self.result["guest_resumed_here"] = True
        self.result["samples"]["first"] = sample_to_dict(first)
        self.stage = "DONE"
        channel.send_json(MessageType.DONE, {"running": True, "kvmclock": first.kvmclock})
        self.result["samples"]["later"] = sample_to_dict(guest.sample())
        if policy.nap:
            self.result["nap_page"] = nap_vmm.page_dict(nap_vmm.read_page(memory))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tsclab.kvm.vmm_destination", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", default="127.0.0.1", metavar="HOST")
    parser.add_argument("--tsc-khz", type=int, default=None, help="the TSC frequency to advertise")
    parser.add_argument("--fault", type=Fault.parse, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--device", default=DEVICE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        kvm = Kvm.open(args.device)
    except KvmUnavailableError as err:
        print("LISTENING - -", flush=True)
        emit({"side": "destination", "ok": False, **error_fields(err, "open")})
        return EXIT_NO_KVM
    with kvm:
        destination = Destination(
            kvm, args.listen, advertised_khz=args.tsc_khz, fault=args.fault, timeout_s=args.timeout
        )
        try:
            result = destination.run()
        except EXPECTED_ERRORS as err:  # the VM could not even be built, or the port bound
            if not destination.announced:
                print("LISTENING - -", flush=True)
            result = {"side": "destination", "ok": False, **error_fields(err, destination.stage)}
    emit(result)
    return EXIT_OK if result["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
