"""Runs scenarios: every (kernel profile x VMM policy) combination, judged.

The layer the command line and the benchmarks call: it ties the simulator
(``sim``) to the checks (``check``) and knows nothing of output formats.
Combinations are independent, so they run in worker processes when there
are several; each worker's result depends only on its inputs and the
seed, so the answer is the same however many run at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tsclab.check.run_checks import judge
from tsclab.check.verdict import RunResult
from tsclab.scenario.model import Scenario
from tsclab.sim.run import run_combination

Progress = Callable[[RunResult], None]


def combinations(
    scenario: Scenario, kernels: Sequence[str] = (), vmms: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The (kernel, vmm) pairs to run: the scenario's own unless overridden, kernels outermost."""
    return [(k, v) for k in (kernels or scenario.guest.kernels) for v in (vmms or scenario.vmms)]


def expected_for(scenario: Scenario, kernel: str, vmm: str) -> frozenset[str] | None:
    """The scenario's expectation for a combination: the last matching ``[[expect]]`` wins."""
    found: frozenset[str] | None = None
    for e in scenario.expect:
        if e.kernel in ("*", kernel) and e.vmm in ("*", vmm):
            found = e.verdicts
    return found


def run_one(scenario: Scenario, kernel: str, vmm: str, seed: int) -> RunResult:
    trace = run_combination(scenario, kernel, vmm, seed)
    verdicts = judge(trace, timer_late_bound_ns=scenario.timer_late_bound_ns)
    return RunResult(trace, verdicts, expected_for(scenario, kernel, vmm))


def _run_packed(args: tuple[Scenario, str, str, int]) -> RunResult:
    return run_one(*args)


def run_scenario(
    scenario: Scenario,
    *,
    kernels: Sequence[str] = (),
    vmms: Sequence[str] = (),
    seed: int = 0,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Run every combination; results in combination order whatever order they finish in."""
    work = [(scenario, k, v, seed) for k, v in combinations(scenario, kernels, vmms)]
    workers = min(jobs or os.cpu_count() or 1, len(work))
    results: list[RunResult] = []
    if workers <= 1:
        for item in work:
            results.append(_run_packed(item))
            if progress:
                progress(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_run_packed, work):
            results.append(result)
            if progress:
                progress(result)
    return results
