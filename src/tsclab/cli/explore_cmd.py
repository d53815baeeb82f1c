"""``tsclab explore``: every interleaving of small timekeeping scopes, and what goes wrong in them.

Exit codes: 0 done; 2 bad input (an unknown model, a bad depth).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from tsclab.nap.explore_model import NAP_CONTROLS, NAP_MODELS
from tsclab.report.text import render_table
from tsclab.sim.explore import ExploreResult, Model, explore, render_counterexample
from tsclab.sim.explore_models import MODELS

DEFAULT_DEPTH = 64

# Every model by name, and the groups a name may also be.
ALL_MODELS: dict[str, Callable[[], Model[Any]]] = {
    **MODELS,
    **NAP_MODELS,
    **{name: build for name, (build, _) in NAP_CONTROLS.items()},
}
GROUPS: dict[str, list[str]] = {
    "thread": list(MODELS),
    "nap": list(NAP_MODELS),
    "nap-controls": list(NAP_CONTROLS),
}
DEFAULT_GROUPS = ("thread", "nap")


def _resolve(names: tuple[str, ...]) -> list[str]:
    """Model names, groups expanded, in order, each once; the default groups when none given."""
    out: list[str] = []
    for name in names or DEFAULT_GROUPS:
        for model in GROUPS.get(name, [name]):
            if model not in ALL_MODELS:
                expected = ", ".join([*GROUPS, *ALL_MODELS])
                raise click.UsageError(f"unknown model {model!r}; expected one of: {expected}")
            if model not in out:
                out.append(model)
    return out


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
    """Explore every interleaving of the named models or groups (default: thread and nap).

    Each model is a small scope - a few processes, bounded steps - built
    on the kernel model's arithmetic.  Groups: ``thread``, the seed
    thread's three bugs and their fixed variants (the NOHZ-entry livelock,
    a pause inside the write section, the fast timekeeper going backwards);
    ``nap``, the nap protocol's scopes, which must violate nothing
    (docs/nap-protocol.md section 6 lists what each proves); ``nap-controls``,
    the protocol with one step removed, each breaking the property that
    step exists for.  Printed: states and transitions explored, schedules,
    the reduction factor, and a minimal counterexample for each violated
    property.  The default groups take about a minute and a half.
    """
    names = _resolve(models)
    results = [explore(ALL_MODELS[name](), max_depth=max_depth, reduction=not no_reduction) for name in names]
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
