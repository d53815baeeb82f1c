"""``tsclab kvm``: this host's real KVM - what it offers for guest time, and the kernel's clock selftests.

Exit codes: ``probe``: 0 done (also when features are missing), 2 bad
usage, 3 ``/dev/kvm`` absent or unusable (the message says why).
``selftest``: 0 every case passed or was skipped, 1 a case failed, 2 bad
usage, 3 ``/dev/kvm`` absent or unusable.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import click

from tsclab.kvm.errors import KvmError, KvmUnavailableError
from tsclab.kvm.host_info import HostInfo, host_info
from tsclab.kvm.probe import ERROR, NO, YES, ProbeReport, probe
from tsclab.kvm.selftest import FAIL, PASS, SKIP, SelftestReport, selftest
from tsclab.kvm.system import DEVICE, Kvm

EXIT_FAILED = 1
EXIT_NO_KVM = 3
WIDTH = 100


class KvmUnusable(click.ClickException):
    exit_code = EXIT_NO_KVM


@click.group("kvm")
def kvm_group() -> None:
    """Real KVM on this host: probe what it offers for guest time, run the kernel's clock selftests."""


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
