"""Speed of the interleaving explorer, and what its partial-order reduction saves.

Run as ``.venv/bin/python bench/explore_bench.py [--repeat R]``.

For each model of the ``thread`` group of ``tsclab explore`` (bounded
scopes: 2-3 processes, depth 64), and for the nap protocol's
``nap-frozen-tsc`` and ``nap-unresponsive`` scopes (5 processes: the
host, the guest's nap work, the tick, a reader of three clocks and the
counter; one nap of 2 h; docs/nap-protocol.md section 6), the explorer
runs with the sleep-set reduction and with plain enumeration, in this run.
Printed: states/s and schedules/s with the reduction (best of ``repeat``
wall times), the schedules each way, and the reduction factor -
transitions of plain enumeration over transitions with the reduction
(both visit every state; the reduction prunes transitions only, and the
schedules it leaves show the pruning best).  Nothing here is a target a
test enforces.
"""

from __future__ import annotations

import argparse
from functools import partial

from timing import best_of

from tsclab.nap.explore_model import NAP_MODELS
from tsclab.sim.explore import explore
from tsclab.sim.explore_models import MODELS

BENCH_MODELS = {**MODELS, **{name: NAP_MODELS[name] for name in ("nap-frozen-tsc", "nap-unresponsive")}}

DEPTH = 64
HEAD = ("states", "states/s", "sched POR", "sched/s", "sched plain", "trans plain", "trans POR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{'model':<30}" + "".join(f"{h:>12}" for h in HEAD) + f"{'factor':>8}")
    for name, build in BENCH_MODELS.items():
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
        print(f"{name:<30}" + "".join(f"{f:>12}" for f in figures) + f"{factor:>8.2f}")
    print("factor: transitions of plain enumeration over those with sleep sets; schedules 0: a cycle")


if __name__ == "__main__":
    main()
