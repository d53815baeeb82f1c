"""``tsclab scenarios``: the built-in scenario library."""

from __future__ import annotations

import click

from tsclab.report.text import render_table
from tsclab.scenario.library import builtin_names, builtin_path, load_builtin
from tsclab.scenario.load import ScenarioError


@click.command("scenarios")
@click.argument("name", required=False)
def scenarios_command(name: str | None) -> int:
    """List the built-in scenarios, or print one (NAME) as its TOML file."""
    if name is not None:
        try:
            load_builtin(name)
        except ScenarioError as err:
            raise click.UsageError(str(err)) from None
        click.echo(builtin_path(name).read_text(encoding="utf-8"), nl=False)
        return 0
    rows = []
    for scenario_name in builtin_names():
        scenario = load_builtin(scenario_name)
        combos = len(scenario.guest.kernels) * len(scenario.vmms)
        rows.append([scenario_name, str(combos), scenario.description])
    click.echo(render_table(["scenario", "runs", "what it reproduces"], rows))
    click.echo("\nRun one with: tsclab run NAME  (tsclab scenarios NAME prints its file)")
    return 0
