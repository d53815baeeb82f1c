"""Speed of the interleaving explorer, and what its partial-order reduction saves.

Run as ``.venv/bin/python bench/explore_bench.py [--repeat R]``.

For each model of ``tsclab explore`` (bounded scopes: 2-3 processes,
depth 64) the explorer runs with the sleep-set reduction and with plain
enumeration, in this run.  Printed: states/s and schedules/s with the
reduction (best of ``repeat`` wall times), the schedules each way, and the
reduction factor - transitions of plain enumeration over transitions with
the reduction (both visit every state; the reduction prunes transitions
only, and the schedules it leaves show the pruning best).  Nothing here is
a target a test enforces.
"""

from __future__ import annotations

import argparse
from functools import partial

from timing import best_of

from tsclab.sim.explore import explore
from tsclab.sim.explore_models import MODELS

DEPTH = 64
HEAD = ("states", "states/s", "sched POR", "sched/s", "sched plain", "trans plain", "trans POR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':<28}" + "".join(f"{h:>12}" for h in HEAD) + f"{'factor':>8}")
    for name, build in MODELS.items():
        model = build()
        reduced = explore(model, max_depth=DEPTH, reduction=True)
        plain = explore(model, max_depth=DEPTH, reduction=False)
        wall = best_of(args.repeat, partial(explore, model, max_depth=DEPTH, reduction=True))
        schedules, schedules_plain = reduced.schedules or 0, plain.schedules or 0
        figures = (
            reduced.states,
            round(reduced.states / wall),
            schedules,
            round(schedules / wall),
            schedules_plain,
            plain.transitions,
            reduced.transitions,
        )
        factor = plain.transitions / reduced.transitions
        print(f"{name:<28}" + "".join(f"{f:>12}" for f in figures) + f"{factor:>8.2f}")
    print("factor: transitions of plain enumeration over those with sleep sets; schedules 0: a cycle")


if __name__ == "__main__":
    main()
