"""What the guest saw across a stop, against host CLOCK_REALTIME, in ns.

A probe-guest reading (:class:`~tsclab.kvm.probe_guest.GuestSample`) gives
the guest's TSC and the kvmclock the guest computed from it and its
pvclock page - both exact - between two KVM_GET_CLOCK calls. What is not
exact is *when*, in host realtime, the guest read its TSC:

* ``window``: the two KVM_GET_CLOCK calls bracket it. Their realtimes
  (``KVM_CLOCK_REALTIME``; else the VMM's own CLOCK_REALTIME reads just
  outside) give the sampling window, here about 40-60 us wide; the middle
  is off by at most half the width.
* ``tsc``: each KVM_GET_CLOCK with ``KVM_CLOCK_REALTIME|KVM_CLOCK_HOST_TSC``
  pairs host realtime and host TSC of one instant
  (``kvm_get_walltime_and_clockread()``). Where the guest's TSC lies between
  the two host TSCs - the guest reads the host's TSC, as on this host - the
  realtime of its read is interpolated on the TSC between the two pairs.
  The error bound is the disagreement of the two clocks across the window
  (how far realtime strays from a straight line in the TSC), plus 1 ns.

:func:`place` uses ``tsc`` where it applies and ``window`` otherwise, and
says which. :func:`measure` turns the reading before a stop and the first
after it into the figures of a migration: downtime, kvmclock
discontinuity, TSC advance, and the error of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tsclab.kvm import constants as c
from tsclab.kvm.clock import ClockData, wrapped_delta
from tsclab.kvm.probe_guest import GuestSample
from tsclab.kvm.pvclock import PvclockTimeInfo

PAIRED_FLAGS = c.KVM_CLOCK_REALTIME | c.KVM_CLOCK_HOST_TSC


def sample_to_dict(sample: GuestSample) -> dict[str, Any]:
    """A reading as it travels from a VMM process to the report."""
    page = sample.pvclock
    return {
        "tsc": sample.tsc,
        "kvmclock": sample.kvmclock,
        "before": sample.before.to_dict(),
        "after": sample.after.to_dict(),
        "before_realtime": sample.before_realtime,
        "after_realtime": sample.after_realtime,
        "pvclock": None if page is None else page.pack().hex(),
    }


@dataclass(frozen=True, slots=True)
class Reading:
    """A reading placed on host realtime: ``realtime`` +/- ``error_ns``."""

    tsc: int
    kvmclock: int
    realtime: int
    error_ns: int
    window_ns: int  # width of the KVM_GET_CLOCK bracket
    method: str  # "tsc" or "window"
    pvclock_flags: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "tsc": self.tsc,
            "kvmclock": self.kvmclock,
            "realtime": self.realtime,
            "error_ns": self.error_ns,
            "window_ns": self.window_ns,
            "method": self.method,
            "pvclock_flags": self.pvclock_flags,
        }


def _paired(clock: ClockData) -> bool:
    return clock.flags & PAIRED_FLAGS == PAIRED_FLAGS


def place(record: dict[str, Any], khz: int) -> Reading:
    """Where a reading (:func:`sample_to_dict`) lies on host realtime; see the module's docstring."""
    before = ClockData.from_dict(record["before"])
    after = ClockData.from_dict(record["after"])
    tsc = int(record["tsc"])
    if record["kvmclock"] is None:
        raise ValueError("the reading has no kvmclock (the guest runs without it)")
    kvmclock = int(record["kvmclock"])
    page = record.get("pvclock")
    flags = PvclockTimeInfo.parse(bytes.fromhex(page)).flags if page else 0
    low = before.realtime if before.has_realtime else int(record["before_realtime"])
    high = after.realtime if after.has_realtime else int(record["after_realtime"])
    window = max(high - low, 0)
    if (
        _paired(before)
        and _paired(after)
        and before.host_tsc <= tsc <= after.host_tsc < before.host_tsc + (1 << 62)
    ):
        span_tsc = after.host_tsc - before.host_tsc
        span_rt = after.realtime - before.realtime
        realtime = before.realtime + (tsc - before.host_tsc) * span_rt // max(span_tsc, 1)
        straight = span_tsc * 1_000_000 // khz
        return Reading(tsc, kvmclock, realtime, abs(span_rt - straight) + 1, window, "tsc", flags)
    if _paired(after) and 0 <= after.host_tsc - tsc <= window * khz // 1_000_000 + 1:
        # Only the second call paired them (the first ran before the masterclock was on).
        distance = (after.host_tsc - tsc) * 1_000_000 // khz
        slack = distance // 10_000 + 1  # 100 ppm of the extrapolated distance
        return Reading(tsc, kvmclock, after.realtime - distance, slack, window, "tsc", flags)
    return Reading(tsc, kvmclock, (low + high) // 2, (window + 1) // 2, window, "window", flags)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What the guest saw between two readings, a stop between them.

    ``kvmclock_discontinuity_ns`` is the kvmclock advance minus the host
    realtime advance: 0 when the guest's kvmclock counted the stop, minus
    the stop when it was hidden. ``tsc_discontinuity_ns`` likewise for the
    TSC (at ``tsc_khz``). ``error_ns`` bounds every ``*_ns`` figure here: the
    two readings' placement errors.
    """

    before: Reading
    after: Reading
    tsc_khz: int

    @property
    def downtime_ns(self) -> int:
        return self.after.realtime - self.before.realtime

    @property
    def kvmclock_advance_ns(self) -> int:
        return wrapped_delta(self.after.kvmclock, self.before.kvmclock)

    @property
    def kvmclock_discontinuity_ns(self) -> int:
        return self.kvmclock_advance_ns - self.downtime_ns

    @property
    def tsc_advance_cycles(self) -> int:
        return wrapped_delta(self.after.tsc, self.before.tsc)

    @property
    def tsc_advance_ns(self) -> int:
        return self.tsc_advance_cycles * 1_000_000 // self.tsc_khz

    @property
    def tsc_discontinuity_ns(self) -> int:
        return self.tsc_advance_ns - self.downtime_ns

    @property
    def error_ns(self) -> int:
        return self.before.error_ns + self.after.error_ns

    @property
    def backwards(self) -> bool:
        """The guest's kvmclock read less after the stop than before it."""
        return self.kvmclock_advance_ns < 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "tsc_khz": self.tsc_khz,
            "downtime_ns": self.downtime_ns,
            "kvmclock_advance_ns": self.kvmclock_advance_ns,
            "kvmclock_discontinuity_ns": self.kvmclock_discontinuity_ns,
            "tsc_advance_cycles": self.tsc_advance_cycles,
            "tsc_advance_ns": self.tsc_advance_ns,
            "tsc_discontinuity_ns": self.tsc_discontinuity_ns,
            "error_ns": self.error_ns,
            "backwards": self.backwards,
        }


def measure(before: dict[str, Any], after: dict[str, Any], tsc_khz: int) -> Measurement:
    return Measurement(place(before, tsc_khz), place(after, tsc_khz), tsc_khz)
