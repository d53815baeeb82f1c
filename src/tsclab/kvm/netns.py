"""Two network namespaces joined by a veth pair, for a migration between "two hosts" on one machine.

``ip netns add`` twice, ``ip link add ... type veth peer ...``, each end
moved into its namespace with an address of one /30 and brought up
(iproute2, ip-netns(8), ip-link(8)). :func:`namespace_pair` always removes
what it created - on success, on failure half-way through setting up, and
on any exception in its body - and :func:`exec_prefix` runs a command
inside one (``ip netns exec``, which ``setns()``-es and then execs it: the
process's pid is the command's own). Needs root and ``ip``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

SOURCE_ADDRESS = "10.77.0.1"
DESTINATION_ADDRESS = "10.77.0.2"
PREFIX_LENGTH = 30
_counter = itertools.count()


class NetnsError(Exception):
    """The namespaces could not be set up (or ``ip`` is missing, or this is not root)."""


@dataclass(frozen=True, slots=True)
class NamespacePair:
    source: str
    destination: str
    source_link: str
    destination_link: str
    source_address: str = SOURCE_ADDRESS
    destination_address: str = DESTINATION_ADDRESS


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "--netns needs iproute2's ip, which is not installed"
    if os.geteuid() != 0:
        return "--netns needs root (ip netns add)"
    return None


def _ip(args: Sequence[str]) -> None:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetnsError(f"ip {' '.join(args)}: {err}") from None
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _quiet(args: Sequence[str]) -> None:
    with suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["ip", *args], capture_output=True, timeout=10, check=False)


def list_namespaces() -> list[str]:
    """``ip netns list``: the names (the tests compare it before and after)."""
    try:
        done = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return []
    return sorted(line.split()[0] for line in done.stdout.splitlines() if line.strip())


@contextmanager
def namespace_pair() -> Iterator[NamespacePair]:
    """A fresh pair (unique names from this pid and a counter); removed again, whatever happens."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsError(reason)
    count = next(_counter)
    tag = f"{os.getpid()}-{count}"
    short = f"{os.getpid() % 1_000_000:06d}{count % 100:02d}"  # link names: at most 15 characters
    pair = NamespacePair(f"tsclab-src-{tag}", f"tsclab-dst-{tag}", f"tss{short}", f"tsd{short}")
    created: list[str] = []
    try:
        for name in (pair.source, pair.destination):
            _ip(["netns", "add", name])
            created.append(name)
        _ip(["link", "add", pair.source_link, "type", "veth", "peer", "name", pair.destination_link])
        for ns, link, address in (
            (pair.source, pair.source_link, pair.source_address),
            (pair.destination, pair.destination_link, pair.destination_address),
        ):
            _ip(["link", "set", link, "netns", ns])
            _ip(["-n", ns, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", link])
            _ip(["-n", ns, "link", "set", link, "up"])
            _ip(["-n", ns, "link", "set", "lo", "up"])
        yield pair
    finally:
        # Deleting a namespace destroys the veth end inside it, and with it the peer.
        for name in reversed(created):
            _quiet(["netns", "del", name])
        _quiet(["link", "del", pair.source_link])  # only if it never left the root namespace


def exec_prefix(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]
