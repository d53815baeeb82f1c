"""What a migration carries from the source VMM to the destination's: the real counterpart of the
model's ``tsclab.host.vmm_steps.SavedState``, filled by the policy's steps, as JSON.

Per vCPU values are keyed by vCPU id; every value is a plain int so that
the state travels in the ``CLOCK`` message unchanged (``docs/kvm.md``,
"Migration").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tsclab.kvm.clock import ClockData

# The seed's flags (KVM_{GET|SET}_TSC_STATE v2, never merged):
TSC_STATE_TIMESTAMP_VALID = 1
TSC_STATE_TSC_ADJUST_VALID = 2


@dataclass(frozen=True, slots=True)
class TscState:
    """``struct kvm_tsc_state`` of the seed's v2: host realtime and the guest TSC of one instant.

    ``error_ns`` is this emulation's own: how far ``nsec`` may be from the
    instant of ``tsc`` (0 when KVM_GET_CLOCK paired them).
    """

    flags: int
    nsec: int
    tsc: int
    tsc_adjust: int
    error_ns: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "flags": self.flags,
            "nsec": self.nsec,
            "tsc": self.tsc,
            "tsc_adjust": self.tsc_adjust,
            "error_ns": self.error_ns,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TscState:
        return cls(
            int(record["flags"]),
            int(record["nsec"]),
            int(record["tsc"]),
            int(record["tsc_adjust"]),
            int(record["error_ns"]),
        )


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def _ints(record: dict[str, Any]) -> dict[int, int]:
    return {int(key): int(value) for key, value in record.items()}


@dataclass
class CarriedState:
    """Filled by the source's steps (``get-*``), read by the destination's (``set-*``).

    ``scale`` is each vCPU's TSC ratio as (guest kHz, host kHz): what the
    proposed ``KVM_VCPU_TSC_SCALE`` attribute would give. ``pvclock_msrs``
    arrive with the CPU state (QEMU saves them with the other MSRs);
    ``source_tsc_khz`` is the source host's frequency; ``freeze_realtime`` the
    source host's realtime when the vCPUs stopped (the nap's ``nap_ns`` is
    measured from it: it travels with the state).
    """

    clock: ClockData | None = None
    tsc: dict[int, int] = field(default_factory=dict)
    tsc_adjust: dict[int, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    scale: dict[int, tuple[int, int]] = field(default_factory=dict)
    tsc_khz: int | None = None
    tsc_state: dict[int, TscState] = field(default_factory=dict)
    pvclock_msrs: dict[int, dict[int, int]] = field(default_factory=dict)
    source_tsc_khz: int | None = None
    freeze_realtime: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``CLOCK`` message's payload (``pvclock_msrs`` travel in ``CPU`` instead)."""
        return {
            "clock": None if self.clock is None else self.clock.to_dict(),
            "tsc": {str(k): v for k, v in sorted(self.tsc.items())},
            "tsc_adjust": {str(k): v for k, v in sorted(self.tsc_adjust.items())},
            "offsets": {str(k): v for k, v in sorted(self.offsets.items())},
            "scale": {str(k): list(v) for k, v in sorted(self.scale.items())},
            "tsc_khz": self.tsc_khz,
            "tsc_state": {str(k): v.to_dict() for k, v in sorted(self.tsc_state.items())},
            "source_tsc_khz": self.source_tsc_khz,
            "freeze_realtime": self.freeze_realtime,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> CarriedState:
        clock = record.get("clock")
        return cls(
            clock=None if clock is None else ClockData.from_dict(clock),
            tsc=_ints(record.get("tsc", {})),
            tsc_adjust=_ints(record.get("tsc_adjust", {})),
            offsets=_ints(record.get("offsets", {})),
            scale={int(k): (int(v[0]), int(v[1])) for k, v in record.get("scale", {}).items()},
            tsc_khz=_opt(record.get("tsc_khz")),
            tsc_state={int(k): TscState.from_dict(v) for k, v in record.get("tsc_state", {}).items()},
            source_tsc_khz=_opt(record.get("source_tsc_khz")),
            freeze_realtime=_opt(record.get("freeze_realtime")),
        )
