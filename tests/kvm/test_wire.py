"""The migration stream's framing: every check the receiver makes, and the injected faults."""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Iterator

import pytest

from tsclab.kvm import wire
from tsclab.kvm.wire import (
    BadMagicError,
    Channel,
    ChecksumMismatchError,
    ConnectionDroppedError,
    Fault,
    FaultInjectedError,
    FrameTooLargeError,
    MessageType,
    OutOfOrderError,
    PeerError,
    UnexpectedMessageError,
    VersionMismatchError,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_header_layout_is_the_documented_one() -> None:
    frame = wire.encode_frame(MessageType.CLOCK, 7, b'{"a":1}')
    magic, version, kind, seq, length, crc = struct.unpack("<4sHHIII", frame[:20])
    assert (magic, version, kind, seq, length) == (b"TSCM", 1, 5, 7, 7)
    assert crc == zlib.crc32(frame[20:], zlib.crc32(frame[:16]))
    assert wire.HEADER.size == 20


def test_messages_round_trip_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sender, receiver = Channel(a, "destination"), Channel(b, "source")
    sender.send_json(MessageType.HELLO, {"z": 1, "a": [1, 2]})
    sender.send(MessageType.RAM, wire.encode_ram(4096, b"\x01\x02"))
    sender.send(MessageType.RAM, wire.encode_ram(8192, b""))
    hello = receiver.receive(MessageType.HELLO)
    assert hello.json() == {"a": [1, 2], "z": 1}
    assert hello.payload == b'{"a":[1,2],"z":1}'  # sorted keys, compact
    assert wire.decode_ram(receiver.receive(MessageType.RAM).payload) == (4096, b"\x01\x02")
    assert receiver.receive(MessageType.RAM).name == "RAM.1"
    assert sender.sent == ["HELLO", "RAM.0", "RAM.1"]
    assert receiver.received == sender.sent
    assert receiver.bytes_received == sender.bytes_sent


def test_a_corrupted_payload_is_a_checksum_mismatch(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    Channel(a, "source", Fault("corrupt", "CLOCK")).send_json(MessageType.CLOCK, {"clock": 12345})
    with pytest.raises(
        ChecksumMismatchError, match=r"checksum mismatch in CLOCK \(message 0\) from the source"
    ):
        Channel(b, "source").receive(MessageType.CLOCK)


def test_another_version_is_refused_naming_both(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    Channel(a, "destination", Fault("version", "HELLO")).send_json(MessageType.HELLO, {})
    with pytest.raises(VersionMismatchError) as caught:
        Channel(b, "source").receive(MessageType.HELLO)
    assert str(caught.value) == "the source sent wire version 2; this destination speaks version 1"


def test_a_dropped_connection_mid_message(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(wire.encode_frame(MessageType.CPU, 0, b"{}")[:10])
    a.close()
    with pytest.raises(
        ConnectionDroppedError, match=r"closed the connection while CPU was expected \(10 of 20"
    ):
        Channel(b, "source").receive(MessageType.CPU)


def test_the_drop_fault_closes_instead_of_sending(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sender = Channel(a, "destination", Fault("drop", "RAM.1"))
    sender.send(MessageType.RAM, wire.encode_ram(0, b"x"))
    with pytest.raises(FaultInjectedError, match=r"instead of sending RAM\.1"):
        sender.send(MessageType.RAM, wire.encode_ram(1, b"y"))
    receiver = Channel(b, "source")
    receiver.receive(MessageType.RAM)
    with pytest.raises(ConnectionDroppedError):
        receiver.receive(MessageType.RAM)


def test_bad_magic_size_order_and_type(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    receiver = Channel(b, "source")
    a.sendall(b"HTTP/1.1 200 OK\r\n\r\n\r\n")
    with pytest.raises(BadMagicError, match="magic b'HTTP'"):
        receiver.receive(MessageType.HELLO)
    c, d = socket.socketpair()
    with c, d:
        c.sendall(struct.pack("<4sHHIII", b"TSCM", 1, 1, 0, wire.MAX_PAYLOAD + 1, 0))
        with pytest.raises(FrameTooLargeError):
            Channel(d, "source").receive(MessageType.HELLO)
    e, f = socket.socketpair()
    with e, f:
        e.sendall(wire.encode_frame(MessageType.HELLO, 3, b"{}"))
        with pytest.raises(OutOfOrderError, match="message 3 from the source, expected message 0"):
            Channel(f, "source").receive(MessageType.HELLO)
    g, h = socket.socketpair()
    with g, h:
        g.sendall(wire.encode_frame(MessageType.GO, 0, b"{}"))
        with pytest.raises(UnexpectedMessageError, match="expected READY from the source, got GO"):
            Channel(h, "source").receive(MessageType.READY)


def test_an_error_message_raises_the_peers_reason(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    Channel(a, "source").send_error("TSC frequency mismatch", "CLOCK")
    with pytest.raises(PeerError) as caught:
        Channel(b, "destination").receive(MessageType.READY)
    assert caught.value.reason == "TSC frequency mismatch"
    assert str(caught.value) == "the peer stopped at CLOCK: TSC frequency mismatch"


def test_fault_specs() -> None:
    assert Fault.parse("drop@RAM.2") == Fault("drop", "RAM.2")
    assert str(Fault.parse("corrupt@CLOCK")) == "corrupt@CLOCK"
    for bad in ("drop", "explode@CLOCK", "drop@NOPE", "drop@RAM.x", "drop@"):
        with pytest.raises(ValueError, match="bad fault"):
            Fault.parse(bad)
