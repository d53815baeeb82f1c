"""Pictures of one run for the HTML report: clock errors (PNG) and the event timeline (SVG).

The clock-error figure is drawn with matplotlib's Agg canvas (no pyplot,
no global backend switch); matplotlib is imported only when a figure is
drawn, so nothing else pays for it.  The PNG carries no software or time
metadata: the same trace gives the same bytes.

Long sample series are thinned before drawing (:func:`downsample`): a
bounded number of points per series that keeps each stretch's extremes and
both sides of the largest jumps, so a step or a gap stays visible.

The timeline is hand-written SVG text (no library): one lane per actor
and one per vCPU that printed kernel messages, interruptions shaded, each verdict a
red marker labelled with its ID.  All text is escaped.
"""

from __future__ import annotations

import html
import io
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tsclab.check.verdict import Verdict
from tsclab.report.text import format_duration, format_seconds
from tsclab.sim.trace import CLOCKS, Interruption, RunTrace

# Thinning: per series, min and max of MAX_POINTS // 2 equal stretches, plus
# both ends of up to MAX_JUMPS of the largest jumps (in value or in time).
MAX_POINTS = 2_000
MAX_JUMPS = 100
JUMP_FRACTION = 0.01  # a jump is "large" past this share of the series' value (or time) range

# Error axis units, largest first: the largest that the biggest error reaches.
_ERROR_UNITS = (
    ("y", 365.25 * 86_400e9),
    ("d", 86_400e9),
    ("h", 3_600e9),
    ("s", 1e9),
    ("ms", 1e6),
    ("µs", 1e3),
    ("ns", 1.0),
)

DPI = 100
_FIG_WIDTH_IN = 10.0
_SUBPLOT_HEIGHT_IN = 1.9
_VCPU_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#d62728",
)


def error_unit(max_abs_ns: float) -> tuple[str, float]:
    """The unit to show errors up to ``max_abs_ns`` in, and its size in ns."""
    for unit, size in _ERROR_UNITS:
        if max_abs_ns >= size:
            return unit, size
    return "ns", 1.0


def downsample(
    t: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    max_points: int = MAX_POINTS,
    max_jumps: int = MAX_JUMPS,
) -> npt.NDArray[np.intp]:
    """Indexes of the points of (``t``, ``y``) worth drawing, ascending.

    All of them if there are few; else the first and the last, the lowest
    and highest ``y`` of each of ``max_points // 2`` equal stretches, and
    both neighbours of up to ``max_jumps`` of the largest jumps (a step in
    ``y`` or a gap in ``t`` past :data:`JUMP_FRACTION` of its range).  At
    most ``max_points + 2 * max_jumps + 2`` indexes.
    """
    n = len(y)
    if n <= max_points + 2 * max_jumps + 2:
        return np.arange(n, dtype=np.intp)
    buckets = max(1, max_points // 2)
    size = -(-n // buckets)
    padded = np.concatenate([y, np.full(buckets * size - n, y[-1])])
    rows = padded.reshape(buckets, size)
    base = np.arange(buckets, dtype=np.intp) * size
    lows = base + rows.argmin(axis=1)
    highs = base + rows.argmax(axis=1)

    y_range = float(np.ptp(y))
    t_range = float(t[-1] - t[0])
    score = np.zeros(n - 1)
    if y_range > 0:
        score = np.abs(np.diff(y)) / y_range
    if t_range > 0:
        score = np.maximum(score, np.diff(t) / t_range)
    jumps = np.flatnonzero(score > JUMP_FRACTION)
    if len(jumps) > max_jumps:
        jumps = jumps[np.argpartition(score[jumps], -max_jumps)[-max_jumps:]]
    keep = np.concatenate([np.array([0, n - 1], dtype=np.intp), lows, highs, jumps, jumps + 1])
    return np.unique(np.clip(keep, 0, n - 1)).astype(np.intp)


@dataclass
class ErrorSeries:
    """One vCPU's reads of one clock through one path: true times and errors, in ns."""

    clock: str
    vcpu: int
    path: str
    t_ns: list[int] = field(default_factory=list)
    error_ns: list[int] = field(default_factory=list)


def error_series(trace: RunTrace) -> dict[str, list[ErrorSeries]]:
    """Each clock's series (in :data:`CLOCKS` order, then any other), by vCPU then path.

    Clocks without a boot value (no error is defined) are left out.
    """
    by_key: dict[tuple[str, int, str], ErrorSeries] = {}
    boot = trace.boot_values
    for s in trace.samples:
        if s.clock not in boot:
            continue
        series = by_key.get((s.clock, s.vcpu, s.path))
        if series is None:
            series = by_key[s.clock, s.vcpu, s.path] = ErrorSeries(s.clock, s.vcpu, s.path)
        series.t_ns.append(s.t_ns)
        series.error_ns.append(trace.error_ns(s))
    order = {clock: i for i, clock in enumerate(CLOCKS)}
    out: dict[str, list[ErrorSeries]] = {}
    for key in sorted(by_key, key=lambda k: (order.get(k[0], len(order)), k)):
        out.setdefault(key[0], []).append(by_key[key])
    return out


def png_size(png: bytes) -> tuple[int, int]:
    """A PNG's (width, height) in pixels, from its header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def clock_error_png(trace: RunTrace, verdicts: Sequence[Verdict] = ()) -> bytes | None:
    """A figure of each clock's error against true time, one subplot per clock; ``None`` if no reads.

    One line per vCPU (and per path where a clock was read both through the
    syscall and the vDSO); x in seconds of true time, errors in a unit
    chosen by their size; the verdicts on a clock marked where they start.
    """
    # Imported here: only the HTML report draws, and matplotlib is slow to import.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    clocks = error_series(trace)
    if not clocks:
        return None
    # A fixed style: a user's matplotlibrc must not change the bytes.
    with rc_context({"font.family": "DejaVu Sans", "path.simplify": True, "agg.path.chunksize": 10_000}):
        fig = Figure(figsize=(_FIG_WIDTH_IN, 0.9 + _SUBPLOT_HEIGHT_IN * len(clocks)), dpi=DPI)
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(clocks), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (clock, series) in zip(axes, clocks.items(), strict=True):
            both_paths = len({s.path for s in series}) > 1
            lines = []
            max_abs = 0.0
            for s in series:
                order = np.argsort(np.array(s.t_ns, dtype=np.float64), kind="stable")
                t = np.array(s.t_ns, dtype=np.float64)[order]
                y = np.array(s.error_ns, dtype=np.float64)[order]
                keep = downsample(t, y)
                t, y = t[keep], y[keep]
                max_abs = max(max_abs, float(np.max(np.abs(y))))
                lines.append((s, t, y))
            unit, size = error_unit(max_abs)
            for s, t, y in lines:
                label = f"vCPU {s.vcpu}" + (f" {s.path}" if both_paths else "")
                ax.step(
                    t / 1e9,
                    y / size,
                    where="post",
                    linewidth=1.0,
                    color=_VCPU_COLOURS[s.vcpu % len(_VCPU_COLOURS)],
                    linestyle="--" if both_paths and s.path == "vdso" else "-",
                    label=label,
                )
            for v in verdicts:
                if v.clock in (None, clock):
                    ax.axvline(v.t_ns / 1e9, color="#d62728", linestyle=":", linewidth=1.0)
            ax.set_title(clock, loc="left", fontsize=9, fontweight="bold")
            ax.set_ylabel(f"error ({unit})", fontsize=8)
            ax.ticklabel_format(axis="both", style="plain", useOffset=False)
            ax.tick_params(labelsize=8)
            ax.grid(True, linewidth=0.4, alpha=0.5)
            if len(lines) > 1:  # above the axes, beside the clock's name: it hides no data
                ax.legend(
                    loc="lower right",
                    bbox_to_anchor=(1.0, 1.0),
                    fontsize=7,
                    ncols=min(len(lines), 6),
                    frameon=False,
                    borderaxespad=0.1,
                )
        axes[-1].set_xlabel("true time since guest boot (s)", fontsize=8)
        fig.suptitle(
            f"{trace.kernel} x {trace.vmm}: each clock's error against true time",
            fontsize=10,
            y=1 - 0.12 / fig.get_figheight(),
        )
        fig.subplots_adjust(
            left=0.09,
            right=0.98,
            top=1 - 0.6 / fig.get_figheight(),
            bottom=0.45 / fig.get_figheight(),
            hspace=0.45,
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# --- the timeline ------------------------------------------------------------

_SVG_WIDTH = 960
_LEFT = 130  # lane labels
_RIGHT = 45  # room for the last tick's label
_LANE_H = 22
_LABEL_ROW_H = 14
_MAX_LABEL_ROWS = 4
_AXIS_H = 30
_CHAR_W = 6.2  # rough width of a character at the label size

_KIND_COLOURS = {
    "pause": "#ff7f0e",
    "stop": "#ff7f0e",
    "snapshot-save": "#ff7f0e",
    "suspend": "#ff7f0e",
    "resume": "#2ca02c",
    "snapshot-restore": "#2ca02c",
    "vcpus-run": "#2ca02c",
}
_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22")


def _kind_colour(kind: str) -> str:
    if kind in _KIND_COLOURS:
        return _KIND_COLOURS[kind]
    return _PALETTE[zlib.crc32(kind.encode()) % len(_PALETTE)]


# Time axis units, as format_duration picks them: (name, ns, up to this span).
_TIME_UNITS = (
    ("ns", 1, 1_000),
    ("µs", 1_000, 1_000_000),
    ("ms", 1_000_000, 1_000_000_000),
    ("s", 1_000_000_000, 3_600 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000, 2 * 86_400 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000, 365 * 86_400 * 1_000_000_000),
)
_YEAR_NS = 31_557_600 * 1_000_000_000


def time_ticks(span_ns: int, target: int = 8) -> list[tuple[int, str]]:
    """Ticks for a true-time axis from 0 to ``span_ns``: (ns, label), 1-2-5 steps in one unit."""
    name, unit = "y", _YEAR_NS
    for unit_name, size, below in _TIME_UNITS:
        if span_ns < below:
            name, unit = unit_name, size
            break
    span = span_ns / unit
    exponent = math.floor(math.log10(span / target)) if span > 0 else 0
    step = 10.0**exponent
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= target:
            step *= mult
            break
    if unit == 1:
        step = max(step, 1.0)  # no fractions of a nanosecond
    decimals = max(0, -math.floor(math.log10(step)))
    count = math.floor(span / step + 1e-9)
    return [(round(k * step * unit), f"{k * step:.{decimals}f} {name}") for k in range(count + 1)]


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt(x: float) -> str:
    return f"{x:.1f}"


class _Labels:
    """Greedy placement: a label goes where it does not overlap the last one in its row."""

    def __init__(self, rows: int) -> None:
        self.ends = [float("-inf")] * rows

    def place(self, x: float, text: str) -> int | None:
        for row, end in enumerate(self.ends):
            if x >= end + 4:
                self.ends[row] = x + len(text) * _CHAR_W
                return row
        return None


def timeline_svg(trace: RunTrace, verdicts: Sequence[Verdict] = ()) -> str:
    """The run's events, kernel messages and naps on a true-time axis, verdicts marked by ID."""
    actors: list[str] = []
    for e in trace.events:
        if e.actor not in actors:
            actors.append(e.actor)
    msg_vcpus = sorted({m.vcpu for m in trace.messages})
    lanes = [*actors, *(f"dmesg vCPU {v}" for v in msg_vcpus)]
    times = [trace.end_ns, *(e.t_ns for e in trace.events), *(m.t_ns for m in trace.messages)]
    times += [v.t_ns for v in verdicts] + [gap.end_ns for gap in trace.interruptions]
    t_max = max(1, *times)
    plot_w = _SVG_WIDTH - _LEFT - _RIGHT

    def x_of(t_ns: int) -> float:
        return _LEFT + plot_w * max(0, t_ns) / t_max

    label_rows = max(1, min(_MAX_LABEL_ROWS, len(verdicts)))
    top = 6 + _LABEL_ROW_H * label_rows
    lanes_h = _LANE_H * max(1, len(lanes))
    height = top + lanes_h + _AXIS_H
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{_SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_SVG_WIDTH} {height}" role="img" aria-label="event timeline">'
    ]
    # Interruptions (the vCPUs did not run): shaded bands behind everything, named above the lanes.
    for gap in trace.interruptions:
        x0, x1 = x_of(gap.start_ns), x_of(gap.end_ns)
        out.append(
            f'<rect class="interruption" x="{_fmt(x0)}" y="{top}" width="{_fmt(max(1.0, x1 - x0))}" '
            f'height="{lanes_h}" fill="#dbe9f6"><title>{_esc(_gap_title(gap))}</title></rect>'
        )
    # Lanes and their labels.
    for i, lane_name in enumerate(lanes):
        y = top + i * _LANE_H
        out.append(
            f'<line x1="{_LEFT}" y1="{y + _LANE_H // 2}" x2="{_SVG_WIDTH - _RIGHT}" '
            f'y2="{y + _LANE_H // 2}" stroke="#ccc" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_LEFT - 6}" y="{y + _LANE_H // 2 + 4}" text-anchor="end" '
            f'font-size="11">{_esc(lane_name)}</text>'
        )
    # Events and messages: a tick each (one per pixel column and lane), a label where it fits.
    lane_of = {a: i for i, a in enumerate(actors)}
    marks: list[tuple[int, int, str, str]] = [
        (lane_of[e.actor], e.t_ns, e.kind, f"{format_seconds(e.t_ns)}  {e.actor}: {e.kind} {e.detail}")
        for e in trace.events
    ]
    marks += [
        (len(actors) + msg_vcpus.index(m.vcpu), m.t_ns, m.kind, f"{format_seconds(m.t_ns)}  {m.text}")
        for m in trace.messages
    ]
    drawn: set[tuple[int, int]] = set()
    lane_labels = [_Labels(1) for _ in lanes]
    for lane, t_ns, kind, title in marks:
        x = x_of(t_ns)
        if (lane, round(x)) in drawn:
            continue
        drawn.add((lane, round(x)))
        y = top + lane * _LANE_H
        out.append(
            f'<rect class="mark" x="{_fmt(x - 1)}" y="{y + 4}" width="2" height="{_LANE_H - 8}" '
            f'fill="{_kind_colour(kind)}"><title>{_esc(title.rstrip())}</title></rect>'
        )
        if lane_labels[lane].place(x + 3, kind) is not None:
            out.append(
                f'<text x="{_fmt(x + 3)}" y="{y + _LANE_H - 5}" font-size="9" fill="#555">{_esc(kind)}</text>'
            )
    # Verdicts: a red line through every lane, labelled with the ID above.
    placer = _Labels(label_rows)
    bottom = top + lanes_h
    for v in sorted(verdicts, key=lambda v: v.t_ns):
        x = x_of(v.t_ns)
        row = placer.place(x + 2, v.id)
        if row is None:
            row = min(range(label_rows), key=lambda r: placer.ends[r])
            placer.ends[row] = x + 2 + len(v.id) * _CHAR_W
        y_label = 4 + _LABEL_ROW_H * (row + 1) - 3
        title = f"{v.id} at {format_seconds(v.t_ns)}: {v.event}"
        out.append(
            f'<g class="verdict" data-verdict="{_esc(v.id)}"><title>{_esc(title)}</title>'
            f'<line x1="{_fmt(x)}" y1="{y_label - 9}" x2="{_fmt(x)}" y2="{bottom}" stroke="#d62728" '
            f'stroke-width="1.5"/><text x="{_fmt(x + 2)}" y="{y_label}" font-size="11" '
            f'fill="#d62728">{_esc(v.id)}</text></g>'
        )
    # The axis: true time since boot.
    out.append(f'<line x1="{_LEFT}" y1="{bottom}" x2="{_SVG_WIDTH - _RIGHT}" y2="{bottom}" stroke="#333"/>')
    for tick, label in time_ticks(t_max):
        x = x_of(tick)
        out.append(f'<line x1="{_fmt(x)}" y1="{bottom}" x2="{_fmt(x)}" y2="{bottom + 4}" stroke="#333"/>')
        out.append(
            f'<text x="{_fmt(x)}" y="{bottom + 16}" text-anchor="middle" font-size="10">{_esc(label)}</text>'
        )
    out.append(
        f'<text x="{_LEFT - 20}" y="{bottom + 16}" text-anchor="end" font-size="10" '
        f'fill="#555">true time</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def _gap_title(gap: Interruption) -> str:
    notes = [n for n, on in (("hidden from MONOTONIC", gap.hidden), ("a nap", gap.nap)) if on]
    return (
        f"{gap.action}: {format_seconds(gap.start_ns)} to {format_seconds(gap.end_ns)} "
        f"({format_duration(gap.end_ns - gap.start_ns)})" + "".join(f"; {n}" for n in notes)
    )
