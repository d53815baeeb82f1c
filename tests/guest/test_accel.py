"""guest/accel.py: is /dev/kvm usable, and the cached choice between KVM and TCG."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from pathlib import Path

import pytest

from tests.guest.test_machine import write_fake_qemu
from tsclab.guest import accel
from tsclab.guest.accel import CACHE_FILE, AccelChoice, choose_accel, kvm_device_usable
from tsclab.guest.assets import GuestAssets

QEMU_VERSION = "QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)"


def make_assets(root: Path) -> GuestAssets:
    files = {name: root / name for name in ("vmlinuz", "config", "busybox", "probe", "initramfs.cpio")}
    for path in files.values():
        path.write_bytes(b"fake " + path.name.encode())
    return GuestAssets(
        root=root,
        kernel=files["vmlinuz"],
        kernel_config=files["config"],
        kernel_release="6.1.0-99-amd64",
        kernel_package_version="6.1.999-1",
        busybox=files["busybox"],
        probe=files["probe"],
        initramfs=files["initramfs.cpio"],
    )


def _refuse_kvm(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    real_open = os.open

    def fake_open(path: str, flags: int, *args: int) -> int:
        if path == "/dev/kvm":
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", fake_open)


class TrialCounter:
    """Stands in for ``_trial_boot``: counts the boots and answers ``choice``."""

    def __init__(self, choice: AccelChoice) -> None:
        self.choice = choice
        self.calls = 0

    def __call__(self, _assets: GuestAssets, _qemu: str) -> AccelChoice:
        self.calls += 1
        return self.choice


def _no_trial(_assets: GuestAssets, _qemu: str) -> AccelChoice:
    raise AssertionError("no trial boot expected")


# ---------------------------------------------------------------------------
# kvm_device_usable


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EACCES, "/dev/kvm: Permission denied"), (errno.ENOENT, "/dev/kvm: No such file or directory")],
)
def test_kvm_device_unusable_says_why(monkeypatch: pytest.MonkeyPatch, code: int, reason: str) -> None:
    _refuse_kvm(monkeypatch, code)
    assert kvm_device_usable() == reason


def test_kvm_device_usable_opens_read_write_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open, real_close = os.open, os.close
    opened: list[tuple[int, int]] = []
    closed: list[int] = []

    def fake_open(path: str, flags: int, *args: int) -> int:
        if path != "/dev/kvm":
            return real_open(path, flags, *args)
        fd = real_open(os.devnull, flags)
        opened.append((fd, flags))
        return fd

    def fake_close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "close", fake_close)
    assert kvm_device_usable() is None
    ((fd, flags),) = opened
    assert flags & os.O_ACCMODE == os.O_RDWR
    assert closed == [fd]


# ---------------------------------------------------------------------------
# choose_accel


def test_choose_accel_is_tcg_without_booting_when_kvm_cannot_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _refuse_kvm(monkeypatch, errno.EACCES)
    monkeypatch.setattr(accel, "_trial_boot", _no_trial)
    monkeypatch.setattr(accel, "_qemu_version", lambda _qemu: QEMU_VERSION)
    assets = make_assets(tmp_path)
    assert choose_accel(assets, "qemu-system-x86_64") == AccelChoice(
        "tcg", "TCG: /dev/kvm: Permission denied"
    )
    assert not (tmp_path / CACHE_FILE).exists()


@pytest.fixture
def usable_kvm(monkeypatch: pytest.MonkeyPatch) -> TrialCounter:
    monkeypatch.setattr(accel, "kvm_device_usable", lambda: None)
    monkeypatch.setattr(accel, "_qemu_version", lambda _qemu: QEMU_VERSION)
    trial = TrialCounter(AccelChoice("kvm", "KVM: a trial boot reached the probe"))
    monkeypatch.setattr(accel, "_trial_boot", trial)
    return trial


def test_choose_accel_boots_once_then_uses_the_cache(usable_kvm: TrialCounter, tmp_path: Path) -> None:
    assets = make_assets(tmp_path)
    first = choose_accel(assets, "qemu-system-x86_64")
    assert first == usable_kvm.choice
    assert usable_kvm.calls == 1
    cached = json.loads((tmp_path / CACHE_FILE).read_text())
    assert cached["accel"] == "kvm"
    assert QEMU_VERSION in cached["key"]
    assert assets.kernel_release in cached["key"]

    usable_kvm.choice = AccelChoice("tcg", "a different answer, were it asked")
    assert choose_accel(assets, "qemu-system-x86_64") == first
    assert usable_kvm.calls == 1


def test_choose_accel_refresh_boots_again(usable_kvm: TrialCounter, tmp_path: Path) -> None:
    assets = make_assets(tmp_path)
    choose_accel(assets, "qemu-system-x86_64")
    usable_kvm.choice = AccelChoice("tcg", "TCG: a trial boot under KVM failed (hung)")
    assert choose_accel(assets, "qemu-system-x86_64", refresh=True) == usable_kvm.choice
    assert usable_kvm.calls == 2
    # The refreshed answer is the one cached now.
    assert choose_accel(assets, "qemu-system-x86_64") == usable_kvm.choice
    assert usable_kvm.calls == 2


def test_choose_accel_boots_again_for_another_qemu(
    usable_kvm: TrialCounter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assets = make_assets(tmp_path)
    choose_accel(assets, "qemu-system-x86_64")
    monkeypatch.setattr(accel, "_qemu_version", lambda _qemu: "QEMU emulator version 9.0.0")
    choose_accel(assets, "qemu-system-x86_64")
    assert usable_kvm.calls == 2


def test_choose_accel_boots_again_for_another_guest_kernel(usable_kvm: TrialCounter, tmp_path: Path) -> None:
    assets = make_assets(tmp_path)
    choose_accel(assets, "qemu-system-x86_64")
    newer = dataclasses.replace(assets, kernel_release="6.1.0-100-amd64")
    choose_accel(newer, "qemu-system-x86_64")
    assert usable_kvm.calls == 2


@pytest.mark.parametrize("content", ["not json at all", "[1, 2]", '{"key": "x"}', '{"accel": "kvm"}'])
def test_a_damaged_cache_means_a_new_trial(usable_kvm: TrialCounter, tmp_path: Path, content: str) -> None:
    assets = make_assets(tmp_path)
    (tmp_path / CACHE_FILE).write_text(content)
    assert choose_accel(assets, "qemu-system-x86_64") == usable_kvm.choice
    assert usable_kvm.calls == 1
    assert json.loads((tmp_path / CACHE_FILE).read_text())["accel"] == "kvm"


def test_a_cache_entry_without_a_reason_means_a_new_trial(usable_kvm: TrialCounter, tmp_path: Path) -> None:
    assets = make_assets(tmp_path)
    choose_accel(assets, "qemu-system-x86_64")
    record = json.loads((tmp_path / CACHE_FILE).read_text())
    del record["reason"]
    (tmp_path / CACHE_FILE).write_text(json.dumps(record))
    choose_accel(assets, "qemu-system-x86_64")
    assert usable_kvm.calls == 2


# ---------------------------------------------------------------------------
# _qemu_version and _trial_boot, with fake executables


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_qemu_version_is_the_first_line_of_its_version_output(tmp_path: Path) -> None:
    qemu = _script(tmp_path / "qemu", f"print({QEMU_VERSION!r})\nprint('Copyright (c) 2003-2023')")
    assert accel._qemu_version(qemu) == QEMU_VERSION


def test_qemu_version_unknown_when_it_cannot_say(tmp_path: Path) -> None:
    assert accel._qemu_version(str(tmp_path / "no-such-qemu")) == "unknown"
    assert accel._qemu_version(_script(tmp_path / "silent", "pass")) == "unknown"


def test_trial_boot_under_kvm_that_reaches_the_probe_chooses_kvm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_QEMU_ARGV", str(argv_file))
    qemu = write_fake_qemu(tmp_path / "qemu", "ready")
    choice = accel._trial_boot(make_assets(tmp_path), str(qemu))
    assert choice == AccelChoice("kvm", "KVM: a trial boot reached the probe")
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinuz")


def test_trial_boot_that_fails_chooses_tcg_and_says_why(tmp_path: Path) -> None:
    qemu = write_fake_qemu(tmp_path / "qemu", "exit")
    choice = accel._trial_boot(make_assets(tmp_path), str(qemu))
    assert choice.accel == "tcg"
    assert choice.reason.startswith("TCG: a trial boot under KVM failed (QEMU exited with status 1")
    assert "\n" not in choice.reason
