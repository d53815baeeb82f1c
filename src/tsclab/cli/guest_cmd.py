"""``tsclab guest``: boot a stock Linux kernel under QEMU, pause it for real, compare.

Exit codes: 0 every comparison matched; 1 a model-versus-guest mismatch
(the table says which); 2 bad usage, or QEMU or the guest kernel missing
(the message says how to get them); 3 the guest failed to boot or hung
(its console log is shown); 4 ``guest fetch`` failed (the step, the
command and its error are shown).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

from tsclab.cli.params import duration
from tsclab.guest.accel import AccelChoice, choose_accel
from tsclab.guest.assets import (
    FetchError,
    GuestAssets,
    Missing,
    MissingAssets,
    fetch,
    load_assets,
    missing_host_tools,
)
from tsclab.guest.cases import SUITE, GuestCase, suite
from tsclab.guest.machine import CLOCKSOURCES, PAUSE_MODES, GuestError, RunFiles, read_tail
from tsclab.guest.observe import ObservationError
from tsclab.guest.run import CaseResult, run_case
from tsclab.guest.trace import TraceError
from tsclab.report.guest_check import case_record, render_case, render_summary

EXIT_MISMATCH = 1
EXIT_GUEST_FAILED = 3
EXIT_FETCH_FAILED = 4
QEMU = "qemu-system-x86_64"
MAX_GUEST_PAUSE_NS = 3600 * 1_000_000_000


class GuestFailed(click.ClickException):
    exit_code = EXIT_GUEST_FAILED


class FetchFailed(click.ClickException):
    exit_code = EXIT_FETCH_FAILED


@click.group("guest")
def guest_group() -> None:
    """A real guest: fetch it, pause it, and hold the model to what it shows."""


def _err(message: str) -> None:
    click.echo(message, err=True)


@guest_group.command("fetch")
@click.option("--force", is_flag=True, help="Fetch and build again even if the cache is good.")
@click.option("--kernel-package", metavar="PKG", help="Debian kernel package [linux-image-amd64's].")
def fetch_command(force: bool, kernel_package: str | None) -> int:
    """Download the Debian kernel and busybox, build the probe and the initramfs; cache them."""
    missing = missing_host_tools(for_fetch=True)
    if missing:
        raise click.UsageError(_missing_text(missing))
    start = time.monotonic()

    def progress(message: str) -> None:
        _err(f"[{time.monotonic() - start:6.1f} s] {message}")

    try:
        assets = fetch(progress=progress, force=force, kernel_package=kernel_package)
    except FetchError as err:
        raise FetchFailed(str(err)) from None
    click.echo(
        f"guest ready in {assets.root}: Linux {assets.kernel_release} ({assets.kernel_package_version})"
    )
    if not missing_host_tools(for_fetch=False):
        progress("checking whether KVM can boot this guest (a trial boot, once) ...")
        click.echo(choose_accel(assets, QEMU, refresh=force).reason)
    return 0


def _missing_text(missing: list[Missing]) -> str:
    return "; ".join(f"{m.what} is missing ({m.how})" for m in missing)


def _ready_assets() -> GuestAssets:
    missing = missing_host_tools(for_fetch=False)
    if missing:
        raise click.UsageError(_missing_text(missing))
    try:
        return load_assets()
    except MissingAssets as err:
        raise click.UsageError(str(err)) from None


def _accel(assets: GuestAssets, requested: str) -> str:
    if requested != "auto":
        return requested
    choice: AccelChoice = choose_accel(assets, QEMU)
    _err(choice.reason)
    return choice.accel


def _run(case: GuestCase, assets: GuestAssets, accel: str, workdir: Path) -> CaseResult:
    try:
        return run_case(case, assets, workdir, accel=accel, qemu=QEMU, progress=_err)
    except GuestError as err:
        raise GuestFailed(f"{case.name}: {err}{_console_section(workdir, err.console_tail)}") from None
    except (TraceError, ObservationError) as err:
        # The guest ran but left too little to judge (a panic, a hang after
        # the pause): its console says why.
        tail = _console_section(workdir, read_tail(RunFiles(workdir).console))
        raise GuestFailed(f"{case.name}: the guest's output cannot be judged: {err}{tail}") from None


def _console_section(workdir: Path, tail: str) -> str:
    if not tail:
        return ""
    return f"\n--- guest console (last lines, {RunFiles(workdir).console}) ---\n{tail}"


_ACCEL = click.option(
    "--accel",
    type=click.Choice(["auto", "tcg", "kvm"]),
    default="auto",
    show_default=True,
    help="QEMU accelerator; auto: KVM if a trial boot works here, else TCG.",
)
_WORKDIR = click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's logs here."
)


@guest_group.command("check")
@click.option("--clocksource", type=click.Choice(CLOCKSOURCES), default="tsc", show_default=True)
@click.option(
    "--pause", metavar="DURATION", callback=duration, default="5s", show_default=True, help="e.g. 3.5s, 2m."
)
@click.option(
    "--mode",
    type=click.Choice(PAUSE_MODES),
    default="sigstop",
    show_default=True,
    help="sigstop: counters run on (raw pause); qmp: QEMU stops them.",
)
@click.option("--vcpus", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--tsc-reliable", is_flag=True, help="Boot with tsc=reliable (no TSC sync check, no watchdog).")
@_ACCEL
@_WORKDIR
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check_command(
    clocksource: str,
    pause: int,
    mode: str,
    vcpus: int,
    tsc_reliable: bool,
    accel: str,
    workdir: Path | None,
    as_json: bool,
) -> int:
    """Boot, pause once, resume, observe; print predicted versus observed."""
    if not 0 < pause <= MAX_GUEST_PAUSE_NS:
        raise click.BadParameter(
            f"expected a pause of more than 0 and at most 1h, got {pause} ns", param_hint="'--pause'"
        )
    assets = _ready_assets()
    case = GuestCase(
        f"{clocksource}-{mode}", clocksource, pause, mode, vcpus, tsc_reliable, why="tsclab guest check"
    )
    chosen = _accel(assets, accel)
    result = _in_workdir(workdir, lambda d: _run(case, assets, chosen, d))
    if as_json:
        click.echo(json.dumps(case_record(result), indent=2))
    else:
        click.echo(render_case(result))
    return 0 if result.passed else EXIT_MISMATCH


@guest_group.command("suite")
@click.option("--long", "include_long", is_flag=True, help="Add the ~20 min TSC overflow cases.")
@click.option("--case", "names", multiple=True, metavar="NAME", help="Run only these cases (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the cases and exit.")
@_ACCEL
@_WORKDIR
@click.option(
    "--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON."
)
def suite_command(
    include_long: bool,
    names: tuple[str, ...],
    list_only: bool,
    accel: str,
    workdir: Path | None,
    json_file: Path | None,
) -> int:
    """Run the check suite: each horizon of each counter, from both sides."""
    known = {case.name: case for case in SUITE}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown case {unknown[0]!r}; expected one of {', '.join(known)}", param_hint="'--case'"
        )
    cases = [known[n] for n in names] if names else suite(include_long=include_long)
    if list_only:
        for case in cases:
            where = f"{case.clocksource:8} {case.vcpus} vCPU {case.mode:8}"
            click.echo(f"{case.name:22} {where} {case.pause_ns / 1e9:7g} s  {case.why}")
        return 0
    assets = _ready_assets()
    chosen = _accel(assets, accel)
    results: list[CaseResult] = []
    base = workdir or Path(tempfile.mkdtemp(prefix="tsclab-guest-"))
    for case in cases:
        result = _run(case, assets, chosen, base / case.name)
        click.echo(render_case(result) + "\n")
        results.append(result)
    click.echo(render_summary(results))
    if json_file is not None:
        json_file.write_text(json.dumps([case_record(r) for r in results], indent=2) + "\n")
    if workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    else:
        click.echo(f"logs in {base}")
    return 0 if all(r.passed for r in results) else EXIT_MISMATCH


def _in_workdir(workdir: Path | None, body: Callable[[Path], CaseResult]) -> CaseResult:
    """Run in ``workdir``, or in a temporary one kept only if the guest failed (its logs)."""
    if workdir is not None:
        return body(workdir)
    tmp = Path(tempfile.mkdtemp(prefix="tsclab-guest-"))
    result = body(tmp / "run")
    shutil.rmtree(tmp, ignore_errors=True)
    return result
