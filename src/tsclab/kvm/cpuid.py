"""CPUID entries as KVM reports and takes them (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tsclab.kvm import constants as c


@dataclass(frozen=True, slots=True)
class CpuidEntry:
    """One ``struct kvm_cpuid_entry2``: leaf ``function``, subleaf ``index``, registers."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int


def find_leaf(entries: Sequence[CpuidEntry], function: int, index: int = 0) -> CpuidEntry | None:
    """The entry for ``function`` (and ``index`` where KVM marks the leaf as indexed)."""
    for entry in entries:
        if entry.function == function and entry.index == index:
            return entry
    for entry in entries:
        if entry.function == function:
            return entry
    return None


def kvm_signature(entries: Sequence[CpuidEntry]) -> str | None:
    """The hypervisor signature of leaf 0x40000000 (``KVMKVMKVM`` for KVM), None if absent."""
    leaf = find_leaf(entries, c.KVM_CPUID_SIGNATURE)
    if leaf is None:
        return None
    raw = b"".join(r.to_bytes(4, "little") for r in (leaf.ebx, leaf.ecx, leaf.edx))
    return raw.rstrip(b"\0").decode("ascii", "replace")


def kvm_features(entries: Sequence[CpuidEntry]) -> int | None:
    """EAX of the KVM paravirt features leaf 0x40000001 (``KVM_FEATURE_*`` bits), None if absent."""
    leaf = find_leaf(entries, c.KVM_CPUID_FEATURES)
    return None if leaf is None else leaf.eax


def has_kvm_feature(entries: Sequence[CpuidEntry], bit: int) -> bool:
    features = kvm_features(entries)
    return features is not None and bool(features & (1 << bit))
