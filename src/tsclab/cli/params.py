"""Option validators that say exactly what they expected.

Options are read as text and checked here (as click callbacks), so every
error names the option, the value given and the form expected.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import click

from tsclab.arith import U32_MAX
from tsclab.clocksource import Clocksource, ClocksourceError, register


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


_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}


def parse_duration(text: str) -> int:
    """``1200s``, ``20m``, ``8h``, ``2d``, ``1500ms``, ``300us``, ``10ns`` -> ns.

    A decimal number is allowed (``2.5s``) when it is a whole number of ns.
    Raises ValueError with the expected form.
    """
    raw = text.strip().lower()
    number, unit = raw, ""
    for suffix in sorted(_DURATION_UNITS_NS, key=len, reverse=True):
        if raw.endswith(suffix):
            number, unit = raw[: -len(suffix)].strip(), suffix
            break
    if not unit:
        raise ValueError(
            f"expected a duration with a unit (ns, us, ms, s, m, h, d), e.g. 1200s, got {text!r}"
        )
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"expected a number before {unit!r}, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"expected a non-negative duration, got {text!r}")
    ns = value * _DURATION_UNITS_NS[unit]
    if ns != ns.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of nanoseconds")
    return int(ns)


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
