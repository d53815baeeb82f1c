"""``tsclab demo``: the horizon overview, then the seed's question run across kernels and VMMs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tsclab.cli import demo_cmd
from tsclab.cli.main import cli
from tsclab.cli.run_cmd import run_all
from tsclab.report.strategies import STRATEGIES
from tsclab.scenario.library import builtin_names


@pytest.fixture(scope="module", autouse=True)
def runs_once() -> Iterator[None]:
    """The text and the JSON demo print the same runs: simulate them once for both."""
    memo: dict[object, Any] = {}
    compare = demo_cmd.compare_strategies

    def run_all_once(scenarios: list[Any], *args: Any) -> Any:
        key = ("run_all", tuple(s.name for s in scenarios), args)
        if key not in memo:
            memo[key] = run_all(scenarios, *args)
        return memo[key]

    def compare_once(*args: Any) -> Any:
        if "compare" not in memo:
            memo["compare"] = compare(*args)
        return memo["compare"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_cmd, "run_all", run_all_once)
        patch.setattr(demo_cmd, "compare_strategies", compare_once)
        yield


@pytest.fixture(scope="module")
def demo_text(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    report = tmp_path_factory.mktemp("demo") / "report"
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "--report", str(report)])
    assert result.exit_code == 0, result.output
    return result.output, report


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report = tmp_path_factory.mktemp("demo-json") / "report"
    result = CliRunner().invoke(cli, ["demo", "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_demo_lists_each_clocksource_with_a_consequence_line(demo_text: tuple[str, Path]) -> None:
    out, _report = demo_text
    for label in ("tsc 2.5 GHz", "shift-23 band", "kvm-clock", "hpet 14.318 MHz", "acpi_pm"):
        assert label in out
    lines = out.splitlines()
    consequence = [line for line in lines if line.startswith("tsc 2.5 GHz:")]
    assert len(consequence) == 1
    assert "990.551 s" in consequence[0]
    assert "1099.512 s" in consequence[0]
    acpi = next(line for line in lines if line.startswith("acpi_pm:"))
    for horizon in ("2.343 s", "4.101 s", "4.687 s"):
        assert horizon in acpi


def test_demo_runs_the_seed_question_and_writes_the_report(demo_text: tuple[str, Path]) -> None:
    out, report = demo_text
    for name in ("seed-200s-migration", "seed-1200s-migration", "firecracker-5322-restore"):
        assert f"{name}: " in out
    assert "12 combinations: 12 pass" in out
    assert out.rstrip().endswith(str(report / "index.html"))
    assert (report / "index.html").is_file()
    # 28 combinations of the seed's question, one nap run per built-in scenario.
    assert len(list(report.glob("*.png"))) == 28 + len(builtin_names())


def test_demo_shows_the_nap_column_and_explains_what_it_cannot_avoid(demo_text: tuple[str, Path]) -> None:
    out, _report = demo_text
    column = out[out.index("The nap column") : out.index("The thread's alternatives")].splitlines()
    rows = {line.split()[0]: line for line in column[4:] if line}
    assert set(rows) == set(builtin_names())
    for name in ("seed-200s-migration", "seed-1200s-migration", "host-suspend-overnight", "weekend-snapshot"):
        assert rows[name].split()[1:] == ["ok"], rows[name]
    # Only the unannounced SIGSTOPs keep verdicts, and they say why.
    for line in rows.values():
        if line.split()[1] != "ok":
            assert "a SIGSTOP: the host did not know in advance" in line, line


def test_the_report_says_under_each_nap_run_with_a_verdict_why_it_is_unavoidable(
    demo_text: tuple[str, Path],
) -> None:
    _out, report = demo_text
    page = (report / "index.html").read_text(encoding="utf-8")
    notes = page.count(
        '<p class="note">The nap cannot avoid this: a SIGSTOP: the host did not know in advance'
    )
    assert notes == 2  # acpi-pm-past-wrap and hpet-past-wrap, the two SIGSTOP scenarios
    assert "not explained" not in page


def test_demo_compares_the_nap_with_the_thread_s_alternatives(demo_text: tuple[str, Path]) -> None:
    out, _report = demo_text
    table = out[out.index("The thread's alternatives to the nap") : out.index("HTML report")].splitlines()
    assert table[2].split() == ["scenario", *(st.name for st in STRATEGIES)]
    rows = {line.split()[0]: line.split()[1:] for line in table[4:] if line[:1].isalpha()}
    assert set(builtin_names()) < set(rows)
    # First lines of the cells: the nap clean where the others are not.
    assert rows["weekend-snapshot"] == [
        "ok",
        "ntp-maxerror",
        "realtime-error",
        "ok",
        *["realtime-error"] * 2,
        "ntp-maxerror",
    ]
    assert rows["seed-1200s-migration"][:4] == ["ok", "ntp-maxerror", "realtime-error", "realtime-error"]
    clean = rows["clean"][1:]  # "clean runs  9 of 11 ..."
    assert clean[:3] == ["9", "of", str(len(builtin_names()))]
    assert "guest-s3      linux-6.13 x guest-s3: Paolo Bonzini, 10 Dec 2020: put the guest in S3" in table


def test_demo_json_has_the_strategies(demo_json: dict[str, Any]) -> None:
    record = demo_json["strategies"]
    assert [s["name"] for s in record["strategies"]] == [st.name for st in STRATEGIES]
    scenarios = {s["name"]: s for s in record["runs"]["scenarios"]}
    assert set(scenarios) == set(builtin_names())
    weekend = scenarios["weekend-snapshot"]["combinations"]
    assert [(c["kernel"], c["vmm"]) for c in weekend] == [st.key for st in STRATEGIES]
    assert {c["vmm"]: [v["id"] for v in c["verdicts"]] for c in weekend}["guest-s3@1"] == []


def test_demo_shift_23_band_doubles_the_horizon(demo_json: dict[str, Any]) -> None:
    rows = {row["label"]: row for row in demo_json["horizons"]}
    fast = rows["tsc 2.5 GHz"]
    band = rows["tsc 2.0 GHz (shift-23 band)"]
    assert (fast["shift"], band["shift"]) == (24, 23)
    assert fast["legacy_overflow_backstep_ns"] == 1 << 40
    assert band["legacy_overflow_backstep_ns"] == 1 << 41


def test_demo_json_has_each_combination_s_verdicts(demo_json: dict[str, Any]) -> None:
    scenarios = {s["name"]: s for s in demo_json["runs"]["scenarios"]}
    long_stop = {(c["kernel"], c["vmm"]): c for c in scenarios["seed-1200s-migration"]["combinations"]}
    ids = {key: {v["id"] for v in c["verdicts"]} for key, c in long_stop.items()}
    assert "overflow-garbage" in ids[("linux-6.1", "tsc-state@v2")]
    assert "overflow-garbage" not in ids[("linux-6.10", "tsc-state@v2")]
    assert all(c["check"] == "pass" for s in scenarios.values() for c in s["combinations"])
