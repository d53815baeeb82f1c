"""Which accelerator boots the guest here: KVM when it really works, TCG otherwise.

``/dev/kvm`` being present proves little: some hosts offer a KVM that
cannot run a stock kernel (it hangs in the firmware, or QEMU aborts on an
MSR it may not set).  So the answer comes from a trial boot under KVM,
bounded by a timeout, cached beside the guest for this host kernel, QEMU
and guest kernel.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tsclab.guest.assets import GuestAssets
from tsclab.guest.machine import GuestError, GuestMachine, MachineConfig, RunFiles, qemu_command

TRIAL_TIMEOUT_S = 30.0
CACHE_FILE = "accel.json"


@dataclass(frozen=True, slots=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str


def _qemu_version(qemu: str) -> str:
    try:
        done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def _key(assets: GuestAssets, qemu: str) -> str:
    return f"{platform.release()}|{_qemu_version(qemu)}|{assets.kernel_release}"


def kvm_device_usable() -> str | None:
    """None if /dev/kvm opens read-write; else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return f"/dev/kvm: {err.strerror}"
    os.close(fd)
    return None


def choose_accel(assets: GuestAssets, qemu: str, *, refresh: bool = False) -> AccelChoice:
    """KVM if a trial boot under it reached the probe, else TCG; cached per host and guest."""
    problem = kvm_device_usable()
    if problem is not None:
        return AccelChoice("tcg", f"TCG: {problem}")
    cache = assets.root / CACHE_FILE
    key = _key(assets, qemu)
    if not refresh:
        try:
            recorded = json.loads(cache.read_text())
            if recorded.get("key") == key:
                return AccelChoice(recorded["accel"], recorded["reason"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    choice = _trial_boot(assets, qemu)
    cache.write_text(json.dumps({"key": key, "accel": choice.accel, "reason": choice.reason}) + "\n")
    return choice


def _trial_boot(assets: GuestAssets, qemu: str) -> AccelChoice:
    config = MachineConfig(clocksource="tsc", accel="kvm")
    with tempfile.TemporaryDirectory(prefix="tsclab-kvm-trial-") as tmp:
        files = RunFiles(Path(tmp))
        command = qemu_command(qemu, assets.kernel, assets.initramfs, config, files)
        try:
            with GuestMachine(command, files, 1) as machine:
                machine.wait_ready(TRIAL_TIMEOUT_S)
        except GuestError as err:
            first = str(err).splitlines()[0]
            return AccelChoice("tcg", f"TCG: a trial boot under KVM failed ({first})")
    return AccelChoice("kvm", "KVM: a trial boot reached the probe")
