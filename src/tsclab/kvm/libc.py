"""The three system calls the KVM layer needs, through ctypes: ioctl, mmap, munmap.

ctypes rather than ``fcntl.ioctl`` because KVM ioctls take unsigned long
arguments above ``INT_MAX`` (``KVM_SET_TSS_ADDR 0xfffbd000``,
``KVM_SET_TSC_KHZ``) and pointers to structs that must stay in place
(the kernel writes into them), and because the call releases the GIL
while a vCPU runs. Errors come back as :class:`KvmError` naming the
request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

from tsclab.kvm.errors import KvmError

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
_ioctl.restype = ctypes.c_int

_mmap = _libc.mmap
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_mmap.restype = ctypes.c_void_p

_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_munmap.restype = ctypes.c_int

_MAP_FAILED = ctypes.c_void_p(-1).value

PROT_READ_WRITE = mmap.PROT_READ | mmap.PROT_WRITE


def ioctl(fd: int, request: int, arg: int, name: str, detail: str = "") -> int:
    """``ioctl(fd, request, arg)``; its non-negative result, or :class:`KvmError` named ``name``.

    ``arg`` is an integer argument or the address of a ctypes object (which
    the caller keeps alive across the call).
    """
    result = int(_ioctl(fd, request, arg))
    if result < 0:
        raise KvmError(name, ctypes.get_errno(), detail)
    return result


def ioctl_ptr(fd: int, request: int, obj: ctypes.Structure | ctypes.Array[ctypes.c_char], name: str) -> int:
    """``ioctl`` with a pointer to ``obj`` (a ctypes struct or buffer the kernel reads or fills)."""
    return ioctl(fd, request, ctypes.addressof(obj), name)


def map_shared(size: int, fd: int = -1, *, what: str) -> int:
    """``mmap`` ``size`` bytes read-write, shared: of ``fd``, or anonymous when ``fd`` is -1."""
    flags = mmap.MAP_SHARED | (mmap.MAP_ANONYMOUS if fd < 0 else 0)
    addr = _mmap(None, size, PROT_READ_WRITE, flags, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        raise KvmError("mmap", ctypes.get_errno(), what)
    return int(addr)


def unmap(addr: int, size: int, *, what: str) -> None:
    """``munmap``; raises :class:`KvmError` if the kernel refuses (a bug: addr/size not ours)."""
    if _munmap(addr, size) != 0:
        raise KvmError("munmap", ctypes.get_errno(), what)
