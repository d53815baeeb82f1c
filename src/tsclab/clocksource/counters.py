"""Counter kinds a guest can keep time with: width, unit, usual rates.

Data, not mechanism: each kind says how its driver registers (``_hz`` or
``_khz``), how wide the counter is and which frequencies are common, and
:meth:`CounterKind.register` hands that to the one registration path.

Sources for the facts (driver, registration call):

* ``tsc`` / ``tsc-early`` - ``arch/x86/kernel/tsc.c``,
  ``clocksource_register_khz(&clocksource_tsc, tsc_khz)``; 64-bit; rating
  300 (early: 299).  ``tsc_khz`` comes from calibration, or in a KVM guest
  from ``pvclock_tsc_khz()``.
* ``kvm-clock`` - ``arch/x86/kernel/kvmclock.c``,
  ``clocksource_register_hz(&kvm_clock, NSEC_PER_SEC)``: its "cycles" are
  already nanoseconds; 64-bit; rating 400.
* ``hpet`` - ``arch/x86/kernel/hpet.c``: ``hpet_freq = FSEC_PER_SEC /
  hpet_period`` (integer division of the period in femtoseconds read from
  the capabilities register), ``clocksource_register_hz``; 32-bit main
  counter as Linux drives it; rating 250.  QEMU's HPET has a 10 ns period.
* ``acpi_pm`` - ``drivers/clocksource/acpi_pm.c``: ``PMTMR_TICKS_PER_SEC =
  3579545``, 24-bit mask; rating 200.
* ``arch_sys_counter`` - ``drivers/clocksource/arm_arch_timer.c``: 56 bits
  (the architectural minimum width), frequency from ``CNTFRQ_EL0``.
* ``riscv_clocksource`` - ``drivers/clocksource/timer-riscv.c``: 64-bit,
  frequency from the device tree's ``timebase-frequency``; rating 400
  (300 before a 2022 change).
"""

from __future__ import annotations

from dataclasses import dataclass

from tsclab.arith import FSEC_PER_SEC, do_div
from tsclab.clocksource.registration import Clocksource, ClocksourceError, Unit, register

ACPI_PM_HZ = 3_579_545
# 0x0429b17f fs: the 14.31818 MHz period Intel chipsets report; the integer
# division makes it 14 318 179 Hz.  Real logs also show 14 318 180 Hz (an
# AMD FCH HPET in shared/data), i.e. a period of 69 841 274..278 fs.
HPET_INTEL_PERIOD_FS = 0x0429B17F
HPET_QEMU_PERIOD_FS = 10_000_000  # 10 ns: QEMU's emulated HPET runs at 100 MHz


def hpet_freq_from_period(period_fs: int) -> int:
    """``hpet_clocksource_register()``: ``FSEC_PER_SEC / hpet_period``, truncated."""
    if period_fs <= 0:
        raise ClocksourceError(f"HPET period must be positive, got {period_fs} fs")
    freq, _ = do_div(FSEC_PER_SEC, period_fs)
    return freq


@dataclass(frozen=True, slots=True)
class CounterKind:
    """One kind of counter device, described as its Linux driver sees it."""

    key: str
    kernel_name: str
    bits: int
    unit: Unit
    usual_freqs: tuple[int, ...]  # in ``unit``; the first is the default
    rating: int
    description: str

    def register(self, freq: int | None = None, *, name: str | None = None) -> Clocksource:
        """Register this counter at ``freq`` (in its own unit; default: usual)."""
        if freq is None:
            if not self.usual_freqs:
                raise ClocksourceError(f"{self.key}: no usual frequency; give one")
            freq = self.usual_freqs[0]
        cs_name = name or self.kernel_name
        if self.unit == "khz":
            return register(cs_name, self.bits, freq_khz=freq)
        return register(cs_name, self.bits, freq_hz=freq)


COUNTER_KINDS: dict[str, CounterKind] = {
    kind.key: kind
    for kind in (
        CounterKind(
            key="tsc",
            kernel_name="tsc",
            bits=64,
            unit="khz",
            usual_freqs=(2_500_000, 2_000_000, 3_000_000, 3_700_000),
            rating=300,
            description="x86 time stamp counter, registered in kHz after refined calibration",
        ),
        CounterKind(
            key="tsc-early",
            kernel_name="tsc-early",
            bits=64,
            unit="khz",
            usual_freqs=(2_500_000,),
            rating=299,
            description="x86 TSC at its early-boot calibration, replaced by 'tsc' about 1 s later",
        ),
        CounterKind(
            key="kvm-clock",
            kernel_name="kvm-clock",
            bits=64,
            unit="hz",
            usual_freqs=(1_000_000_000,),
            rating=400,
            description="KVM paravirtual clock: host-scaled TSC, counts nanoseconds",
        ),
        CounterKind(
            key="hpet",
            kernel_name="hpet",
            bits=32,
            unit="hz",
            usual_freqs=(
                14_318_180,
                hpet_freq_from_period(HPET_INTEL_PERIOD_FS),
                hpet_freq_from_period(HPET_QEMU_PERIOD_FS),
            ),
            rating=250,
            description="HPET main counter, 32 bits as Linux drives it",
        ),
        CounterKind(
            key="acpi_pm",
            kernel_name="acpi_pm",
            bits=24,
            unit="hz",
            usual_freqs=(ACPI_PM_HZ,),
            rating=200,
            description="ACPI power-management timer, 24 bits at 3.579545 MHz",
        ),
        CounterKind(
            key="arch_sys_counter",
            kernel_name="arch_sys_counter",
            bits=56,
            unit="hz",
            usual_freqs=(24_000_000, 19_200_000, 25_000_000, 1_000_000_000),
            rating=400,
            description="Arm generic timer system counter, 56 bits, rate from CNTFRQ",
        ),
        CounterKind(
            key="riscv_clocksource",
            kernel_name="riscv_clocksource",
            bits=64,
            unit="hz",
            usual_freqs=(10_000_000, 1_000_000),
            rating=400,  # 300 in kernels before the 2022 rating bump
            description="RISC-V time CSR, rate from the device tree's timebase-frequency",
        ),
        CounterKind(
            key="generic",
            kernel_name="generic",
            bits=64,
            unit="hz",
            usual_freqs=(),
            rating=0,
            description="any other counter: give its width and frequency",
        ),
    )
}


def counter_kind(key: str) -> CounterKind:
    """Look up a counter kind by key; raises ClocksourceError naming the choices."""
    try:
        return COUNTER_KINDS[key]
    except KeyError:
        choices = ", ".join(sorted(COUNTER_KINDS))
        raise ClocksourceError(f"unknown counter kind {key!r}; expected one of: {choices}") from None
