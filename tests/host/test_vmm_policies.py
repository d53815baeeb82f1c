"""VMM policies: name resolution, its errors, and that every step a policy names exists."""

from __future__ import annotations

import pytest

from tsclab.host.vmm_policies import (
    CLOUD_HYPERVISOR_MSR,
    CLOUD_HYPERVISOR_OFFSETS,
    CLOUD_HYPERVISOR_SYNC,
    FIRECRACKER_FIXED,
    POLICIES,
    QEMU,
    SCALE_AWARE,
    TSC_STATE,
    UPSTREAM_DOC,
    UnknownPolicyError,
    VmmPolicy,
    policy_names,
    resolve_policy,
)
from tsclab.host.vmm_steps import StepRunner
from tsclab.scenario.model import EVENT_ACTIONS

ALL_POLICIES = [p for versions in POLICIES.values() for p in versions]
OPERATIONS = ("pause", "resume", "save", "restore", "restore_resume")


def _no_log(_t: int, _actor: str, _text: str) -> None:
    pass


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("qemu", QEMU),
        ("qemu@7.2", QEMU),
        ("  qemu  ", QEMU),
        ("firecracker", FIRECRACKER_FIXED),  # the latest version
        ("firecracker@1.13", FIRECRACKER_FIXED),
        ("cloud-hypervisor", CLOUD_HYPERVISOR_SYNC),
        ("cloud-hypervisor@msr", CLOUD_HYPERVISOR_MSR),
        ("cloud-hypervisor@msr+offsets", CLOUD_HYPERVISOR_OFFSETS),
        ("upstream-doc", UPSTREAM_DOC),
        ("scale-aware@1", SCALE_AWARE),
        ("tsc-state@v2", TSC_STATE),
    ],
)
def test_resolve_policy(spec: str, expected: VmmPolicy) -> None:
    assert resolve_policy(spec) is expected


def test_an_older_version_is_reachable_by_its_label() -> None:
    old = resolve_policy("firecracker@1.12")
    assert (old.name, old.version, old.label) == ("firecracker", "1.12", "firecracker@1.12")
    assert old is not FIRECRACKER_FIXED
    assert old.restore_resume == ()
    assert FIRECRACKER_FIXED.restore_resume == ("kvmclock-ctrl",)


def test_unknown_name_lists_every_policy_name() -> None:
    with pytest.raises(UnknownPolicyError) as err:
        resolve_policy("vmware")
    assert str(err.value) == (
        "unknown VMM policy 'vmware'; expected one of: qemu, firecracker, cloud-hypervisor, "
        "upstream-doc, scale-aware, tsc-state, nap, resume-irq, max-sane, guest-s3, vmclock "
        "(optionally name@version)"
    )


@pytest.mark.parametrize("spec", ["QEMU", "", "@7.2", "qemu 7.2", "qemu-7.2"])
def test_names_are_exact(spec: str) -> None:
    with pytest.raises(UnknownPolicyError, match="unknown VMM policy"):
        resolve_policy(spec)


def test_unknown_version_lists_that_policys_versions() -> None:
    with pytest.raises(UnknownPolicyError) as err:
        resolve_policy("cloud-hypervisor@9")
    assert str(err.value) == (
        "unknown version '9' of VMM policy 'cloud-hypervisor'; expected one of: "
        "cloud-hypervisor@msr, cloud-hypervisor@msr+offsets, cloud-hypervisor@offset-sync"
    )


def test_unknown_policy_error_is_a_value_error() -> None:
    assert issubclass(UnknownPolicyError, ValueError)


def test_policy_names_are_each_name_then_its_labels_and_all_resolve() -> None:
    names = policy_names()
    assert names[:2] == ["qemu", "qemu@7.2"]
    assert names[2:5] == ["firecracker", "firecracker@1.12", "firecracker@1.13"]
    assert len(names) == len(POLICIES) + len(ALL_POLICIES)
    assert len(set(names)) == len(names)
    for name in names:
        resolved = resolve_policy(name)
        assert name in (resolved.name, resolved.label)


def test_every_policy_is_filed_under_its_own_name_with_unique_versions() -> None:
    for name, versions in POLICIES.items():
        assert versions, name
        assert {p.name for p in versions} == {name}
        assert len({p.version for p in versions}) == len(versions)


def test_every_step_of_every_policy_exists() -> None:
    known = StepRunner(_no_log).names
    for policy in ALL_POLICIES:
        for operation in OPERATIONS:
            steps: tuple[str, ...] = getattr(policy, operation)
            unknown = [s for s in steps if s not in known]
            assert not unknown, f"{policy.label}.{operation} names unknown steps {unknown}"


def test_hidden_operations_are_event_actions() -> None:
    for policy in ALL_POLICIES:
        assert policy.hides <= set(EVENT_ACTIONS), policy.label


def test_cloud_hypervisor_versions_each_add_one_restore_step() -> None:
    assert CLOUD_HYPERVISOR_OFFSETS.restore == (*CLOUD_HYPERVISOR_MSR.restore, "per-vcpu-tsc-offsets")
    assert CLOUD_HYPERVISOR_SYNC.restore == (*CLOUD_HYPERVISOR_OFFSETS.restore, "equalize-tsc-offsets")
    # Everything else is inherited.
    for operation in ("pause", "resume", "save", "restore_resume"):
        assert getattr(CLOUD_HYPERVISOR_SYNC, operation) == getattr(CLOUD_HYPERVISOR_MSR, operation)


def test_a_clock_is_set_only_by_a_policy_that_saved_one() -> None:
    """Each operation that writes kvmclock back follows one that read it (in the same event's flow)."""
    writes = {"set-clock", "set-clock-realtime", "set-clock-or-realtime"}
    for policy in ALL_POLICIES:
        if writes & set(policy.resume):
            assert "get-clock" in policy.pause, policy.label
        if writes & set(policy.restore + policy.restore_resume):
            assert "get-clock" in policy.save, policy.label
