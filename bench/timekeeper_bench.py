"""Throughput of the timekeeper: ticks/s, and what a long pause costs the writer.

Run as ``.venv/bin/python bench/timekeeper_bench.py [--ticks N] [--repeat R]``.

Prints, for a 2.5 GHz TSC guest at HZ=250 on each kernel profile:

* ticks/s: ``update_wall_time()`` on the regular tick grid (one
  ``second_overflow()`` every 250 ticks), and kernel reads/s
  (``ktime_get()``) between ticks;
* the wall time of the one ``update_wall_time()`` after a 1-day pause
  against the one after a 1-second pause, and their ratio.  The writer's
  cost grows with what the kernel itself does for the pause - one
  ``second_overflow()`` per elapsed second, ~log2 accumulation steps per
  2 s chunk - so the ratio is about the number of seconds, by design: the
  kernel pays it too, with the timekeeper lock held and IRQs off.

Best-of-``repeat`` wall times, measured in this run; nothing is a target.
"""

from __future__ import annotations

import argparse
import time

from timing import best_of

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import register
from tsclab.kernel.ntp import NtpState
from tsclab.kernel.profiles import PROFILES
from tsclab.kernel.timekeeping import Timekeeping

HZ = 250
TSC = register("tsc", 64, freq_khz=2_500_000)


class Guest:
    """A timekeeper on a drift-free TSC moved by hand."""

    def __init__(self, profile: str) -> None:
        self.t = 0
        self.tkg = Timekeeping(TSC, PROFILES[profile], NtpState(hz=HZ), self.counter, hz=HZ)

    def counter(self) -> int:
        return self.t * TSC.freq_hz // NSEC_PER_SEC


def ticks_per_second(profile: str, ticks: int, repeat: int) -> tuple[float, float]:
    """(ticks/s, reads/s) on the regular tick grid."""
    tick_ns = NSEC_PER_SEC // HZ

    def run_ticks() -> None:
        guest = Guest(profile)
        for i in range(1, ticks + 1):
            guest.t = i * tick_ns
            guest.tkg.update_wall_time()

    guest = Guest(profile)
    guest.t = tick_ns // 2

    def run_reads() -> None:
        for _ in range(ticks):
            guest.tkg.ktime_get()

    return ticks / best_of(repeat, run_ticks), ticks / best_of(repeat, run_reads)


def first_update_after(profile: str, pause_ns: int, repeat: int) -> float:
    """Wall time (s) of the one update_wall_time() that follows a pause."""
    best = float("inf")
    for _ in range(repeat):
        guest = Guest(profile)
        guest.t = NSEC_PER_SEC + pause_ns
        start = time.perf_counter()
        guest.tkg.update_wall_time()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20_000, help="ticks (and reads) per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    print(f"timekeeper throughput, TSC 2.5 GHz, HZ={HZ}, {args.ticks:,} ticks, best of {args.repeat}")
    header = f"{'profile':<16}{'ticks/s':>12}{'reads/s':>12}{'1 s pause':>12}{'1 d pause':>12}{'ratio':>10}"
    print(header)
    print("-" * len(header))
    for name in PROFILES:
        ticks, reads = ticks_per_second(name, args.ticks, args.repeat)
        second = first_update_after(name, NSEC_PER_SEC, args.repeat)
        day = first_update_after(name, 86_400 * NSEC_PER_SEC, args.repeat)
        print(
            f"{name:<16}{ticks:>12,.0f}{reads:>12,.0f}{second * 1e3:>10.3f}ms{day * 1e3:>10.1f}ms"
            f"{day / second:>9.0f}x"
        )


if __name__ == "__main__":
    main()
