"""Speed of the simulator on a reference scenario, and what a long pause costs it.

Run as ``.venv/bin/python bench/sim_bench.py [--repeat R]``.

The reference scenario: 4 vCPUs at HZ=250, a busy reader on each (every
10 ms, all five clocks through the vDSO), an app timer, a 2.5 GHz TSC guest
on linux-6.13 under QEMU, going through a pause, a SIGSTOP, a snapshot and
a live migration, each 1 s, then 20 s of settling.  Printed:

* simulated seconds per wall second on it;
* the wall time of the same scenario with the pause lasting one day instead
  of one second, and the ratio of the two (aim: under 2).  The simulator
  runs no ticks while the guest is stopped; the day costs only what the
  kernel itself does on resume - one ``second_overflow()`` per elapsed
  second in the first ``update_wall_time()``.

Best-of-``repeat`` wall times, measured in this run against each other;
nothing here is a target a test enforces.
"""

from __future__ import annotations

import argparse

from timing import best_of

from tsclab.arith import NSEC_PER_SEC
from tsclab.lab import run_one
from tsclab.scenario.model import Event, GuestSpec, HostSpec, Scenario, Workload
from tsclab.sim.run import run_end_ns

S = NSEC_PER_SEC
DAY = 86_400 * S


def reference(pause_ns: int) -> Scenario:
    readers = tuple(Workload("reader", v, every_ns=10_000_000) for v in range(4))
    events = (
        Event(10 * S, "pause", pause_ns),
        Event(15 * S + pause_ns, "stop", 1 * S),
        Event(20 * S + pause_ns, "snapshot", 1 * S),
        Event(25 * S + pause_ns, "migrate", 1 * S, to="dst", precopy_ns=1 * S),
    )
    return Scenario(
        name="bench-reference",
        description="4 vCPUs, HZ=250, readers on each, four interruptions",
        guest=GuestSpec(
            vcpus=4,
            clocksource="tsc",
            kernels=("linux-6.13",),
            hz=250,
            watchdog="hpet",
            workload=(*readers, Workload("timer", 0, every_ns=10_000_000, name="app-timer")),
        ),
        hosts=(HostSpec("src", 2_500_000), HostSpec("dst", 2_500_000)),
        vmms=("qemu",),
        events=events,
        settle_ns=20 * S,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    short, long = reference(1 * S), reference(DAY)
    wall_short = best_of(args.repeat, lambda: run_one(short, "linux-6.13", "qemu", 0))
    wall_long = best_of(args.repeat, lambda: run_one(long, "linux-6.13", "qemu", 0))
    sim_short = run_end_ns(short) / S
    # The VM is stopped during the pause: what ran is the rest.
    ran_long = (run_end_ns(long) - DAY) / S
    samples = len(run_one(short, "linux-6.13", "qemu", 0).trace.samples)
    print("reference: 4 vCPUs, HZ=250, readers every 10 ms, pause + SIGSTOP + snapshot + migration")
    print(
        f"  1 s pause : {sim_short:8.1f} simulated s in {wall_short:6.2f} s wall "
        f"= {sim_short / wall_short:7.1f} simulated s per wall s ({samples} clock reads)"
    )
    print(
        f"  1 day pause: {run_end_ns(long) / S:8.1f} simulated s ({ran_long:.1f} s of it running) "
        f"in {wall_long:6.2f} s wall"
    )
    print(f"  wall time, 1-day pause / 1-s pause: {wall_long / wall_short:.2f} (aim: < 2)")


if __name__ == "__main__":
    main()
