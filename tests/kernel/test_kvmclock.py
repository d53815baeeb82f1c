"""kernel/kvmclock.py: the last_value clamp and PVCLOCK_GUEST_STOPPED handling.

KVM's scale for a 2.5 GHz TSC is shift -1, mul 0xcccccccc: 2.5e9 cycles read
as 999_999_999 ns.  Two vCPUs' pages disagree by 100 ns, as per-vCPU
pvclock pages do without a master clock.
"""

from __future__ import annotations

import pytest

from tsclab.clocksource import kvm_tsc_scale
from tsclab.kernel.kvmclock import KvmclockGuest
from tsclab.kernel.profiles import LINUX_5_10, LINUX_6_1, LINUX_6_6, LINUX_6_10, KernelProfile
from tsclab.kernel.vdso import PVCLOCK_GUEST_STOPPED, PVCLOCK_TSC_STABLE_BIT, PvclockVcpuTimeInfo

SCALE = kvm_tsc_scale(2_500_000)
ONE_S = 2_500_000_000


def page(system_time: int, flags: int) -> PvclockVcpuTimeInfo:
    return PvclockVcpuTimeInfo(
        version=2,
        tsc_timestamp=0,
        system_time=system_time,
        tsc_to_system_mul=SCALE.tsc_to_system_mul,
        tsc_shift=SCALE.tsc_shift,
        flags=flags,
    )


class Touches:
    """Counts pvclock_touch_watchdogs() calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_scale() -> None:
    assert (SCALE.tsc_shift, SCALE.tsc_to_system_mul) == (-1, 0xCCCCCCCC)


def test_clamp_keeps_reads_monotonic_across_vcpus() -> None:
    guest = KvmclockGuest(LINUX_6_10)
    vcpu0, vcpu1 = page(1_000_000_000, 0), page(999_999_900, 0)
    touch = Touches()
    assert guest.read(vcpu0, ONE_S, touch) == 1_999_999_999
    assert guest.read(vcpu1, ONE_S, touch) == 1_999_999_999  # 1_999_999_899 clamped up
    assert guest.read(vcpu1, ONE_S + 200, touch) == 1_999_999_999  # 80 ns on: 1_999_999_979, behind
    assert guest.read(vcpu1, ONE_S + 500, touch) == 2_000_000_099  # 200 ns on: ahead, taken and stored
    assert guest.last_value == 2_000_000_099
    assert guest.read(vcpu0, ONE_S + 500, touch) == 2_000_000_199
    assert touch.count == 0


def test_tsc_stable_bypasses_the_clamp() -> None:
    guest = KvmclockGuest(LINUX_6_10)
    vcpu0 = page(1_000_000_000, PVCLOCK_TSC_STABLE_BIT)
    vcpu1 = page(999_999_900, PVCLOCK_TSC_STABLE_BIT)
    assert guest.read(vcpu0, ONE_S, Touches()) == 1_999_999_999
    assert guest.read(vcpu1, ONE_S, Touches()) == 1_999_999_899  # goes back: no clamp
    assert guest.last_value == 0


def test_stable_bit_counts_only_when_the_host_offers_it() -> None:
    guest = KvmclockGuest(LINUX_6_10, stable_bit_valid=False)
    guest.read(page(1_000_000_000, PVCLOCK_TSC_STABLE_BIT), ONE_S, Touches())
    assert guest.read(page(999_999_900, PVCLOCK_TSC_STABLE_BIT), ONE_S, Touches()) == 1_999_999_999


@pytest.mark.parametrize("clamp", ["lt", "le"])
def test_both_comparisons_return_the_same_values(clamp: str) -> None:
    guest = KvmclockGuest(LINUX_6_10, clamp=clamp)  # type: ignore[arg-type]
    readings = [guest.read(page(t, 0), ONE_S, Touches()) for t in (1000, 900, 1000, 1100)]
    assert readings == [1_000_000_999, 1_000_000_999, 1_000_000_999, 1_000_001_099]


def test_resume_forgets_last_value() -> None:
    guest = KvmclockGuest(LINUX_6_10)
    guest.read(page(5_000_000_000, 0), 0, Touches())
    guest.resume()
    assert guest.last_value == 0
    assert guest.read(page(1_000, 0), 0, Touches()) == 1_000


@pytest.mark.parametrize(
    ("profile", "consumed"), [(LINUX_5_10, True), (LINUX_6_1, True), (LINUX_6_6, False), (LINUX_6_10, False)]
)
def test_guest_stopped_consumed_on_read_before_6_3_only(profile: KernelProfile, consumed: bool) -> None:
    guest = KvmclockGuest(profile)
    vcpu = page(0, PVCLOCK_TSC_STABLE_BIT | PVCLOCK_GUEST_STOPPED)
    touch = Touches()
    assert guest.read(vcpu, ONE_S, touch) == 999_999_999
    assert touch.count == (1 if consumed else 0)
    assert bool(vcpu.flags & PVCLOCK_GUEST_STOPPED) is not consumed
    assert vcpu.flags & PVCLOCK_TSC_STABLE_BIT


def test_check_and_clear_guest_paused() -> None:
    guest = KvmclockGuest(LINUX_6_10)
    vcpu = page(0, PVCLOCK_GUEST_STOPPED)
    touch = Touches()
    assert guest.check_and_clear_guest_paused(vcpu, touch)
    assert vcpu.flags == 0
    assert touch.count == 1
    assert not guest.check_and_clear_guest_paused(vcpu, touch)
    assert not guest.check_and_clear_guest_paused(None, touch)
    assert touch.count == 1


def test_sched_clock_subtracts_the_offset_and_wraps() -> None:
    guest = KvmclockGuest(LINUX_6_10)
    vcpu = page(10_000_000_000, PVCLOCK_TSC_STABLE_BIT | PVCLOCK_GUEST_STOPPED)
    assert guest.sched_clock_ns(vcpu, ONE_S, offset=9_000_000_000) == 1_999_999_999
    assert vcpu.flags & PVCLOCK_GUEST_STOPPED  # from 6.3: no flag handling
    assert guest.sched_clock_ns(vcpu, 0, offset=10_000_000_001) == 2**64 - 1


def test_sched_clock_before_6_3_consumes_the_flag() -> None:
    guest = KvmclockGuest(LINUX_5_10)
    vcpu = page(0, PVCLOCK_TSC_STABLE_BIT | PVCLOCK_GUEST_STOPPED)
    with pytest.raises(ValueError, match="on_guest_stopped"):
        guest.sched_clock_ns(vcpu, ONE_S, offset=0)
    touch = Touches()
    assert guest.sched_clock_ns(vcpu, ONE_S, offset=0, on_guest_stopped=touch) == 999_999_999
    assert (touch.count, vcpu.flags) == (1, PVCLOCK_TSC_STABLE_BIT)
