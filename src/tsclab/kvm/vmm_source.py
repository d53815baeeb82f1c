"""The source VMM: runs the probe guest, stops it, and sends it to a destination VMM over TCP.

``python -m tsclab.kvm.vmm_source --connect HOST:PORT --policy P [--downtime-ns N] [--fault F]``,
started by :mod:`tsclab.kvm.migrate`. The sequence (``docs/kvm.md``, "Migration"):

1. build the probe guest, run it (kvmclock on, a few readings: the masterclock is on);
2. ``HELLO`` -> ``WELCOME``; under the ``nap`` policy, the nap request and its deadline;
3. the last reading, then the stop: the guest is parked (:meth:`ProbeGuest.park`), the policy's
   ``pause`` and ``save`` steps run (``tsclab.host.vmm_policies``), the CPU state and RAM are
   taken; ``--downtime-ns`` more of stop, if asked;
4. ``RAM`` x n, ``CPU``, ``CLOCK`` -> ``READY``;
5. ``GO``: the commit - from here the guest is the destination's - then ``DONE``.

If anything fails before the commit, or the destination answers the commit
with ``ERROR`` (it did not run the guest), the source resumes its own
guest: the policy's ``resume`` steps (QEMU's: kvmclock set back to the value
read at the stop, then ``KVM_KVMCLOCK_CTRL``; the documented algorithm's:
none, kvmclock ran on in KVM), then the guest's first reading after the
stop. After the commit without ``DONE`` the outcome is unknown here; the
guest is left to the destination, never run twice.

The result (one JSON line on stdout, :func:`tsclab.kvm.vmm_process.emit`)
holds the readings, every step's record and the stream's messages.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from tsclab.host.vmm_policies import VmmPolicy
from tsclab.kvm import constants as c
from tsclab.kvm import nap_vmm
from tsclab.kvm.carried import CarriedState
from tsclab.kvm.clock import realtime_ns
from tsclab.kvm.cpu_state import save_cpu_state
from tsclab.kvm.errors import KvmUnavailableError
from tsclab.kvm.facts import boot_id
from tsclab.kvm.host_info import host_info
from tsclab.kvm.measure import sample_to_dict
from tsclab.kvm.probe_guest import GuestSample, ProbeGuest
from tsclab.kvm.steps import StepRunner
from tsclab.kvm.system import DEVICE, Kvm
from tsclab.kvm.vmm_process import (
    EXIT_FAILED,
    EXIT_NO_KVM,
    EXIT_OK,
    EXPECTED_ERRORS,
    RAM_CHUNK,
    emit,
    error_fields,
    migrate_policy,
    perf_ns,
)
from tsclab.kvm.wire import Channel, Fault, MessageType, PeerError, encode_json, encode_ram

WARM_UP_READINGS = 3
PVCLOCK_MSRS = (c.MSR_KVM_SYSTEM_TIME_NEW, c.MSR_KVM_WALL_CLOCK_NEW)


class Source:
    """One migration's source side; :meth:`run` returns the result record."""

    def __init__(
        self,
        kvm: Kvm,
        policy: VmmPolicy,
        address: tuple[str, int],
        *,
        downtime_ns: int,
        fault: Fault | None,
        timeout_s: float,
    ) -> None:
        self.kvm = kvm
        self.policy = policy
        self.address = address
        self.downtime_ns = downtime_ns
        self.fault = fault
        self.timeout_s = timeout_s
        self.stage = "start"
        self.stopped = False
        self.committed = False
        self.result: dict[str, Any] = {
            "side": "source",
            "policy": policy.label,
            "ok": False,
            "error": None,
            "error_kind": None,
            "stage": None,
            "committed": False,
            "guest_resumed_here": False,
            "samples": {},
            "steps": [],
            "downtime_injected_ns": downtime_ns,
            "clock_message_ns": 0,
            "nap_page": None,
        }

    def run(self) -> dict[str, Any]:
        with ProbeGuest.create(self.kvm) as guest:
            self.result["vm_created_realtime"] = realtime_ns()
            guest.start()
            self.result["vm_started_realtime"] = realtime_ns()
            for _ in range(WARM_UP_READINGS):
                warm = guest.sample()
            self.result["samples"]["first"] = sample_to_dict(warm)
            khz = guest.vcpu.get_tsc_khz()
            self.result["tsc_khz"] = khz
            state = CarriedState(source_tsc_khz=khz)
            runner = StepRunner(
                guest.vm,
                state,
                side="source",
                tsc_khz=khz,
                tsc_scaling=bool(self.kvm.check_extension(c.KVM_CAP_TSC_CONTROL)),
            )
            runner.warm_up()
            try:
                self._migrate(guest, runner)
                self.result["ok"] = True
            except EXPECTED_ERRORS as err:
                self.result.update(error_fields(err, self.stage))
                if not self.stopped:
                    self._ran_on(guest, warm)
                elif not self.committed or isinstance(err, PeerError):
                    self._resume_here(guest, runner)
            finally:
                self.result["steps"] = [record.to_dict() for record in runner.records]
                self.result["committed"] = self.committed
        return self.result

    # --- the migration

    def _migrate(self, guest: ProbeGuest, runner: StepRunner) -> None:
        policy, memory = self.policy, guest.memory
        if policy.nap:
            runner.records.append(nap_vmm.register(memory, "source"))
        self.stage = "connect"
        sock = socket.create_connection(self.address, timeout=self.timeout_s + self.downtime_ns / 1e9)
        channel = Channel(sock, "destination", self.fault)
        try:
            self._stream(guest, runner, channel)
        finally:
            self.result["wire"] = {
                "sent": channel.sent,
                "received": channel.received,
                "bytes_sent": channel.bytes_sent,
                "bytes_received": channel.bytes_received,
            }
            channel.close()

    def _stream(self, guest: ProbeGuest, runner: StepRunner, channel: Channel) -> None:
        policy, memory, state = self.policy, guest.memory, runner.state
        chunks = (memory.size + RAM_CHUNK - 1) // RAM_CHUNK
        self.stage = "HELLO"
        channel.send_json(
            MessageType.HELLO,
            {
                "policy": policy.label,
                "vcpus": len(guest.vm.vcpus),
                "memory_size": memory.size,
                "ram_chunks": chunks,
                "nap_gpa": nap_vmm.NAP_GPA if policy.nap else None,
                "source": {
                    "boot_id": boot_id(),
                    "kernel": host_info().kernel,
                    "tsc_khz": state.source_tsc_khz,
                },
            },
        )
        self.stage = "WELCOME"
        self.result["welcome"] = channel.receive(MessageType.WELCOME).json()
        if policy.nap:
            self.stage = "nap request"
            record, _acked = nap_vmm.request(memory, "source", self.downtime_ns, guest.sample)
            runner.records.append(record)

        # --- the stop
        self.stage = "stop"
        self.result["samples"]["last"] = sample_to_dict(guest.sample())
        guest.park()
        self.stopped = True
        self.result["stop_realtime"] = realtime_ns()
        runner.run("pause", policy.pause)
        runner.run("save", policy.save)
        cpu = save_cpu_state(guest.vcpu)
        pvclock_msrs = guest.vcpu.get_msrs(list(PVCLOCK_MSRS))
        if policy.nap:
            ioctls: list[str] = []
            freeze_rt, tsc, _host, _error = runner.guest_tsc_instant(guest.vcpu, ioctls)
            state.freeze_realtime = freeze_rt
            runner.records.append(nap_vmm.freeze(memory, "source", freeze_rt, tsc))
        ram = memory.read(0, memory.size)
        if self.downtime_ns:
            time.sleep(self.downtime_ns / 1e9)

        # --- the transfer
        for index in range(0, memory.size, RAM_CHUNK):
            self.stage = f"RAM.{index // RAM_CHUNK}"
            channel.send(MessageType.RAM, encode_ram(index, ram[index : index + RAM_CHUNK]))
        self.stage = "CPU"
        channel.send_json(
            MessageType.CPU,
            {
                "vcpus": [
                    {
                        **cpu.to_dict(),
                        "vcpu_id": guest.vcpu.vcpu_id,
                        "msrs": {f"{i:#x}": v for i, v in sorted(pvclock_msrs.items())},
                    }
                ]
            },
        )
        self.stage = "CLOCK"
        start = perf_ns()
        channel.send(MessageType.CLOCK, encode_json(state.to_dict()))
        self.result["clock_message_ns"] = perf_ns() - start
        self.stage = "READY"
        channel.receive(MessageType.READY)

        # --- the commit
        self.stage = "GO"
        channel.send_json(MessageType.GO, {"commit": True})
        self.committed = True
        self.stage = "DONE"
        self.result["done"] = channel.receive(MessageType.DONE).json()

    # --- a failed migration: the source's own resume

    def _ran_on(self, guest: ProbeGuest, warm: GuestSample) -> None:
        """The migration failed before the stop: the guest never stopped; one more reading shows it."""
        try:
            self.result["samples"]["last"] = sample_to_dict(warm)
            self.result["samples"]["resumed"] = sample_to_dict(guest.sample())
            self.result["samples"]["later"] = sample_to_dict(guest.sample())
            self.result["guest_resumed_here"] = True
        except EXPECTED_ERRORS as err:
            self.result["resume_error"] = str(err)

    def _resume_here(self, guest: ProbeGuest, runner: StepRunner) -> None:
        """The policy's ``resume`` steps on the source's own VM, then the guest runs again."""
        try:
            if self.policy.nap and runner.state.freeze_realtime is not None:
                ioctls: list[str] = []
                now_rt, tsc, _host, _error = runner.guest_tsc_instant(guest.vcpu, ioctls)
                runner.records.append(
                    nap_vmm.wake(
                        guest.memory,
                        "source",
                        freeze_realtime=runner.state.freeze_realtime,
                        now_realtime=now_rt,
                        tsc_at_wake=tsc,
                        tsc_khz=runner.tsc_khz,
                        rate_changed=False,
                        new_host=False,
                    )
                )
            runner.run("resume", self.policy.resume)
            resumed = guest.resume_sample()
            self.result["guest_resumed_here"] = True
            self.result["samples"]["resumed"] = sample_to_dict(resumed)
            self.result["samples"]["later"] = sample_to_dict(guest.sample())
            if self.policy.nap:
                self.result["nap_page"] = nap_vmm.page_dict(nap_vmm.read_page(guest.memory))
        except EXPECTED_ERRORS as err:
            self.result["resume_error"] = str(err)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tsclab.kvm.vmm_source", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connect", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--policy", type=migrate_policy, required=True)
    parser.add_argument("--downtime-ns", type=int, default=0)
    parser.add_argument("--fault", type=Fault.parse, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--device", default=DEVICE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        kvm = Kvm.open(args.device)
    except KvmUnavailableError as err:
        emit({"side": "source", "ok": False, **error_fields(err, "open")})
        return EXIT_NO_KVM
    with kvm:
        try:
            result = Source(
                kvm,
                args.policy,
                args.connect,
                downtime_ns=args.downtime_ns,
                fault=args.fault,
                timeout_s=args.timeout,
            ).run()
        except EXPECTED_ERRORS as err:  # the guest could not even be built or started
            result = {"side": "source", "ok": False, **error_fields(err, "start")}
    emit(result)
    return EXIT_OK if result["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
