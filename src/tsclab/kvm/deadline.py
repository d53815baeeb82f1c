"""A deadline for a blocking KVM_RUN: SIGALRM interrupts it (KVM_RUN returns EINTR).

A guest that never exits would otherwise hang the VMM for good (on a
host whose KVM cannot run the guest's mode, KVM_RUN may simply never
return). Python handlers are installed interruptible (``siginterrupt``
true), so the ioctl returns ``EINTR`` and KVM reports ``KVM_EXIT_INTR``.
Signals can only be handled on the main thread; elsewhere no deadline
is armed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Deadline:
    """Whether the armed alarm went off."""

    def __init__(self) -> None:
        self.expired = False

    def _fire(self, _signum: int, _frame: FrameType | None) -> None:
        self.expired = True


@contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline]:
    """Arm SIGALRM ``seconds`` from now for the body; restore the previous handler and timer after."""
    state = Deadline()
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous_handler = signal.signal(signal.SIGALRM, state._fire)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *previous_timer)
