"""The guest sides of the thread's alternatives to the nap, on the bare timekeeper."""

from __future__ import annotations

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import register
from tsclab.kernel.nap_alternatives import (
    SuspendToRam,
    VmclockConsumer,
    beyond_max_sane,
    max_sane_cycles,
)
from tsclab.kernel.ntp import ADJ_MAXERROR, ADJ_STATUS, NTP_PHASE_LIMIT, STA_PLL, STA_UNSYNC, NtpState, Timex
from tsclab.kernel.profiles import get_profile
from tsclab.kernel.timekeeping import Timekeeping
from tsclab.kernel.timespec import Timespec64

S = NSEC_PER_SEC
EPOCH_S = 1_767_225_600
TSC = register("tsc", 64, freq_khz=2_500_000)
MASK64 = (1 << 64) - 1


class Guest:
    """A synchronised timekeeper on a 2.5 GHz TSC, a host wall clock, and a watchdog-touch counter."""

    def __init__(self) -> None:
        self.t = 0  # true time, ns
        self.counter_t = 0  # the true time the TSC shows (it stands still while the guest sleeps)
        self.host_error_ns = 0  # the host's realtime minus true UTC
        self.touches = 0
        self.ntp = NtpState(hz=250)
        self.tkg = Timekeeping(
            TSC, get_profile("linux-6.13"), self.ntp, self.counter, realtime=Timespec64(EPOCH_S, 0)
        )
        now = self.tkg.ktime_get_real_ts64()
        self.ntp.adjtimex(
            Timex(modes=ADJ_STATUS | ADJ_MAXERROR, status=STA_PLL, maxerror=10_000), now.sec, now.nsec
        )

    def counter(self) -> int:
        return self.counter_t * TSC.freq_hz // S & TSC.mask

    def run_for(self, ns: int) -> None:
        self.t += ns
        self.counter_t += ns
        self.tkg.update_wall_time()

    def wallclock(self) -> Timespec64:
        return Timespec64.from_ns(EPOCH_S * S + self.t + self.host_error_ns)

    def touch_all_watchdogs(self) -> None:
        self.touches += 1


def test_max_sane_delta_converts_to_the_clocksource_s_cycles() -> None:
    assert max_sane_cycles(2_500_000_000, 2_500_000_000, 2_500_000_000) == 2_500_000_000  # TSC: as published
    assert max_sane_cycles(2_500_000_000, 2_500_000_000, 1_000_000_000) == 1_000_000_000  # kvm-clock: ns
    assert max_sane_cycles(0, 2_500_000_000, 1_000_000_000) == 0  # not published


def test_only_a_forward_delta_past_the_bound_waits() -> None:
    limit = 2_500_000_000
    assert not beyond_max_sane(limit, limit, MASK64)
    assert beyond_max_sane(limit + 1, limit, MASK64)
    assert not beyond_max_sane(10**15, 0, MASK64)  # nothing published: the ordinary reader
    # Negative motion (another vCPU's TSC a little ahead): the reader's own test clamps it to 0.
    assert not beyond_max_sane(MASK64 - 25_000, limit, MASK64)
    assert not beyond_max_sane(1 << 63, limit, MASK64)
    assert beyond_max_sane((1 << 63) - 1, limit, MASK64)
    # A 24-bit ACPI PM counter: its top bit is bit 23.
    assert beyond_max_sane(0x7F_FFFF, 0x10_0000, 0xFF_FFFF)
    assert not beyond_max_sane(0x80_0000, 0x10_0000, 0xFF_FFFF)


def test_suspend_to_ram_measures_the_sleep_on_the_host_s_wall_clock() -> None:
    guest = Guest()
    guest.run_for(10 * S)

    def previous() -> Timespec64:  # a persistent clock someone else had set
        return Timespec64(1, 0)

    guest.tkg.persistent_clock = previous
    s3 = SuspendToRam(guest, guest.wallclock)
    mono, boot = guest.tkg.ktime_get(), guest.tkg.ktime_get_boottime()

    s3.suspend()
    assert s3.suspended
    assert guest.tkg.persistent_clock == guest.wallclock
    guest.t += 3600 * S  # an hour in S3: the TSC does not show it
    guest.host_error_ns = 250_000_000  # restored on a host whose realtime is 250 ms ahead
    slept = s3.resume()

    # The sleep is the wall clock's move from the guest's own REALTIME at suspend
    # (timekeeping_suspend()'s persistent-clock compensation), here a few hundred ns off true.
    assert abs(slept - (3600 * S + 250_000_000)) < 1_000
    assert not s3.suspended
    assert guest.tkg.persistent_clock is previous
    assert guest.touches == 1
    assert guest.tkg.ktime_get() == mono  # MONOTONIC does not count the sleep
    assert guest.tkg.ktime_get_boottime() == boot + slept
    assert guest.tkg.ktime_get_real() == EPOCH_S * S + guest.t + guest.host_error_ns  # the host's realtime
    assert not guest.ntp.time_status & STA_UNSYNC  # timekeeping_resume() does not clear NTP


def test_a_vmclock_consumer_steps_realtime_only_when_the_marker_changes() -> None:
    guest = Guest()
    consumer = VmclockConsumer(guest.tkg)
    behind = Timespec64(EPOCH_S + 500, 0)
    assert not consumer.poll(0, behind)  # the first poll only learns the marker
    assert not consumer.poll(0, behind)
    guest.run_for(S)
    assert consumer.poll(1, behind)
    assert guest.tkg.ktime_get_real_ts64() == behind
    assert guest.ntp.time_status & STA_UNSYNC  # do_settimeofday64(): TK_CLEAR_NTP
    assert guest.ntp.time_maxerror == NTP_PHASE_LIMIT
    assert consumer.marker == 1
    assert not consumer.poll(1, Timespec64(EPOCH_S, 0))
