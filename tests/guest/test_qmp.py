"""guest/qmp.py against a fake QMP server: a thread on a unix socket under tmp_path."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tsclab.guest.qmp import QmpClient, QmpError

GREETING = {"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 2}}, "capabilities": []}}
STOP_EVENT = {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}
RESUME_EVENT = {"event": "RESUME", "timestamp": {"seconds": 3, "microseconds": 4}}


class Peer:
    """The server's end of one QMP connection."""

    def __init__(self, sock: socket.socket, received: list[dict[str, Any]]) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.received = received

    def send(self, *messages: dict[str, Any]) -> None:
        """Send the messages in one write: the client must split them itself."""
        self.sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def receive(self) -> dict[str, Any]:
        line = self.rfile.readline()
        assert line, "the client closed the connection early"
        message: dict[str, Any] = json.loads(line)
        self.received.append(message)
        return message

    def handshake(self) -> None:
        self.send(GREETING)
        assert self.receive() == {"execute": "qmp_capabilities"}
        self.send({"return": {}})

    def wait_for_close(self) -> None:
        while self.rfile.readline():
            pass


@contextmanager
def fake_qmp(
    path: Path, script: Callable[[Peer], None], *, delay_s: float = 0.0
) -> Iterator[list[dict[str, Any]]]:
    """Serve one connection on ``path`` with ``script``; yields what the server received.

    The socket is created ``delay_s`` after entry (at once when 0).  A failed
    assertion in the server thread is raised again on exit.
    """
    received: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    bound = threading.Event()

    def serve() -> None:
        try:
            time.sleep(delay_s)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                server.bind(str(path))
                server.listen(1)
                server.settimeout(5.0)
                bound.set()
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5.0)
                    script(Peer(conn, received))
        except BaseException as err:
            errors.append(err)
            bound.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if delay_s == 0:
        assert bound.wait(5.0)
    try:
        yield received
    finally:
        thread.join(10.0)
        assert not thread.is_alive(), "the fake QMP server is stuck"
        if errors:
            raise errors[0]


def _answer(*replies: dict[str, Any]) -> Callable[[Peer], None]:
    """A script: handshake, then answer each command with the next reply; then wait for the close."""

    def script(peer: Peer) -> None:
        peer.handshake()
        for reply in replies:
            peer.receive()
            peer.send(reply)
        peer.wait_for_close()

    return script


def _client(path: Path, **kwargs: float) -> QmpClient:
    kwargs.setdefault("timeout_s", 2.0)
    kwargs.setdefault("connect_wait_s", 1.0)
    return QmpClient(str(path), **kwargs)


def test_execute_returns_the_return_value(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    status = {"status": "running", "running": True, "singlestep": False}
    with fake_qmp(path, _answer({"return": status}, {"return": {}})) as received, _client(path) as qmp:
        assert qmp.execute("query-status") == status
        assert qmp.execute("human-monitor-command", {"command-line": "info cpus"}) == {}
        assert qmp.events == []
    assert received == [
        {"execute": "qmp_capabilities"},
        {"execute": "query-status"},
        {"execute": "human-monitor-command", "arguments": {"command-line": "info cpus"}},
    ]


def test_events_before_the_reply_are_kept_in_order(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"

    def script(peer: Peer) -> None:
        peer.handshake()
        assert peer.receive() == {"execute": "stop"}
        peer.send(STOP_EVENT)
        time.sleep(0.05)  # a separate read for the event, then event and reply in one
        peer.send(RESUME_EVENT, {"return": {}})
        assert peer.receive() == {"execute": "cont"}
        peer.send({"return": {}})
        peer.wait_for_close()

    with fake_qmp(path, script), _client(path) as qmp:
        assert qmp.execute("stop") == {}
        assert qmp.events == [STOP_EVENT, RESUME_EVENT]
        assert qmp.execute("cont") == {}
        assert qmp.events == [STOP_EVENT, RESUME_EVENT]


def test_an_error_reply_raises_with_class_and_description(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    error = {"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}
    with fake_qmp(path, _answer(error, {"return": {"status": "paused"}})), _client(path) as qmp:
        with pytest.raises(QmpError) as caught:
            qmp.execute("nope")
        message = str(caught.value)
        assert "nope" in message
        assert "CommandNotFound" in message
        assert "The command nope has not been found" in message
        # One failed command leaves the session usable.
        assert qmp.execute("query-status") == {"status": "paused"}


def test_a_reply_that_is_neither_return_nor_error_raises(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    with (
        fake_qmp(path, _answer({"id": 7})),
        _client(path) as qmp,
        pytest.raises(QmpError, match="unexpected"),
    ):
        qmp.execute("stop")


def test_the_server_closing_mid_reply_raises(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.receive()
        peer.sock.sendall(b'{"return": {"stat')  # half a line, then gone
        peer.sock.shutdown(socket.SHUT_RDWR)

    with fake_qmp(path, script), _client(path) as qmp, pytest.raises(QmpError, match="closed the connection"):
        qmp.execute("query-status")


def test_no_reply_within_the_timeout_raises(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.receive()
        peer.wait_for_close()  # never answers

    with fake_qmp(path, script), _client(path, timeout_s=0.2) as qmp:
        start = time.monotonic()
        with pytest.raises(QmpError, match=r"no reply within 0\.2 s"):
            qmp.execute("stop")
        assert time.monotonic() - start < 2.0


def test_a_socket_that_never_appears_raises_after_connect_wait(tmp_path: Path) -> None:
    path = tmp_path / "absent.sock"
    client = _client(path, connect_wait_s=0.3)
    start = time.monotonic()
    with pytest.raises(QmpError, match=r"cannot connect to .*absent\.sock"):
        client.connect()
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3.0


def test_a_socket_nobody_listens_on_raises_after_connect_wait(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: connection refused
        start = time.monotonic()
        with pytest.raises(QmpError, match="cannot connect"):
            _client(path, connect_wait_s=0.2).connect()
        assert time.monotonic() - start >= 0.2


def test_connect_waits_for_a_socket_that_appears_late(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    with fake_qmp(path, _answer({"return": {}}), delay_s=0.3), _client(path, connect_wait_s=5.0) as qmp:
        assert qmp.execute("cont") == {}


@pytest.mark.parametrize(
    ("line", "needle"),
    [(b"this is not json\n", "not JSON"), (b"[1, 2]\n", "expected a JSON object")],
)
def test_a_reply_that_is_not_a_json_object_raises(tmp_path: Path, line: bytes, needle: str) -> None:
    path = tmp_path / "qmp.sock"

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.receive()
        peer.sock.sendall(line)
        peer.wait_for_close()

    with fake_qmp(path, script), _client(path) as qmp, pytest.raises(QmpError, match=needle):
        qmp.execute("stop")


def test_a_missing_greeting_raises(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"

    def script(peer: Peer) -> None:
        peer.send({"return": {}})
        peer.wait_for_close()

    client = _client(path)
    with fake_qmp(path, script):
        try:
            with pytest.raises(QmpError, match="expected a greeting"):
                client.connect()
        finally:
            client.close()


def test_execute_before_connect_raises(tmp_path: Path) -> None:
    client = _client(tmp_path / "qmp.sock")
    with pytest.raises(QmpError, match="not connected"):
        client.execute("stop")
    client.close()
    client.close()  # closing twice is harmless
