"""``tsclab profiles``: the kernel profiles and the behaviours each selects."""

from __future__ import annotations

import json

import click

from tsclab.kernel.profiles import PROFILES
from tsclab.report.text import render_table


@click.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profiles_command(as_json: bool) -> int:
    """List the kernel profiles and the timekeeping behaviour each selects."""
    if as_json:
        data = {name: {"summary": p.summary, **p.behaviours()} for name, p in PROFILES.items()}
        click.echo(json.dumps(data, indent=2))
        return 0
    names = list(PROFILES)
    behaviours = list(next(iter(PROFILES.values())).behaviours())
    rows = [[b, *(PROFILES[n].behaviours()[b] for n in names)] for b in behaviours]
    click.echo(render_table(["behaviour", *names], rows))
    click.echo("")
    for name in names:
        click.echo(f"{name}: {PROFILES[name].summary}")
    return 0
