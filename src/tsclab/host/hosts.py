"""A physical host's clocks as exact integer functions of true time.

True time ``t`` is nanoseconds since the guest booted (it may be negative:
the host was up before).  A host has three clocks the model needs:

* its **TSC**: counts at the hardware's true rate, which differs from the
  rate the host kernel calibrated (``HostSpec.tsc_khz``) by
  ``HostSpec.drift_ppb``.  It was 0 when the host booted, ``uptime_ns``
  before the guest did;
* ``get_kvmclock_base_ns()``: what KVM bases kvmclock on, the host's
  CLOCK_MONOTONIC_RAW plus ``offs_boot`` (``arch/x86/kvm/x86.c``, 5.x to the
  2026 trees, on x86-64).  The raw clock converts TSC cycles at the
  *calibrated* rate, so a drifting TSC drags it along; ``offs_boot`` grows by
  the sleep time injected at each resume;
* CLOCK_REALTIME: an NTP-disciplined host, off from true UTC by a constant.

Host suspend (S3, s2idle) is a gap ``[start, start + duration)`` in which
nothing on the host runs.  The TSC either resets to 0 at resume (``reset``:
S3 powers the package off) or counts on (``nonstop``).

Every value is an exact rational computation floored once, so the model has
no rounding drift of its own: ``tsc(t) = origin + floor((t - t_origin) *
tsc_khz * (1e9 + drift_ppb) / 1e15)``.  The idealisation against the kernel:
the host's raw clock is an exact ``cycles * 1e6 / tsc_khz`` (the kernel's
mult/shift truncates a little), and the injected sleep time is the true
duration (the kernel measures it with the persistent clock after an S3, or
with the TSC itself at the calibrated rate when the TSC is nonstop).

The u64 wrap of the TSC (after about 195 years at 3 GHz) is not modelled in
the inverse :meth:`HostClock.true_time_at_tsc`; :meth:`HostClock.tsc`
truncates to u64 as the register does.

Layer: ``host`` uses ``arith`` and ``scenario.model`` (for ``HostSpec``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tsclab.arith import NSEC_PER_SEC, u64
from tsclab.scenario.model import HostSpec

# tsc_khz [cycles/ms] * (1e9 + drift_ppb) / 1e9 is cycles per ms; per ns it is a
# further / 1e6: cycles = ns * tsc_khz * (1e9 + drift_ppb) / 1e15.
_TSC_DENOMINATOR = 10**15
# ns = cycles * 1e6 / tsc_khz: the calibrated conversion of the host's raw clock.
_NSEC_PER_MSEC = 10**6


@dataclass(frozen=True, slots=True)
class HostSuspend:
    """One host sleep: nothing on the host runs in ``[start_ns, end_ns)``."""

    start_ns: int
    duration_ns: int

    @property
    def end_ns(self) -> int:
        """The resume instant, the first at which the host runs again."""
        return self.start_ns + self.duration_ns


@dataclass(frozen=True, slots=True)
class _Segment:
    """A stretch of running host between two suspends.

    ``end_ns`` is the start of the suspend that ends it (``None``: it runs
    on).  The TSC is ``tsc_origin + floor((t - tsc_origin_ns) * rate)``;
    a nonstop TSC keeps the previous segment's origin, a reset one starts
    again from (resume instant, 0).  ``boot_base_ns`` is the kvmclock base at
    ``start_ns``; within the segment it advances by the calibrated
    conversion of the TSC cycles counted since ``start_ns``.
    """

    start_ns: int
    end_ns: int | None
    tsc_origin_ns: int
    tsc_origin: int
    tsc_at_start: int
    boot_base_ns: int


class HostClock:
    """One physical host's clocks as exact integer functions of true time (ns since the guest booted)."""

    def __init__(self, spec: HostSpec, epoch_ns: int) -> None:
        if spec.tsc_khz <= 0:
            raise ValueError(f"host {spec.name}: tsc_khz must be positive, got {spec.tsc_khz}")
        if spec.drift_ppb <= -NSEC_PER_SEC:
            raise ValueError(f"host {spec.name}: drift_ppb {spec.drift_ppb} stops the TSC")
        if spec.uptime_ns < 0:
            raise ValueError(f"host {spec.name}: uptime_ns must not be negative")
        self.name: str = spec.name
        self.spec: HostSpec = spec
        self.epoch_ns = epoch_ns
        # Cycles per ns as the exact fraction _tsc_rate_num / _TSC_DENOMINATOR.
        self._tsc_rate_num = spec.tsc_khz * (NSEC_PER_SEC + spec.drift_ppb)
        self._suspends: list[HostSuspend] = []
        self._segments: list[_Segment] = self._build_segments()
        self._last_tsc: tuple[int | None, int] = (None, 0)  # (true time, TSC) of the last read

    # --- the clocks ---------------------------------------------------------

    @property
    def tsc_khz(self) -> int:
        """What the host kernel calibrated (``tsc_khz``), which KVM uses for every conversion."""
        return self.spec.tsc_khz

    @property
    def booted_at_ns(self) -> int:
        """True time at which the host booted (its TSC was 0 then)."""
        return -self.spec.uptime_ns

    @property
    def suspends(self) -> tuple[HostSuspend, ...]:
        """The host's sleeps so far, in time order."""
        return tuple(self._suspends)

    def tsc(self, t_ns: int) -> int:
        """The host TSC (u64) at true time ``t_ns``.

        While the host sleeps a reset TSC reads its value from the moment the
        sleep began (the package is off; nothing can read it anyway), a
        nonstop one counts on.
        """
        if t_ns != self._last_tsc[0]:
            # A read-through cache of one: a guest reads the TSC many times per instant.
            self._last_tsc = (t_ns, u64(self._tsc_unwrapped(t_ns)))
        return self._last_tsc[1]

    def boot_ns(self, t_ns: int) -> int:
        """``get_kvmclock_base_ns()``: CLOCK_MONOTONIC_RAW + ``offs_boot`` of the host.

        Within a running stretch: the base at its start plus
        ``floor(cycles * 1e6 / tsc_khz)`` of the TSC cycles counted since.
        While the host sleeps the value stands still (timekeeping is
        suspended); at resume it has gained the true sleep duration.
        """
        seg, running = self._segment_at(t_ns)
        at = t_ns if running else self._segment_end(seg)
        cycles = self._segment_tsc(seg, at) - seg.tsc_at_start
        return seg.boot_base_ns + cycles * _NSEC_PER_MSEC // self.spec.tsc_khz

    def realtime_ns(self, t_ns: int) -> int:
        """Host CLOCK_REALTIME: true UTC plus the constant error of an NTP-disciplined host."""
        return self.epoch_ns + t_ns + self.spec.realtime_error_ns

    # --- suspend ------------------------------------------------------------

    def suspend(self, start_ns: int, duration_ns: int) -> None:
        """The host sleeps in ``[start_ns, start_ns + duration_ns)``.

        ``spec.tsc_in_suspend`` says what the TSC does: ``reset`` (S3: 0 at
        resume) or ``nonstop`` (counts through).  Either way the kvmclock
        base gains the sleep at resume.  Sleeps may be declared in any order
        but must not overlap.
        """
        if duration_ns <= 0:
            raise ValueError(f"host {self.name}: suspend duration must be positive, got {duration_ns}")
        if start_ns <= self.booted_at_ns:
            raise ValueError(f"host {self.name}: suspend at {start_ns} ns is before the host booted")
        new = HostSuspend(start_ns, duration_ns)
        for old in self._suspends:
            if new.start_ns < old.end_ns and old.start_ns < new.end_ns:
                raise ValueError(
                    f"host {self.name}: suspend [{new.start_ns}, {new.end_ns}) overlaps "
                    f"[{old.start_ns}, {old.end_ns})"
                )
        self._suspends.append(new)
        self._suspends.sort(key=lambda s: s.start_ns)
        self._segments = self._build_segments()
        self._last_tsc = (None, 0)  # the segments changed: forget the cached read

    def suspended_at(self, t_ns: int) -> bool:
        """Whether the host sleeps at true time ``t_ns``."""
        return any(s.start_ns <= t_ns < s.end_ns for s in self._suspends)

    def next_running_ns(self, t_ns: int) -> int:
        """``t_ns`` if the host runs then, else the instant it resumes."""
        for s in self._suspends:
            if s.start_ns <= t_ns < s.end_ns:
                return s.end_ns
        return t_ns

    def last_suspend_ended_by(self, t_ns: int) -> HostSuspend | None:
        """The latest sleep that had ended at ``t_ns`` (``None`` if there was none)."""
        ended = [s for s in self._suspends if s.end_ns <= t_ns]
        return ended[-1] if ended else None

    # --- inverse ------------------------------------------------------------

    def true_time_at_tsc(self, tsc: int, not_before_ns: int) -> int | None:
        """Smallest ``t >= not_before_ns`` with ``tsc(t) >= tsc`` and the host running.

        Starts in the running stretch at (or resuming after) ``not_before_ns``
        and follows a nonstop TSC through later sleeps (the answer is then
        the resume instant if the TSC passed the target while the host
        slept).  ``None`` if the TSC does not get there before a reset: after
        it the count starts from 0 again, which is another story.
        """
        t = self.next_running_ns(not_before_ns)
        index = self._segment_index(t)
        while True:
            seg = self._segments[index]
            hit = max(t, self._first_time_reaching(seg, tsc))
            if seg.end_ns is None or hit < seg.end_ns:
                return hit
            if self.spec.tsc_in_suspend == "reset":
                return None
            index += 1
            t = self._segments[index].start_ns

    # --- internals ----------------------------------------------------------

    def _build_segments(self) -> list[_Segment]:
        """Cut the host's life into running stretches at each suspend."""
        first_start = self.booted_at_ns
        seg = _Segment(
            start_ns=first_start,
            end_ns=None,
            tsc_origin_ns=first_start,
            tsc_origin=0,
            tsc_at_start=0,
            boot_base_ns=0,
        )
        segments: list[_Segment] = []
        for s in self._suspends:
            seg = replace(seg, end_ns=s.start_ns)
            segments.append(seg)
            boot_at_sleep = self._boot_in_segment(seg, s.start_ns)
            if self.spec.tsc_in_suspend == "reset":
                origin_ns, origin = s.end_ns, 0
            else:
                origin_ns, origin = seg.tsc_origin_ns, seg.tsc_origin
            seg = _Segment(
                start_ns=s.end_ns,
                end_ns=None,
                tsc_origin_ns=origin_ns,
                tsc_origin=origin,
                tsc_at_start=origin + self._cycles_between(origin_ns, s.end_ns),
                boot_base_ns=boot_at_sleep + s.duration_ns,
            )
        segments.append(seg)
        return segments

    def _cycles_between(self, from_ns: int, to_ns: int) -> int:
        """TSC cycles counted in ``[from_ns, to_ns)`` at the true rate, floored."""
        return (to_ns - from_ns) * self._tsc_rate_num // _TSC_DENOMINATOR

    def _segment_tsc(self, seg: _Segment, t_ns: int) -> int:
        return seg.tsc_origin + self._cycles_between(seg.tsc_origin_ns, t_ns)

    def _boot_in_segment(self, seg: _Segment, t_ns: int) -> int:
        cycles = self._segment_tsc(seg, t_ns) - seg.tsc_at_start
        return seg.boot_base_ns + cycles * _NSEC_PER_MSEC // self.spec.tsc_khz

    def _segment_end(self, seg: _Segment) -> int:
        assert seg.end_ns is not None  # only a segment ended by a sleep has sleeping instants after it
        return seg.end_ns

    def _segment_index(self, t_ns: int) -> int:
        """Index of the running stretch that contains ``t_ns`` or ends at a sleep containing it."""
        if t_ns < self.booted_at_ns:
            raise ValueError(f"host {self.name}: {t_ns} ns is before the host booted")
        index = 0
        for i, seg in enumerate(self._segments):
            if seg.start_ns <= t_ns:
                index = i
        return index

    def _segment_at(self, t_ns: int) -> tuple[_Segment, bool]:
        """(stretch, running): the stretch at ``t_ns``, or the one a sleep at ``t_ns`` ended."""
        seg = self._segments[self._segment_index(t_ns)]
        return seg, seg.end_ns is None or t_ns < seg.end_ns

    def _tsc_unwrapped(self, t_ns: int) -> int:
        seg, running = self._segment_at(t_ns)
        if running or self.spec.tsc_in_suspend == "nonstop":
            return self._segment_tsc(seg, t_ns)
        return self._segment_tsc(seg, self._segment_end(seg))

    def _first_time_reaching(self, seg: _Segment, target: int) -> int:
        """Smallest t with ``_segment_tsc(seg, t) >= target`` (not bounded by the segment).

        ``origin + floor((t - t0) * k / D) >= target`` holds iff
        ``(t - t0) * k >= (target - origin) * D``, i.e. from
        ``t0 + ceil((target - origin) * D / k)`` on.
        """
        need = target - seg.tsc_origin
        if need <= 0:
            return seg.start_ns
        return seg.tsc_origin_ns + -(-need * _TSC_DENOMINATOR // self._tsc_rate_num)
