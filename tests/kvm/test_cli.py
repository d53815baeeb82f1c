"""``tsclab kvm probe`` and ``tsclab kvm selftest``: exit codes, text and JSON."""

from __future__ import annotations

import json

import pytest

from tsclab.cli import main
from tsclab.kvm.probe import PROBES


def test_absent_device_exits_3_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("probe", "selftest"):
        assert main(["kvm", command, "--device", "/nonexistent/kvm"]) == 3
        err = capsys.readouterr().err
        assert err == "tsclab: error: no usable KVM: /nonexistent/kvm: No such file or directory\n"


def test_a_device_that_is_not_kvm_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kvm", "probe", "--device", "/dev/null"]) == 3
    assert "no usable KVM: /dev/null is not a KVM device" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kvm", "probe", "--bogus"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_probe_json_is_sorted_and_complete(
    kvm_unusable_reason: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    assert main(["kvm", "probe", "--json"]) == 0
    out = capsys.readouterr().out
    record = json.loads(out)
    assert out == json.dumps(record, indent=2, sort_keys=True) + "\n"
    assert [f["key"] for f in record["features"]] == [spec.key for spec in PROBES]
    assert set(record["host"]) == {"kernel", "clocksource", "kvm_backends"}


def test_probe_text_has_each_feature_and_a_summary(
    kvm_unusable_reason: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    assert main(["kvm", "probe"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tsclab kvm probe: /dev/kvm on Linux ")
    for spec in PROBES:
        assert spec.title in out
    assert out.count("means: ") == len(PROBES)
    assert f"{len(PROBES)} features: " in out


def test_selftest_exit_code_follows_its_cases(
    kvm_unusable_reason: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    code = main(["kvm", "selftest", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == (1 if record["summary"]["fail"] else 0)
    assert [case["test"] for case in record["cases"]] == ["kvm_clock_test"] * 4 + [
        "system_counter_offset_test"
    ] * 3
    assert all(case["status"] in ("pass", "fail", "skip") and case["detail"] for case in record["cases"])
    assert main(["kvm", "selftest"]) == code
    assert "7 cases: " in capsys.readouterr().out
