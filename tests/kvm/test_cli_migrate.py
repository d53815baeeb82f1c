"""``tsclab kvm migrate``: exit codes, text and JSON."""

from __future__ import annotations

import json

import pytest

from tests.kvm.host_state import child_pids
from tsclab.cli import main
from tsclab.kvm import netns
from tsclab.kvm.vmm_process import MIGRATE_POLICIES


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--policy", "bogus"], "policy 'bogus' is not one tsclab kvm migrate runs; expected one of: qemu,"),
        (["--policy", "firecracker"], "expected one of: qemu, upstream-doc, tsc-state, nap"),
        (["--downtime", "5"], "expected a duration with a unit"),
        (["--downtime", "-1s"], "expected a non-negative duration"),
        (["--downtime", "601s"], "at most 600s"),
        (["--fault", "explode@CLOCK"], "bad fault"),
        (["--bogus"], "No such option"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kvm", "migrate", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_absent_device_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kvm", "migrate", "--device", "/nonexistent/kvm"]) == 3
    assert (
        capsys.readouterr().err
        == "tsclab: error: no usable KVM: /nonexistent/kvm: No such file or directory\n"
    )


@pytest.fixture
def usable(kvm_unusable_reason: str | None) -> None:
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)


@pytest.mark.usefixtures("usable")
def test_json_is_sorted_and_names_what_it_measured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kvm", "migrate", "--policy", "upstream-doc", "--downtime", "20ms", "--json"]) == 0
    out = capsys.readouterr().out
    record = json.loads(out)
    assert out == json.dumps(record, indent=2, sort_keys=True) + "\n"
    (migration,) = record["migrations"]
    assert migration["outcome"] == "migrated"
    assert migration["policy"] == "upstream-doc@5.16"
    assert migration["model"]["agrees"] is True
    for key in ("downtime_ns", "kvmclock_discontinuity_ns", "tsc_advance_ns", "error_ns"):
        assert isinstance(migration["measurement"][key], int)
    assert migration["clock_state_ns"]["total"] > 0
    assert migration["wire"]["source"]["sent"] == [
        "HELLO",
        "RAM.0",
        "RAM.1",
        "RAM.2",
        "RAM.3",
        "CPU",
        "CLOCK",
        "GO",
    ]
    assert set(record["host"]) >= {"tsc_khz", "tsc_offset_effective", "kernel"}


@pytest.mark.usefixtures("usable")
def test_every_policy_in_turn_ends_with_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    children = child_pids()
    assert main(["kvm", "migrate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tsclab kvm migrate: /dev/kvm on Linux ")
    table = out[out.index("\npolicy ") + 1 :].splitlines()[1:]
    assert [row.split()[0].split("@")[0] for row in table] == list(MIGRATE_POLICIES)
    assert all(" migrated " in row and " yes (" in row for row in table)
    assert child_pids() == children


@pytest.mark.usefixtures("usable")
def test_a_failed_migration_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kvm", "migrate", "--policy", "qemu", "--fault", "drop@CLOCK"]) == 1
    out = capsys.readouterr().out
    assert "FAILED; the guest runs on the source" in out
    assert "fault injected: connection dropped instead of sending CLOCK" in out


@pytest.mark.usefixtures("usable")
def test_namespaces_unavailable_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "--netns needs root (ip netns add)")
    assert main(["kvm", "migrate", "--policy", "qemu", "--netns"]) == 1
    assert capsys.readouterr().err == "tsclab: error: qemu: --netns needs root (ip netns add)\n"
