"""``tsclab advise``: what a raw pause does to a guest of a given kernel."""

from __future__ import annotations

import json

import click

from tsclab.check.pause_anomalies import find_anomalies
from tsclab.cli.params import counter_bits, duration, frequency, positive_int, register_from_options
from tsclab.kernel.profiles import UnknownProfileError, get_profile
from tsclab.report.advise import advise_record, render_advise
from tsclab.sim.raw_pause import HZ_RANGE, MAX_PAUSE_NS, PauseSetup, run_raw_pause


@click.command("advise")
@click.option(
    "--clocksource", "name", metavar="NAME", required=True, help="Clocksource name (tsc, hpet, ...)."
)
@click.option("--khz", metavar="N", callback=frequency("kHz"), help="Frequency in kHz (as the x86 TSC).")
@click.option("--hz", metavar="N", callback=frequency("Hz"), help="Frequency in Hz.")
@click.option(
    "--bits", metavar="B", callback=counter_bits, default="64", show_default=True, help="Counter width."
)
@click.option(
    "--kernel", "kernel", metavar="PROFILE", required=True, help="Kernel profile (tsclab profiles)."
)
@click.option(
    "--pause", metavar="DURATION", callback=duration, required=True, help="Pause length, e.g. 1200s, 20m."
)
@click.option(
    "--phase", metavar="DURATION", callback=duration, help="Pause start after the last tick [half a tick]."
)
@click.option(
    "--hz-tick", metavar="N", callback=positive_int, default="250", show_default=True, help="Guest HZ."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def advise_command(
    name: str,
    khz: int | None,
    hz: int | None,
    bits: int,
    kernel: str,
    pause: int,
    phase: int | None,
    hz_tick: int,
    as_json: bool,
) -> int:
    """Model a raw pause (the counter jumps, the guest is not told) and list what breaks."""
    try:
        profile = get_profile(kernel)
    except UnknownProfileError as err:
        raise click.BadParameter(str(err), param_hint="'--kernel'") from None
    cs = register_from_options(name, bits, khz, hz)
    if not HZ_RANGE[0] <= hz_tick <= HZ_RANGE[1]:
        raise click.BadParameter(
            f"expected a tick rate of {HZ_RANGE[0]}..{HZ_RANGE[1]} Hz, got {hz_tick}",
            param_hint="'--hz-tick'",
        )
    if pause > MAX_PAUSE_NS:
        raise click.BadParameter(
            f"expected a pause of at most 100d (the first tick after it runs second_overflow() once per "
            f"paused second), got {pause} ns",
            param_hint="'--pause'",
        )
    tick_ns = 1_000_000_000 // hz_tick
    if phase is None:
        phase = tick_ns // 2
    if phase >= tick_ns:
        raise click.BadParameter(
            f"expected a phase shorter than one tick ({tick_ns} ns)", param_hint="'--phase'"
        )
    setup = PauseSetup(clocksource=cs, profile=profile, pause_ns=pause, phase_ns=phase, hz=hz_tick)
    trace = run_raw_pause(setup)
    anomalies = find_anomalies(trace)
    if as_json:
        click.echo(json.dumps(advise_record(trace, anomalies), indent=2))
    else:
        click.echo(render_advise(trace, anomalies))
    return 0
