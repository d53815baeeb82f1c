"""``tsclab demo``: the headline run - the seed's question across kernels and VMMs.

The seed thread (LKML, December 2020) asks what a guest's clock does when
the host stops it for a long live migration.  The demo prints how long each
common clocksource can be stopped before something breaks, then runs the
built-in scenarios that answer the question - a 200 s and a 1200 s
stop-and-copy, and a Firecracker snapshot restored hours later - under
every kernel profile and VMM policy they name, then every built-in scenario
under the nap protocol, then under the nap and the thread's alternatives to
it side by side (:mod:`tsclab.report.strategies`), and writes the HTML report
to a folder it names.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click
from tqdm import tqdm

from tsclab.check.verdict import VERDICT_IDS, RunResult
from tsclab.cli.run_cmd import check_outputs, render_matrices, run_all
from tsclab.report.html_report import write_report
from tsclab.report.pause_horizons import overview_record, render_overview
from tsclab.report.run_json import run_record
from tsclab.report.strategies import (
    STRATEGIES,
    Known,
    Runs,
    render_strategies,
    run_strategies,
    strategies_record,
)
from tsclab.report.text import render_table
from tsclab.scenario.library import builtin_names, load_builtin
from tsclab.scenario.model import Scenario


def _as_nap(scenario: Scenario) -> Scenario:
    """The scenario under the nap protocol: its own name, marked, for the report."""
    return replace(
        scenario, name=f"{scenario.name}+nap", description=f"{scenario.description} - under the nap protocol"
    )


def unavoidable(scenario: Scenario) -> str:
    """Why the nap protocol cannot help with a scenario, or ""."""
    if all(event.action == "stop" for event in scenario.events):
        return "a SIGSTOP: the host did not know in advance, so it could not ask"
    return ""


def render_nap_column(nap_runs: list[tuple[Scenario, list[RunResult]]]) -> str:
    """Every built-in scenario under the nap profile and policy, with what it cannot avoid."""
    rows = []
    for scenario, (result,) in nap_runs:
        ids = ", ".join(sorted(result.ids, key=list(VERDICT_IDS).index)) or "ok"
        why = unavoidable(scenario) if result.ids else ""
        rows.append([scenario.name.removesuffix("+nap"), ids, why])
    title = "The nap column: every built-in scenario under the nap profile and the nap policy."
    return title + "\n\n" + render_table(["scenario", "nap x nap", "why it cannot be avoided"], rows)


def nap_notes(nap_runs: list[tuple[Scenario, list[RunResult]]]) -> dict[str, str]:
    """For the report: under each nap scenario that keeps a verdict, why the nap cannot avoid it."""
    notes = {}
    for scenario, (result,) in nap_runs:
        if result.ids:
            why = unavoidable(scenario) or "not explained: the nap protocol should have avoided this"
            notes[scenario.name] = f"The nap cannot avoid this: {why}."
    return notes


def compare_strategies(done: Runs, jobs: int | None) -> Runs:
    """Every built-in scenario under each strategy, reusing the runs the demo has ``done`` already."""
    known: Known = {
        (scenario.name.removesuffix("+nap"), result.trace.kernel, result.trace.vmm): result
        for scenario, results in done
        for result in results
    }
    scenarios = [load_builtin(name) for name in builtin_names()]
    wanted = {(s.name, *st.key) for s in scenarios for st in STRATEGIES}
    total = len(wanted - set(known))
    with tqdm(total=total, unit="run", delay=2.0, file=sys.stderr, disable=None, leave=False) as bar:
        bar.set_description("strategies")

        def advance(_result: RunResult) -> None:
            bar.update()

        return run_strategies(scenarios, jobs=jobs, known=known, progress=advance)


DEMO_SCENARIOS = ("seed-200s-migration", "seed-1200s-migration", "firecracker-5322-restore")
DEFAULT_REPORT_DIR = Path("tsclab-demo-report")


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the horizons and the runs' verdicts as JSON.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_REPORT_DIR,
    show_default=True,
    help="Where to write the HTML report.",
)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per CPU)."
)
def demo_command(as_json: bool, report_dir: Path, jobs: int | None) -> int:
    """The seed's question: pause horizons, then long migration stops across kernels and VMMs."""
    check_outputs(None, report_dir)
    scenarios = [load_builtin(name) for name in DEMO_SCENARIOS]
    runs = run_all(scenarios, (), (), 0, jobs)
    nap_runs = run_all([_as_nap(load_builtin(name)) for name in builtin_names()], ("nap",), ("nap",), 0, jobs)
    strategy_runs = compare_strategies(runs + nap_runs, jobs)
    index = write_report(report_dir, runs + nap_runs, 0, notes=nap_notes(nap_runs))
    if as_json:
        record = {
            "horizons": overview_record(),
            "runs": run_record(runs, 0),
            "nap": run_record(nap_runs, 0),
            "strategies": strategies_record(strategy_runs, 0),
            "report": str(index),
        }
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return 0
    click.echo(render_overview())
    click.echo("")
    click.echo("The seed's question, simulated: what the guest sees, per kernel and VMM policy.")
    click.echo("(tsclab run NAME for the details of one; tsclab scenarios for the whole library.)")
    click.echo("")
    click.echo(render_matrices(runs), nl=False)
    click.echo("")
    click.echo(render_nap_column(nap_runs))
    click.echo("")
    click.echo(render_strategies(strategy_runs))
    click.echo(f"\nHTML report (matrix, timelines, clock errors per vCPU): {index}")
    return 0
