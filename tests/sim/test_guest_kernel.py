"""The guest kernel driven by events: the timer wheel, the TSC-deadline clockevent, ticks and
jiffies, NOHZ idle, readers, and the vCPUs stopping and running again.

Unless a test says otherwise: one 2.5 GHz host without drift, up 1 s when the
guest boots at true time 0, KVM 6.8; the guest is a linux-6.13 profile at
HZ 250 (a 4 ms tick) on kvm-clock, with no clocksource watchdog.  Its TSC
reads ``2.5 * t`` cycles at true time ``t`` ns.  The kvm-clock scale for
2.5 GHz (shift -1, mul ``floor(0.8 * 2**32)``) makes guest time lag true time
by well under a ns a second, so readings are checked to the ns where the
arithmetic is exact and to a few ns where it is not.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tsclab.arith import u64
from tsclab.host.hosts import HostClock
from tsclab.host.kvm_vm import KvmVm
from tsclab.kernel.profiles import get_profile
from tsclab.scenario.model import (
    Event,
    GuestClocksource,
    GuestSpec,
    HostSpec,
    Scenario,
    Watchdog,
    Workload,
)
from tsclab.sim.engine import Engine
from tsclab.sim.guest_kernel import (
    CLOCKEVENT_MIN_TICKS,
    TSC_DIVISOR,
    GuestKernel,
    HrTimer,
    wheel_bucket_expiry,
)
from tsclab.sim.platform import Platform
from tsclab.sim.run import run_combination
from tsclab.sim.trace import NtpState, RunTrace, TimelineEvent

S = 1_000_000_000
MS = 1_000_000
US = 1_000
EPOCH_S = 1_767_225_600
EPOCH = EPOCH_S * S
KERNEL = "linux-6.13"


# --- wheel_bucket_expiry ------------------------------------------------------------------


def test_wheel_level_0_fires_the_jiffy_after_expiry() -> None:
    # delta < 63: level 0, granularity 1; calc_index() still rounds up by one.
    assert wheel_bucket_expiry(1, 0) == 2
    assert wheel_bucket_expiry(62, 0) == 63
    assert wheel_bucket_expiry(1_062, 1_000) == 1_063


def test_wheel_higher_levels_round_up_to_their_granularity() -> None:
    # Level n covers deltas [63 << 3(n-1), 63 << 3n) with granularity 8**n: (expires >> 3n) + 1, << 3n.
    assert wheel_bucket_expiry(63, 0) == 64  # level 1: (63 >> 3) + 1 = 8, * 8
    assert wheel_bucket_expiry(125, 0) == 128  # the clocksource watchdog's first 0.5 s at HZ 250
    assert wheel_bucket_expiry(503, 0) == 504  # last delta of level 1: (62 + 1) * 8
    assert wheel_bucket_expiry(504, 0) == 512  # level 2: (504 >> 6) + 1 = 8, * 64
    assert wheel_bucket_expiry(30_000, 0) == 30_208  # khungtaskd's 120 s: level 3, (58 + 1) * 512
    # The level is chosen by the delta, the rounding applies to the absolute expiry.
    assert wheel_bucket_expiry(1_000 + 100, 1_000) == 1_104  # level 1: (1100 >> 3) + 1 = 138, * 8


# LVL_START(LVL_DEPTH) = 63 << 3 * (LVL_DEPTH - 1): WHEEL_TIMEOUT_CUTOFF; LVL_DEPTH is 9 at HZ > 100, 8 at
# HZ <= 100.  WHEEL_TIMEOUT_MAX = the cutoff less the last level's granularity, 1 << 3 * (LVL_DEPTH - 1).
CUTOFF = {250: 63 << 24, 100: 63 << 21}
TIMEOUT_MAX = {250: 62 << 24, 100: 62 << 21}


def test_wheel_deepest_level_is_8_at_hz_250() -> None:
    # Just under the cutoff: level 8, granularity 8**8 = 2**24; (expires >> 24) + 1, << 24.
    assert wheel_bucket_expiry(CUTOFF[250] - 1, 0) == CUTOFF[250]
    assert wheel_bucket_expiry(CUTOFF[250] - 1, 0, hz=1000) == CUTOFF[250]
    # Level 8 starts at LVL_START(8) = 63 << 21: (63 << 21 >> 24) + 1 = 8, << 24.
    assert wheel_bucket_expiry(63 << 21, 0) == 8 << 24


def test_wheel_deepest_level_is_7_at_hz_100() -> None:
    # 8 levels: the last is level 7, granularity 8**7 = 2**21, up to the cutoff 63 << 21.
    assert wheel_bucket_expiry(CUTOFF[100] - 1, 0, hz=100) == CUTOFF[100]
    assert wheel_bucket_expiry(63 << 18, 0, hz=100) == 8 << 21  # level 7 from 63 << 18


def test_wheel_caps_a_timeout_past_the_cutoff_at_hz_250() -> None:
    # delta >= 63 << 24: expires = now + WHEEL_TIMEOUT_MAX (62 << 24), then level 8 rounds it up a bucket.
    assert wheel_bucket_expiry(1 << 40, 0) == 63 << 24
    assert wheel_bucket_expiry(CUTOFF[250], 0) == 63 << 24  # the cutoff itself is capped
    # From now = 5: 5 + (62 << 24), rounded up to the next 2**24: 63 << 24 again.
    assert wheel_bucket_expiry(5 + (1 << 40), 5) == 63 << 24
    # From now = 2**24: 63 << 24, a multiple of 2**24, still goes up by one bucket: 64 << 24.
    assert wheel_bucket_expiry((1 << 24) + (1 << 40), 1 << 24) == 64 << 24


def test_wheel_caps_a_timeout_past_the_cutoff_at_hz_100() -> None:
    # 8 levels: cutoff 63 << 21, WHEEL_TIMEOUT_MAX 62 << 21, last level's granularity 2**21.
    assert wheel_bucket_expiry(1 << 40, 0, hz=100) == 63 << 21
    assert wheel_bucket_expiry(CUTOFF[100], 0, hz=100) == 63 << 21
    # The same delta at HZ 250 is under that wheel's cutoff: level 8, not capped.
    assert wheel_bucket_expiry(CUTOFF[100], 0) == ((CUTOFF[100] >> 24) + 1) << 24


@given(now=st.integers(0, 1 << 40), delta=st.integers(1, 1 << 33), hz=st.sampled_from([100, 250, 1000]))
def test_wheel_never_fires_early_and_at_most_one_bucket_late(now: int, delta: int, hz: int) -> None:
    cutoff, timeout_max = CUTOFF[min(hz, 250)], TIMEOUT_MAX[min(hz, 250)]
    expires = now + delta
    bucket = wheel_bucket_expiry(expires, now, hz)
    if delta < cutoff:
        assert bucket > expires
        # The granularity 8**level is at most delta * 8 / 63 (level n starts at 63 * 8**(n-1)).
        assert bucket - expires <= max(1, delta * 8 // 63)
    else:
        # Capped: now + WHEEL_TIMEOUT_MAX rounded up by at most the last level's granularity (the
        # cutoff minus WHEEL_TIMEOUT_MAX) - so never later than the timer was due.
        assert timeout_max < bucket - now <= cutoff <= delta


# --- a guest built by hand ------------------------------------------------------------------


def build(
    *workload: Workload,
    vcpus: int = 1,
    clocksource: GuestClocksource = "kvm-clock",
    watchdog: Watchdog = "none",
    hz: int = 250,
    khz: int = 2_500_000,
    start: bool = True,
) -> tuple[GuestKernel, Engine, RunTrace, KvmVm]:
    host = HostClock(HostSpec("h", khz, uptime_ns=S), EPOCH)
    kvm = KvmVm(host, vcpus, 0)
    engine = Engine()
    trace = RunTrace("direct", KERNEL, "none", 0, vcpus, EPOCH)
    spec = GuestSpec(vcpus, clocksource, (KERNEL,), hz=hz, watchdog=watchdog, workload=workload)
    guest = GuestKernel(spec, get_profile(KERNEL), Platform(kvm), engine, trace)
    if start:
        guest.start(spec.workload, random.Random(0))
    return guest, engine, trace, kvm


def reader(vcpu: int = 0, every_ns: int = 50 * MS, phase_ns: int = 0) -> Workload:
    return Workload("reader", vcpu, every_ns=every_ns, clocks=("MONOTONIC",), phase_ns=phase_ns)


def test_boot_calibrates_the_tsc_from_pvclock_and_records_the_counter_width() -> None:
    guest, _, trace, _ = build(start=False)
    # 2.5 GHz: pvclock shift -1, mul floor(0.8 * 2**32); back to kHz: (1e6 << 32) // mul << 1 = 2_500_000.
    assert guest.tsc_cs.freq_hz == 2_500_000_000
    assert guest.clock.name == "kvm-clock"
    assert guest.wd_cs is None
    assert trace.counter_bits == 64
    assert guest.boot_values() == {
        "REALTIME": EPOCH,
        "TAI": EPOCH,
        "MONOTONIC": 0,
        "BOOTTIME": 0,
        "MONOTONIC_RAW": 0,
    }


def test_counter_width_is_the_clocksources() -> None:
    widths = {cs: build(clocksource=cs, start=False)[2].counter_bits for cs in ("tsc", "hpet", "acpi_pm")}
    assert widths == {"tsc": 64, "hpet": 32, "acpi_pm": 24}


def test_clockevent_scale_for_a_2_5_ghz_tsc() -> None:
    guest, *_ = build(start=False)
    # TSC / 8 = 312.5 MHz: 0.3125 ticks a ns = 5/16, exact in binary, so mult / 2**shift is exactly 5/16.
    assert guest.ce_mult * 16 == 5 << guest.ce_shift
    assert (TSC_DIVISOR, CLOCKEVENT_MIN_TICKS) == (8, 15)


def test_boot_timers_and_the_first_tsc_deadline_of_an_idle_guest() -> None:
    guest, engine, _, kvm = build(vcpus=2)
    # Nobody is busy: vCPU 0 ticks for everyone and runs ntpd; each vCPU has its soft-lockup hrtimer (4 s).
    assert sorted((t.name, t.expires) for t in guest.vcpus[0].timers) == [
        ("ntpd", 64 * S),
        ("tick", 4 * MS),
        ("watchdog", 4 * S),
    ]
    assert [(t.name, t.expires) for t in guest.vcpus[1].timers] == [("watchdog", 4 * S)]
    # The tick 4 ms ahead is 4e6 * 5/16 = 1_250_000 clockevent ticks, 8 TSC cycles each: the deadline is
    # 10_000_000 cycles past the guest TSC of 0 at boot - the guest TSC gets there at exactly 4 ms.
    assert kvm.guest_tsc(0, 0) == 0
    assert guest.vcpus[0].deadline_tsc == 10_000_000
    # vCPU 1's first timer is 4 s away: 1_250_000_000 ticks, 10e9 cycles.
    assert guest.vcpus[1].deadline_tsc == 10_000_000_000
    assert engine.peek() == 4 * MS


def test_boot_wheel_timers() -> None:
    guest, *_ = build(watchdog="hpet")
    # Clocksource watchdog: HZ/2 = 125 jiffies, bucket 128; khungtaskd: 120 s = 30000 jiffies, bucket 30208.
    assert sorted((w.name, w.expires, w.bucket) for w in guest.wheel) == [
        ("clocksource-watchdog", 125, 128),
        ("khungtaskd", 30_000, 30_208),
    ]
    assert [w.name for w in build()[0].wheel] == ["khungtaskd"]  # no watchdog counter, no watchdog


def test_the_clocksource_watchdog_rearms_from_its_own_expiry() -> None:
    guest, engine, trace, _ = build(watchdog="hpet")
    engine.run(until_ns=1_100 * MS)  # jiffy 275
    # Fired at jiffy 128 (due 125) and re-armed for 125 + 125 = 250: 122 jiffies ahead, level 1, bucket 256;
    # fired there and re-armed for 375: bucket (46 + 1) * 8 = 376.
    assert [(w.expires, w.bucket) for w in guest.wheel if w.name == "clocksource-watchdog"] == [(375, 376)]
    assert trace.messages == []  # a steady TSC against a steady HPET: nothing to say


def test_jiffies_follow_the_tick() -> None:
    for hz in (100, 250, 1000):
        guest, engine, _, _ = build(hz=hz)
        tick = S // hz
        # Half a tick past 1 s, the tick due at 1 s has run (guest time lags by under a ns) and no other.
        engine.run(until_ns=S + tick // 2)
        assert guest.jiffies == hz, hz
        assert guest.last_jiffies_update == S, hz


def test_tick_do_update_jiffies64_catches_up_whole_ticks_only() -> None:
    guest, _, _, _ = build(start=False)
    guest.tick_do_update_jiffies64(3 * MS)  # less than a tick
    assert (guest.jiffies, guest.last_jiffies_update) == (0, 0)
    guest.tick_do_update_jiffies64(4 * MS * 10 + 3 * MS)  # ten ticks and a bit
    assert (guest.jiffies, guest.last_jiffies_update) == (10, 40 * MS)


# --- readers ----------------------------------------------------------------------------------


def test_a_reader_reads_on_its_grid() -> None:
    _, engine, trace, _ = build(reader(every_ns=50 * MS, phase_ns=10 * MS))
    engine.run(until_ns=200 * MS)
    assert [s.t_ns for s in trace.samples] == [10 * MS, 60 * MS, 110 * MS, 160 * MS]
    assert {(s.vcpu, s.clock, s.path) for s in trace.samples} == {(0, "MONOTONIC", "vdso")}
    # Guest time tracks true time to within a few ns.
    assert all(abs(s.value_ns - s.t_ns) <= 2 for s in trace.samples)


def test_reader_clocks_and_paths() -> None:
    everything = Workload("reader", 0, every_ns=10 * MS, phase_ns=0, path="kernel")
    _, engine, trace, _ = build(everything)
    engine.run(until_ns=5 * MS)
    # No clocks listed: all five, in CLOCKS order, through the system call.
    assert [(s.clock, s.path) for s in trace.samples] == [
        ("REALTIME", "kernel"),
        ("MONOTONIC", "kernel"),
        ("BOOTTIME", "kernel"),
        ("MONOTONIC_RAW", "kernel"),
        ("TAI", "kernel"),
    ]
    assert trace.samples[0].value_ns == EPOCH  # REALTIME at 0 is the epoch


def test_a_vdso_read_of_an_hpet_falls_back_to_the_system_call() -> None:
    _, engine, trace, _ = build(reader(every_ns=10 * MS), clocksource="hpet")
    engine.run(until_ns=30 * MS)
    assert [s.t_ns for s in trace.samples] == [0, 10 * MS, 20 * MS, 30 * MS]
    assert {s.path for s in trace.samples} == {"kernel"}


def test_a_busy_vcpu_ticks_itself() -> None:
    guest, *_ = build(reader(), Workload("idle", 1), vcpus=2)
    assert sorted(t.name for t in guest.vcpus[0].timers) == ["ntpd", "tick", "watchdog"]
    assert [t.name for t in guest.vcpus[1].timers] == ["watchdog"]
    assert (guest.vcpus[0].busy, guest.vcpus[1].busy) == (True, False)


# --- the vCPUs stop and run again ----------------------------------------------------------------


def test_vcpus_stopped_reads_last_then_nothing_runs() -> None:
    guest, engine, trace, _ = build(reader(every_ns=50 * MS, phase_ns=10 * MS))
    engine.run(until_ns=30 * MS)
    guest.vcpus_stopped(30 * MS, reason="test stop")
    assert [s.t_ns for s in trace.samples] == [10 * MS, 30 * MS]  # its grid read, then the last read
    assert engine.peek() is None  # no tick, no reader: nothing runs on stopped vCPUs
    assert not guest.platform.running
    assert trace.events[-1] == TimelineEvent(30 * MS, "guest", "vcpus-stopped", "test stop")


def test_vcpus_run_reads_first_then_back_on_the_grid() -> None:
    guest, engine, trace, _ = build(reader(every_ns=50 * MS, phase_ns=10 * MS))
    engine.run(until_ns=30 * MS)
    guest.vcpus_stopped(30 * MS, reason="stop")
    engine.run(until_ns=5 * S)
    guest.vcpus_run(5 * S + 5 * MS, reason="go")
    assert guest.platform.stopped == [(30 * MS, 5 * S + 5 * MS)]
    assert trace.events[-1] == TimelineEvent(5 * S + 5 * MS, "guest", "vcpus-run", "go")
    engine.run(until_ns=5 * S + 100 * MS)
    # The resumed read at 5.005 s, then the grid (10 ms + k * 50 ms): 5.010 s, 5.060 s.
    assert [s.t_ns for s in trace.samples if s.t_ns > 30 * MS] == [
        5 * S + 5 * MS,
        5 * S + 10 * MS,
        5 * S + 60 * MS,
    ]
    # kvm-clock ran on (no VMM froze it): MONOTONIC counted the stop.
    assert abs(trace.samples[-1].value_ns - (5 * S + 60 * MS)) <= 5


def test_blocked_task_io_completes_after_its_running_time() -> None:
    guest, engine, _, _ = build(Workload("blocked-task", 0, every_ns=1 * S, name="disk"))
    (task,) = guest.tasks
    assert (task.pid, task.comm, task.blocked) == (100, "disk", True)
    engine.run(until_ns=300 * MS)
    guest.vcpus_stopped(300 * MS, reason="stop")
    engine.run(until_ns=5_300 * MS)
    guest.vcpus_run(5_300 * MS, reason="go")
    # 0.3 s of the request's 1 s ran before the stop; the other 0.7 s after 5.3 s: done at 6.0 s.
    engine.run(until_ns=6 * S - 1)
    assert task.switch_count == 0
    engine.run(until_ns=6 * S)
    assert task.switch_count == 1
    engine.run(until_ns=7 * S)
    assert task.switch_count == 2  # the next request, a running second later


def test_the_tsc_deadline_moves_with_the_guest_tsc() -> None:
    guest, engine, _, kvm = build()
    assert engine.peek() == 4 * MS  # the first tick's deadline: guest TSC 10_000_000
    guest.vcpus_stopped(1 * MS, reason="restore")
    # The VMM puts the guest TSC back by 1 ms (2_500_000 cycles) while the vCPUs are stopped.
    kvm.set_tsc_offset(0, u64(kvm.get_tsc_offset(0) - 2_500_000), 1 * MS)
    guest.vcpus_run(1 * MS, reason="restored")
    # The deadline is still TSC 10_000_000; the guest TSC reads 0 again at 1 ms and gets there
    # 4 ms later.
    assert engine.peek() == 5 * MS


def test_a_deadline_behind_a_tsc_that_wrapped_below_zero_fires_at_once() -> None:
    guest, engine, _, kvm = build()
    guest.vcpus_stopped(1 * MS, reason="restore")
    # Back by a second: the guest TSC reads 2_500_000 - 2.5e9 < 0, i.e. just under 2**64, past any
    # deadline (the TSC-deadline comparison is unsigned).
    kvm.set_tsc_offset(0, u64(kvm.get_tsc_offset(0) - 2_500_000_000), 1 * MS)
    assert kvm.guest_tsc(0, 1 * MS) == u64(2_500_000 - 2_500_000_000)
    guest.vcpus_run(1 * MS, reason="restored")
    assert engine.peek() == 1 * MS


def test_a_deadline_the_tsc_jumped_past_fires_at_once() -> None:
    guest, engine, _, kvm = build()
    guest.vcpus_stopped(1 * MS, reason="restore")
    kvm.set_tsc_offset(0, u64(kvm.get_tsc_offset(0) + 2_500_000_000), 1 * MS)
    guest.vcpus_run(1 * MS, reason="restored")
    assert engine.peek() == 1 * MS


# --- through whole scenarios ------------------------------------------------------------------------------


def scenario(
    *workload: Workload,
    events: tuple[Event, ...],
    vcpus: int = 1,
    settle_ns: int = 1 * S,
) -> Scenario:
    return Scenario(
        name="guest-kernel",
        description="a small story",
        guest=GuestSpec(vcpus, "kvm-clock", (KERNEL,), watchdog="none", workload=workload),
        hosts=(HostSpec("host", 2_500_000),),
        vmms=("qemu",),
        events=events,
        settle_ns=settle_ns,
    )


def test_resumed_reader_reads_at_the_resume_instant_then_on_its_grid() -> None:
    wl = reader(every_ns=50 * MS, phase_ns=10 * MS)
    stop = run_combination(scenario(wl, events=(Event(1_005 * MS, "stop", 1 * S),)), KERNEL, "qemu")
    around = [s.t_ns for s in stop.samples if 0.9 * S < s.t_ns < 2.1 * S]
    # Grid reads to 0.96 s, the last read at the stop (1.005 s), the first at SIGCONT (2.005 s), then 2.010 s.
    assert around == [910 * MS, 960 * MS, 1_005 * MS, 2_005 * MS, 2_010 * MS, 2_060 * MS]
    pause = run_combination(scenario(wl, events=(Event(1_005 * MS, "pause", 1 * S),)), KERNEL, "qemu")
    around = [s.t_ns for s in pause.samples if 0.9 * S < s.t_ns < 2.1 * S]
    # QEMU's resume takes two ioctls (KVM_SET_CLOCK, KVM_KVMCLOCK_CTRL): the vCPUs run 20 us late.
    assert around == [910 * MS, 960 * MS, 1_005 * MS, 2_005 * MS + 20 * US, 2_010 * MS, 2_060 * MS]


def softlockups(*workload: Workload, vcpus: int = 2) -> list[tuple[int, int, str, int]]:
    # A 25 s SIGSTOP at 1 s: kvmclock runs on, so sched_clock jumps 25 s; nobody tells the guest.
    trace = run_combination(
        scenario(*workload, vcpus=vcpus, events=(Event(1 * S, "stop", 25 * S),)), KERNEL, "qemu"
    )
    return [(m.t_ns, m.vcpu, m.kind, m.value) for m in trace.messages]


def test_a_busy_vcpu_reports_a_soft_lockup_after_a_stop_an_idle_one_does_not() -> None:
    # At 26 s each watchdog hrtimer (due 4 s) fires at once.  Busy vCPU 0: stuck for
    # (26e9 >> 30) - (0 >> 30) = 24 units.  Idle vCPU 1: the interrupt wakes it through
    # tick_nohz_update_jiffies(), which touches its watchdog first: no report.
    assert softlockups(reader(0), Workload("idle", 1)) == [(26 * S, 0, "softlockup", 24)]


def test_two_busy_vcpus_both_report_and_two_idle_ones_neither() -> None:
    assert softlockups(reader(0), reader(1)) == [(26 * S, 0, "softlockup", 24), (26 * S, 1, "softlockup", 24)]
    assert softlockups(Workload("idle", 0), Workload("idle", 1)) == []


def test_hrtimer_forward_fires_an_overdue_timer_once_and_its_lateness_excludes_stopped_time() -> None:
    wl = (reader(every_ns=100 * MS), Workload("timer", 0, every_ns=100 * MS, name="app"))
    trace = run_combination(
        scenario(*wl, events=(Event(1_050 * MS, "stop", 1 * S),), settle_ns=200 * MS), KERNEL, "qemu"
    )
    fires = [f for f in trace.timers if f.name == "app" and f.t_ns > 950 * MS]
    # Due at 1.1 s, the vCPUs stopped from 1.05 to 2.05 s: it fires once at 2.05 s (the missed
    # periods are skipped), then on the new grid 2.1 s, 2.2 s (each a few tens of ns after due).
    assert [round(f.t_ns / MS) for f in fires] == [1_000, 2_050, 2_100, 2_200]
    overdue = fires[1]
    assert overdue.t_ns == 2_050 * MS  # the interrupt is pending when the vCPU runs again
    assert abs(overdue.due_true_ns - 1_100 * MS) <= 5
    # 0.95 s past due, all of it stopped: no lateness in running time.
    assert overdue.late_ns == 0
    assert all(f.late_ns < 1 * US for f in fires)


def test_a_timer_across_a_hidden_pause_is_not_late() -> None:
    # A 1 s timer fires at 1 s and is re-armed then for 2 s; QEMU pauses the VM from 1.9 s for 5 s and
    # freezes kvmclock, so the guest still owes 0.1 s when the vCPUs run again at 6.90002 s (after
    # QEMU's SET_CLOCK and KVMCLOCK_CTRL) and the timer fires near 7 s.
    wl = Workload("timer", 0, every_ns=1 * S, name="app")
    trace = run_combination(scenario(wl, events=(Event(1_900 * MS, "pause", 5 * S),)), KERNEL, "qemu")
    (cut,) = trace.interruptions
    assert (cut.start_ns, cut.end_ns) == (1_900 * MS, 6_900 * MS + 20 * US)
    first, second = (f for f in trace.timers if f.name == "app" and f.t_ns < 7_500 * MS)
    assert abs(first.t_ns - 1 * S) < 1 * US
    assert abs(second.t_ns - 7 * S) < 100 * US
    assert abs(second.due_true_ns - 2 * S) <= 5  # armed at 1 s for 1 s
    # Running time since arming: (~7 s - 1 s) less the 5.00002 s stopped = under the 1 s period: on
    # time.  (Measured from the due 2 s instead, ~5 s less the 4.90002 s stopped after it, it would
    # wrongly read 0.1 s late.)
    assert second.late_ns == 0


def test_timer_lateness_is_running_time_since_arming_past_the_period() -> None:
    guest, _, trace, _ = build(start=False)
    # A timer armed at true time 1 s for 1 s; the vCPUs stopped from 1.9 s to 6.9 s.
    timer = HrTimer(
        2 * S, 0, "app", 1 * S, lambda _v, _kt: None, armed_true=1 * S, armed_kt=1 * S, report=True
    )
    guest.platform.stop_vcpus(1_900 * MS)
    guest.platform.start_vcpus(6_900 * MS)
    for fired in (6_950 * MS, 7 * S, 7_300 * MS):
        guest.t = fired
        guest._record_fire(0, timer)
    # Running: 0.95 s (floored at 0), exactly 1 s (0), 1.3 s (0.3 s late); due is armed + period throughout.
    assert [(f.t_ns, f.due_true_ns, f.late_ns) for f in trace.timers] == [
        (6_950 * MS, 2 * S, 0),
        (7 * S, 2 * S, 0),
        (7_300 * MS, 2 * S, 300 * MS),
    ]


def test_a_clocksource_switch_lowers_the_counter_width() -> None:
    guest, _, trace, _ = build(clocksource="tsc", watchdog="hpet", start=False)
    assert trace.counter_bits == 64
    assert guest.wd_cs is not None
    guest.switch_clocksource(guest.wd_cs)  # the watchdog's switch to the HPET
    assert (guest.clock.name, trace.counter_bits) == ("hpet", 32)
    guest.switch_clocksource(guest.tsc_cs)  # back to a 64-bit counter: the narrowest one run on stays
    assert trace.counter_bits == 32


def test_ntp_unsync_after_a_nine_hour_stop() -> None:
    trace = run_combination(
        scenario(reader(every_ns=100 * MS), events=(Event(1 * S, "stop", 9 * 3_600 * S),)), KERNEL, "qemu"
    )
    # The first tick after 9 h accumulates 32400 s at once: maxerror grows 500 us a second, past NTP's
    # 16 s limit, where it is capped and STA_UNSYNC set: 16_000_000 us, grown from ntpd's 10_000 us.
    assert trace.ntp == [NtpState(1 * S + 9 * 3_600 * S, True, 16_000_000, 16_000_000 - 10_000)]
