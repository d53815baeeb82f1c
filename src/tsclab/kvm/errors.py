"""Errors of the KVM layer: a failed ioctl, an unusable /dev/kvm, a guest that misbehaved."""

from __future__ import annotations

import errno as errno_module
import os


def errno_name(err: int) -> str:
    """``EINVAL`` for 22; ``errno 4242`` for numbers the C library does not name."""
    return errno_module.errorcode.get(err, f"errno {err}")


class KvmError(Exception):
    """An ioctl (or mmap) on a KVM fd failed.

    ``ioctl`` is the request's name as in ``include/uapi/linux/kvm.h``,
    ``errno`` the error it returned (``None`` when it returned no errno but
    did less than asked, e.g. KVM_SET_MSRS stopping at an MSR it refuses),
    ``detail`` what was being done, in words.
    """

    def __init__(self, ioctl: str, errno: int | None, detail: str = "") -> None:
        self.ioctl = ioctl
        self.errno = errno
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        what = f"{self.ioctl} failed"
        if self.errno is not None:
            what += f": {errno_name(self.errno)} ({os.strerror(self.errno)})"
        return f"{what}: {self.detail}" if self.detail else what

    @property
    def errno_name(self) -> str | None:
        """The errno's symbolic name, for reports."""
        return None if self.errno is None else errno_name(self.errno)


class KvmUnavailableError(Exception):
    """``/dev/kvm`` is absent or cannot run a VM here; the message says why."""


class GuestError(Exception):
    """The probe guest did something other than its protocol (an unexpected exit, a timeout)."""
