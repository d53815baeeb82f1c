"""VMM policies: what each VMM does to guest time, step by step, as data.

Filled in below; the registry and name resolution are the contract the
scenario loader and the command line rely on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VmmPolicy:
    name: str  # "qemu", "firecracker", ...
    version: str
    summary: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


POLICIES: dict[str, tuple[VmmPolicy, ...]] = {
    "qemu": (VmmPolicy("qemu", "7.2", "QEMU"),),
    "firecracker": (
        VmmPolicy("firecracker", "1.12", "Firecracker before PR #5494"),
        VmmPolicy("firecracker", "1.13", "Firecracker with PR #5494"),
    ),
    "cloud-hypervisor": (VmmPolicy("cloud-hypervisor", "msr-restore", "Cloud Hypervisor"),),
    "upstream-doc": (VmmPolicy("upstream-doc", "5.16", "KVM documentation's algorithm"),),
    "scale-aware": (VmmPolicy("scale-aware", "1", "documented algorithm with TSC scaling"),),
    "tsc-state": (VmmPolicy("tsc-state", "v2", "KVM_{GET|SET}_TSC_STATE v2"),),
}


class UnknownPolicyError(ValueError):
    """A VMM policy name or version that is not defined."""


def policy_names() -> list[str]:
    """Every accepted spelling: each name (its latest version) and each name@version."""
    names: list[str] = []
    for name, versions in POLICIES.items():
        names.append(name)
        names.extend(p.label for p in versions)
    return names


def resolve_policy(spec: str) -> VmmPolicy:
    """``name`` (latest version) or ``name@version`` -> the policy; the error lists the choices."""
    name, _, version = spec.strip().partition("@")
    versions = POLICIES.get(name)
    if versions is None:
        raise UnknownPolicyError(
            f"unknown VMM policy {spec!r}; expected one of: {', '.join(POLICIES)} (optionally name@version)"
        )
    if not version:
        return versions[-1]
    for policy in versions:
        if policy.version == version:
            return policy
    known = ", ".join(p.label for p in versions)
    raise UnknownPolicyError(f"unknown version {version!r} of VMM policy {name!r}; expected one of: {known}")
