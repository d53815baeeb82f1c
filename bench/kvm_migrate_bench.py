"""What the clock state adds to a real migration's downtime, per VMM policy, on this host's /dev/kvm.

Run as ``.venv/bin/python bench/kvm_migrate_bench.py [--repeat R]``.

Each policy of ``tsclab kvm migrate`` migrates the probe guest ``repeat``
times between two VMM processes over TCP on 127.0.0.1 (no artificial
stop). Printed per policy, as the median over the runs: the clock-state
time - the policy's steps inside the stop on both sides plus the CLOCK
message (encode, send, receive, decode) - next to the total downtime
measured in the same run (host realtime from the guest's last reading on
the source to its first on the destination), and their ratio; then the
clock-state time's parts and its smallest value. The downtime is the
baseline: the rest of it is the probe guest's 2 MiB of RAM, the CPU state
and the processes' scheduling. Nothing here is a target a test enforces;
the aim is a clock-state time well under 1 ms. Without a usable /dev/kvm
the benchmark prints why and exits 0.
"""

from __future__ import annotations

import argparse
import statistics

from tsclab.kvm.errors import GuestError, KvmError, KvmUnavailableError
from tsclab.kvm.facts import host_facts
from tsclab.kvm.migrate import MigrationOptions, migrate
from tsclab.kvm.system import DEVICE, Kvm
from tsclab.kvm.vmm_process import MIGRATE_POLICIES

HEAD = ("clock state", "downtime", "ratio", "source", "message", "destination", "min clock")


def _us(ns: float) -> str:
    return f"{ns / 1e3:.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    try:
        with Kvm.open(DEVICE) as kvm:
            facts = host_facts(kvm)
    except (KvmUnavailableError, KvmError, GuestError) as err:
        print(f"kvm_migrate_bench: skipped: no usable KVM: {err}")
        return
    print(
        f"kvm_migrate_bench: Linux {facts.kernel}, {', '.join(facts.backends)}, {args.repeat} runs per policy"
    )
    print(f"{'policy':<20}" + "".join(f"{h:>13}" for h in HEAD))
    for name in MIGRATE_POLICIES:
        totals: list[int] = []
        downtimes: list[int] = []
        parts: dict[str, list[int]] = {"source_steps": [], "clock_message": [], "destination_steps": []}
        label = name
        for _ in range(args.repeat):
            report = migrate(MigrationOptions(policy=name), facts)
            if not report.ok or report.measurement is None:
                print(f"{name:<20} failed: {report.error}")
                break
            label = report.policy.label
            totals.append(report.clock_state["total"])
            downtimes.append(report.measurement.downtime_ns)
            for key, values in parts.items():
                values.append(report.clock_state[key])
        else:
            clock, down = statistics.median(totals), statistics.median(downtimes)
            cells = (
                _us(clock),
                _us(down),
                f"{clock / down:.3f}",
                *(_us(statistics.median(values)) for values in parts.values()),
                _us(min(totals)),
            )
            print(f"{label:<20}" + "".join(f"{cell:>13}" for cell in cells))


if __name__ == "__main__":
    main()
