"""The seed thread's answers side by side: every built-in scenario under the nap and its alternatives.

Each strategy is one (kernel profile, VMM policy) pair: the nap protocol;
the thread's alternatives to it (docs/simulator.md, "Alternatives to the
nap") - an interrupt on resume, a published max sane delta, guest S3 before
a snapshot, a VMCLOCK disruption marker after the fact; and two baselines
that do nothing special, QEMU and KVM's documented algorithm, on the latest
kernel.  The table puts each scenario's verdict IDs under each, so it shows
where the nap wins and where it does not.

The runs go through :func:`tsclab.lab.run_one`, all pairs of all scenarios
in one pool of worker processes: a strategy is one combination per
scenario, so running scenario by scenario would leave the workers idle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tsclab.check.verdict import RunResult
from tsclab.host.vmm_policies import resolve_policy
from tsclab.lab import run_one
from tsclab.report.run_json import run_record
from tsclab.report.run_matrix import ordered_ids
from tsclab.report.text import render_table
from tsclab.scenario.model import Scenario


@dataclass(frozen=True, slots=True)
class Strategy:
    """One answer to the seed's question: a kernel profile and a VMM policy, and where it comes from."""

    name: str
    kernel: str
    vmm: str
    source: str

    @property
    def label(self) -> str:
        return f"{self.kernel} x {self.vmm}"

    @property
    def key(self) -> tuple[str, str]:
        """(kernel, VMM policy label): how a run's trace names the combination."""
        return self.kernel, resolve_policy(self.vmm).label


STRATEGIES = (
    Strategy("nap", "nap", "nap", "tglx, 8 and 10 Dec 2020: tell the guest before it takes a nap"),
    Strategy(
        "resume-irq", "resume-irq", "resume-irq", "Andy Lutomirski, 10 Dec 2020: an interrupt on resume"
    ),
    Strategy(
        "max-sane", "max-sane", "max-sane", "Andy Lutomirski and tglx, 10 Dec 2020: a max sane TSC delta"
    ),
    Strategy("guest-s3", "linux-6.13", "guest-s3", "Paolo Bonzini, 10 Dec 2020: put the guest in S3"),
    Strategy("vmclock", "vmclock", "vmclock", "VMCLOCK (QEMU vmclock_post_load): a disruption marker"),
    Strategy("qemu", "linux-6.13", "qemu@7.2", "baseline: QEMU freezes kvmclock, nobody is told"),
    Strategy("upstream-doc", "linux-6.13", "upstream-doc", "baseline: KVM's documented algorithm"),
)

Runs = list[tuple[Scenario, list[RunResult]]]
# Results already run elsewhere, by (scenario name, kernel, VMM policy label).
Known = Mapping[tuple[str, str, str], RunResult]
Work = tuple[Scenario, str, str, int]


def _run(work: Work) -> RunResult:
    return run_one(*work)


def run_strategies(
    scenarios: Sequence[Scenario],
    *,
    seed: int = 0,
    jobs: int | None = None,
    known: Known | None = None,
    progress: Callable[[RunResult], None] | None = None,
) -> Runs:
    """Every strategy over every scenario; per scenario, one result per strategy in ``STRATEGIES`` order.

    ``known`` results are used as they are (the demo has run the nap column
    and some baselines already); the rest run in ``jobs`` worker processes.
    """
    known = known or {}
    cells = [(s, st) for s in scenarios for st in STRATEGIES]
    todo = [(s, st.kernel, st.vmm, seed) for s, st in cells if (s.name, *st.key) not in known]
    workers = min(jobs or os.cpu_count() or 1, len(todo)) or 1
    fresh: list[RunResult] = []
    if workers == 1:
        for work in todo:
            fresh.append(_run(work))
            if progress:
                progress(fresh[-1])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_run, todo):
                fresh.append(result)
                if progress:
                    progress(result)
    ran = iter(fresh)
    results = []
    for scenario, strategy in cells:
        key = (scenario.name, *strategy.key)
        results.append(known[key] if key in known else next(ran))
    per = len(STRATEGIES)
    return [(s, results[i * per : (i + 1) * per]) for i, s in enumerate(scenarios)]


def _cell_lines(result: RunResult) -> list[str]:
    """A cell's verdict IDs one a line (report order), or ``ok``, or ``n/a``."""
    if result.trace.skipped:
        return ["n/a"]
    return ordered_ids(result.ids) or ["ok"]


def _scenario_rows(name: str, results: list[RunResult]) -> list[list[str]]:
    """One scenario's rows: its name on the first, as many rows as its longest cell, then a blank."""
    cells = [_cell_lines(r) for r in results]
    height = max(len(c) for c in cells)
    rows = [[name if i == 0 else "", *(c[i] if i < len(c) else "" for c in cells)] for i in range(height)]
    return [*rows, [""] * (len(results) + 1)]


def render_strategies(runs: Runs) -> str:
    """The comparison: scenarios down, strategies across, each cell the verdict IDs (or ok, n/a).

    IDs are stacked one a line so the table stays as narrow as the longest
    ID.  A last row counts the scenarios each strategy came through clean;
    the lines under the table say what each strategy is, and why a cell
    reads ``n/a``.
    """
    rows: list[list[str]] = []
    skipped: dict[str, str] = {}
    clean = [0] * len(STRATEGIES)
    for scenario, results in runs:
        rows += _scenario_rows(scenario.name, results)
        for i, result in enumerate(results):
            if result.trace.skipped:
                skipped.setdefault(STRATEGIES[i].name, result.trace.skipped)
            elif not result.ids:
                clean[i] += 1
    rows.append(["clean runs", *(f"{n} of {len(runs)}" for n in clean)])
    title = "The thread's alternatives to the nap: every built-in scenario under each strategy."
    width = max(len(st.name) for st in STRATEGIES)
    lines = [title, "", render_table(["scenario", *(st.name for st in STRATEGIES)], rows), ""]
    lines += [f"{st.name:<{width}}  {st.label}: {st.source}" for st in STRATEGIES]
    lines += [f"n/a under {name}: e.g. {reason}" for name, reason in skipped.items()]
    return "\n".join(lines)


def strategies_record(runs: Runs, seed: int) -> dict[str, Any]:
    """The comparison as JSON: the strategies, then ``tsclab run --json``'s record of every run."""
    return {
        "strategies": [
            {"name": st.name, "kernel": st.kernel, "vmm": st.vmm, "source": st.source} for st in STRATEGIES
        ],
        "runs": run_record(runs, seed),
    }
