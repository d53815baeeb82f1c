"""``tsclab run``: scenarios under every (kernel profile x VMM policy) combination.

Exit codes: 0 done (and, with ``--check``, every expectation met); 1 with
``--check``, a combination's verdicts differ from the scenario's
``expect``; 2 bad input (a scenario file, an unknown profile or policy).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from tsclab.check.verdict import RunResult
from tsclab.host.vmm_policies import UnknownPolicyError, resolve_policy
from tsclab.kernel.profiles import UnknownProfileError, get_profile
from tsclab.lab import combinations, run_scenario
from tsclab.report.html_report import write_report
from tsclab.report.run_json import dump_json, run_record, write_text_atomic
from tsclab.report.run_matrix import render_matrix, render_verdict_details
from tsclab.scenario.library import resolve
from tsclab.scenario.load import ScenarioError
from tsclab.scenario.model import Scenario

EXIT_CHECK_FAILED = 1


def _check_names(kernels: tuple[str, ...], vmms: tuple[str, ...]) -> None:
    try:
        for kernel in kernels:
            get_profile(kernel)
        for vmm in vmms:
            resolve_policy(vmm)
    except (UnknownProfileError, UnknownPolicyError) as err:
        raise click.UsageError(str(err)) from None


def check_outputs(json_path: Path | None, report_dir: Path | None) -> None:
    """Refuse, before any run, an output that cannot be written."""
    if json_path is not None:
        parent = json_path.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise click.UsageError(f"--json {json_path}: {parent} is not a writable directory")
    if report_dir is not None:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise click.UsageError(f"--report {report_dir}: cannot create it ({err.strerror})") from None
        if not os.access(report_dir, os.W_OK):
            raise click.UsageError(f"--report {report_dir}: not writable")


def load_all(args: tuple[str, ...]) -> list[Scenario]:
    """Every scenario named, or a usage error naming the file and field at fault."""
    scenarios = []
    for arg in args:
        try:
            scenarios.append(resolve(arg))
        except ScenarioError as err:
            raise click.UsageError(str(err)) from None
    return scenarios


def run_all(
    scenarios: list[Scenario], kernels: tuple[str, ...], vmms: tuple[str, ...], seed: int, jobs: int | None
) -> list[tuple[Scenario, list[RunResult]]]:
    """Run them all with a progress bar on stderr (shown only past two seconds, on a terminal)."""
    total = sum(len(combinations(s, kernels, vmms)) for s in scenarios)
    runs: list[tuple[Scenario, list[RunResult]]] = []
    with tqdm(total=total, unit="run", delay=2.0, file=sys.stderr, disable=None, leave=False) as bar:
        for scenario in scenarios:
            bar.set_description(scenario.name)

            def advance(_result: RunResult) -> None:
                bar.update()

            results = run_scenario(
                scenario, kernels=kernels, vmms=vmms, seed=seed, jobs=jobs, progress=advance
            )
            runs.append((scenario, results))
    return runs


def render_matrices(runs: list[tuple[Scenario, list[RunResult]]]) -> str:
    """Only the verdict matrices, one per scenario."""
    return "\n".join(render_matrix(scenario, results) + "\n" for scenario, results in runs)


def render_runs(runs: list[tuple[Scenario, list[RunResult]]]) -> str:
    parts = []
    for scenario, results in runs:
        parts.append(render_matrix(scenario, results))
        for result in results:
            if result.verdicts:
                parts.append(f"{result.trace.kernel} x {result.trace.vmm}:")
                parts.append(render_verdict_details(result))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


@click.command("run")
@click.argument("scenario_args", metavar="SCENARIO...", nargs=-1, required=True)
@click.option(
    "--kernel",
    "kernels",
    multiple=True,
    metavar="PROFILE",
    help="Kernel profile(s) instead of the scenario's.",
)
@click.option(
    "--vmm", "vmms", multiple=True, metavar="POLICY", help="VMM policy(ies) instead of the scenario's."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the run's random choices.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the verdicts as JSON."
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write an HTML report here.",
)
@click.option("--check", "check", is_flag=True, help="Exit 1 if verdicts differ from the scenario's expect.")
@click.option(
    "--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per CPU)."
)
def run_command(
    scenario_args: tuple[str, ...],
    kernels: tuple[str, ...],
    vmms: tuple[str, ...],
    seed: int,
    json_path: Path | None,
    report_dir: Path | None,
    check: bool,
    jobs: int | None,
) -> int:
    """Run SCENARIO files (or built-in scenario names) and print each verdict matrix."""
    _check_names(kernels, vmms)
    check_outputs(json_path, report_dir)
    scenarios = load_all(scenario_args)
    runs = run_all(scenarios, kernels, vmms, seed, jobs)
    click.echo(render_runs(runs), nl=False)
    if json_path is not None:
        write_text_atomic(json_path, dump_json(run_record(runs, seed)))
        click.echo(f"JSON written to {json_path}")
    if report_dir is not None:
        index = write_report(report_dir, runs, seed)
        click.echo(f"report written to {index}")
    if check:
        failed = [r for _s, results in runs for r in results if r.check == "fail"]
        for r in failed:
            click.echo(
                f"check failed: {r.trace.scenario}: {r.trace.kernel} x {r.trace.vmm}: "
                f"got {sorted(r.ids) or 'none'}, expected {sorted(r.expected or ()) or 'none'}",
                err=True,
            )
        return EXIT_CHECK_FAILED if failed else 0
    return 0
