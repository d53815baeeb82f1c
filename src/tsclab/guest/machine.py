"""One QEMU guest: boot it, pause it the way a host does, and stop it.

The guest has two serial ports written to files: ``ttyS0`` carries the
kernel console (so kernel messages never split a probe line), ``ttyS1``
the probe's lines.  QMP listens on a unix socket.  Two pause modes:

``sigstop``
    SIGSTOP, then SIGCONT, of the whole QEMU process.  QEMU's virtual
    clock and (under TCG) the guest TSC follow the host's clocks, so every
    counter runs on while no guest code runs: a raw pause, as when the
    host is stopped under the guest's feet.
``qmp``
    QMP ``stop`` and ``cont``.  QEMU stops its virtual clock and the guest
    TSC with the vCPUs, so the guest sees no time pass: the VMM hides it.

Every exit path stops QEMU: ``close()`` continues a stopped process,
asks QMP to quit, then terminates and finally kills its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tsclab.guest.qmp import QmpClient, QmpError

PAUSE_MODES = ("sigstop", "qmp")
ACCELERATORS = ("tcg", "kvm")
CLOCKSOURCES = ("tsc", "hpet", "acpi_pm")
PROBE_INTERVAL_MS = 10  # the probe's sample line period (init.sh passes it)
PROBE_JUMP_MS = 20  # a step between two consecutive reads larger than this is reported


class GuestError(Exception):
    """The guest did not boot, hung, or QEMU failed; carries the console tail."""

    def __init__(self, message: str, console_tail: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """What to boot: vCPUs, the clocksource asked for, and how to accelerate."""

    clocksource: str = "tsc"
    vcpus: int = 1
    tsc_reliable: bool = False  # tsc=reliable: skip the TSC sync check and watchdog
    accel: str = "tcg"
    memory_mb: int = 256

    def kernel_command_line(self) -> str:
        args = ["console=ttyS0", f"clocksource={self.clocksource}", "panic=-1"]
        if self.tsc_reliable:
            args.append("tsc=reliable")
        return " ".join(args)


@dataclass(frozen=True, slots=True)
class RunFiles:
    """Where one run's files live."""

    workdir: Path

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def probe(self) -> Path:
        return self.workdir / "probe.log"

    @property
    def qemu_log(self) -> Path:
        return self.workdir / "qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / "qmp.sock"


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """The host's view of one pause: its clocks, and how far each log had got."""

    mode: str
    requested_ns: int
    host_mono_stop_ns: int  # host CLOCK_MONOTONIC right after the guest was stopped
    host_mono_cont_ns: int  # ... right before it was continued
    host_real_stop_ns: int
    host_real_cont_ns: int
    probe_offset: int  # bytes of probe.log written before the pause
    console_offset: int  # bytes of console.log written before the pause
    probe_offset_cont: int  # ... and just before the guest was continued (equal: it ran no code)

    @property
    def measured_ns(self) -> int:
        return self.host_mono_cont_ns - self.host_mono_stop_ns


def qemu_command(
    qemu: str, kernel: Path, initramfs: Path, config: MachineConfig, files: RunFiles
) -> list[str]:
    """The QEMU command line for one guest."""
    cpu = "max" if config.accel == "tcg" else "host"
    return [
        qemu,
        "-accel",
        config.accel,
        "-cpu",
        cpu,
        "-m",
        str(config.memory_mb),
        "-smp",
        str(config.vcpus),
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initramfs),
        "-append",
        config.kernel_command_line(),
        "-serial",
        f"file:{files.console}",
        "-serial",
        f"file:{files.probe}",
        "-qmp",
        f"unix:{files.qmp_socket},server=on,wait=off",
    ]


@dataclass
class GuestMachine:
    """A running guest; a context manager that always leaves nothing behind."""

    command: list[str]
    files: RunFiles
    vcpus: int
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    pauses: list[PauseRecord] = field(default_factory=list)

    def __enter__(self) -> GuestMachine:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.files.workdir.mkdir(parents=True, exist_ok=True)
        for path in (self.files.console, self.files.probe, self.files.qmp_socket):
            path.unlink(missing_ok=True)
        with self.files.qemu_log.open("wb") as log:
            # A session of its own, so close() can signal QEMU and anything it spawned.
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every vCPU's reader has calibrated and sampled once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive("while booting")
            if self._probe_ready():
                return
            time.sleep(0.1)
        raise GuestError(f"the guest did not start its probe within {timeout_s:g} s", self.console_tail())

    def _probe_ready(self) -> bool:
        text = _read_text(self.files.probe)
        if "\nH " not in "\n" + text:
            return False
        sampled = {line.split()[1] for line in text.splitlines() if line.startswith("S ")}
        return len(sampled) >= self.vcpus

    def run_for(self, seconds: float) -> None:
        """Let the guest run, checking it stays up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_alive("while running")
            time.sleep(min(left, 0.2))

    def pause(self, mode: str, duration_ns: int) -> PauseRecord:
        """Pause the guest for ``duration_ns`` of host time in ``mode``."""
        if mode not in PAUSE_MODES:
            raise ValueError(f"pause mode {mode!r}: expected one of {', '.join(PAUSE_MODES)}")
        self._check_alive("before the pause")
        record = self._pause_sigstop(duration_ns) if mode == "sigstop" else self._pause_qmp(duration_ns)
        self.pauses.append(record)
        return record

    def _pause_sigstop(self, duration_ns: int) -> PauseRecord:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.stopped = True
        stop_mono, stop_real = time.monotonic_ns(), time.time_ns()
        # The signal reaches QEMU's threads one by one: a vCPU thread may
        # still finish a serial write.  Read the logs' sizes once all stopped.
        _wait_all_threads_stopped(self.process.pid)
        offsets = self._offsets()
        _sleep_until(stop_mono + duration_ns)
        cont_mono, cont_real = time.monotonic_ns(), time.time_ns()
        at_cont = _size(self.files.probe)
        os.killpg(self.process.pid, signal.SIGCONT)
        self.stopped = False
        return PauseRecord(
            "sigstop", duration_ns, stop_mono, cont_mono, stop_real, cont_real, *offsets, at_cont
        )

    def _pause_qmp(self, duration_ns: int) -> PauseRecord:
        try:
            with QmpClient(str(self.files.qmp_socket)) as qmp:
                qmp.execute("stop")
                stop_mono, stop_real = time.monotonic_ns(), time.time_ns()
                offsets = self._offsets()
                _sleep_until(stop_mono + duration_ns)
                cont_mono, cont_real = time.monotonic_ns(), time.time_ns()
                at_cont = _size(self.files.probe)
                qmp.execute("cont")
        except QmpError as err:
            raise GuestError(str(err), self.console_tail()) from None
        return PauseRecord("qmp", duration_ns, stop_mono, cont_mono, stop_real, cont_real, *offsets, at_cont)

    def _offsets(self) -> tuple[int, int]:
        return _size(self.files.probe), _size(self.files.console)

    def _check_alive(self, when: str) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            qemu_said = _read_text(self.files.qemu_log).strip()[-2000:]
            detail = f"; QEMU said: {qemu_said}" if qemu_said else ""
            raise GuestError(f"QEMU exited with status {code} {when}{detail}", self.console_tail())

    def console_tail(self, lines: int = 40) -> str:
        return read_tail(self.files.console, lines)

    def close(self) -> None:
        """Stop QEMU, however it is: running, stopped, hung or gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.stopped:
            _signal_group(process, signal.SIGCONT)
            self.stopped = False
        try:
            with QmpClient(str(self.files.qmp_socket), timeout_s=2.0, connect_wait_s=1.0) as qmp:
                qmp.execute("quit")
        except QmpError:
            pass
        for sig, wait_s in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            if sig is not None:
                _signal_group(process, sig)
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.files.qmp_socket.unlink(missing_ok=True)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _wait_all_threads_stopped(pid: int, timeout_s: float = 2.0) -> None:
    """Wait until every thread of ``pid`` is in state T (stopped), per /proc."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            states = [
                (task / "stat").read_text().rpartition(")")[2].split()[0]
                for task in Path(f"/proc/{pid}/task").iterdir()
            ]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return  # gone, or a thread left while we looked: nothing more will be written
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)


def _sleep_until(deadline_mono_ns: int) -> None:
    # Sleep most of the way, then spin the last stretch: the pause length
    # is compared with what the guest saw to within a millisecond.
    while (left := deadline_mono_ns - time.monotonic_ns()) > 2_000_000:
        time.sleep((left - 1_000_000) / 1e9)
    while time.monotonic_ns() < deadline_mono_ns:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a guest log ("" if it is not there)."""
    return "\n".join(_read_text(path).splitlines()[-lines:])


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
