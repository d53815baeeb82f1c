"""``tsclab explore``: every interleaving of small timekeeping scopes, and what goes wrong in them.

Exit codes: 0 done; 2 bad input (an unknown model, a bad depth).
"""

from __future__ import annotations

import json
from typing import Any

import click

from tsclab.report.text import render_table
from tsclab.sim.explore import ExploreResult, explore, render_counterexample
from tsclab.sim.explore_models import MODELS

DEFAULT_DEPTH = 64


def _record(result: ExploreResult) -> dict[str, Any]:
    return {
        "model": result.model,
        "reduction": result.reduction,
        "max_depth": result.max_depth,
        "complete": result.complete,
        "states": result.states,
        "transitions": result.transitions,
        "enabled_transitions": result.enabled_transitions,
        "schedules": result.schedules,
        "violated": sorted(result.violated),
        "counterexamples": [
            {
                "property": cx.property,
                "steps": [[step.process, step.label] for step in cx.steps],
                "cycle": [[step.process, step.label] for step in cx.cycle],
                "final_state": cx.final_state,
            }
            for cx in result.violations
        ],
    }


@click.command("explore")
@click.argument("models", metavar="[MODEL]...", nargs=-1)
@click.option("--max-depth", type=click.IntRange(min=1, max=10_000), default=DEFAULT_DEPTH, show_default=True)
@click.option("--no-reduction", is_flag=True, help="Plain enumeration, without the sleep-set reduction.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def explore_command(models: tuple[str, ...], max_depth: int, no_reduction: bool, as_json: bool) -> int:
    """Explore every interleaving of the named models (all of them by default).

    Each model is a small scope - two or three processes, bounded steps -
    built on the kernel model's arithmetic: readers, the timekeeping write
    section, the NMI-safe fast timekeeper, and a host that can pause the VM
    at any point.  Printed: states and transitions explored, schedules,
    the reduction factor, and a minimal counterexample for each violated
    property.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise click.UsageError(f"unknown model {unknown[0]!r}; expected one of: {', '.join(MODELS)}")
    names = list(models) or list(MODELS)
    results = [explore(MODELS[name](), max_depth=max_depth, reduction=not no_reduction) for name in names]
    if as_json:
        click.echo(json.dumps([_record(r) for r in results], indent=2, sort_keys=True))
        return 0
    rows = [
        [
            r.model,
            str(r.states),
            str(r.transitions),
            "-" if r.schedules is None else str(r.schedules),
            f"{r.reduction_factor:.2f}",
            "yes" if r.complete else "no (depth bound)",
            ", ".join(sorted(r.violated)) or "none",
        ]
        for r in results
    ]
    click.echo(
        render_table(
            ["model", "states", "transitions", "schedules", "reduction", "complete", "violated"], rows
        )
    )
    for r in results:
        for cx in r.violations:
            click.echo(f"\n{r.model}: {cx.property}")
            click.echo(render_counterexample(cx))
    return 0
