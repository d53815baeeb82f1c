"""``tsclab kvm``: this host's real KVM - what it offers for guest time, the kernel's clock selftests,
and migration of the probe guest between two VMM processes.

Exit codes: ``probe``: 0 done (also when features are missing), 2 bad
usage, 3 ``/dev/kvm`` absent or unusable (the message says why).
``selftest``: 0 every case passed or was skipped, 1 a case failed, 2 bad
usage, 3 ``/dev/kvm`` absent or unusable. ``migrate``: 0 every migration
done, 1 a migration failed (or could not be set up, e.g. ``--netns``
without root), 2 bad usage, 3 ``/dev/kvm`` absent or unusable.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import click

from tsclab.cli.params import duration
from tsclab.kvm import migrate_render
from tsclab.kvm.errors import GuestError, KvmError, KvmUnavailableError
from tsclab.kvm.facts import HostFacts, host_facts
from tsclab.kvm.host_info import HostInfo, host_info
from tsclab.kvm.migrate import MigrationOptions, MigrationReport, MigrationSetupError, migrate
from tsclab.kvm.netns import NetnsError
from tsclab.kvm.probe import ERROR, NO, YES, ProbeReport, probe
from tsclab.kvm.selftest import FAIL, PASS, SKIP, SelftestReport, selftest
from tsclab.kvm.system import DEVICE, Kvm
from tsclab.kvm.vmm_process import MIGRATE_POLICIES, migrate_policy
from tsclab.kvm.wire import Fault

EXIT_FAILED = 1
EXIT_NO_KVM = 3
WIDTH = 100


class KvmUnusable(click.ClickException):
    exit_code = EXIT_NO_KVM


MAX_DOWNTIME_NS = 600 * 1_000_000_000


@click.group("kvm")
def kvm_group() -> None:
    """Real KVM on this host: probe what it offers for guest time, run the kernel's clock selftests,
    migrate the probe guest between two VMM processes."""


_JSON = click.option("--json", "as_json", is_flag=True, help="One JSON document (keys sorted) on stdout.")
_DEVICE = click.option(
    "--device", default=DEVICE, show_default=True, metavar="PATH", help="The KVM device to open."
)


def _open(device: str) -> Kvm:
    """``/dev/kvm`` opened and able to create a VM; exit 3 with the reason otherwise."""
    try:
        kvm = Kvm.open(device)
    except KvmUnavailableError as err:
        raise KvmUnusable(f"no usable KVM: {err}") from None
    try:
        kvm.create_vm().close()
    except KvmError as err:
        kvm.close()
        raise KvmUnusable(f"no usable KVM: {device} cannot create a VM: {err}") from None
    return kvm


def _dump(record: dict[str, Any]) -> None:
    click.echo(json.dumps(record, indent=2, sort_keys=True))


def _header(command: str, device: str, host: HostInfo) -> str:
    return f"tsclab kvm {command}: {device} on {host.describe()}"


def _wrapped(label: str, text: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=f"       {label:<7}", subsequent_indent=" " * 14, break_on_hyphens=False
    )


def render_probe(report: ProbeReport) -> str:
    lines = [_header("probe", report.device, report.host), ""]
    for feature in report.features:
        status = f"{feature.status} ({feature.errno})" if feature.errno else feature.status
        lines.append(f"{status:<6} {feature.title}")
        lines.append(_wrapped("seen:", feature.detail))
        lines.append(_wrapped("means:", feature.meaning))
    counts = {s: sum(1 for f in report.features if f.status == s) for s in (YES, NO, ERROR)}
    lines += ["", f"{len(report.features)} features: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines)


def render_selftest(report: SelftestReport) -> str:
    lines = [_header("selftest", report.device, report.host), ""]
    width = max(len(case.name) for case in report.cases)
    for case in report.cases:
        lines.append(
            textwrap.fill(
                case.detail,
                WIDTH,
                initial_indent=f"{case.status:<5} {case.name:<{width}}  ",
                subsequent_indent=" " * (width + 8),
                break_on_hyphens=False,
            )
        )
    summary = ", ".join(f"{report.count(s)} {s}" for s in (PASS, FAIL, SKIP))
    lines += ["", f"{len(report.cases)} cases: {summary}"]
    return "\n".join(lines)


@kvm_group.command("probe")
@_JSON
@_DEVICE
def probe_command(as_json: bool, device: str) -> int:
    """Try each KVM clock feature, read it back, say what it means.

    Where KVM's answer and the guest's view could differ, the probe guest reads it from inside.
    """
    with _open(device) as kvm:
        report = probe(kvm, device, host_info())
    if as_json:
        _dump(report.to_dict())
    else:
        click.echo(render_probe(report))
    return 0


@kvm_group.command("selftest")
@_JSON
@_DEVICE
def selftest_command(as_json: bool, device: str) -> int:
    """Run the kernel's KVM clock selftests through tsclab's VMM.

    Equivalents of kvm_clock_test and system_counter_offset_test, with the probe guest.
    """
    with _open(device) as kvm:
        report = selftest(kvm, device, host_info())
    if as_json:
        _dump(report.to_dict())
    else:
        click.echo(render_selftest(report))
    return EXIT_FAILED if report.failed else 0


def _policies(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return MIGRATE_POLICIES
    try:
        migrate_policy(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return (value.strip(),)


def _downtime(ctx: click.Context, param: click.Parameter, value: str) -> int:
    ns = duration(ctx, param, value) or 0
    if ns > MAX_DOWNTIME_NS:
        raise click.BadParameter(f"at most 600s, got {value!r}")
    return ns


def _fault(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Fault | None:
    if value is None:
        return None
    try:
        return Fault.parse(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _facts(device: str) -> HostFacts:
    with _open(device) as kvm:
        try:
            return host_facts(kvm)
        except (KvmError, GuestError) as err:
            raise KvmUnusable(f"no usable KVM: {device} cannot run the probe guest: {err}") from None


class MigrationFailed(click.ClickException):
    exit_code = EXIT_FAILED


@kvm_group.command("migrate")
@click.option(
    "--policy",
    default=None,
    callback=_policies,
    metavar="P",
    help=f"The VMM policy: one of {', '.join(MIGRATE_POLICIES)} (default: each in turn).",
)
@click.option(
    "--downtime",
    default="0s",
    callback=_downtime,
    metavar="D",
    help="An artificial stop added on the source after the save, e.g. 2s (default 0s).",
)
@click.option(
    "--netns", is_flag=True, help="Run each VMM in its own network namespace, joined by a veth (root)."
)
@_JSON
@_DEVICE
@click.option("--fault", default=None, callback=_fault, hidden=True, help="KIND@MESSAGE: inject a fault.")
@click.option("--destination-tsc-khz", type=click.IntRange(min=1), default=None, hidden=True)
def migrate_command(
    policy: tuple[str, ...],
    downtime: int,
    netns: bool,
    as_json: bool,
    device: str,
    fault: Fault | None,
    destination_tsc_khz: int | None,
) -> int:
    """Migrate the probe guest between two VMM processes over TCP, per VMM policy.

    Measures what the guest sees - its kvmclock and TSC against host realtime across the downtime -
    and compares it with the model's prediction for the same operations.
    """
    facts = _facts(device)
    reports: list[MigrationReport] = []
    for name in policy:
        options = MigrationOptions(
            policy=name,
            downtime_ns=downtime,
            netns=netns,
            fault=fault,
            destination_tsc_khz=destination_tsc_khz,
            device=device,
        )
        try:
            reports.append(migrate(options, facts))
        except (NetnsError, MigrationSetupError) as err:
            raise MigrationFailed(f"{name}: {err}") from None
    if as_json:
        _dump({"host": facts.to_dict(), "device": device, "migrations": [r.to_dict() for r in reports]})
    else:
        blocks = [migrate_render.header(facts, device), *(migrate_render.render(r) for r in reports)]
        if len(reports) > 1:
            blocks.append(migrate_render.table(reports))
        click.echo("\n\n".join(blocks))
    return 0 if all(r.ok for r in reports) else EXIT_FAILED
