"""guest/machine.py: the QEMU command line, and process handling against a fake ``qemu``.

The fake is a small Python script that reads the real QEMU command line:
the console and probe files from the two ``-serial file:`` arguments, the
QMP socket from ``-qmp``.  Depending on its mode it fails, hangs, or writes
a probe log and serves enough QMP (``stop``, ``cont``, ``quit``) for
``GuestMachine`` to pause and close it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tsclab.guest.machine import (
    GuestError,
    GuestMachine,
    MachineConfig,
    PauseRecord,
    RunFiles,
    qemu_command,
)

FAKE_QEMU = r"""
import json, os, signal, socket, subprocess, sys, threading, time

MODE = __MODE__
args = sys.argv[1:]


def values(flag):
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


console, probe = (value.removeprefix("file:") for value in values("-serial"))
qmp_path = values("-qmp")[0].removeprefix("unix:").split(",")[0]
workdir = os.path.dirname(console)
if os.environ.get("FAKE_QEMU_ARGV"):
    with open(os.environ["FAKE_QEMU_ARGV"], "w") as out:
        json.dump(sys.argv, out)


def append(path, text):
    with open(path, "a") as out:
        out.write(text)


def serve_qmp():
    # Each command is logged to qmp.log; quit answers, then exits.
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(qmp_path)
    server.listen(1)
    while True:
        conn, _ = server.accept()
        conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        for line in conn.makefile("rb"):
            command = json.loads(line)["execute"]
            append(os.path.join(workdir, "qmp.log"), command + "\n")
            if command == "stop" and MODE == "stop-fails":
                reply = {"error": {"class": "GenericError", "desc": "cannot stop now"}}
            else:
                reply = {"return": {}}
            conn.sendall(json.dumps(reply).encode() + b"\n")
            if command == "quit":
                sys.exit(0)
        conn.close()


def heartbeat():
    fd = os.open(probe, os.O_WRONLY | os.O_APPEND)
    while True:
        os.write(fd, b"S 0 0 1 2 3 4 5\n")
        time.sleep(0.001)


if MODE == "exit":
    append(console, "".join(f"console line {i}\n" for i in range(45)) + "Kernel panic - not syncing: fake\n")
    sys.stderr.write("qemu-system-x86_64: fake failure\n")
    sys.exit(1)
elif MODE == "hang":
    def terminated(_signum, _frame):
        append(os.path.join(workdir, "signals.log"), "SIGTERM\n")
        os._exit(143)

    signal.signal(signal.SIGTERM, terminated)
    subprocess.Popen(["sleep", "3600"])  # a second process in QEMU's session
    time.sleep(3600)
else:
    append(console, "Linux version 6.1.0-fake\nclocksource: Switched to clocksource tsc\n")
    append(probe, "H 1 1 10000000 20000000\nS 0 0 1 2 3 4 5\n")
    if MODE == "heartbeat":
        threading.Thread(target=heartbeat, daemon=True).start()
    serve_qmp()
"""


def write_fake_qemu(path: Path, mode: str) -> Path:
    """An executable fake ``qemu-system-x86_64`` in ``mode``: exit, hang, ready, heartbeat, stop-fails."""
    path.write_text(f"#!{sys.executable}\n" + FAKE_QEMU.replace("__MODE__", repr(mode)))
    path.chmod(0o755)
    return path


def proc_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def pid_of(machine: GuestMachine) -> int:
    assert machine.process is not None
    return machine.process.pid


def qmp_log(files: RunFiles) -> list[str]:
    path = files.workdir / "qmp.log"
    return path.read_text().split() if path.exists() else []


Boot = Callable[..., GuestMachine]


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Boot]:
    """Start a GuestMachine on a fake qemu; whatever happens, its session is killed afterwards."""
    started: list[GuestMachine] = []

    def start(mode: str, vcpus: int = 1) -> GuestMachine:
        fake = write_fake_qemu(tmp_path / f"fake-qemu-{mode}", mode)
        files = RunFiles(tmp_path / f"run-{len(started)}")
        config = MachineConfig(vcpus=vcpus)
        command = qemu_command(str(fake), tmp_path / "vmlinuz", tmp_path / "initramfs.cpio", config, files)
        machine = GuestMachine(command, files, vcpus)
        machine.start()
        started.append(machine)
        return machine

    yield start
    for machine in started:
        if machine.process is None:
            continue
        # The whole group, even if QEMU itself is gone: nothing it spawned may outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(machine.process.pid, signal.SIGKILL)
        machine.process.wait()


# ---------------------------------------------------------------------------
# qemu_command


def _values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == flag]


def _command(tmp_path: Path, config: MachineConfig) -> tuple[list[str], RunFiles]:
    files = RunFiles(tmp_path / "run")
    return qemu_command("/opt/qemu", tmp_path / "vmlinuz", tmp_path / "initrd", config, files), files


@pytest.mark.parametrize(("accel", "cpu"), [("tcg", "max"), ("kvm", "host")])
def test_qemu_command_accelerator_and_cpu(tmp_path: Path, accel: str, cpu: str) -> None:
    command, _ = _command(tmp_path, MachineConfig(accel=accel, vcpus=2, memory_mb=512))
    assert command[0] == "/opt/qemu"
    assert _values(command, "-accel") == [accel]
    assert _values(command, "-cpu") == [cpu]
    assert _values(command, "-smp") == ["2"]
    assert _values(command, "-m") == ["512"]


def test_qemu_command_files_and_devices(tmp_path: Path) -> None:
    command, files = _command(tmp_path, MachineConfig())
    assert _values(command, "-kernel") == [str(tmp_path / "vmlinuz")]
    assert _values(command, "-initrd") == [str(tmp_path / "initrd")]
    # ttyS0 the console, ttyS1 the probe: the order is the port number.
    assert _values(command, "-serial") == [f"file:{files.console}", f"file:{files.probe}"]
    assert files.console != files.probe
    assert _values(command, "-qmp") == [f"unix:{files.qmp_socket},server=on,wait=off"]
    assert _values(command, "-display") == ["none"]
    assert "-nodefaults" in command
    assert "-no-reboot" in command


@pytest.mark.parametrize("clocksource", ["tsc", "hpet", "acpi_pm"])
@pytest.mark.parametrize("reliable", [False, True])
def test_qemu_command_kernel_command_line(tmp_path: Path, clocksource: str, reliable: bool) -> None:
    command, _ = _command(tmp_path, MachineConfig(clocksource=clocksource, tsc_reliable=reliable))
    (append,) = _values(command, "-append")
    words = append.split()
    assert f"clocksource={clocksource}" in words
    assert [w for w in words if w.startswith("clocksource=")] == [f"clocksource={clocksource}"]
    assert "console=ttyS0" in words
    assert ("tsc=reliable" in words) is reliable


# ---------------------------------------------------------------------------
# GuestMachine with a fake qemu


def test_qemu_exiting_while_booting_raises_with_status_and_console(boot: Boot) -> None:
    machine = boot("exit")
    start = time.monotonic()
    with pytest.raises(GuestError) as caught:
        machine.wait_ready(timeout_s=10)
    assert time.monotonic() - start < 5.0  # noticed at once, not at the timeout
    message = str(caught.value)
    assert "exited with status 1" in message
    assert "qemu-system-x86_64: fake failure" in message  # what QEMU wrote to its log
    tail = caught.value.console_tail.splitlines()
    assert tail[-1] == "Kernel panic - not syncing: fake"
    assert tail == machine.console_tail().splitlines()
    assert len(tail) == 40  # the last 40 of 46 lines
    assert tail[0] == "console line 6"
    machine.close()  # already gone: returns at once


def test_a_hung_guest_times_out_and_close_kills_its_whole_session(boot: Boot) -> None:
    machine = boot("hang")
    pid = pid_of(machine)
    assert wait_for(lambda: len(session_members(pid)) == 2), session_members(pid)
    with pytest.raises(GuestError, match="did not start its probe within 1 s") as caught:
        machine.wait_ready(timeout_s=1)
    assert caught.value.console_tail == ""
    machine.close()  # no QMP here: a failed quit, then SIGTERM to the group
    assert machine.process is not None
    assert machine.process.poll() is not None
    assert session_members(pid) == []
    # Terminated, not killed: SIGTERM came before any SIGKILL.
    assert (machine.files.workdir / "signals.log").read_text() == "SIGTERM\n"


def test_ready_needs_the_header_and_a_sample_from_every_vcpu(boot: Boot) -> None:
    machine = boot("ready", vcpus=2)  # the fake samples vCPU 0 only
    with pytest.raises(GuestError, match="did not start its probe"):
        machine.wait_ready(timeout_s=0.6)
    assert "H 1 1" in machine.files.probe.read_text()  # it got that far
    machine.close()


def test_sigstop_pause_stops_the_whole_process_then_continues_it(boot: Boot) -> None:
    machine = boot("ready")
    machine.wait_ready(timeout_s=10)
    pid = pid_of(machine)
    probe_size = machine.files.probe.stat().st_size
    console_size = machine.files.console.stat().st_size

    record = machine.pause("sigstop", 50_000_000)

    assert isinstance(record, PauseRecord)
    assert record.mode == "sigstop"
    assert record.requested_ns == 50_000_000
    assert 50_000_000 <= record.measured_ns < 1_000_000_000
    assert record.probe_offset == record.probe_offset_cont == probe_size
    assert record.console_offset == console_size
    assert record.host_real_cont_ns - record.host_real_stop_ns > 0
    assert machine.pauses == [record]
    assert machine.stopped is False
    assert machine.process is not None
    assert machine.process.poll() is None
    assert proc_state(pid) not in ("T", "t")

    machine.close()
    assert machine.process.poll() is not None
    assert qmp_log(machine.files) == ["qmp_capabilities", "quit"]  # it asked QMP to quit first
    assert not machine.files.qmp_socket.exists()


def test_a_sigstopped_guest_writes_nothing_until_continued(boot: Boot) -> None:
    machine = boot("heartbeat")  # a second thread appends a probe line every millisecond
    machine.wait_ready(timeout_s=10)
    record = machine.pause("sigstop", 100_000_000)
    assert record.probe_offset == record.probe_offset_cont
    # ... and it runs again: the heartbeat goes on.
    assert wait_for(lambda: machine.files.probe.stat().st_size > record.probe_offset_cont)
    machine.close()


def test_close_continues_a_sigstopped_guest_before_quitting(boot: Boot) -> None:
    machine = boot("ready")
    machine.wait_ready(timeout_s=10)
    pid = pid_of(machine)
    os.killpg(pid, signal.SIGSTOP)
    machine.stopped = True
    assert wait_for(lambda: proc_state(pid) in ("T", "t"))
    start = time.monotonic()
    machine.close()
    # A guest left stopped could not answer QMP; only SIGKILL, after seconds, would end it.
    assert time.monotonic() - start < 4.0
    assert machine.process is not None
    assert machine.process.poll() is not None
    assert machine.stopped is False
    assert qmp_log(machine.files)[-1] == "quit"


def test_qmp_pause_stops_and_continues_through_qmp(boot: Boot) -> None:
    machine = boot("ready")
    machine.wait_ready(timeout_s=10)
    record = machine.pause("qmp", 50_000_000)
    assert record.mode == "qmp"
    assert record.requested_ns == 50_000_000
    assert record.measured_ns >= 50_000_000
    assert record.probe_offset == record.probe_offset_cont
    assert qmp_log(machine.files) == ["qmp_capabilities", "stop", "cont"]
    assert machine.pauses == [record]
    machine.close()


def test_a_failed_qmp_stop_raises_guest_error(boot: Boot) -> None:
    machine = boot("stop-fails")
    machine.wait_ready(timeout_s=10)
    with pytest.raises(GuestError, match="GenericError: cannot stop now") as caught:
        machine.pause("qmp", 50_000_000)
    assert "Linux version 6.1.0-fake" in caught.value.console_tail
    assert machine.pauses == []
    machine.close()


def test_an_unknown_pause_mode_raises_value_error(tmp_path: Path) -> None:
    machine = GuestMachine(["/nonexistent/qemu"], RunFiles(tmp_path), 1)
    with pytest.raises(ValueError, match="'freeze'"):
        machine.pause("freeze", 50_000_000)
    assert machine.pauses == []
    machine.close()  # never started: nothing to do


def test_pause_and_run_for_after_qemu_exited_raise_guest_error(boot: Boot) -> None:
    machine = boot("exit")
    assert machine.process is not None
    machine.process.wait(timeout=10)
    with pytest.raises(GuestError, match="status 1 before the pause"):
        machine.pause("sigstop", 50_000_000)
    with pytest.raises(GuestError, match="status 1 while running"):
        machine.run_for(5.0)
    assert machine.pauses == []


def test_run_for_lets_a_live_guest_run(boot: Boot) -> None:
    machine = boot("ready")
    start = time.monotonic()
    machine.run_for(0.3)
    assert time.monotonic() - start >= 0.3
    assert machine.process is not None
    assert machine.process.poll() is None
    machine.close()


def test_start_clears_the_logs_of_a_previous_run(tmp_path: Path, boot: Boot) -> None:
    files = RunFiles(tmp_path / "run-0")  # where boot() puts its first machine
    files.workdir.mkdir()
    files.probe.write_text("H 1 1 10000000 20000000\nS 0 0 1 2 3 4 5\n")
    files.console.write_text("an old console\n")
    machine = boot("hang")
    # A stale probe log must not pass for this run's.
    with pytest.raises(GuestError, match="did not start its probe"):
        machine.wait_ready(timeout_s=0.3)
    assert "an old console" not in machine.console_tail()
    os.killpg(pid_of(machine), signal.SIGKILL)
    assert machine.process is not None
    machine.process.wait(timeout=10)
    machine.close()
