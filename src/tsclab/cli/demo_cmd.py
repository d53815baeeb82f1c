"""``tsclab demo``: the headline overview of what a VM pause runs into."""

from __future__ import annotations

import json

import click

from tsclab.report.pause_horizons import overview_record, render_overview


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the overview as JSON.")
def demo_command(as_json: bool) -> int:
    """Show, for common clocksources, the pause horizons and what crossing each does."""
    if as_json:
        click.echo(json.dumps(overview_record(), indent=2))
    else:
        click.echo(render_overview())
    return 0
