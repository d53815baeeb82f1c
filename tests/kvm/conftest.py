"""Real-KVM fixtures: probe /dev/kvm once per session; tests that need it skip with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tsclab.kvm.errors import GuestError, KvmError, KvmUnavailableError
from tsclab.kvm.probe import ProbeReport, probe
from tsclab.kvm.probe_guest import ProbeGuest
from tsclab.kvm.system import DEVICE, Kvm


def _why_no_kvm() -> str | None:
    """None if /dev/kvm opens, creates a VM and runs the probe guest to a TSC reading; else why not."""
    try:
        kvm = Kvm.open(DEVICE)
    except KvmUnavailableError as err:
        return f"no usable KVM: {err}"
    try:
        with ProbeGuest.create(kvm) as guest:
            guest.start()
            guest.sample()
    except (KvmError, GuestError) as err:
        return f"{DEVICE} cannot run the probe guest: {err}"
    finally:
        kvm.close()
    return None


@pytest.fixture(scope="session")
def kvm_unusable_reason() -> str | None:
    return _why_no_kvm()


@pytest.fixture
def kvm(kvm_unusable_reason: str | None) -> Iterator[Kvm]:
    """An open /dev/kvm that runs the probe guest; the test skips (with the reason) otherwise."""
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    with Kvm.open(DEVICE) as opened:
        yield opened


@pytest.fixture(scope="session")
def probe_report(kvm_unusable_reason: str | None) -> ProbeReport:
    """``tsclab kvm probe`` of this host, once per session."""
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    with Kvm.open(DEVICE) as opened:
        return probe(opened, DEVICE)
