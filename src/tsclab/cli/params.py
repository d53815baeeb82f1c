"""Option validators that say exactly what they expected.

Options are read as text and checked here (as click callbacks), so every
error names the option, the value given and the form expected.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from tsclab.arith import U32_MAX
from tsclab.clocksource import Clocksource, ClocksourceError, register
from tsclab.units import parse_duration


def _whole_number(text: str, expected: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise click.BadParameter(f"expected {expected}, got {text!r}") from None


def frequency(unit: str) -> Callable[[click.Context, click.Parameter, str | None], int | None]:
    """A callback accepting a positive whole frequency that fits a u32."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        number = _whole_number(value, f"a whole number of {unit}")
        if number <= 0:
            raise click.BadParameter(f"expected a positive frequency in {unit}, got {number}")
        if number > U32_MAX:
            raise click.BadParameter(
                f"{number} {unit} does not fit the kernel's u32 frequency argument (at most {U32_MAX})"
            )
        return number

    return check


def counter_bits(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """A callback accepting a counter width of 1..64 bits."""
    number = _whole_number(str(value), "a counter width in bits (1..64)")
    if not 1 <= number <= 64:
        raise click.BadParameter(f"expected a counter width in bits (1..64), got {number}")
    return number


def duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A click callback around :func:`parse_duration`."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param=param) from None


def positive_int(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A callback accepting a positive whole number."""
    if value is None:
        return None
    number = _whole_number(str(value), "a positive whole number")
    if number <= 0:
        raise click.BadParameter(f"expected a positive whole number, got {number}")
    return number


def register_from_options(name: str, bits: int, khz: int | None, hz: int | None) -> Clocksource:
    """Register the clocksource an ``--khz`` / ``--hz`` pair describes.

    The name must be one word, as the kernel prints it; exactly one of the
    two frequencies must be given; anything the registration refuses
    becomes a usage error (exit 2).
    """
    if not name.strip() or any(ch.isspace() for ch in name):
        raise click.UsageError(f"expected a clocksource name without spaces, got {name!r}")
    if (khz is None) == (hz is None):
        raise click.UsageError("give exactly one of --khz or --hz")
    try:
        return register(name, bits, freq_khz=khz, freq_hz=hz)
    except ClocksourceError as err:
        raise click.UsageError(str(err)) from None
