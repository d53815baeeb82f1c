"""Error messages: the ioctl's name and errno, or why /dev/kvm cannot be used (no KVM needed)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from tsclab.kvm import ioctls, libc
from tsclab.kvm.errors import KvmError, KvmUnavailableError
from tsclab.kvm.system import Kvm


def test_message_names_the_ioctl_and_the_errno() -> None:
    err = KvmError("KVM_SET_CLOCK", errno.EINVAL, "clock 5 flags HOST_TSC")
    assert str(err) == "KVM_SET_CLOCK failed: EINVAL (Invalid argument): clock 5 flags HOST_TSC"
    assert (err.ioctl, err.errno, err.errno_name) == ("KVM_SET_CLOCK", errno.EINVAL, "EINVAL")


def test_message_without_errno_or_detail() -> None:
    assert str(KvmError("KVM_RUN", errno.EINTR)) == "KVM_RUN failed: EINTR (Interrupted system call)"
    short = KvmError("KVM_SET_MSRS", None, "MSR 0x10a refused: 0 of 1 written")
    assert str(short) == "KVM_SET_MSRS failed: MSR 0x10a refused: 0 of 1 written"
    assert short.errno_name is None


@pytest.fixture
def dev_null() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDWR)
    yield fd
    os.close(fd)


def test_a_failing_ioctl_raises_with_its_name(dev_null: int) -> None:
    with pytest.raises(KvmError) as caught:
        libc.ioctl(dev_null, ioctls.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
    assert caught.value.errno == errno.ENOTTY
    assert str(caught.value) == "KVM_GET_API_VERSION failed: ENOTTY (Inappropriate ioctl for device)"


def test_absent_device() -> None:
    with pytest.raises(KvmUnavailableError, match=r"^/nonexistent/kvm: No such file or directory$"):
        Kvm.open("/nonexistent/kvm")


def test_a_device_that_is_not_kvm() -> None:
    with pytest.raises(
        KvmUnavailableError, match=r"^/dev/null is not a KVM device: KVM_GET_API_VERSION failed"
    ):
        Kvm.open("/dev/null")
