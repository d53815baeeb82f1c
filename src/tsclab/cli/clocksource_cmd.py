"""``tsclab clocksource``: what the kernel computes when it registers a counter."""

from __future__ import annotations

import json

import click

from tsclab.cli.params import counter_bits, frequency, register_from_options
from tsclab.report.clocksource import clocksource_record, render_clocksource


@click.command("clocksource")
@click.option(
    "--name", metavar="NAME", required=True, help="Clocksource name as the kernel prints it (tsc, hpet, ...)."
)
@click.option(
    "--khz",
    metavar="N",
    callback=frequency("kHz"),
    help="Frequency in kHz (clocksource_register_khz, as the x86 TSC).",
)
@click.option(
    "--hz", metavar="N", callback=frequency("Hz"), help="Frequency in Hz (clocksource_register_hz)."
)
@click.option(
    "--bits",
    metavar="B",
    callback=counter_bits,
    default="64",
    show_default=True,
    help="Counter width, 1..64.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def clocksource_command(name: str, khz: int | None, hz: int | None, bits: int, as_json: bool) -> int:
    """Register a clocksource exactly as Linux does and show its pause horizons.

    The first line is the one the kernel prints at registration
    (clocksource: NAME: mask: ... max_cycles: ..., max_idle_ns: ... ns).
    """
    cs = register_from_options(name, bits, khz, hz)
    if as_json:
        click.echo(json.dumps(clocksource_record(cs), indent=2))
    else:
        click.echo(render_clocksource(cs))
    return 0
