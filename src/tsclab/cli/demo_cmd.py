"""``tsclab demo``: the headline overview of what a VM pause runs into."""

from __future__ import annotations

import json

import click

from tsclab.report.pause_horizons import overview_record, render_overview
from tsclab.report.raw_pause_matrix import matrix_record, render_matrix


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the overview as JSON.")
def demo_command(as_json: bool) -> int:
    """Show, for common clocksources, the pause horizons and what crossing each does."""
    if as_json:
        click.echo(json.dumps({"horizons": overview_record(), "raw_pauses": matrix_record()}, indent=2))
    else:
        click.echo(render_overview())
        click.echo("")
        click.echo(render_matrix())
    return 0
