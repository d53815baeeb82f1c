"""A small QMP client: QEMU's JSON machine protocol over a unix socket.

Only what a pause needs: the capabilities handshake, then one command at
a time (``stop``, ``cont``, ``query-status``, ``quit``), each answered by
a ``return`` or an ``error`` object.  Asynchronous events (``STOP``,
``RESUME``, ...) arrive on the same stream and are kept, in order, so a
caller can see when QEMU says the guest stopped.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class QmpError(Exception):
    """QMP failed: no connection, a closed stream, or an error reply."""


class QmpClient:
    """One QMP session; use as a context manager so the socket always closes."""

    def __init__(self, path: str, *, timeout_s: float = 10.0, connect_wait_s: float = 10.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.connect_wait_s = connect_wait_s
        self.events: list[dict[str, Any]] = []
        self._sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> QmpClient:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect (QEMU may not have created the socket yet) and negotiate."""
        deadline = time.monotonic() + self.connect_wait_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.path)
                break
            except OSError as err:
                sock.close()
                if time.monotonic() >= deadline:
                    raise QmpError(f"QMP: cannot connect to {self.path}: {err.strerror or err}") from None
                time.sleep(0.05)
        self._sock = sock
        try:
            greeting = self._receive()
            if "QMP" not in greeting:
                raise QmpError(f"QMP: expected a greeting from {self.path}, got {greeting!r}")
            self.execute("qmp_capabilities")
        except QmpError:
            self.close()  # __exit__ will not run: the with statement never entered
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one command; return its ``return`` value or raise on ``error``."""
        if self._sock is None:
            raise QmpError(f"QMP: {command}: not connected")
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as err:
            raise QmpError(f"QMP: {command}: send failed: {err.strerror or err}") from None
        while True:
            reply = self._receive()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                error = reply["error"]
                raise QmpError(f"QMP: {command}: {error.get('class')}: {error.get('desc')}")
            if "return" in reply:
                return reply["return"]
            raise QmpError(f"QMP: {command}: unexpected reply {reply!r}")

    def _receive(self) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise QmpError(f"QMP: no reply within {self.timeout_s} s") from None
            except OSError as err:
                raise QmpError(f"QMP: receive failed: {err.strerror or err}") from None
            if not chunk:
                raise QmpError("QMP: QEMU closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise QmpError(f"QMP: not JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise QmpError(f"QMP: expected a JSON object, got {line[:200]!r}")
        return message
