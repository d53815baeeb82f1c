"""Option validators that say exactly what they expected.

Options are read as text and checked here (as click callbacks), so every
error names the option, the value given and the form expected.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from tsclab.arith import U32_MAX


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
