"""What the source and destination VMM processes share: the policies they run, the stream's shape,
and how each hands its result to the parent (one JSON document, the last line of its stdout).

Exit codes of both processes: 0 their part done, 1 the migration failed on
their side (the result says why), 3 ``/dev/kvm`` unusable.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tsclab.host.vmm_policies import UnknownPolicyError, VmmPolicy, resolve_policy
from tsclab.kvm.errors import GuestError, KvmError
from tsclab.kvm.wire import WireError

#: The policies ``tsclab kvm migrate`` runs for real (issue 7): kvmclock frozen (QEMU), advanced by
#: the elapsed realtime (the documented algorithm), the seed's TSC state, and the nap protocol.
MIGRATE_POLICIES = ("qemu", "upstream-doc", "tsc-state", "nap")

RAM_CHUNK = 512 * 1024  # guest memory travels in messages of this size
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_KVM = 3

#: Failures a VMM process reports as a failed migration rather than a crash.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (WireError, KvmError, GuestError, OSError, ValueError)


class UnsupportedPolicyError(ValueError):
    """A policy name ``tsclab kvm migrate`` does not run."""


def migrate_policy(spec: str) -> VmmPolicy:
    """``name`` or ``name@version`` of :data:`MIGRATE_POLICIES`; ValueError naming the choices otherwise."""
    try:
        policy = resolve_policy(spec)
    except UnknownPolicyError:
        policy = None
    if policy is None or policy.name not in MIGRATE_POLICIES:
        choices = ", ".join(MIGRATE_POLICIES)
        raise UnsupportedPolicyError(
            f"policy {spec!r} is not one tsclab kvm migrate runs; expected one of: {choices}"
        )
    return policy


def emit(record: dict[str, Any]) -> None:
    """The process's result: one JSON line, keys sorted, flushed."""
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def error_fields(err: BaseException, stage: str) -> dict[str, Any]:
    return {"error": str(err) or type(err).__name__, "error_kind": type(err).__name__, "stage": stage}


def perf_ns() -> int:
    return time.perf_counter_ns()
