"""``tsclab run`` and ``tsclab scenarios``: output, determinism, --check, reports, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.report.test_html_chromium import find_chromium, open_in_chromium
from tests.scenario.test_fuzz import BASE_TEXT, _garble, _mutate, dump
from tsclab.cli import main
from tsclab.scenario.library import builtin_names
from tsclab.scenario.load import ScenarioError, parse_scenario

SHORT = "vcpu-tsc-offsets-differ"  # four quick combinations

SMALL = """
name = "small"
description = "a 2 s SIGSTOP of a TSC guest"
vmms = ["qemu"]
settle = "5s"

[guest]
vcpus = 1
clocksource = "tsc"
kernels = ["linux-6.13"]

[[guest.workload]]
kind = "reader"
vcpu = 0
every = "100ms"

[[hosts]]
name = "h"
tsc_khz = 2500000

[[events]]
at = "2s"
action = "stop"
duration = "2s"
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_prints_the_matrix_of_a_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SHORT, "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{SHORT}: ")
    assert "cloud-hypervisor@msr+offsets" in out
    assert "time-backwards" in out
    assert "4 combinations:" in out


def test_same_seed_same_json_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    args = ["run", SHORT, "seed-200s-migration", "--kernel", "linux-6.1", "--jobs", "2"]
    assert main([*args, "--seed", "7", "--json", str(first)]) == 0
    assert main([*args, "--seed", "7", "--json", str(second), "--jobs", "1"]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert main([*args, "--seed", "8", "--json", str(other)]) == 0
    record = json.loads(first.read_text())
    assert record["seed"] == 7
    assert [s["name"] for s in record["scenarios"]] == [SHORT, "seed-200s-migration"]
    # Another seed places the readers elsewhere in their periods: other bytes.
    assert other.read_bytes() != first.read_bytes()


def test_check_passes_on_the_library_and_fails_on_a_wrong_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", SHORT, "--check"]) == 0
    wrong = SMALL + '\n[[expect]]\nkernel = "*"\nvmm = "qemu"\nverdicts = ["softlockup"]\n'
    path = _write(tmp_path, wrong)
    capsys.readouterr()
    assert main(["run", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "check failed: small: linux-6.13 x qemu@7.2: got" in err
    assert "expected ['softlockup']" in err


def test_kernel_and_vmm_overrides(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL)
    assert (
        main(["run", str(path), "--kernel", "linux-5.10", "--kernel", "linux-6.1", "--vmm", "firecracker"])
        == 0
    )
    out = capsys.readouterr().out
    assert "linux-5.10" in out
    assert "linux-6.1 " in out
    assert "firecracker@1.13" in out
    assert "qemu" not in out.split("\n", 1)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-scenario"], "no-such-scenario: name: no such built-in scenario"),
        (["run", "missing.toml"], "missing.toml: file: cannot read"),
        (["run", SHORT, "--kernel", "linux-9.9"], "unknown kernel profile 'linux-9.9'"),
        (["run", SHORT, "--vmm", "vmware"], "unknown VMM policy 'vmware'"),
        (["run", SHORT, "--vmm", "firecracker@0.1"], "unknown version '0.1' of VMM policy 'firecracker'"),
        (["run", SHORT, "--seed", "-1"], "--seed"),
        (["scenarios", "nope"], "nope: name: no such built-in scenario"),
        (["run", SHORT, "--json", "/nonexistent/x.json"], "--json /nonexistent/x.json: /nonexistent is not"),
        (["run", SHORT, "--report", "/proc/no/report"], "--report /proc/no/report: cannot create it"),
        (["demo", "--report", "/proc/no/report"], "--report /proc/no/report: cannot create it"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("vcpus = 1", ""), "guest.vcpus: missing"),
        (("vcpus = 1", 'vcpus = "one"'), "guest.vcpus: expected"),
        (('kernels = ["linux-6.13"]', 'kernels = ["linux-4.4"]'), "guest.kernels"),
        (('vmms = ["qemu"]', 'vmms = ["hyperv"]'), "vmms"),
        (('duration = "2s"', 'duration = "-2s"'), "events[0].duration"),
        (('at = "2s"', 'at = "2s"\nbogus = 1'), "events[0].bogus"),
    ],
)
def test_malformed_scenario_files_exit_2_naming_file_and_field(
    change: tuple[str, str], field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SMALL.replace(*change))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}" in err
    assert "Traceback" not in err


def test_events_out_of_order_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SMALL + '\n[[events]]\nat = "1s"\naction = "pause"\nduration = "1s"\n'
    path = _write(tmp_path, text)
    assert main(["run", str(path)]) == 2
    assert f"{path}: events[1].at" in capsys.readouterr().err


@settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_malformed_files_exit_2_without_a_traceback(data: st.DataObject) -> None:
    """Generated broken scenario files through the whole command: exit 2, one line naming the file."""
    document = tomllib.loads(BASE_TEXT)
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(data, document)
    text = dump(document)
    if data.draw(st.booleans()):
        text = _garble(data, text)
    try:
        parse_scenario(text)
    except ScenarioError:
        pass
    else:
        assume(False)  # a mutation that is still valid would start a long run: not this test's job
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(text)
    path = Path(handle.name)
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "tsclab"), "run", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"tsclab run: error: {path}: ")
    assert proc.stdout == ""


def test_report_of_a_real_run_opens_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    find_chromium()
    report = tmp_path / "report"
    assert main(["run", SHORT, "--report", str(report)]) == 0
    assert f"report written to {report / 'index.html'}" in capsys.readouterr().out
    dom = open_in_chromium(report / "index.html", tmp_path)
    assert dom.matrix_tables == 1
    assert dom.plots == 4
    assert dom.body.get("data-plots-loaded") == "4"
    assert dom.body.get("data-matrix-cells") == "4"


def test_scenarios_lists_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for name in builtin_names():
        assert name in out
    assert main(["scenarios", SHORT]) == 0
    assert capsys.readouterr().out.startswith(f'name = "{SHORT}"')
