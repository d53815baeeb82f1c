"""guest/compare.py: predicted beside observed, built by hand, row by row and edge by edge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tsclab.clocksource import register
from tsclab.guest.compare import LOSS_ID_THRESHOLD_NS, RATE_TOL_PPM, SAMPLE_TOL_NS, Row, compare
from tsclab.guest.machine import PauseRecord
from tsclab.guest.observe import CpuObservation, Observation, TscRate
from tsclab.guest.predict import Band, Prediction
from tsclab.guest.trace import CLOCKS, KernelMessage
from tsclab.kernel.lockup_rules import Verdict

MS = 1_000_000
TICK = 4 * MS
HPET_WRAP = 42_949_672_960
LEAP = 1 << 40
WINDOW = 10_000_000_000
LOSS_TOL = SAMPLE_TOL_NS + WINDOW * RATE_TOL_PPM // 1_000_000  # 1.2 ms
JUMP_TOL = SAMPLE_TOL_NS + 2_000_000_000 * RATE_TOL_PPM // 1_000_000  # 1.04 ms for CPU's 2 s step


def per_clock(*numbers: int) -> dict[str, int]:
    return dict(zip(CLOCKS, numbers, strict=True))


def bands(band: Band) -> dict[str, Band]:
    return dict.fromkeys(CLOCKS, band)


ZERO = per_clock(0, 0, 0, 0)
CPU = CpuObservation(
    cpu=0,
    pause_step=None,
    tsc_step_ns=2_000_000_000,
    since_update_ns=1_500_000,
    longest_update_gap_ns=4_000_000,
    jump_ns=per_clock(2_000_000_250, 1_999_999_900, 1_999_999_900, 2_000_000_000),
    correction_ns=ZERO,
    backwards_ns=ZERO,
    frozen_ns=0,
    lost_ns=per_clock(-250, 100, 100, 0),
    window_ns=WINDOW,
)
PREDICTION = Prediction(
    guest_pause_ns=2_000_000_000,
    clocksource=register("tsc", 64, freq_khz=2_596_131),
    jump=bands(Band(1_999_999_000, 2_000_001_000)),
    backwards=bands(Band(0, 0)),
    frozen=Band(0, 0),
    lost={**bands(Band(0, 0)), "MONOTONIC": Band(-100, 100)},
    overflow=Band(0, 0),
    softlockup=Verdict("no"),
    long_readout=Verdict("yes", 2_000_000_000, 2_536_000_000),
    watchdog_wrap_ns=HPET_WRAP,
    clocksource_unstable=Verdict("no"),
)
PAUSE = PauseRecord("sigstop", 2_000_000_000, 10, 2_000_000_010, 20, 2_000_000_020, 4_000, 3_000, 4_000)


def message(kind: str, fields: dict[str, str], line: str = "", offset: int = 3_100) -> KernelMessage:
    return KernelMessage(kind, 9_455_460_000, fields, line or f"[    9.455460] {kind}", offset)


def long_readout(cs_nsec: int, wd_nsec: int) -> KernelMessage:
    line = (
        "[    9.455460] clocksource: Long readout interval, skipping watchdog check: "
        f"cs_nsec: {cs_nsec} wd_nsec: {wd_nsec}"
    )
    return message("long-readout", {"cs_nsec": str(cs_nsec), "wd_nsec": str(wd_nsec)}, line)


def softlockup(seconds: int) -> KernelMessage:
    line = f"[   40.123456] watchdog: BUG: soft lockup - CPU#0 stuck for {seconds}s! [probe:63]"
    return message("softlockup", {"cpu": "0", "seconds": str(seconds)}, line)


def observation(
    *cpus: CpuObservation,
    messages: list[KernelMessage] | None = None,
    boot: list[KernelMessage] | None = None,
) -> Observation:
    return Observation(
        pause=PAUSE,
        clocksource="tsc",
        cpu_flags=frozenset({"tsc"}),
        rate=TscRate(2_596_131, 1_000_000),
        jump_threshold_ns=20 * MS,
        cpus=list(cpus or (CPU,)),
        messages=[] if messages is None else messages,
        boot_messages=[] if boot is None else boot,
    )


def rows_of(obs: Observation, prediction: Prediction = PREDICTION) -> list[Row]:
    return compare(obs, {cpu.cpu: prediction for cpu in obs.cpus}, tick_ns=TICK)


def the_row(rows: list[Row], quantity: str, clock: str = "") -> Row:
    (found,) = [row for row in rows if row.quantity == quantity and row.clock == clock]
    return found


# ---------------------------------------------------------------------------
# Every row of a clean run


def test_every_row_of_a_clean_jump() -> None:
    rows = rows_of(observation(messages=[long_readout(2_300_000_000, 2_299_990_000)]))
    jump = "1999999000..2000001000"
    assert rows == [
        Row("jump", "REALTIME", 0, jump, "2000000250", 1_040_000, "", True),
        Row("jump", "MONOTONIC", 0, jump, "1999999900", 1_040_000, "", True),
        Row("jump", "BOOTTIME", 0, jump, "1999999900", 1_040_000, "", True),
        Row("jump", "MONOTONIC_RAW", 0, jump, "2000000000", 1_040_000, "", True),
        *(Row("backwards", clock, 0, "0", "0", SAMPLE_TOL_NS, "", True) for clock in CLOCKS),
        Row("frozen", "MONOTONIC", 0, "0", "0", TICK + SAMPLE_TOL_NS, "", True),
        Row("lost", "REALTIME", 0, "0", "-250", 1_200_000, "", True),
        Row("lost", "MONOTONIC", 0, "-100..100", "100", 1_200_000, "", True),
        Row("lost", "BOOTTIME", 0, "0", "100", 1_200_000, "", True),
        Row("lost", "MONOTONIC_RAW", 0, "0", "0", 1_200_000, "", True),
        Row("softlockup", "", None, "no", "no", 0, "", True),
        Row(
            "long-readout",
            "",
            None,
            "yes (cs_nsec 2000000000..2536000000)",
            "yes (cs_nsec 2300000000)",
            0,
            "",
            True,
        ),
        Row("clocksource-unstable", "", None, "no", "no", 0, "", True),
        # The HPET read 2.3 s less 10 us: within 1 ms + 20 ppm of 2.3 s (1.046 ms).
        Row("long-readout wd_nsec", "", None, "2300000000", "2299990000", 1_046_000, "", True),
    ]


# ---------------------------------------------------------------------------
# Tolerances at their edges


@pytest.mark.parametrize(
    ("jump", "ok"),
    [
        (2_000_000_000 + JUMP_TOL, True),
        (2_000_000_000 + JUMP_TOL + 1, False),
        (2_000_000_000 - JUMP_TOL, True),
        (2_000_000_000 - JUMP_TOL - 1, False),
    ],
)
def test_jump_tolerance_edges(jump: int, ok: bool) -> None:
    cpu = replace(CPU, jump_ns={**CPU.jump_ns, "MONOTONIC": jump})
    prediction = replace(PREDICTION, jump=bands(Band(2_000_000_000, 2_000_000_000)))
    row = the_row(rows_of(observation(cpu), prediction), "jump", "MONOTONIC")
    assert (row.predicted, row.observed, row.ok) == ("2000000000", str(jump), ok)


@pytest.mark.parametrize(
    ("tsc_step_ns", "tolerance"),
    [
        (0, 1_000_000),
        (2_000_000_000, 1_040_000),
        (46_013_276_808, 1_920_265),
        (1_200_000_000_000, 25_000_000),
    ],
)
def test_jump_tolerance_grows_with_the_pause(tsc_step_ns: int, tolerance: int) -> None:
    # 1 ms plus 20 ppm of the pause: the HPET and ACPI PM keep QEMU's virtual time, the TSC the host's.
    rows = rows_of(observation(replace(CPU, tsc_step_ns=tsc_step_ns)))
    assert {row.tolerance_ns for row in rows if row.quantity == "jump"} == {tolerance}


@pytest.mark.parametrize(
    ("back", "ok", "verdict_id"),
    [
        (0, False, ""),
        (1, False, "time-backwards"),
        (2 * MS, True, "time-backwards"),
        (5 * MS + 1, False, "time-backwards"),
    ],
)
def test_backwards_edges_and_id(back: int, ok: bool, verdict_id: str) -> None:
    # Predicted 2.000001 .. 4 ms back: 0 and 1 ns are more than 1 ms short of it.
    cpu = replace(CPU, backwards_ns={**ZERO, "BOOTTIME": back})
    prediction = replace(PREDICTION, backwards=bands(Band(2 * MS + 1, 4 * MS)))
    row = the_row(rows_of(observation(cpu), prediction), "backwards", "BOOTTIME")
    assert (row.observed, row.ok, row.verdict_id) == (str(back), ok, verdict_id)
    assert row.tolerance_ns == SAMPLE_TOL_NS


@pytest.mark.parametrize(
    ("frozen", "ok"),
    [
        (1_184_000_000 + TICK + SAMPLE_TOL_NS, True),
        (1_184_000_000 + TICK + SAMPLE_TOL_NS + 1, False),
        (1_180_000_001 - TICK - SAMPLE_TOL_NS, True),
        (1_180_000_001 - TICK - SAMPLE_TOL_NS - 1, False),
    ],
)
def test_frozen_tolerance_is_a_tick_and_a_millisecond(frozen: int, ok: bool) -> None:
    cpu = replace(CPU, frozen_ns=frozen)
    prediction = replace(PREDICTION, frozen=Band(1_180_000_001, 1_184_000_000))
    row = the_row(rows_of(observation(cpu), prediction), "frozen", "MONOTONIC")
    assert row == Row(
        "frozen", "MONOTONIC", 0, "1180000001..1184000000", str(frozen), 5 * MS, "time-frozen", ok
    )


def test_frozen_id_only_when_something_froze() -> None:
    row = the_row(rows_of(observation(replace(CPU, frozen_ns=1))), "frozen", "MONOTONIC")
    assert (row.verdict_id, row.ok) == ("time-frozen", True)  # 1 ns: within a tick of none
    assert the_row(rows_of(observation()), "frozen", "MONOTONIC").verdict_id == ""


@pytest.mark.parametrize(
    ("lost", "ok"),
    [
        (HPET_WRAP + LOSS_TOL, True),
        (HPET_WRAP + LOSS_TOL + 1, False),
        (HPET_WRAP - LOSS_TOL, True),
        (HPET_WRAP - LOSS_TOL - 1, False),
    ],
)
def test_loss_tolerance_grows_with_the_window(lost: int, ok: bool) -> None:
    cpu = replace(CPU, lost_ns=per_clock(0, 0, 0, lost))
    prediction = replace(PREDICTION, lost=bands(Band(HPET_WRAP, HPET_WRAP)))
    row = the_row(rows_of(observation(cpu), prediction), "lost", "MONOTONIC_RAW")
    assert row == Row("lost", "MONOTONIC_RAW", 0, str(HPET_WRAP), str(lost), 1_200_000, "wrap-loss", ok)


def test_loss_tolerance_without_a_window() -> None:
    cpu = replace(CPU, window_ns=0, lost_ns=per_clock(SAMPLE_TOL_NS, 0, SAMPLE_TOL_NS + 1, 0))
    rows = rows_of(observation(cpu))
    assert [the_row(rows, "lost", c).tolerance_ns for c in CLOCKS] == [SAMPLE_TOL_NS] * 4
    assert the_row(rows, "lost", "REALTIME").ok
    assert not the_row(rows, "lost", "BOOTTIME").ok


@pytest.mark.parametrize(
    ("lost", "verdict_id"),
    [
        (LOSS_ID_THRESHOLD_NS - 1, ""),
        (LOSS_ID_THRESHOLD_NS, "wrap-loss"),
        (-5 * MS, ""),
        (4_686_968_874, "wrap-loss"),
    ],
)
def test_wrap_loss_id_from_a_millisecond(lost: int, verdict_id: str) -> None:
    row = the_row(rows_of(observation(replace(CPU, lost_ns=per_clock(lost, 0, 0, 0)))), "lost", "REALTIME")
    assert row.verdict_id == verdict_id


# ---------------------------------------------------------------------------
# Overflow garbage: either the leap of a reader that read before the tick, or nothing


def test_no_overflow_row_without_a_predicted_overflow() -> None:
    assert [row for row in rows_of(observation()) if row.quantity == "overflow"] == []


@pytest.mark.parametrize(
    ("leap", "ok", "verdict_id"),
    [
        (0, True, ""),
        (SAMPLE_TOL_NS, True, ""),
        (SAMPLE_TOL_NS + 1, False, ""),
        (500 * MS, False, ""),
        (LEAP - SAMPLE_TOL_NS, True, "overflow-garbage"),
        (LEAP + SAMPLE_TOL_NS + 1, False, ""),
    ],
)
def test_overflow_leap(leap: int, ok: bool, verdict_id: str) -> None:
    cpu = replace(CPU, correction_ns={**ZERO, "MONOTONIC": leap})
    rows = rows_of(observation(cpu), replace(PREDICTION, overflow=Band(LEAP, LEAP)))
    row = the_row(rows, "overflow", "MONOTONIC")
    assert row == Row("overflow", "MONOTONIC", 0, f"0 or {LEAP}", str(leap), SAMPLE_TOL_NS, verdict_id, ok)
    assert rows.index(row) == 13  # after the four lost rows


# ---------------------------------------------------------------------------
# Kernel messages


@pytest.mark.parametrize(
    ("verdict", "printed", "predicted", "observed", "verdict_id", "ok"),
    [
        (Verdict("yes", 26, 44), None, "yes (seconds 26..44)", "no", "", False),
        (Verdict("no"), 22, "no", "yes (seconds 22)", "softlockup", False),
        (Verdict("no"), None, "no", "no", "", True),
        (Verdict("maybe", 0, 44), None, "maybe", "no", "", True),
        (Verdict("maybe", 0, 44), 44, "maybe", "yes (seconds 44)", "softlockup", True),
        (Verdict("maybe", 0, 44), 99, "maybe", "yes (seconds 99)", "softlockup", True),  # figures unjudged
        (Verdict("yes", 26, 44), 25, "yes (seconds 26..44)", "yes (seconds 25)", "softlockup", False),
        (Verdict("yes", 26, 44), 26, "yes (seconds 26..44)", "yes (seconds 26)", "softlockup", True),
        (Verdict("yes", 26, 44), 44, "yes (seconds 26..44)", "yes (seconds 44)", "softlockup", True),
        (Verdict("yes", 26, 44), 45, "yes (seconds 26..44)", "yes (seconds 45)", "softlockup", False),
    ],
)
def test_softlockup_row(
    verdict: Verdict, printed: int | None, predicted: str, observed: str, verdict_id: str, ok: bool
) -> None:
    messages = [] if printed is None else [softlockup(printed)]
    rows = rows_of(observation(messages=messages), replace(PREDICTION, softlockup=verdict))
    assert the_row(rows, "softlockup") == Row("softlockup", "", None, predicted, observed, 0, verdict_id, ok)


def test_only_messages_after_the_pause_count() -> None:
    rows = rows_of(observation(boot=[softlockup(22)]), replace(PREDICTION, long_readout=Verdict("no")))
    assert the_row(rows, "softlockup").ok
    assert the_row(rows, "softlockup").observed == "no"


@pytest.mark.parametrize(
    ("cs_nsec", "ok"),
    [
        (2_536_000_000 + SAMPLE_TOL_NS, True),
        (2_536_000_000 + SAMPLE_TOL_NS + 1, False),
        (2_000_000_000 - SAMPLE_TOL_NS, True),
        (2_000_000_000 - SAMPLE_TOL_NS - 1, False),
    ],
)
def test_long_readout_figure_within_a_millisecond(cs_nsec: int, ok: bool) -> None:
    rows = rows_of(observation(messages=[long_readout(cs_nsec, cs_nsec)]))
    row = the_row(rows, "long-readout")
    assert (row.observed, row.verdict_id, row.ok) == (f"yes (cs_nsec {cs_nsec})", "", ok)


def test_long_readout_predicted_yes_but_not_printed() -> None:
    row = the_row(rows_of(observation()), "long-readout")
    assert row == Row("long-readout", "", None, "yes (cs_nsec 2000000000..2536000000)", "no", 0, "", False)
    assert [r for r in rows_of(observation()) if r.quantity == "long-readout wd_nsec"] == []


def test_long_readout_printed_when_not_watched() -> None:
    prediction = replace(PREDICTION, long_readout=Verdict("no"), watchdog_wrap_ns=0)
    rows = rows_of(observation(messages=[long_readout(2_300_000_000, 2_300_000_000)]), prediction)
    assert the_row(rows, "long-readout") == Row(
        "long-readout", "", None, "no", "yes (cs_nsec 2300000000)", 0, "", False
    )
    # No watchdog predicted: its own figure is not checked.
    assert [r for r in rows if r.quantity == "long-readout wd_nsec"] == []


@pytest.mark.parametrize(
    ("wd_nsec", "ok"),
    [
        (512_071_710, True),  # hpet-negative: the TSC's 43.46 s modulo the HPET's 42.95 s wrap
        (512_402_172 + 1_869_241, True),
        (512_402_172 + 1_869_242, False),
        (512_402_172 - 1_869_241, True),
        (512_402_172 - 1_869_242, False),
        (43_462_075_132, False),  # an HPET that never wrapped
    ],
)
def test_watchdog_reading_is_the_interval_modulo_the_hpet_wrap(wd_nsec: int, ok: bool) -> None:
    prediction = replace(PREDICTION, long_readout=Verdict("maybe", 0, 0))
    rows = rows_of(observation(messages=[long_readout(43_462_075_132, wd_nsec)]), prediction)
    # 1 ms + 20 ppm of 43.46 s = 1.869241 ms.
    assert the_row(rows, "long-readout wd_nsec") == Row(
        "long-readout wd_nsec", "", None, "512402172", str(wd_nsec), 1_869_241, "", ok
    )


def test_watchdog_reading_adds_back_wraps_of_cs_nsec() -> None:
    # cs_nsec printed 2**40 short (its u64 delta * mult wrapped once): the HPET saw the whole interval.
    interval = 1_200_000_000_000
    prediction = replace(
        PREDICTION, long_readout=Verdict("maybe"), watchdog_cs_wraps=1, watchdog_cs_wrap_ns=LEAP
    )
    expected = interval % HPET_WRAP  # 40_358_830_080
    rows = rows_of(observation(messages=[long_readout(interval - LEAP, expected)]), prediction)
    row = the_row(rows, "long-readout wd_nsec")
    assert (row.predicted, row.tolerance_ns, row.ok) == ("40358830080", 25_000_000, True)


def test_clocksource_marked_unstable_is_a_failure() -> None:
    line = (
        "[   41.000001] clocksource: timekeeping watchdog on CPU0: "
        "Marking clocksource 'tsc' as unstable because the skew is too large:"
    )
    rows = rows_of(observation(messages=[message("clocksource-unstable", {"name": "tsc"}, line)]))
    assert the_row(rows, "clocksource-unstable") == Row(
        "clocksource-unstable", "", None, "no", "yes", 0, "clocksource-unstable", False
    )


# The last 60 characters of each line.
RCU_TAIL = "00000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"
HUNG_TAIL = "0012] INFO: task probe:63 blocked for more than 120 seconds."


def test_unmodelled_messages_are_shown_not_judged() -> None:
    rcu = message(
        "rcu-stall",
        {"flavour": "rcu_preempt"},
        "[   61.500000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    )
    hung = message(
        "hung-task",
        {"task": "probe:63", "seconds": "120"},
        "[  245.760012] INFO: task probe:63 blocked for more than 120 seconds.",
    )
    unstable_tsc = message(
        "tsc-unstable",
        {"reason": "clocksource watchdog"},
        "[ 9.1] tsc: Marking TSC unstable due to clocksource watchdog",
    )
    rows = rows_of(
        observation(messages=[unstable_tsc, hung, rcu, long_readout(2_300_000_000, 2_300_000_000)])
    )
    assert rows[-3:] == [
        Row("rcu-stall", "", None, "not modelled", RCU_TAIL, 0, "rcu-stall", True),
        Row("hung-task", "", None, "not modelled", HUNG_TAIL, 0, "hung-task", True),
        Row("tsc-unstable", "", None, "not modelled", unstable_tsc.line, 0, "tsc-unstable", True),
    ]
    assert all(row.ok for row in rows)


# ---------------------------------------------------------------------------
# Several vCPUs: each against its own prediction, the kernel against vCPU 0's


def test_each_cpu_against_its_own_prediction() -> None:
    cpu1 = replace(CPU, cpu=1, tsc_step_ns=2_020_000_000, jump_ns=per_clock(*[2_020_000_000] * 4))
    p1 = replace(
        PREDICTION, jump=bands(Band(2_020_000_000, 2_020_000_000)), softlockup=Verdict("yes", 30, 31)
    )
    obs = observation(CPU, cpu1, messages=[long_readout(2_300_000_000, 2_300_000_000)])
    rows = compare(obs, {0: PREDICTION, 1: p1}, tick_ns=TICK)
    jumps = [(row.cpu, row.clock, row.ok) for row in rows if row.quantity == "jump"]
    assert jumps == [(0, clock, True) for clock in CLOCKS] + [(1, clock, True) for clock in CLOCKS]
    # vCPU 1's 20 ms longer step would be out of vCPU 0's band.
    swapped = compare(obs, {0: PREDICTION, 1: PREDICTION}, tick_ns=TICK)
    assert [row.ok for row in swapped if row.quantity == "jump" and row.cpu == 1] == [False] * 4
    # Kernel messages once, against vCPU 0's prediction (no soft lockup there).
    assert the_row(rows, "softlockup") == Row("softlockup", "", None, "no", "no", 0, "", True)
    assert [row.cpu for row in rows].count(None) == 4
