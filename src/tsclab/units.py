"""Durations written the way people write them, read exactly.

Shared by the command line and the scenario files, so ``1200s``, ``8h`` or
``2.5ms`` mean the same integer nanoseconds everywhere.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}


# Digits with an optional fraction: no exponents, underscores or non-ASCII
# digits, and short enough that the exact arithmetic stays cheap.
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_MAX_DIGITS = 40


def parse_duration(text: str) -> int:
    """``1200s``, ``20m``, ``8h``, ``2d``, ``1500ms``, ``300us``, ``10ns`` -> ns.

    A decimal number is allowed (``2.5s``) when it is a whole number of ns.
    Raises ValueError with the expected form.
    """
    raw = text.strip().lower()
    number, unit = raw, ""
    for suffix in sorted(DURATION_UNITS_NS, key=len, reverse=True):
        if raw.endswith(suffix):
            number, unit = raw[: -len(suffix)].strip(), suffix
            break
    if not unit:
        raise ValueError(
            f"expected a duration with a unit (ns, us, ms, s, m, h, d), e.g. 1200s, got {text!r}"
        )
    if number.startswith("-"):
        raise ValueError(f"expected a non-negative duration, got {text!r}")
    if not _NUMBER.fullmatch(number) or len(number) > _MAX_DIGITS:
        raise ValueError(f"expected a plain decimal number before {unit!r}, got {text!r}")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"expected a number before {unit!r}, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"expected a non-negative duration, got {text!r}")
    ns = value * DURATION_UNITS_NS[unit]
    if ns != ns.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of nanoseconds")
    return int(ns)
