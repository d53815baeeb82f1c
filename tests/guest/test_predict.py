"""guest/predict.py: the model's bands and verdicts for the suite's pauses.

Each ``predict()`` runs the model once per phase (three when the phase is
not known), the HPET ones for a whole 43 s wrap of ticks: the runs are
cached and kept few.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from tsclab.clocksource.counters import ACPI_PM_HZ
from tsclab.guest.predict import Band, GuestFacts, Prediction, guest_clocksource, predict
from tsclab.guest.trace import CLOCKS
from tsclab.kernel.lockup_rules import Verdict
from tsclab.kernel.profiles import get_profile

MS = 1_000_000
TICK = 4 * MS  # HZ=250
ACPI_PM_WRAP = (1 << 24) * 1_000_000_000 // ACPI_PM_HZ  # 4_686_968_874 ns
HPET_WRAP = (1 << 32) * 10  # 42_949_672_960 ns: 100 MHz, 32 bits
DATA = Path(__file__).parent / "data"


def facts(
    clocksource: str, *, tsc_watched: bool = True, sched_clock_stable: bool = True, tsc_khz: int = 2_596_131
) -> GuestFacts:
    return GuestFacts(
        clocksource=clocksource,
        tsc_khz=tsc_khz,
        hz=250,
        vcpus=1,
        sched_clock_stable=sched_clock_stable,
        tsc_watched=tsc_watched,
    )


@cache
def prediction(
    clocksource: str,
    pause_ns: int,
    *,
    tsc_watched: bool = True,
    sched_clock_stable: bool = True,
    since_update_ns: int | None = None,
) -> Prediction:
    guest = facts(clocksource, tsc_watched=tsc_watched, sched_clock_stable=sched_clock_stable)
    return predict(guest, get_profile("linux-6.1"), pause_ns, since_update_ns)


def near(band: Band, value: int, tolerance: int) -> bool:
    return value - tolerance <= band.low <= band.high <= value + tolerance


# ---------------------------------------------------------------------------
# acpi_pm: 3 579 545 Hz, 24 bits - half-width 2.34 s, wrap 4.687 s


def test_acpi_pm_below_half_width_one_clean_jump() -> None:
    p = prediction("acpi_pm", 1_500_000_000)
    assert p.guest_pause_ns == 1_500_000_000
    assert p.clocksource.name == "acpi_pm"
    for clock in CLOCKS:
        assert near(p.jump[clock], 1_500_000_000, 1_000), clock
        assert p.backwards[clock] == Band(0, 0), clock
        assert near(p.lost[clock], 0, MS - 1), clock
    assert p.frozen.high < MS
    assert p.overflow == Band(0, 0)
    assert p.softlockup == Verdict("no")
    assert p.clocksource_unstable == Verdict("no")
    # The TSC is watched: 1.5 s is past the watchdog's 1 s, so it skips and says so.
    assert p.long_readout.state == "yes"
    assert 1_500_000_000 <= p.long_readout.low < 1_500_001_000
    assert 2_036_000_000 <= p.long_readout.high < 2_036_000_000 + TICK


def test_acpi_pm_past_half_width_steps_back_freezes_and_loses_a_wrap() -> None:
    pause = 3_500_000_000
    p = prediction("acpi_pm", pause)
    for clock in CLOCKS:
        back = p.backwards[clock]
        # Back to the last update: within a tick (plus the accumulation
        # remainder the tick grid leaves, here ~25 us) of the read before the pause.
        assert 0 < back.low < back.high <= TICK + 100_000, clock
        # Every phase of the tick is tried: the band is a tick wide, less the model's read resolution.
        assert TICK - 100_000 <= back.high - back.low < TICK, clock
        # The jump is that step back, nothing more.
        assert p.jump[clock] == Band(-back.high, -back.low), clock
        assert abs(p.lost[clock].low - ACPI_PM_WRAP) < MS, clock
        assert p.lost[clock].low == p.lost[clock].high, clock
    # Frozen until the counter comes round to where it was: the wrap less the
    # pause, less where in its tick the pause fell.
    assert TICK - 100_000 <= p.frozen.high - p.frozen.low <= TICK  # the model reads on the tick grid
    assert ACPI_PM_WRAP - pause - 2 * TICK <= p.frozen.low
    assert ACPI_PM_WRAP - pause - TICK <= p.frozen.high <= ACPI_PM_WRAP - pause
    assert p.softlockup == Verdict("no")  # 3.5 + 1.2 s is far from 20 units
    assert p.long_readout.state == "yes"


def test_acpi_pm_known_phase_narrows_the_bands() -> None:
    every = prediction("acpi_pm", 3_500_000_000)
    known = prediction("acpi_pm", 3_500_000_000, since_update_ns=2 * MS)
    at_update = prediction("acpi_pm", 3_500_000_000, since_update_ns=0)
    back, frozen = known.backwards["MONOTONIC"], known.frozen
    assert back.low == back.high
    assert frozen.low == frozen.high
    assert every.backwards["MONOTONIC"].low <= back.low <= every.backwards["MONOTONIC"].high
    assert every.frozen.low <= frozen.low <= every.frozen.high
    # The clamped read returns the update's time: the step back is the time
    # since the update, as the guest measured it (MONOTONIC - COARSE).
    assert abs(back.low - 2 * MS) < 1_000
    # Further from the update: more step back, as much less freeze - the same time lost.
    base_back, base_frozen = at_update.backwards["MONOTONIC"].low, at_update.frozen.low
    assert back.low > base_back
    assert abs((back.low + frozen.low) - (base_back + base_frozen)) < 1_000
    assert known.lost == every.lost


def test_acpi_pm_past_the_wrap_jumps_by_the_remainder() -> None:
    pause = 6_000_000_000
    p = prediction("acpi_pm", pause)
    for clock in CLOCKS:
        assert near(p.jump[clock], pause - ACPI_PM_WRAP, MS), clock
        assert p.backwards[clock] == Band(0, 0), clock
        assert abs(p.lost[clock].low - ACPI_PM_WRAP) < MS, clock
        assert abs(p.lost[clock].high - ACPI_PM_WRAP) < MS, clock
    assert p.frozen.high < MS
    assert p.softlockup == Verdict("no")


# ---------------------------------------------------------------------------
# hpet: QEMU's 100 MHz, 32 bits - half-width 21.47 s, wrap 42.95 s


def test_hpet_below_half_width() -> None:
    p = prediction("hpet", 15_000_000_000)
    for clock in CLOCKS:
        assert p.jump[clock] == Band(15_000_000_000, 15_000_000_000), clock
        assert p.backwards[clock] == Band(0, 0), clock
        assert p.lost[clock] == Band(0, 0), clock
    assert p.frozen == Band(0, 0)
    # 15 s + up to a 4 s sample period is at most 18 units of 2**30 ns.
    assert p.softlockup == Verdict("no")
    assert p.long_readout.state == "yes"
    assert p.watchdog_wrap_ns == HPET_WRAP


def test_hpet_past_half_width_reports_a_soft_lockup_unless_a_message_comes_first() -> None:
    pause = 28_000_000_000
    quiet = prediction("hpet", pause, tsc_watched=False)
    for clock in CLOCKS:
        assert quiet.lost[clock] == Band(HPET_WRAP, HPET_WRAP), clock
        assert 0 <= quiet.backwards[clock].low <= quiet.backwards[clock].high <= TICK, clock
    assert quiet.frozen.high - quiet.frozen.low < TICK
    assert HPET_WRAP - pause - 2 * TICK <= quiet.frozen.low <= quiet.frozen.high <= HPET_WRAP - pause
    # local_clock sees the pause and the freeze: 28 s + 14.94 s .. + 4 s is 39..44 units.
    assert quiet.softlockup == Verdict("yes", 39, 44)
    assert quiet.long_readout == Verdict("no")
    assert quiet.watchdog_wrap_ns == 0

    # With the TSC watched, "Long readout interval" is printed after the freeze
    # and its console write may touch the soft-lockup watchdog first.
    watched = prediction("hpet", pause)
    assert watched.softlockup == Verdict("maybe", 0, 44)
    assert watched.long_readout.state == "yes"
    assert watched.long_readout.low >= pause + watched.frozen.low
    assert watched.watchdog_wrap_ns == HPET_WRAP


# ---------------------------------------------------------------------------
# tsc: 64 bits, no wrap in sight


def test_tsc_every_clock_jumps_by_the_pause() -> None:
    p = prediction("tsc", 5_000_000_000)
    for clock in CLOCKS:
        assert near(p.jump[clock], 5_000_000_000, 1_000), clock
        assert p.backwards[clock] == Band(0, 0), clock
        assert near(p.lost[clock], 0, 999), clock
    assert p.frozen == Band(0, 0)
    assert p.softlockup == Verdict("no")
    # cs_nsec: the TSC's own cyc2ns of the interval, 5 s up to 5 s + 500 ms + 36 ms of timer slack.
    lr = p.long_readout
    assert lr.state == "yes"
    assert 5_000_000_000 <= lr.low < 5_000_001_000
    assert 5_536_000_000 <= lr.high < 5_536_001_000
    # Debian's 6.1 converts the watchdog's delta overflow-safely: no wraps to add back.
    assert p.watchdog_cs_wraps == 0
    assert p.watchdog_cs_wrap_ns == 0
    assert p.watchdog_wrap_ns == HPET_WRAP
    assert p.watchdog_negative_ns == HPET_WRAP // 2


def test_tsc_not_watched_prints_no_long_readout() -> None:
    p = prediction("tsc", 5_000_000_000, tsc_watched=False)
    assert p.long_readout == Verdict("no")
    assert p.watchdog_wrap_ns == 0
    assert p.watchdog_cs_wraps == 0
    assert p.jump == prediction("tsc", 5_000_000_000).jump


def test_unstable_sched_clock_sees_only_ktimes_jump() -> None:
    # 30 s: 27.94 units at least, (30 s + 4 s) / 2**30 = 31.67 -> 32 at most.
    p = prediction("tsc", 30_000_000_000, tsc_watched=False, sched_clock_stable=False)
    assert p.softlockup == Verdict("yes", 27, 32)


# ---------------------------------------------------------------------------
# The clocksources as the guest registered them


REGISTERED = re.compile(
    r"clocksource: (?P<name>tsc|hpet|acpi_pm): mask: (?P<mask>0x[0-9a-f]+) "
    r"max_cycles: (?P<max_cycles>0x[0-9a-f]+), max_idle_ns: (?P<max_idle_ns>\d+) ns"
)
REFINED = re.compile(r"tsc: Refined TSC clocksource calibration: (\d+)\.(\d{3}) MHz")
CONSOLES = sorted(DATA.glob("*/console.log"))


@pytest.mark.parametrize("console", CONSOLES, ids=[path.parent.name for path in CONSOLES])
def test_guest_clocksource_matches_the_real_guests_registration(console: Path) -> None:
    """Each real boot's 'clocksource: <name>: mask: ...' lines, against the model's registration."""
    text = console.read_text()
    refined = REFINED.search(text)
    assert refined is not None
    tsc_khz = int(refined[1]) * 1000 + int(refined[2])
    seen = set()
    for line in REGISTERED.finditer(text):
        cs = guest_clocksource(facts(line["name"], tsc_khz=tsc_khz))
        assert cs.name == line["name"]
        printed = (int(line["mask"], 16), int(line["max_cycles"], 16), int(line["max_idle_ns"]))
        assert (cs.mask, cs.max_cycles, cs.max_idle_ns) == printed, line[0]
        seen.add(line["name"])
    assert seen == {"tsc", "hpet", "acpi_pm"}


def test_guest_clocksource_frequencies() -> None:
    assert guest_clocksource(facts("tsc")).freq_hz == 2_596_131_000
    assert guest_clocksource(facts("hpet")).freq_hz == 100_000_000
    assert guest_clocksource(facts("acpi_pm")).freq_hz == 3_579_545


@pytest.mark.parametrize("name", ["kvm-clock", "tsc-early", "jiffies", ""])
def test_guest_clocksource_unknown(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"no model of the guest clocksource {name!r}")):
        guest_clocksource(facts(name))


def test_steered_clocks_lose_what_monotonic_raw_loses() -> None:
    # The real acpi_pm-negative run lost 4_686_968_701 ns on MONOTONIC and 4_686_968_700 on MONOTONIC_RAW.
    for p in (prediction("acpi_pm", 1_500_000_000), prediction("acpi_pm", 3_500_000_000)):
        raw = p.lost["MONOTONIC_RAW"]
        for clock in ("REALTIME", "MONOTONIC", "BOOTTIME"):
            assert near(p.lost[clock], raw.low, 1_000), (clock, p.lost[clock], raw)


def test_watchdog_cs_nsec_wraps_on_a_kernel_without_the_safe_conversion() -> None:
    # linux-6.6 as released: clocksource_cyc2ns(), a u64 delta * mult, in the watchdog.
    facts = GuestFacts("tsc", 2_596_131, 250, 1, True, True)
    long_pause = 1_200_000_000_000
    wrapping = predict(facts, get_profile("linux-6.6"), long_pause)
    assert wrapping.watchdog_cs_wraps == 1
    assert wrapping.watchdog_cs_wrap_ns == 1 << 40
    # What it prints is the interval less one 2**40 ns wrap.
    assert wrapping.long_readout.state == "yes"
    assert abs(wrapping.long_readout.low - (long_pause - (1 << 40))) < 1_000_000
    safe = predict(facts, get_profile("linux-6.1"), long_pause)
    assert safe.watchdog_cs_wraps == 0
    assert abs(safe.long_readout.low - long_pause) < 1_000_000
