"""Clocksource layer: counter devices and the kernel's registration math.

Knows counters and their conversion factors; knows nothing of time passing,
guests or hosts.  The public surface is re-exported here.
"""

from tsclab.clocksource.counters import COUNTER_KINDS, CounterKind, counter_kind, hpet_freq_from_period
from tsclab.clocksource.horizons import Horizon, Horizons, horizons_for
from tsclab.clocksource.pvclock import (
    PvclockScale,
    kvm_get_time_scale,
    kvm_tsc_scale,
    pvclock_scale_delta,
    pvclock_tsc_khz,
)
from tsclab.clocksource.registration import (
    Clocksource,
    ClocksourceError,
    clocks_calc_max_nsecs,
    clocks_calc_mult_shift,
    clocksource_max_adjustment,
    max_raw_delta_for,
    register,
    update_freq_scale,
)

__all__ = [
    "COUNTER_KINDS",
    "Clocksource",
    "ClocksourceError",
    "CounterKind",
    "Horizon",
    "Horizons",
    "PvclockScale",
    "clocks_calc_max_nsecs",
    "clocks_calc_mult_shift",
    "clocksource_max_adjustment",
    "counter_kind",
    "horizons_for",
    "hpet_freq_from_period",
    "kvm_get_time_scale",
    "kvm_tsc_scale",
    "max_raw_delta_for",
    "pvclock_scale_delta",
    "pvclock_tsc_khz",
    "register",
    "update_freq_scale",
]
