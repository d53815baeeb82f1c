"""The real-guest check suite: short cases on each side of each horizon.

Horizons of the counters QEMU gives a guest (``tsclab clocksource``):
``acpi_pm`` (3 579 545 Hz, 24 bits) wraps after 4.687 s and looks negative
to the 6.1 reader (``CLOCKSOURCE_VALIDATE_LAST_CYCLE``) past half that,
2.343 s; QEMU's ``hpet`` (100 MHz, 32 bits as Linux drives it) wraps after
42.95 s, half-width 21.47 s.  The 6.1 reader's ``delta * mult`` overflows
64 bits for the TSC after ``2**64 / mult`` cycles: about 1100 s for a
shift-24 TSC.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import NSEC_PER_SEC


@dataclass(frozen=True, slots=True)
class GuestCase:
    """One real run: boot, settle, pause once, observe, stop."""

    name: str
    clocksource: str
    pause_ns: int
    mode: str = "sigstop"
    vcpus: int = 1
    tsc_reliable: bool = False
    long: bool = False  # opt-in: minutes of pause
    why: str = ""


def _s(seconds: float) -> int:
    return int(seconds * NSEC_PER_SEC)


SUITE: tuple[GuestCase, ...] = (
    GuestCase("acpi_pm-below-half", "acpi_pm", _s(1.5), why="below the 2.34 s half-width: one clean jump"),
    GuestCase(
        "acpi_pm-negative", "acpi_pm", _s(3.5), why="past half-width: clamped to zero, frozen, a wrap lost"
    ),
    GuestCase("acpi_pm-wrapped", "acpi_pm", _s(6.0), why="past the 4.69 s wrap: the jump is the remainder"),
    GuestCase("hpet-below-half", "hpet", _s(15), why="below the 21.5 s half-width: one clean jump"),
    GuestCase("hpet-negative", "hpet", _s(28), why="past half-width: frozen, a wrap lost; soft lockup"),
    GuestCase("hpet-wrapped", "hpet", _s(46), why="past the 42.9 s wrap: the jump is the remainder"),
    GuestCase("tsc-short", "tsc", _s(5), why="every clock jumps by the pause"),
    GuestCase(
        "tsc-short-2vcpu", "tsc", _s(5), vcpus=2, tsc_reliable=True, why="both vCPUs' readers see the jump"
    ),
    GuestCase("qmp-tsc", "tsc", _s(5), mode="qmp", why="QEMU stops the clocks: no jump"),
    GuestCase("qmp-acpi_pm", "acpi_pm", _s(6), mode="qmp", why="a hidden pause past the wrap: nothing lost"),
    GuestCase(
        "tsc-overflow-1vcpu",
        "tsc",
        _s(1200),
        long=True,
        why="past the 6.1 reader's delta*mult overflow (~1100 s): who reads garbage?",
    ),
    GuestCase(
        "tsc-overflow-2vcpu",
        "tsc",
        _s(1200),
        vcpus=2,
        tsc_reliable=True,
        long=True,
        why="the same with a reader on a second vCPU",
    ),
)


def suite(*, include_long: bool) -> list[GuestCase]:
    return [case for case in SUITE if include_long or not case.long]


def find_case(name: str) -> GuestCase | None:
    return next((case for case in SUITE if case.name == name), None)
