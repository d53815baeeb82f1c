"""``tsclab guest``: usage errors, missing QEMU or guest, the case list, and a guest that fails.

No test here boots QEMU: the host tools are governed through PATH (an
empty directory, or one holding a fake ``qemu-system-x86_64``), and the
guest run itself is replaced where a test gets that far.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tsclab.cli import guest_cmd, main
from tsclab.guest.accel import AccelChoice
from tsclab.guest.assets import FetchError, GuestAssets, Missing
from tsclab.guest.cases import SUITE, GuestCase
from tsclab.guest.machine import GuestError
from tsclab.guest.observe import ObservationError
from tsclab.guest.trace import TraceError

QEMU_HOW = "apt-get install --no-install-recommends qemu-system-x86"


def fake_assets(root: Path) -> GuestAssets:
    return GuestAssets(
        root=root,
        kernel=root / "vmlinuz",
        kernel_config=root / "config",
        kernel_release="6.1.0-99-amd64",
        kernel_package_version="6.1.999-1",
        busybox=root / "busybox",
        probe=root / "probe",
        initramfs=root / "initramfs.cpio",
    )


def _usage_error(capsys: pytest.CaptureFixture[str], code: int, command: str) -> str:
    """Check the one-line usage error of ``tsclab <command>``; its text."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"tsclab {command}: error: "), err
    assert "Traceback" not in err
    return err


def _never(what: str) -> Callable[..., Any]:
    def fail(*_args: object, **_kwargs: object) -> Any:
        raise AssertionError(f"{what} should not be called")

    return fail


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds one empty directory: no QEMU, no apt, no gcc."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.fixture
def qemu_on_path(empty_path: Path) -> Path:
    """PATH holds a (never run) qemu-system-x86_64."""
    qemu = empty_path / "qemu-system-x86_64"
    qemu.write_text("#!/bin/sh\nexit 99\n")
    qemu.chmod(0o755)
    return qemu


# ---------------------------------------------------------------------------
# QEMU or the guest missing


@pytest.mark.usefixtures("empty_path")
def test_check_without_qemu_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guest_cmd, "load_assets", _never("load_assets"))
    err = _usage_error(capsys, main(["guest", "check"]), "guest check")
    assert "qemu-system-x86_64" in err
    assert QEMU_HOW in err


@pytest.mark.usefixtures("qemu_on_path")
def test_check_without_a_fetched_guest_says_to_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TSCLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(guest_cmd, "run_case", _never("run_case"))
    err = _usage_error(capsys, main(["guest", "check", "--accel", "tcg"]), "guest check")
    assert "tsclab guest fetch" in err
    assert str(tmp_path / "cache") in err


@pytest.mark.usefixtures("empty_path")
def test_suite_without_qemu_says_how_to_install_it(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, main(["guest", "suite", "--case", "tsc-short"]), "guest suite")
    assert QEMU_HOW in err


@pytest.mark.usefixtures("empty_path")
def test_fetch_without_its_tools_names_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guest_cmd, "fetch", _never("fetch"))
    err = _usage_error(capsys, main(["guest", "fetch"]), "guest fetch")
    for tool in ("apt-get", "dpkg-deb", "gcc"):
        assert f"{tool} is missing" in err


# ---------------------------------------------------------------------------
# guest fetch, with the fetch itself replaced


class FakeFetch:
    def __init__(self, assets: GuestAssets) -> None:
        self.assets = assets
        self.kwargs: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> GuestAssets:
        self.kwargs.append(kwargs)
        return self.assets


def _tools(*, qemu: bool) -> Callable[..., list[Missing]]:
    def missing(*, for_fetch: bool) -> list[Missing]:
        if for_fetch or qemu:
            return []
        return [Missing("qemu-system-x86_64", QEMU_HOW)]

    return missing


def test_fetch_reports_the_guest_and_skips_the_kvm_trial_without_qemu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeFetch(fake_assets(tmp_path))
    monkeypatch.setattr(guest_cmd, "fetch", fake)
    monkeypatch.setattr(guest_cmd, "missing_host_tools", _tools(qemu=False))
    monkeypatch.setattr(guest_cmd, "choose_accel", _never("choose_accel"))
    assert main(["guest", "fetch", "--kernel-package", "linux-image-6.1.0-99-amd64"]) == 0
    out = capsys.readouterr().out
    assert f"guest ready in {tmp_path}: Linux 6.1.0-99-amd64 (6.1.999-1)" in out
    (kwargs,) = fake.kwargs
    assert kwargs["force"] is False
    assert kwargs["kernel_package"] == "linux-image-6.1.0-99-amd64"


def test_fetch_force_refreshes_the_kvm_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeFetch(fake_assets(tmp_path))
    refreshes: list[bool] = []

    def choose(_assets: GuestAssets, _qemu: str, *, refresh: bool = False) -> AccelChoice:
        refreshes.append(refresh)
        return AccelChoice("tcg", "TCG: /dev/kvm: Permission denied")

    monkeypatch.setattr(guest_cmd, "fetch", fake)
    monkeypatch.setattr(guest_cmd, "missing_host_tools", _tools(qemu=True))
    monkeypatch.setattr(guest_cmd, "choose_accel", choose)
    assert main(["guest", "fetch", "--force"]) == 0
    assert fake.kwargs[0]["force"] is True
    assert refreshes == [True]
    assert "TCG: /dev/kvm: Permission denied" in capsys.readouterr().out


def test_a_failed_fetch_is_an_error_with_the_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(**_kwargs: Any) -> GuestAssets:
        raise FetchError("download kernel", ["apt-get", "download", "linux-image-x"], 100, "E: no network")

    monkeypatch.setattr(guest_cmd, "fetch", fail)
    monkeypatch.setattr(guest_cmd, "missing_host_tools", _tools(qemu=True))
    code = main(["guest", "fetch"])
    err = capsys.readouterr().err
    assert code != 0
    assert "download kernel" in err
    assert "E: no network" in err


# ---------------------------------------------------------------------------
# Usage errors


@pytest.mark.parametrize("pause", ["0s", "2h", "3601s", "5", "five seconds"])
@pytest.mark.usefixtures("empty_path")
def test_check_refuses_a_bad_pause(capsys: pytest.CaptureFixture[str], pause: str) -> None:
    err = _usage_error(capsys, main(["guest", "check", "--pause", pause]), "guest check")
    assert "--pause" in err


@pytest.mark.usefixtures("empty_path")
def test_check_accepts_a_pause_of_exactly_one_hour(capsys: pytest.CaptureFixture[str]) -> None:
    # Past the --pause check, it stops at the next: no QEMU here.
    err = _usage_error(capsys, main(["guest", "check", "--pause", "1h"]), "guest check")
    assert "--pause" not in err
    assert "qemu-system-x86_64" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--clocksource", "foo"], "--clocksource"),
        (["--mode", "freeze"], "--mode"),
        (["--vcpus", "9"], "--vcpus"),
        (["--vcpus", "0"], "--vcpus"),
        (["--accel", "xen"], "--accel"),
    ],
)
@pytest.mark.usefixtures("empty_path")
def test_check_refuses_bad_options(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    err = _usage_error(capsys, main(["guest", "check", *args]), "guest check")
    assert needle in err
    assert args[1] in err


@pytest.mark.usefixtures("empty_path")
def test_suite_refuses_an_unknown_case_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(
        capsys, main(["guest", "suite", "--case", "tsc-short", "--case", "nope"]), "guest suite"
    )
    assert "--case" in err
    assert "'nope'" in err
    for case in SUITE:
        assert case.name in err


# ---------------------------------------------------------------------------
# guest suite --list: needs neither QEMU nor the guest


def _listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.usefixtures("empty_path")
def test_suite_list_shows_the_short_cases(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guest_cmd, "load_assets", _never("load_assets"))
    assert main(["guest", "suite", "--list"]) == 0
    short = [case.name for case in SUITE if not case.long]
    assert len(short) < len(SUITE)
    assert _listed(capsys.readouterr().out) == short


@pytest.mark.usefixtures("empty_path")
def test_suite_list_long_shows_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["guest", "suite", "--list", "--long"]) == 0
    out = capsys.readouterr().out
    assert _listed(out) == [case.name for case in SUITE]
    overflow = next(line for line in out.splitlines() if line.startswith("tsc-overflow-2vcpu"))
    assert "2 vCPU" in overflow
    assert "1200 s" in overflow


@pytest.mark.usefixtures("empty_path")
def test_suite_list_of_chosen_cases_keeps_their_order(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["guest", "suite", "--list", "--case", "hpet-wrapped", "--case", "tsc-overflow-1vcpu"])
    assert code == 0
    assert _listed(capsys.readouterr().out) == ["hpet-wrapped", "tsc-overflow-1vcpu"]


# ---------------------------------------------------------------------------
# A guest that fails: exit 3 with its console


class FakeRun:
    """Stands in for ``run_case``: records each call, raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[tuple[GuestCase, Path, str, str]] = []

    def __call__(
        self,
        case: GuestCase,
        _assets: GuestAssets,
        workdir: Path,
        *,
        accel: str,
        qemu: str,
        progress: Callable[[str], None],
    ) -> Any:
        del progress
        self.calls.append((case, workdir, accel, qemu))
        raise self.error


@pytest.fixture
def ready_guest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU and the guest "present"; temporary directories under tmp_path."""
    monkeypatch.setattr(guest_cmd, "missing_host_tools", _tools(qemu=True))
    monkeypatch.setattr(guest_cmd, "load_assets", lambda: fake_assets(tmp_path / "guest"))
    monkeypatch.setattr(guest_cmd, "choose_accel", _never("choose_accel"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


BOOT_FAILED = GuestError("the guest did not start its probe within 1 s", "console line A\nconsole line B")


@pytest.mark.usefixtures("ready_guest")
def test_a_guest_that_fails_to_boot_exits_3_with_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = FakeRun(BOOT_FAILED)
    monkeypatch.setattr(guest_cmd, "run_case", run)
    code = main(
        ["guest", "check", "--accel", "tcg", "--clocksource", "hpet", "--pause", "1500ms", "--vcpus", "2"]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    assert "the guest did not start its probe within 1 s" in err
    lines = err.splitlines()
    assert lines[-2:] == ["console line A", "console line B"]
    assert "--- guest console" in err
    assert "Traceback" not in err
    ((case, workdir, accel, qemu),) = run.calls
    assert (case.clocksource, case.pause_ns, case.mode, case.vcpus) == ("hpet", 1_500_000_000, "sigstop", 2)
    assert case.tsc_reliable is False
    assert (accel, qemu) == ("tcg", "qemu-system-x86_64")
    assert workdir.is_relative_to(tmp_path)
    assert str(workdir / "console.log") in err  # where the whole log is kept


@pytest.mark.usefixtures("ready_guest")
def test_a_failing_guest_in_a_chosen_workdir_names_its_console_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = FakeRun(BOOT_FAILED)
    monkeypatch.setattr(guest_cmd, "run_case", run)
    workdir = tmp_path / "logs"
    code = main(["guest", "check", "--accel", "kvm", "--tsc-reliable", "--workdir", str(workdir)])
    assert code == 3
    assert str(workdir / "console.log") in capsys.readouterr().err
    ((case, used, accel, _qemu),) = run.calls
    assert used == workdir
    assert accel == "kvm"
    assert case.tsc_reliable is True


@pytest.mark.usefixtures("ready_guest")
def test_a_guest_error_without_console_shows_no_console_section(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guest_cmd, "run_case", FakeRun(GuestError("QEMU exited with status 1 while booting")))
    assert main(["guest", "check", "--accel", "tcg"]) == 3
    err = capsys.readouterr().err
    assert "QEMU exited with status 1 while booting" in err
    assert "guest console" not in err


@pytest.mark.usefixtures("ready_guest")
def test_auto_accel_says_which_and_uses_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = FakeRun(BOOT_FAILED)
    monkeypatch.setattr(guest_cmd, "run_case", run)
    monkeypatch.setattr(
        guest_cmd,
        "choose_accel",
        lambda _assets, _qemu: AccelChoice("tcg", "TCG: /dev/kvm: Permission denied"),
    )
    assert main(["guest", "check"]) == 3
    assert "TCG: /dev/kvm: Permission denied" in capsys.readouterr().err
    assert run.calls[0][2] == "tcg"


@pytest.mark.usefixtures("ready_guest")
def test_unjudgeable_guest_output_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guest_cmd, "run_case", FakeRun(TraceError("probe.log line 3: not a probe line")))
    assert main(["guest", "check", "--accel", "tcg"]) == 3
    err = capsys.readouterr().err
    assert "cannot be judged" in err
    assert "probe.log line 3: not a probe line" in err


@pytest.mark.usefixtures("ready_guest")
def test_suite_stops_at_a_guest_that_fails_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = FakeRun(BOOT_FAILED)
    monkeypatch.setattr(guest_cmd, "run_case", run)
    workdir = tmp_path / "suite"
    code = main(
        [
            "guest",
            "suite",
            "--accel",
            "tcg",
            "--workdir",
            str(workdir),
            "--case",
            "qmp-tsc",
            "--case",
            "tsc-short",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    assert "qmp-tsc: the guest did not start its probe" in err
    assert "console line B" in err
    ((case, used, accel, _qemu),) = run.calls
    assert case.name == "qmp-tsc"
    assert used == workdir / "qmp-tsc"
    assert accel == "tcg"


@pytest.mark.usefixtures("ready_guest")
def test_unjudgeable_output_shows_the_guest_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "kept"
    workdir.mkdir()
    (workdir / "console.log").write_text("[ 9.000000] Kernel panic - not syncing: probe died\n")
    monkeypatch.setattr(guest_cmd, "run_case", FakeRun(ObservationError("vCPU 0: no probe samples")))
    assert main(["guest", "check", "--accel", "tcg", "--workdir", str(workdir)]) == 3
    err = capsys.readouterr().err
    assert "vCPU 0: no probe samples" in err
    assert "Kernel panic - not syncing: probe died" in err
