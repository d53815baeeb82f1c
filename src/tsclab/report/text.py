"""Plain-text tables and human-readable durations for terminal reports.

Output is plain ASCII so that it pipes, diffs and greps cleanly, and is
byte-identical between runs.  Floats appear here and only here.
"""

from __future__ import annotations

from collections.abc import Sequence

from tsclab.arith import NSEC_PER_SEC

_SECONDS_PER_YEAR = 365.25 * 86400


def format_duration(ns: int | None) -> str:
    """A duration for people: ``1.5 us``, ``2.343 s``, ``18.3 min``, ``233.8 y``.

    ``None`` (a horizon that never comes) reads ``never``.
    """
    if ns is None:
        return "never"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns} ns"
    if ns < 1_000_000:
        return f"{sign}{ns / 1e3:.3g} us"
    if ns < NSEC_PER_SEC:
        return f"{sign}{ns / 1e6:.4g} ms"
    seconds = ns / NSEC_PER_SEC
    if seconds < 3600:
        return f"{sign}{seconds:.3f} s"
    if seconds < 2 * 86400:
        return f"{sign}{seconds / 3600:.2f} h"
    if seconds < _SECONDS_PER_YEAR:
        return f"{sign}{seconds / 86400:.2f} d"
    return f"{sign}{seconds / _SECONDS_PER_YEAR:.4g} y"


def format_seconds(ns: int | None) -> str:
    """A duration in seconds with nanosecond digits, e.g. ``990.551136226 s``."""
    if ns is None:
        return "never"
    sign = "-" if ns < 0 else ""
    whole, frac = divmod(abs(ns), NSEC_PER_SEC)
    return f"{sign}{whole}.{frac:09d} s"


def format_frequency(freq_hz: int) -> str:
    """A frequency for people: ``2.5 GHz``, ``3.579545 MHz``, ``32768 Hz``."""
    for unit, div in (("GHz", 10**9), ("MHz", 10**6), ("kHz", 10**3)):
        if freq_hz >= div:
            whole, frac = divmod(freq_hz, div)
            digits = len(str(div)) - 1
            frac_text = f"{frac:0{digits}d}".rstrip("0")
            return f"{whole}.{frac_text} {unit}" if frac_text else f"{whole} {unit}"
    return f"{freq_hz} Hz"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_align: Sequence[int] = (),
) -> str:
    """Columns padded to their widest cell; a dashed rule under the header.

    ``right_align`` lists the column indexes to right-align (numbers).
    """
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, header has {len(headers)}")
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in right_align else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
