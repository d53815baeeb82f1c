"""judge(): the verdicts of hand-built run traces, exact to the figure and the words.

Every trace here is synthetic: a 2-vCPU guest whose clocks start at true
time 0 (MONOTONIC and BOOTTIME at 0, REALTIME at the epoch), a REALTIME
bound of 1 s and a timer-late bound of 50 ms unless a test says otherwise.
A sample "on time" reads exactly its boot value plus its true time.
"""

from __future__ import annotations

import pytest

from tsclab.check.run_checks import _ms, judge
from tsclab.check.verdict import VERDICT_IDS, Verdict
from tsclab.sim.trace import (
    Interruption,
    KernelMessage,
    NtpState,
    RunTrace,
    Sample,
    Stall,
    TimerFire,
)

S = 1_000_000_000
MS = 1_000_000
US = 1_000
EPOCH = 1_767_225_600 * S
BOUND = 1 * S  # realtime_bound_ns
LATE_BOUND = 50 * MS


def make_trace(*, counter_bits: int = 64, skipped: str = "", **fields: object) -> RunTrace:
    trace = RunTrace(
        scenario="synthetic",
        kernel="linux-6.13",
        vmm="qemu@7.2",
        seed=0,
        vcpus=2,
        epoch_ns=EPOCH,
        end_ns=100 * S,
        boot_values={"REALTIME": EPOCH, "TAI": EPOCH, "MONOTONIC": 0, "BOOTTIME": 0, "MONOTONIC_RAW": 0},
        realtime_bound_ns=BOUND,
        counter_bits=counter_bits,
        skipped=skipped,
    )
    for name, value in fields.items():
        setattr(trace, name, value)
    return trace


def mono(t_ns: int, vcpu: int, value_ns: int, *, reader_path: str = "", wrap_loss_ns: int = 0) -> Sample:
    return Sample(t_ns, vcpu, "MONOTONIC", "vdso", value_ns, reader_path, wrap_loss_ns)


def run(trace: RunTrace, bound: int = LATE_BOUND) -> tuple[Verdict, ...]:
    return judge(trace, timer_late_bound_ns=bound)


def ids(trace: RunTrace) -> list[str]:
    return [v.id for v in run(trace)]


# --- time-backwards -----------------------------------------------------------------


def test_clocks_that_advance_on_time_give_no_verdict() -> None:
    samples = [
        Sample(t, v, clock, "vdso", boot + t)
        for t in range(0, 10 * MS, MS)
        for v in (0, 1)
        for clock, boot in (("MONOTONIC", 0), ("REALTIME", EPOCH), ("BOOTTIME", 0))
    ]
    assert run(make_trace(samples=samples)) == ()


def test_same_vcpu_step_back_is_one_verdict_per_clock_with_the_largest_step() -> None:
    # vCPU 0: 10 ms, then 9.5 ms (0.5 ms back), then 20 ms, then 17 ms (3 ms back).
    samples = [mono(10 * MS, 0, 10 * MS), mono(11 * MS, 0, 9_500_000)]
    samples += [mono(20 * MS, 0, 20 * MS), mono(21 * MS, 0, 17 * MS)]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "time-backwards",
            11 * MS,
            0,
            "MONOTONIC",
            3 * MS,
            "ns",
            "vCPU 0 read MONOTONIC 500.000 us lower than before",  # 0.5 ms: under 1 ms, in us
        ),
    )


def test_backwards_is_judged_per_clock() -> None:
    samples = [
        Sample(1 * MS, 0, "MONOTONIC", "kernel", 5 * MS),
        Sample(2 * MS, 0, "BOOTTIME", "kernel", 5 * MS),
        Sample(3 * MS, 0, "MONOTONIC", "kernel", 4 * MS),  # 1 ms back
        Sample(4 * MS, 0, "BOOTTIME", "kernel", 3 * MS),  # 2 ms back
    ]
    verdicts = run(make_trace(samples=samples))
    # Same ID: ordered by time, so MONOTONIC (3 ms) before BOOTTIME (4 ms).
    assert [(v.clock, v.t_ns, v.magnitude) for v in verdicts] == [
        ("MONOTONIC", 3 * MS, 1 * MS),
        ("BOOTTIME", 4 * MS, 2 * MS),
    ]


def test_cross_vcpu_read_below_an_earlier_read_on_another_vcpu() -> None:
    # vCPU 0 reads 10 ms at t=10 ms; vCPU 1, 1 us later, reads 25 us lower (its TSC is behind).
    samples = [mono(10 * MS, 0, 10 * MS), mono(10 * MS + US, 1, 10 * MS - 25 * US)]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "time-backwards",
            10 * MS + US,
            1,
            "MONOTONIC",
            25 * US,
            "ns",
            "vCPU 1 read MONOTONIC 25.000 us below a read on vCPU 0",  # 25 us: under 1 ms, in us
        ),
    )


def test_cross_vcpu_compares_with_the_highest_read_of_the_other_vcpus() -> None:
    # vCPU 2 reads 11 ms, vCPU 0 then 12 ms; vCPU 1 then reads 10 ms: 2 ms below vCPU 0's, the highest.
    samples = [mono(1 * MS, 2, 11 * MS), mono(1_500 * US, 0, 12 * MS), mono(2 * MS, 1, 10 * MS)]
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.vcpu, verdict.magnitude) == (1, 2 * MS)
    assert verdict.event == "vCPU 1 read MONOTONIC 2.000 ms below a read on vCPU 0"


def test_cross_vcpu_same_instant_reads_count() -> None:
    # Both vCPUs read at the same true time; vCPU 1's value is 40 ns lower than vCPU 0's.
    samples = [mono(5 * MS, 0, 5 * MS), mono(5 * MS, 1, 5 * MS - 40)]
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.id, verdict.t_ns, verdict.vcpu, verdict.magnitude) == ("time-backwards", 5 * MS, 1, 40)


@pytest.mark.parametrize("lower_first", [False, True])
def test_cross_vcpu_same_instant_step_back_whatever_the_recording_order(lower_first: bool) -> None:
    # vCPU 1 reads 40 ns below vCPU 0 at the same true time: the same verdict whichever was recorded first.
    higher, lower = mono(5 * MS, 0, 5 * MS), mono(5 * MS, 1, 5 * MS - 40)
    samples = [lower, higher] if lower_first else [higher, lower]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "time-backwards",
            5 * MS,
            1,
            "MONOTONIC",
            40,
            "ns",
            "vCPU 1 read MONOTONIC 40 ns below a read on vCPU 0",
        ),
    )


def test_same_instant_reads_that_agree_are_no_step_back() -> None:
    samples = [
        mono(5 * MS, 1, 5 * MS),
        mono(5 * MS, 0, 5 * MS),
        mono(6 * MS, 0, 6 * MS),
        mono(6 * MS, 1, 6 * MS),
    ]
    assert run(make_trace(samples=samples)) == ()


def test_a_read_below_its_own_vcpus_last_is_reported_once_as_such() -> None:
    # vCPU 1 reads 10 ms at 1 ms; at 2 ms vCPU 0 reads 12 ms and vCPU 1 9 ms: 1 ms below its own last
    # read, and 3 ms below vCPU 0's.  It is a same-vCPU step back of 1 ms, not also a 3 ms cross-vCPU one.
    samples = [mono(1 * MS, 1, 10 * MS), mono(2 * MS, 1, 9 * MS), mono(2 * MS, 0, 12 * MS)]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "time-backwards",
            2 * MS,
            1,
            "MONOTONIC",
            1 * MS,
            "ns",
            "vCPU 1 read MONOTONIC 1.000 ms lower than before",
        ),
    )


def test_a_vcpu_running_behind_is_one_verdict() -> None:
    # vCPU 1 is 1 ms behind vCPU 0 throughout: each of its reads is below vCPU 0's latest one,
    # so each is a cross-vCPU hit, and they fold into one verdict whose magnitude is the worst gap.
    samples = []
    for k in range(1, 4):
        samples += [mono(k * MS, 0, k * MS), mono(k * MS + 1, 1, k * MS - 1 * MS)]
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.t_ns, verdict.vcpu, verdict.magnitude) == (1 * MS + 1, 1, 1 * MS)


def test_cross_vcpu_and_same_vcpu_hits_share_one_verdict_per_clock() -> None:
    samples = [
        mono(1 * MS, 0, 10 * MS),
        mono(2 * MS, 1, 9 * MS),  # 1 ms below vCPU 0: cross-vCPU, first hit
        mono(3 * MS, 1, 6 * MS),  # 3 ms below its own last read: same-vCPU, largest
    ]
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.t_ns, verdict.vcpu, verdict.magnitude) == (2 * MS, 1, 3 * MS)
    assert verdict.event == "vCPU 1 read MONOTONIC 1.000 ms below a read on vCPU 0"


# --- overflow-garbage -------------------------------------------------------------------


def test_overflow_garbage_from_wrap_loss_ns() -> None:
    samples = [
        mono(1 * S, 0, 1 * S),
        mono(2 * S, 0, 2 * S + 1, wrap_loss_ns=0),
        Sample(3 * S, 1, "MONOTONIC", "kernel", 3 * S, "slow-path", wrap_loss_ns=7 * MS),
        mono(4 * S, 0, 4 * S, wrap_loss_ns=9 * MS),
    ]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "overflow-garbage",
            3 * S,
            1,
            "MONOTONIC",
            9 * MS,
            "ns",
            "kernel read of MONOTONIC wrapped: short by 7.000 ms",
        ),
    )


# --- wrap-loss ----------------------------------------------------------------------------


def test_wrap_loss_on_a_narrow_counter() -> None:
    # A 32-bit counter; the last MONOTONIC read is 2 ms behind true time.
    samples = [mono(1 * S, 0, 1 * S), mono(5 * S, 1, 5 * S - 2 * MS)]
    assert run(make_trace(samples=samples, counter_bits=32)) == (
        Verdict(
            "wrap-loss",
            5 * S,
            1,
            "MONOTONIC",
            2 * MS,
            "ns",
            "MONOTONIC on vCPU 1 is 2.000 ms behind at the end of the run",
        ),
    )


def test_wrap_loss_threshold_is_one_millisecond() -> None:
    just_under = [mono(5 * S, 0, 5 * S - (MS - 1))]
    exactly = [mono(5 * S, 0, 5 * S - MS)]
    assert ids(make_trace(samples=just_under, counter_bits=24)) == []
    assert ids(make_trace(samples=exactly, counter_bits=24)) == ["wrap-loss"]


def test_no_wrap_loss_on_a_64_bit_counter_without_a_clamp() -> None:
    samples = [mono(5 * S, 0, 1 * S)]  # 4 s behind, but a 64-bit counter does not wrap
    assert ids(make_trace(samples=samples, counter_bits=64)) == []


def test_wrap_loss_after_a_negative_motion_clamp_on_a_64_bit_counter() -> None:
    samples = [mono(1 * S, 0, 1 * S, reader_path="negative-clamp"), mono(5 * S, 0, 4 * S)]
    (verdict,) = run(make_trace(samples=samples, counter_bits=64))
    assert (verdict.id, verdict.t_ns, verdict.magnitude) == ("wrap-loss", 5 * S, 1 * S)


def test_wrap_loss_only_judges_the_last_monotonic_read() -> None:
    # Behind early on, back on time at the end: nothing lost for good.
    samples = [mono(1 * S, 0, 1 * S - 5 * MS), mono(5 * S, 0, 5 * S), Sample(6 * S, 0, "BOOTTIME", "vdso", 0)]
    assert ids(make_trace(samples=samples, counter_bits=32)) == []


def test_wrap_loss_does_not_count_time_the_vmm_hid() -> None:
    # A hidden 2 s pause (1 s -> 3 s): MONOTONIC owes nothing for it, so reading 2 s at 4 s is on time.
    hidden = Interruption(1 * S, 3 * S, "pause", hidden=True, nap=False)
    samples = [mono(1 * S, 0, 1 * S), mono(4 * S, 0, 2 * S)]
    assert ids(make_trace(samples=samples, counter_bits=32, interruptions=[hidden])) == []
    # The same, not hidden: the 2 s are missing.
    shown = Interruption(1 * S, 3 * S, "stop", hidden=False, nap=False)
    (verdict,) = run(make_trace(samples=samples, counter_bits=32, interruptions=[shown]))
    assert (verdict.id, verdict.magnitude) == ("wrap-loss", 2 * S)


def test_wrap_loss_does_not_count_time_the_counter_stood_still() -> None:
    # An emulated counter standing still for 2 s (1 s -> 3 s, e.g. an HPET while the host slept): MONOTONIC
    # reading 2 s at 4 s is on time.  A read 2 ms lower than that is a loss.
    stood_still = [(1 * S, 3 * S)]
    on_time = [mono(1 * S, 0, 1 * S), mono(4 * S, 0, 2 * S)]
    assert ids(make_trace(samples=on_time, counter_bits=32, counter_stopped=stood_still)) == []
    behind = [mono(1 * S, 0, 1 * S), mono(4 * S, 0, 2 * S - 2 * MS)]
    (verdict,) = run(make_trace(samples=behind, counter_bits=32, counter_stopped=stood_still))
    assert (verdict.id, verdict.magnitude) == ("wrap-loss", 2 * MS)


def test_wrap_loss_counts_hidden_and_stood_still_time_once() -> None:
    # Hidden 1 s -> 3 s, the counter still 2 s -> 4 s, and still again 6 s -> 7 s: their union is
    # 1 s -> 4 s and 6 s -> 7 s, 4 s in all (not 5 s).  Read at 10 s: 6 s expected; 5.998 s is 2 ms behind.
    hidden = Interruption(1 * S, 3 * S, "pause", hidden=True, nap=False)
    samples = [mono(1 * S, 0, 1 * S), mono(10 * S, 0, 6 * S - 2 * MS)]
    trace = make_trace(
        samples=samples,
        counter_bits=32,
        interruptions=[hidden],
        counter_stopped=[(2 * S, 4 * S), (6 * S, 7 * S)],
    )
    (verdict,) = run(trace)
    assert (verdict.id, verdict.magnitude) == ("wrap-loss", 2 * MS)
    assert verdict.event == "MONOTONIC on vCPU 0 is 2.000 ms behind at the end of the run"


def test_wrap_loss_counts_only_stood_still_time_before_the_last_read() -> None:
    # The counter stood still 3 s -> 8 s; the last read at 5 s owes only the 2 s up to it: 3 s expected.
    samples = [mono(1 * S, 0, 1 * S), mono(5 * S, 0, 3 * S - 2 * MS)]
    (verdict,) = run(make_trace(samples=samples, counter_bits=24, counter_stopped=[(3 * S, 8 * S)]))
    assert (verdict.id, verdict.magnitude) == ("wrap-loss", 2 * MS)


# --- durations in words ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0 ns"),
        (999, "999 ns"),
        (-40, "-40 ns"),
        (1_000, "1.000 us"),
        (25_000, "25.000 us"),
        (999_499, "999.499 us"),
        # Rounded half up at the unit the rounded figure reaches: never "1000.000 us".
        (999_999, "1.000 ms"),
        (999_999_999, "1.000 s"),
        (-500_000, "-500.000 us"),
        (1_000_000, "1.000 ms"),
        (123_456_789, "123.457 ms"),
        (1_000_000_000, "1.000 s"),
        (-3_000_000_000, "-3.000 s"),
        (42_949_672_960, "42.950 s"),
    ],
)
def test_durations_are_written_at_a_unit_that_shows_them(ns: int, text: str) -> None:
    assert _ms(ns) == text


# --- time-frozen ----------------------------------------------------------------------------


def test_frozen_stretch_is_one_hit_spanning_the_whole_stretch() -> None:
    # vCPU 0 reads 7 ms at 0, 1, 2 and 3 ms (one stretch of 3 ms), then moves on.
    samples = [mono(k * MS, 0, 7 * MS) for k in range(4)] + [mono(4 * MS, 0, 8 * MS)]
    assert run(make_trace(samples=samples)) == (
        Verdict("time-frozen", 0, 0, "MONOTONIC", 3 * MS, "ns", "MONOTONIC on vCPU 0 stuck for 3.000 ms"),
    )


def test_frozen_threshold_is_one_millisecond_of_running_time() -> None:
    short = [mono(0, 0, 5), mono(MS - 1, 0, 5)]
    exact = [mono(0, 0, 5), mono(MS, 0, 5)]
    assert ids(make_trace(samples=short)) == []
    assert ids(make_trace(samples=exact)) == ["time-frozen"]


def test_frozen_excludes_the_time_the_vcpus_were_stopped() -> None:
    # Last read before a 10 ms stop and first read after it return the same value, 0.5 ms of running apart.
    cut = Interruption(MS // 2, 10 * MS + MS // 2, "pause", hidden=True, nap=False)
    samples = [mono(0, 0, 42), mono(MS // 2, 0, 42), mono(10 * MS + MS // 2, 0, 42), mono(11 * MS, 0, 43)]
    assert ids(make_trace(samples=samples, interruptions=[cut])) == []
    # Without the interruption the same reads are a 10.5 ms freeze.
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.id, verdict.magnitude) == ("time-frozen", 10 * MS + MS // 2)


def test_frozen_stretch_still_running_at_the_end_of_the_run_is_reported() -> None:
    samples = [mono(1 * S, 1, 3), mono(1 * S + 4 * MS, 1, 3)]
    (verdict,) = run(make_trace(samples=samples))
    assert (verdict.t_ns, verdict.vcpu, verdict.magnitude) == (1 * S, 1, 4 * MS)


def test_frozen_stretches_fold_into_one_verdict_first_by_start_largest_magnitude() -> None:
    # vCPU 0 stuck 2 ms from t=5 ms; vCPU 1 stuck 6 ms from t=1 ms (earlier start, longer).
    samples = [
        mono(1 * MS, 1, 100),
        mono(5 * MS, 0, 200),
        mono(7 * MS, 0, 200),
        mono(7 * MS, 1, 100),
        mono(8 * MS, 0, 201),
        mono(8 * MS, 1, 202),
    ]
    # The 7 ms read on vCPU 1 (100) is below vCPU 0's 200: a cross-vCPU step back too; leave it aside.
    frozen = [v for v in run(make_trace(samples=samples)) if v.id == "time-frozen"]
    assert frozen == [
        Verdict("time-frozen", 1 * MS, 1, "MONOTONIC", 6 * MS, "ns", "MONOTONIC on vCPU 1 stuck for 6.000 ms")
    ]


def test_frozen_only_looks_at_monotonic() -> None:
    samples = [Sample(k * MS, 0, "MONOTONIC_RAW", "vdso", 9) for k in range(5)]
    assert ids(make_trace(samples=samples)) == []


# --- realtime-error ----------------------------------------------------------------------------


def test_realtime_error_beyond_the_bound_either_way() -> None:
    samples = [
        Sample(1 * S, 1, "REALTIME", "vdso", EPOCH + 1 * S - BOUND - 1),  # 1 ns past the bound, behind
        Sample(2 * S, 0, "REALTIME", "vdso", EPOCH + 2 * S + BOUND),  # exactly the bound: tolerated
        Sample(3 * S, 0, "REALTIME", "vdso", EPOCH + 3 * S + 3 * S),  # 3 s ahead: the worst
    ]
    assert run(make_trace(samples=samples)) == (
        Verdict(
            "realtime-error", 1 * S, 1, "REALTIME", 3 * S, "ns", "REALTIME -1.000 s off true UTC on vCPU 1"
        ),
    )


def test_realtime_error_of_exactly_the_bound_is_tolerated() -> None:
    samples = [
        Sample(1 * S, 0, "REALTIME", "vdso", EPOCH + 1 * S - BOUND),
        Sample(4 * S, 0, "REALTIME", "vdso", EPOCH + 4 * S + BOUND),
    ]
    assert run(make_trace(samples=samples)) == ()


def test_realtime_error_is_against_true_utc_not_the_boot_value() -> None:
    # boot_values say REALTIME started 5 s early, but the check measures from epoch_ns + t.
    trace = make_trace(samples=[Sample(1 * S, 0, "REALTIME", "vdso", EPOCH + 1 * S)])
    trace.boot_values["REALTIME"] = EPOCH - 5 * S
    assert run(trace) == ()


# --- boottime-missing-nap ----------------------------------------------------------------------


def boot(t_ns: int, vcpu: int, value_ns: int) -> Sample:
    return Sample(t_ns, vcpu, "BOOTTIME", "vdso", value_ns)


def test_boottime_missing_nap() -> None:
    # A 5 s snapshot (1 s -> 6 s): BOOTTIME read 1 s before and only 1 s + 2 ms after.
    nap = Interruption(1 * S, 6 * S, "snapshot", hidden=True, nap=True)
    samples = [boot(1 * S, 0, 1 * S), boot(6 * S, 0, 1 * S + 2 * MS)]
    # Gap 5 s, advance 2 ms: 4.998 s missing, more than the 1 s bound.
    assert run(make_trace(samples=samples, interruptions=[nap])) == (
        Verdict(
            "boottime-missing-nap",
            6 * S,
            0,
            "BOOTTIME",
            5 * S - 2 * MS,
            "ns",
            "BOOTTIME advanced 2.000 ms across a 5.000 s snapshot on vCPU 0",
        ),
    )


def test_boottime_only_for_nap_interruptions() -> None:
    not_a_nap = Interruption(1 * S, 6 * S, "pause", hidden=True, nap=False)
    samples = [boot(1 * S, 0, 1 * S), boot(6 * S, 0, 1 * S)]
    assert ids(make_trace(samples=samples, interruptions=[not_a_nap])) == []


def test_boottime_missing_within_the_bound_is_tolerated() -> None:
    nap = Interruption(1 * S, 6 * S, "host-suspend", hidden=False, nap=True)
    # Gap 5 s, advance 4 s: exactly 1 s missing = the bound, not more.
    samples = [boot(1 * S, 0, 1 * S), boot(6 * S, 0, 5 * S)]
    assert ids(make_trace(samples=samples, interruptions=[nap])) == []


def test_boottime_one_verdict_per_nap_from_the_first_vcpu_that_misses_it() -> None:
    naps = [
        Interruption(1 * S, 3 * S, "snapshot", hidden=False, nap=True),
        Interruption(5 * S, 9 * S, "migrate", hidden=False, nap=True),
    ]
    samples = [
        boot(1 * S, 0, 1 * S),
        boot(1 * S, 1, 1 * S),
        boot(3 * S, 0, 1 * S),  # vCPU 0 misses 2 s
        boot(3 * S, 1, 1 * S),  # vCPU 1 too, but the first vCPU's is the verdict
        boot(5 * S, 1, 3 * S),
        boot(9 * S, 1, 3 * S),  # only vCPU 1 reads across the second: misses 4 s
    ]
    verdicts = run(make_trace(samples=samples, interruptions=naps))
    assert [(v.t_ns, v.vcpu, v.magnitude) for v in verdicts] == [(3 * S, 0, 2 * S), (9 * S, 1, 4 * S)]


def test_boottime_uses_the_last_read_before_and_the_first_after() -> None:
    nap = Interruption(2 * S, 4 * S, "host-suspend", hidden=False, nap=True)
    samples = [
        boot(0, 0, 0),
        boot(2 * S, 0, 2 * S),  # the last read before
        boot(4 * S + 10 * MS, 0, 2 * S + 10 * MS),  # the first read after: 2 s missing over a 2.01 s gap
        boot(20 * S, 0, 20 * S),  # a later read that caught up does not matter
    ]
    (verdict,) = run(make_trace(samples=samples, interruptions=[nap]))
    assert verdict.magnitude == 2 * S
    assert verdict.event == "BOOTTIME advanced 10.000 ms across a 2.010 s host-suspend on vCPU 0"


# --- monotonic-jump ------------------------------------------------------------------------------


def test_monotonic_jump_only_across_hidden_interruptions() -> None:
    samples = [mono(1 * S, 0, 1 * S), mono(6 * S + 5 * MS, 0, 6 * S + 5 * MS)]  # counted the whole pause
    hidden = Interruption(1 * S, 6 * S, "pause", hidden=True, nap=False)
    # Advance 5.005 s over a gap of 5.005 s of which 5 s were hidden: a 5 s jump.
    assert run(make_trace(samples=samples, interruptions=[hidden])) == (
        Verdict(
            "monotonic-jump",
            6 * S,
            0,
            "MONOTONIC",
            5 * S,
            "ns",
            "MONOTONIC jumped 5.000 s across a pause the VMM hides, on vCPU 0",
        ),
    )
    shown = Interruption(1 * S, 6 * S, "stop", hidden=False, nap=False)
    assert ids(make_trace(samples=samples, interruptions=[shown])) == []


def test_monotonic_frozen_across_a_hidden_interruption_is_no_jump() -> None:
    hidden = Interruption(1 * S, 6 * S, "pause", hidden=True, nap=False)
    samples = [mono(1 * S, 0, 1 * S), mono(6 * S + 5 * MS, 0, 1 * S + 5 * MS)]
    assert ids(make_trace(samples=samples, interruptions=[hidden])) == []


def test_monotonic_jump_within_the_bound_is_tolerated() -> None:
    hidden = Interruption(1 * S, 6 * S, "snapshot", hidden=True, nap=True)
    samples = [mono(1 * S, 0, 1 * S), mono(6 * S, 0, 2 * S)]  # jumped exactly 1 s (= the bound)
    samples += [boot(1 * S, 0, 1 * S), boot(6 * S, 0, 6 * S)]  # BOOTTIME counted the nap
    assert ids(make_trace(samples=samples, interruptions=[hidden])) == []


# --- what the kernel said ---------------------------------------------------------------------------


def test_detector_messages_one_verdict_per_detector_worst_value_first_message() -> None:
    messages = [
        KernelMessage(5 * S, 1, "softlockup", "BUG: soft lockup - CPU#1 stuck for 24s!", 24),
        KernelMessage(6 * S, 0, "long-readout", "clocksource: long readout interval", 999),
        KernelMessage(7 * S, 0, "rcu-stall", "rcu: INFO: rcu_preempt self-detected stall", 5250),
        KernelMessage(8 * S, 0, "softlockup", "BUG: soft lockup - CPU#0 stuck for 30s!", 30),
        KernelMessage(
            9 * S, 0, "hung-task", "INFO: task io-wait0:100 blocked for more than 120 seconds.", 122
        ),
        KernelMessage(10 * S, 1, "clocksource-unstable", "Marking clocksource 'tsc' as unstable", 123_456),
        KernelMessage(11 * S, 1, "clocksource-switch", "clocksource: Switched to clocksource hpet"),
    ]
    assert run(make_trace(messages=messages)) == (
        Verdict("softlockup", 5 * S, 1, None, 30, "s", "BUG: soft lockup - CPU#1 stuck for 24s!"),
        Verdict("rcu-stall", 7 * S, 0, None, 5250, "jiffies", "rcu: INFO: rcu_preempt self-detected stall"),
        Verdict(
            "hung-task",
            9 * S,
            0,
            None,
            122,
            "s",
            "INFO: task io-wait0:100 blocked for more than 120 seconds.",
        ),
        Verdict(
            "clocksource-unstable", 10 * S, 1, None, 123_456, "ns", "Marking clocksource 'tsc' as unstable"
        ),
    )


def test_ntp_unsync_reports_the_first_unsynchronised_state() -> None:
    ntp = [
        NtpState(1 * S, unsync=False, maxerror_us=10_000),
        NtpState(2 * S, unsync=True, maxerror_us=16_000_000, growth_us=900),
        NtpState(3 * S, unsync=True, maxerror_us=16_000_000),
    ]
    assert run(make_trace(ntp=ntp)) == (
        Verdict(
            "ntp-unsync",
            2 * S,
            None,
            None,
            16_000_000,
            "us",
            "STA_UNSYNC set: maxerror 16000000 us passed NTP's 16 s limit",
        ),
    )


def test_ntp_maxerror_growth_over_one_millisecond() -> None:
    ntp = [
        NtpState(1 * S, unsync=False, maxerror_us=11_000, growth_us=1_000),  # exactly 1 ms: no
        NtpState(2 * S, unsync=False, maxerror_us=12_001, growth_us=1_001),
        NtpState(3 * S, unsync=False, maxerror_us=20_000, growth_us=5_000),
    ]
    assert run(make_trace(ntp=ntp)) == (
        # The magnitude is in ns: 5000 us = 5_000_000 ns.
        Verdict(
            "ntp-maxerror", 2 * S, None, None, 5_000_000, "ns", "one update grew NTP maxerror by 1001 us"
        ),
    )


def test_livelock_from_stalls() -> None:
    stalls = [Stall(3 * S, 1, "vdso MONOTONIC", 10), Stall(4 * S, 0, "vdso REALTIME", 500)]
    assert run(make_trace(stalls=stalls)) == (
        Verdict("livelock", 3 * S, 1, None, 500, "count", "vdso MONOTONIC"),
    )


# --- timer-late ----------------------------------------------------------------------------------------


def test_timer_late_beyond_the_bound() -> None:
    timers = [
        TimerFire(1 * S, 0, "app", 1 * S - LATE_BOUND, LATE_BOUND),  # exactly the bound: on time
        TimerFire(2 * S, 1, "tick", 2 * S - 60 * MS, 60 * MS),
        TimerFire(3 * S, 0, "app", 3 * S - 200 * MS, 200 * MS),
    ]
    assert run(make_trace(timers=timers)) == (
        Verdict("timer-late", 2 * S, 1, None, 200 * MS, "ns", "timer tick on vCPU 1 fired 60.000 ms late"),
    )


def test_timer_late_bound_is_the_callers() -> None:
    timers = [TimerFire(2 * S, 0, "app", 1 * S, 1 * S)]
    assert ids(make_trace(timers=timers)) == ["timer-late"]
    assert run(make_trace(timers=timers), bound=1 * S) == ()


# --- the whole judgement ------------------------------------------------------------------------------------


def test_verdicts_come_in_verdict_id_order_then_by_time() -> None:
    hidden_nap = Interruption(10 * S, 20 * S, "snapshot", hidden=True, nap=True)
    trace = make_trace(
        samples=[
            mono(10 * S, 0, 10 * S),
            boot(10 * S, 0, 10 * S),
            mono(20 * S, 0, 30 * S),  # monotonic-jump (10 s) at the cut's end
            boot(20 * S, 0, 10 * S),  # boottime-missing-nap at the cut's end
            mono(30 * S, 0, 29 * S),  # time-backwards at 30 s
            Sample(40 * S, 1, "REALTIME", "vdso", EPOCH),  # realtime-error at 40 s
        ],
        interruptions=[hidden_nap],
        timers=[TimerFire(1 * S, 0, "app", 0, 1 * S)],  # timer-late, earliest of all
        messages=[KernelMessage(2 * S, 0, "softlockup", "stuck", 22)],
        ntp=[NtpState(3 * S, unsync=True, maxerror_us=16_000_000, growth_us=2_000)],
        stalls=[Stall(4 * S, 1, "vdso", 1)],
    )
    found = ids(trace)
    assert found == [
        "time-backwards",
        "ntp-maxerror",
        "realtime-error",
        "boottime-missing-nap",
        "monotonic-jump",
        "softlockup",
        "ntp-unsync",
        "livelock",
        "timer-late",
    ]
    order = list(VERDICT_IDS)
    assert [order.index(i) for i in found] == sorted(order.index(i) for i in found)


def test_a_skipped_trace_gives_no_verdicts_whatever_it_holds() -> None:
    trace = make_trace(
        skipped="firecracker@1.13 gives the guest no hpet (its clocksource)",
        samples=[mono(1 * S, 0, 5 * S), mono(2 * S, 0, 1 * S)],
        messages=[KernelMessage(2 * S, 0, "softlockup", "stuck", 22)],
        timers=[TimerFire(2 * S, 0, "app", 0, 2 * S)],
        counter_bits=32,
    )
    assert run(trace) == ()
