"""The ``tsclab run`` verdict matrix and per-combination verdict lines, as text."""

from __future__ import annotations

import pytest

from tests.report.run_fixtures import KERNELS, MONOTONIC_JUMP, SOFTLOCKUP, VMMS, synthetic_trace, two_by_two
from tsclab.check.verdict import RunResult, Verdict
from tsclab.report.run_matrix import matrix_cell, ordered_ids, render_matrix, render_verdict_details


def test_two_by_two_matrix_exact() -> None:
    scenario, results = two_by_two()
    assert render_matrix(scenario, results).splitlines() == [
        "pause-2min: A two-minute pause, readers on both vCPUs",
        "",
        "kernel \\ vmm  qemu@7.2                      firecracker@1.12",
        "------------  ----------------------------  -----------------------------",
        "linux-6.1     ✓ monotonic-jump, softlockup  ✗ softlockup (expected: none)",
        "linux-6.13    ✓ ok                          n/a [1]",
        "4 combinations: 2 pass, 1 fail, 1 skipped",
        "",
        "[1] linux-6.13 x firecracker@1.12: firecracker 1.12 cannot snapshot a linux-6.13 guest <here>",
    ]


def test_rows_and_columns_follow_the_results_order() -> None:
    scenario, results = two_by_two()
    lines = render_matrix(scenario, results[::-1]).splitlines()
    assert lines[2].split() == ["kernel", "\\", "vmm", "firecracker@1.12", "qemu@7.2"]
    assert lines[4].startswith("linux-6.13")
    assert lines[5].startswith("linux-6.1 ")


def test_a_pair_without_a_result_is_a_dash() -> None:
    scenario, results = two_by_two()
    lines = render_matrix(scenario, results[:3]).splitlines()
    assert lines[5].split() == ["linux-6.13", "✓", "ok", "-"]
    assert lines[6] == "3 combinations: 2 pass, 1 fail"
    assert len(lines) == 7  # no footnotes


def test_two_results_for_one_pair_are_an_error() -> None:
    scenario, results = two_by_two()
    with pytest.raises(ValueError, match="two results"):
        render_matrix(scenario, [*results, results[0]])


def test_cells_unchecked_and_failing() -> None:
    trace = synthetic_trace(KERNELS[0], VMMS[0])
    # Unchecked: IDs in VERDICT_IDS order, or "ok"; no mark.
    assert matrix_cell(RunResult(trace, (SOFTLOCKUP, MONOTONIC_JUMP))) == "monotonic-jump, softlockup"
    assert matrix_cell(RunResult(trace, ())) == "ok"
    # A fail names what was expected, in report order.
    failing = RunResult(trace, (), frozenset({"softlockup", "time-backwards"}))
    assert matrix_cell(failing) == "✗ ok (expected: time-backwards, softlockup)"


def test_ordered_ids_puts_unknown_ids_last() -> None:
    assert ordered_ids({"softlockup", "zz", "time-backwards"}) == ["time-backwards", "softlockup", "zz"]


def test_verdict_details_one_line_each() -> None:
    _, results = two_by_two()
    lines = render_verdict_details(results[0]).splitlines()
    assert lines == [
        "verdict                at  vcpu  clock      magnitude                    event",
        "--------------  ---------  ----  ---------  ---------------------------  "
        "--------------------------------------------------",
        "softlockup      134.000 s     0  -          124 s                        "
        "watchdog: BUG: soft lockup - CPU#0 stuck for 124s!",
        "monotonic-jump  130.000 s     1  MONOTONIC  120000000000 ns (120.000 s)  "
        "MONOTONIC read 120 s short across the pause",
    ]


def test_verdict_details_without_vcpu_or_verdicts() -> None:
    _, results = two_by_two()
    assert render_verdict_details(results[2]) == "no verdicts"
    v = Verdict("livelock", 1_500, None, "REALTIME", 3, "count", "reader spun")
    row = render_verdict_details(RunResult(results[2].trace, (v,))).splitlines()[2]
    assert row.split() == ["livelock", "1.5", "us", "-", "REALTIME", "3", "count", "reader", "spun"]
