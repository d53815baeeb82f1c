"""A minimal initramfs: a cpio archive in the kernel's "newc" format.

The kernel unpacks an uncompressed newc archive given as the initrd
(``init/initramfs.c``): each entry is a 110-byte ASCII header (magic
``070701`` and thirteen 8-digit hex fields), the NUL-terminated name, the
data, each padded to 4 bytes; a ``TRAILER!!!`` entry ends it.  Writing it
here keeps the guest build free of the host's cpio and of root ownership
tricks: every entry is owned by root, with a fixed mtime, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member: a directory, a regular file or a symlink."""

    path: str  # relative, no leading slash
    mode: int  # full st_mode, type bits included
    data: bytes = b""  # file contents, or the symlink target


def directory(path: str, perm: int = 0o755) -> Entry:
    return Entry(path, stat.S_IFDIR | perm)


def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | perm, data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, stat.S_IFLNK | 0o777, target.encode())


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, name_size: int) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, 0, 0, name_size, 0)
    return NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode() + b"\0"
    head = _header(ino, entry, len(name)) + name
    return head + _pad4(len(head)) + entry.data + _pad4(len(entry.data))


def build(entries: list[Entry]) -> bytes:
    """The archive holding ``entries`` in order, then the trailer.

    Parents must come before their children, as the kernel creates each
    path as it meets it.
    """
    seen: set[str] = set()
    for entry in entries:
        if not entry.path or entry.path.startswith("/") or entry.path == TRAILER:
            raise ValueError(f"initramfs: bad member path {entry.path!r}")
        parent = entry.path.rpartition("/")[0]
        if parent and parent not in seen:
            raise ValueError(f"initramfs: {entry.path!r} comes before its directory {parent!r}")
        if entry.path in seen:
            raise ValueError(f"initramfs: {entry.path!r} twice")
        seen.add(entry.path)
    body = b"".join(_member(ino, entry) for ino, entry in enumerate(entries, start=1))
    return body + _member(0, Entry(TRAILER, 0))
