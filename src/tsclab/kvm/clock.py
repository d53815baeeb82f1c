"""``KVM_GET_CLOCK``/``KVM_SET_CLOCK`` data as a value, and the host clocks it is compared with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tsclab.kvm import constants as c
from tsclab.kvm.structs import KvmClockData

U64 = 1 << 64
CLOCKSOURCE_FILE = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")


@dataclass(frozen=True, slots=True)
class ClockData:
    """``struct kvm_clock_data`` (Documentation/virt/kvm/api.rst, KVM_GET_CLOCK / KVM_SET_CLOCK).

    ``clock`` is the VM's kvmclock in ns. On GET, ``realtime`` (host
    CLOCK_REALTIME ns) and ``host_tsc`` are valid only when ``flags`` has
    ``KVM_CLOCK_REALTIME`` / ``KVM_CLOCK_HOST_TSC``; KVM sets both, for
    one instant, only when the host clocksource is TSC-based
    (``kvm_get_walltime_and_clockread``, arch/x86/kvm/x86.c, Linux 5.16+).
    On SET, KVM acts on ``KVM_CLOCK_REALTIME`` only: it then adds
    ``now_realtime - realtime`` to ``clock`` if positive (never steps back).
    Linux 5.16 refused any other flag with EINVAL; later kernels (6.x:
    ``data.flags & ~KVM_CLOCK_VALID_FLAGS``) accept GET's other flags and
    ignore them, and refuse only unknown bits.
    """

    clock: int
    flags: int = 0
    realtime: int = 0
    host_tsc: int = 0

    @property
    def tsc_stable(self) -> bool:
        """KVM_CLOCK_TSC_STABLE: ``clock`` is the masterclock value every vCPU sees."""
        return bool(self.flags & c.KVM_CLOCK_TSC_STABLE)

    @property
    def has_realtime(self) -> bool:
        return bool(self.flags & c.KVM_CLOCK_REALTIME)

    @property
    def has_host_tsc(self) -> bool:
        return bool(self.flags & c.KVM_CLOCK_HOST_TSC)

    @property
    def flag_names(self) -> str:
        return c.clock_flag_names(self.flags)

    def to_struct(self) -> KvmClockData:
        return KvmClockData(
            clock=self.clock % U64,
            flags=self.flags,
            realtime=self.realtime % U64,
            host_tsc=self.host_tsc % U64,
        )

    @classmethod
    def from_struct(cls, data: KvmClockData) -> ClockData:
        return cls(int(data.clock), int(data.flags), int(data.realtime), int(data.host_tsc))

    def to_dict(self) -> dict[str, int]:
        return {
            "clock": self.clock,
            "flags": self.flags,
            "realtime": self.realtime,
            "host_tsc": self.host_tsc,
        }

    @classmethod
    def from_dict(cls, record: dict[str, int]) -> ClockData:
        return cls(
            int(record["clock"]), int(record["flags"]), int(record["realtime"]), int(record["host_tsc"])
        )


def realtime_ns() -> int:
    """Host CLOCK_REALTIME in ns (what KVM_CLOCK_REALTIME compares with)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def monotonic_raw_ns() -> int:
    """Host CLOCK_MONOTONIC_RAW in ns: an unslewed interval clock for bounds."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)


def host_clocksource(path: Path = CLOCKSOURCE_FILE) -> str | None:
    """The host kernel's current clocksource (``tsc``, ``kvm-clock``, ``hpet``...), None if unreadable."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def clocksource_is_tsc_based(name: str | None) -> bool:
    """Whether KVM can pair host realtime with a host TSC read: the clocksource reads the TSC.

    The same test as the selftests' ``sys_clocksource_is_based_on_tsc()``
    (tools/testing/selftests/kvm/lib/x86/processor.c): ``tsc`` or
    ``hyperv_clocksource_tsc_page``. (A nested host running on
    ``kvm-clock`` does not qualify: KVM needs the raw TSC.)
    """
    return name in ("tsc", "hyperv_clocksource_tsc_page")


def wrapped_delta(later: int, earlier: int) -> int:
    """``later - earlier`` of two u64 counters as a signed 64-bit value (C's ``(s64)(a - b)``)."""
    d = (later - earlier) % U64
    return d - U64 if d >= 1 << 63 else d
