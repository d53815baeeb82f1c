"""``tsclab run --json``: the record, its deterministic text, and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.report.run_fixtures import two_by_two
from tsclab.report.run_json import SCHEMA_VERSION, dump_json, run_record, write_text_atomic


def test_record_exact() -> None:
    scenario, results = two_by_two(samples=12)
    record = run_record([(scenario, [results[1], results[3]])], seed=7)
    assert record == {
        "schema": 1,
        "tool": "tsclab",
        "seed": 7,
        "scenarios": [
            {
                "name": "pause-2min",
                "description": "A two-minute pause, readers on both vCPUs",
                "path": "scenarios/pause-2min.toml",
                "sources": ["https://example.org/bug/1", "a mailing-list thread"],
                "combinations": [
                    {
                        "kernel": "linux-6.1",
                        "vmm": "firecracker@1.12",
                        "skipped": None,
                        "check": "fail",
                        "expected": [],
                        "verdicts": [
                            {
                                "id": "softlockup",
                                "t_ns": 134_000_000_000,
                                "vcpu": 0,
                                "clock": None,
                                "magnitude": 124,
                                "unit": "s",
                                "event": "watchdog: BUG: soft lockup - CPU#0 stuck for 124s!",
                            }
                        ],
                        "end_ns": 160_000_000_000,
                        "samples": 12,
                        "messages": [
                            {
                                "t_ns": 134_000_000_000,
                                "vcpu": 0,
                                "kind": "softlockup",
                                "text": "watchdog: BUG: soft lockup - CPU#0 stuck for 124s! [swapper/0:0]",
                            }
                        ],
                    },
                    {
                        "kernel": "linux-6.13",
                        "vmm": "firecracker@1.12",
                        "skipped": "firecracker 1.12 cannot snapshot a linux-6.13 guest <here>",
                        "check": "skipped",
                        "expected": None,
                        "verdicts": [],
                        "end_ns": 0,
                        "samples": 0,
                        "messages": [],
                    },
                ],
            }
        ],
    }


def test_expected_is_sorted_and_verdicts_keep_their_order() -> None:
    scenario, results = two_by_two()
    combo = run_record([(scenario, results)], seed=1)["scenarios"][0]["combinations"][0]
    assert combo["expected"] == ["monotonic-jump", "softlockup"]
    assert [v["id"] for v in combo["verdicts"]] == ["softlockup", "monotonic-jump"]
    assert combo["check"] == "pass"


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_no_floats_and_only_json_types() -> None:
    scenario, results = two_by_two()
    leaves = _leaves(run_record([(scenario, results)], seed=3))
    assert leaves
    assert all(type(leaf) in (int, str, bool, type(None)) for leaf in leaves)


def test_dump_is_deterministic_sorted_and_round_trips() -> None:
    scenario, results = two_by_two(description="Pause: 2 min, Grüße aus 東京")
    first = dump_json(run_record([(scenario, results)], seed=7))
    second = dump_json(
        run_record([(scenario, two_by_two(description="Pause: 2 min, Grüße aus 東京")[1])], seed=7)
    )
    assert first == second
    assert first.encode() == second.encode()
    assert first.endswith("}\n")
    assert "Pause: 2 min, Grüße aus 東京" in first  # not \u-escaped
    assert first.splitlines()[1] == '  "scenarios": ['  # keys sorted
    assert json.loads(first) == run_record([(scenario, results)], seed=7)
    assert json.loads(first)["schema"] == SCHEMA_VERSION


def test_atomic_write_creates_and_replaces_leaving_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    write_text_atomic(target, "first\n")
    assert target.read_text() == "first\n"
    write_text_atomic(target, "second: Grüße\n")
    assert target.read_bytes() == "second: Grüße\n".encode()
    assert os.listdir(tmp_path) == ["run.json"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run.json"
    target.write_text("old\n")

    def broken_replace(*_args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["run.json"]


def test_atomic_write_respects_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def test_the_documented_example_is_what_dump_json_writes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "run-json.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    scenario, results = two_by_two(samples=12)
    assert example == dump_json(run_record([(scenario, [results[1], results[3]])], seed=7))
