"""Throughput of the reader arithmetic: scalar readers against the vectorised ones.

Run as ``.venv/bin/python bench/reader_bench.py [--n N] [--repeat R]``.

For each reader variant (6.10+ ``protected``, pre-6.10 ``wrapping``, 4.1-6.9
``debug-capping``) and two input mixes, prints the scalar path's reads/s
(:func:`tsclab.kernel.readers.timekeeping_cycles_to_ns`, one call per value),
the vectorised path's reads/s
(:func:`tsclab.kernel.vectorised.timekeeping_cycles_to_ns_array`, one call for
all values) and the ratio of the two, both measured in this run on the same
values.  Before timing, the two paths are checked to agree on a sample.

Input mixes, for a 2.5 GHz TSC (``max_cycles`` ~ 990 s):

* ``fast-path``: deltas up to ``max_cycles``, the everyday read;
* ``pause-sweep``: deltas log-uniform from 1 cycle to the full 64-bit mask,
  mostly past ``max_cycles`` (the 6.10+ slow path and the negative-motion
  branch), as a sweep over VM pause lengths is.

Best-of-``repeat`` wall time is used for each path; the scalar path runs on
every value (no extrapolation), so the default 10**6 values take a few
seconds per row.
"""

from __future__ import annotations

import argparse

import numpy as np
import numpy.typing as npt
from timing import best_of

from tsclab.arith import NSEC_PER_SEC
from tsclab.clocksource import register
from tsclab.kernel.profiles import PROFILES, KernelProfile
from tsclab.kernel.readers import TkReadBase, timekeeping_cycles_to_ns
from tsclab.kernel.vectorised import timekeeping_cycles_to_ns_array

VARIANTS: dict[str, KernelProfile] = {
    "protected": PROFILES["linux-6.10"],
    "wrapping": PROFILES["linux-6.1"],
    "debug-capping": PROFILES["linux-6.1-debug"],
}


def make_state() -> TkReadBase:
    clock = register("tsc", 64, freq_khz=2_500_000)
    tkr = TkReadBase.for_clock(clock, cycle_last=0x1234_5678_9ABC)
    tkr.xtime_nsec = (NSEC_PER_SEC // 2) << clock.shift
    return tkr


def make_cycles(tkr: TkReadBase, n: int, mix: str, rng: np.random.Generator) -> npt.NDArray[np.uint64]:
    if mix == "fast-path":
        deltas = rng.integers(0, tkr.clock.max_cycles, size=n, dtype=np.uint64, endpoint=True)
    else:
        # log2(delta) uniform in [0, 64): each octave of pause length alike.
        exponents = rng.uniform(0.0, 64.0, size=n)
        deltas = np.minimum(np.exp2(exponents), float(2**64 - 2048)).astype(np.uint64)
    cycles: npt.NDArray[np.uint64] = deltas + np.uint64(tkr.cycle_last)
    return cycles


def check_agreement(tkr: TkReadBase, cycles: npt.NDArray[np.uint64], profile: KernelProfile) -> None:
    sample = cycles[:: max(1, cycles.size // 2000)]
    got = timekeeping_cycles_to_ns_array(tkr, sample, profile).ns.tolist()
    want = [timekeeping_cycles_to_ns(tkr, c, profile)[0] for c in sample.tolist()]
    if got != want:
        raise SystemExit(f"vectorised and scalar readers disagree for {profile.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="counter values per run (default 10**6)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; the best is kept (default 3)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    n: int = args.n
    repeat: int = args.repeat

    tkr = make_state()
    rng = np.random.default_rng(args.seed)
    print(f"reader throughput, TSC 2.5 GHz, {n:,} values, best of {repeat}, numpy {np.__version__}")
    header = f"{'variant':<14} {'mix':<12} {'scalar reads/s':>15} {'vector reads/s':>15} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    ratios: list[tuple[float, str]] = []
    for mix in ("fast-path", "pause-sweep"):
        cycles = make_cycles(tkr, n, mix, rng)
        values: list[int] = cycles.tolist()  # the scalar path's natural input: Python ints
        for variant, profile in VARIANTS.items():
            check_agreement(tkr, cycles, profile)

            def scalar(profile: KernelProfile = profile, values: list[int] = values) -> None:
                for c in values:
                    timekeeping_cycles_to_ns(tkr, c, profile)

            def vector(profile: KernelProfile = profile, cycles: npt.NDArray[np.uint64] = cycles) -> None:
                timekeeping_cycles_to_ns_array(tkr, cycles, profile)

            t_scalar = best_of(repeat, scalar)
            t_vector = best_of(repeat, vector)
            ratios.append((t_scalar / t_vector, f"{variant} {mix}"))
            print(
                f"{variant:<14} {mix:<12} {n / t_scalar:>15,.0f} {n / t_vector:>15,.0f} "
                f"{t_scalar / t_vector:>8.1f}x"
            )
    worst, where = min(ratios)
    print(f"smallest speed-up: {worst:.1f}x ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
