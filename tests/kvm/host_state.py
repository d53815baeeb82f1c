"""What this process holds: open fds and mappings, to check that nothing leaks."""

from __future__ import annotations

import os
import re
from pathlib import Path


def open_fds() -> set[str]:
    """This process's open file descriptors."""
    return set(os.listdir("/proc/self/fd"))


def mapped(address: int) -> bool:
    """Whether ``address`` lies in one of this process's mappings (/proc/self/maps)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if start <= address < end:
            return True
    return False


def child_pids() -> set[int]:
    """Processes whose parent is this one (running or not yet reaped)."""
    me = os.getpid()
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            children.add(int(entry.name))
    return children


def all_zero_offsets(detail: str) -> bool:
    """Every offset the step wrote was 0: on a KVM that ignores offsets, that write still holds.

    The emulated TSC-state step computes the offset from paired instants;
    where the guest reads the host's TSC it comes out 0 (or a few cycles),
    and an offset of 0 reads back as written.
    """
    offsets = re.findall(r"offset (-?\d+)", detail)
    return bool(offsets) and all(o == "0" for o in offsets) and "reads back" not in detail
