"""ClockData, host clock helpers and the clock-state records (no KVM needed)."""

from __future__ import annotations

import json
from pathlib import Path

from tsclab.kvm import constants as c
from tsclab.kvm.clock import ClockData, clocksource_is_tsc_based, host_clocksource, wrapped_delta
from tsclab.kvm.clock_state import VcpuClockState, VmClockState
from tsclab.kvm.cpu_state import CpuState


def test_clock_data_struct_round_trip_and_flags() -> None:
    data = ClockData(123, c.KVM_CLOCK_TSC_STABLE | c.KVM_CLOCK_REALTIME | c.KVM_CLOCK_HOST_TSC, 456, 789)
    raw = data.to_struct()
    assert (raw.clock, raw.flags, raw.realtime, raw.host_tsc) == (123, 14, 456, 789)
    assert ClockData.from_struct(raw) == data
    assert data.tsc_stable
    assert data.has_realtime
    assert data.has_host_tsc
    assert data.flag_names == "TSC_STABLE|REALTIME|HOST_TSC"
    assert not ClockData(0).has_realtime


def test_negative_clock_values_wrap_into_the_u64_fields() -> None:
    assert ClockData(-1).to_struct().clock == (1 << 64) - 1


def test_wrapped_delta_is_a_signed_64_bit_difference() -> None:
    assert wrapped_delta(5, 3) == 2
    assert wrapped_delta(3, 5) == -2
    assert wrapped_delta(1, (1 << 64) - 1) == 2  # across the wrap


def test_clocksource_names(tmp_path: Path) -> None:
    assert clocksource_is_tsc_based("tsc")
    assert clocksource_is_tsc_based("hyperv_clocksource_tsc_page")
    assert not clocksource_is_tsc_based("kvm-clock")
    assert not clocksource_is_tsc_based(None)
    source = tmp_path / "current_clocksource"
    source.write_text("hpet\n")
    assert host_clocksource(source) == "hpet"
    assert host_clocksource(tmp_path / "absent") is None


def test_clock_state_travels_as_json() -> None:
    state = VmClockState(
        ClockData(10**12, 14, 1_700_000_000 * 10**9, 2**50),
        (
            VcpuClockState(0, 2**64 - 5, 2596150, {c.MSR_IA32_TSC: 99, c.MSR_KVM_SYSTEM_TIME_NEW: 0x5001}),
            VcpuClockState(1, None, None, {}),
        ),
    )
    record = json.loads(json.dumps(state.to_dict()))
    assert record["vcpus"][0]["msrs"] == {"0x10": 99, "0x4b564d01": 0x5001}
    assert VmClockState.from_dict(record) == state


def test_cpu_state_travels_as_json() -> None:
    state = CpuState(bytes(range(144)), bytes(312))
    assert CpuState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
