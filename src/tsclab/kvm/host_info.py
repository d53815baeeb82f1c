"""What kind of host this is: kernel, clocksource, which KVM backend module is loaded."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from tsclab.kvm.clock import host_clocksource

SYS_MODULE = Path("/sys/module")
# kvm_intel: VMX; kvm_amd: SVM; kvm_pvm: PVM, guests in hardware ring 3 on shadow paging
# (github.com/virt-pvm/linux), common in nested cloud sandboxes without hardware virtualization.
BACKENDS = ("kvm_intel", "kvm_amd", "kvm_pvm")


@dataclass(frozen=True, slots=True)
class HostInfo:
    kernel: str
    clocksource: str | None
    backends: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"kernel": self.kernel, "clocksource": self.clocksource, "kvm_backends": list(self.backends)}

    def describe(self) -> str:
        backends = ", ".join(self.backends) or "no known backend module"
        return f"Linux {self.kernel}, clocksource {self.clocksource or 'unknown'}, {backends}"


def host_info(sys_module: Path = SYS_MODULE) -> HostInfo:
    backends = tuple(name for name in BACKENDS if (sys_module / name).exists())
    return HostInfo(platform.release(), host_clocksource(), backends)
