"""The migration stream: versioned, length-prefixed, checksummed messages over one TCP connection.

Every message is a 20-byte header and a payload (all little-endian):

====== ==== ============ ==================================================
offset size field        meaning
====== ==== ============ ==================================================
0      4    ``magic``    ``b"TSCM"``: a tsclab migration stream
4      2    ``version``  :data:`VERSION` (1); anything else is refused
6      2    ``type``     a :class:`MessageType`
8      4    ``seq``      0, 1, 2... per direction: a lost or repeated message shows
12     4    ``length``   payload bytes, at most :data:`MAX_PAYLOAD`
16     4    ``crc32``    CRC-32 (``zlib.crc32``, the IEEE 802.3 polynomial) of header
                         bytes 0-15 followed by the payload
====== ==== ============ ==================================================

Payloads are UTF-8 JSON objects with sorted keys, except ``RAM``: a u64
guest-physical offset followed by the bytes. ``docs/kvm.md`` ("Migration")
lists each message's fields.

The receiver checks, in order: the magic, the version (before trusting
anything else in the header), the length, the sequence number, the
checksum, then the type it expects. Each failure is its own
:class:`WireError` subclass whose message says what was expected and what
came. A closed connection mid-message is :class:`ConnectionDroppedError`.

Fault injection for the tests (:class:`Fault`) lives here too, applied by
whichever side sends the named message: ``drop`` closes the connection
instead of sending it, ``corrupt`` flips a payload byte after the checksum
was computed, ``version`` sends it with version ``VERSION + 1``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import socket
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

MAGIC = b"TSCM"
VERSION = 1
HEADER = struct.Struct("<4sHHIII")
assert HEADER.size == 20
MAX_PAYLOAD = 16 << 20
RAM_OFFSET = struct.Struct("<Q")


class MessageType(enum.IntEnum):
    """The messages of version 1, in the order a migration sends them."""

    HELLO = 1  # source -> destination: what is coming
    WELCOME = 2  # destination -> source: what the destination offers
    RAM = 3  # source -> destination: a piece of guest memory
    CPU = 4  # source -> destination: the vCPU's registers and MSRs
    CLOCK = 5  # source -> destination: the clock state the policy saved
    READY = 6  # destination -> source: restored, not running
    GO = 7  # source -> destination: commit - the guest is the destination's
    DONE = 8  # destination -> source: the guest runs there
    ERROR = 9  # either way: why this side stops


class WireError(Exception):
    """The stream broke; the message says how."""


class ConnectionDroppedError(WireError):
    """The peer closed the connection (or it broke) before a whole message arrived."""


class BadMagicError(WireError):
    """The bytes are not a tsclab migration stream."""


class VersionMismatchError(WireError):
    """The peer speaks another version of the stream."""


class ChecksumMismatchError(WireError):
    """A message arrived with a CRC-32 that does not match its bytes."""


class OutOfOrderError(WireError):
    """A message with an unexpected sequence number (lost, repeated or reordered)."""


class FrameTooLargeError(WireError):
    """A header announcing more payload than :data:`MAX_PAYLOAD`."""


class UnexpectedMessageError(WireError):
    """A well-formed message of a type this side did not expect now."""


class PeerError(WireError):
    """The peer sent ERROR: ``reason`` is its explanation."""

    def __init__(self, reason: str, stage: str) -> None:
        super().__init__(f"the peer stopped at {stage}: {reason}")
        self.reason = reason
        self.stage = stage


FAULT_KINDS = ("drop", "corrupt", "version")


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``kind`` at the message named ``message`` (``CLOCK``, ``RAM.2``...)."""

    kind: str
    message: str

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``KIND@MESSAGE``, e.g. ``drop@RAM.1``; ValueError with the choices otherwise."""
        kind, sep, message = spec.partition("@")
        if not sep or kind not in FAULT_KINDS or not message:
            raise ValueError(
                f"bad fault {spec!r}: expected KIND@MESSAGE with KIND one of {', '.join(FAULT_KINDS)}"
            )
        name, _, index = message.partition(".")
        if name not in MessageType.__members__ or (index and not index.isdigit()):
            raise ValueError(f"bad fault {spec!r}: unknown message {message!r}")
        return cls(kind, message)

    def __str__(self) -> str:
        return f"{self.kind}@{self.message}"


class FaultInjectedError(WireError):
    """This side dropped the connection on purpose (a ``drop`` fault)."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: MessageType
    seq: int
    payload: bytes
    name: str  # the type, with the index for RAM: "RAM.2"

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WireError(f"{self.name}: payload is not JSON: {err}") from None
        if not isinstance(value, dict):
            raise WireError(f"{self.name}: payload is not a JSON object")
        return value


def encode_json(record: dict[str, Any]) -> bytes:
    """A payload: compact JSON, keys sorted (the same record always gives the same bytes)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_ram(offset: int, data: bytes) -> bytes:
    return RAM_OFFSET.pack(offset) + data


def decode_ram(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < RAM_OFFSET.size:
        raise WireError(f"RAM: payload of {len(payload)} bytes has no offset")
    (offset,) = RAM_OFFSET.unpack_from(payload)
    return offset, payload[RAM_OFFSET.size :]


def encode_frame(kind: MessageType, seq: int, payload: bytes, *, version: int = VERSION) -> bytes:
    """Header and payload; the CRC covers header bytes 0-15 and the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{kind.name}: {len(payload)} bytes exceed the {MAX_PAYLOAD}-byte limit")
    head = HEADER.pack(MAGIC, version, int(kind), seq, len(payload), 0)[:16]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


class Channel:
    """One side of the stream on a connected socket: numbered sends and checked receives.

    ``peer`` names the other side in error messages ("source",
    "destination"); ``fault`` is applied to the message it names if this
    side sends it. :attr:`sent`/:attr:`received` list message names in
    order, for the report.
    """

    def __init__(self, sock: socket.socket, peer: str, fault: Fault | None = None) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small messages answered by small messages: Nagle's algorithm meeting the peer's delayed
            # ACK would hold one back for up to 40 ms (RFC 896, RFC 1122 4.2.3.2).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.peer = peer
        self.side = {"source": "destination", "destination": "source"}.get(peer, "side")
        self.fault = fault
        self._send_seq = 0
        self._recv_seq = 0
        self._sent_count: Counter[MessageType] = Counter()
        self._recv_count: Counter[MessageType] = Counter()
        self.sent: list[str] = []
        self.received: list[str] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.last_receive_ns = 0  # the last receive, from its header's arrival to its checks' end

    def close(self) -> None:
        self.sock.close()

    # --- sending

    def _name(self, kind: MessageType, counts: Counter[MessageType]) -> str:
        return f"RAM.{counts[kind]}" if kind == MessageType.RAM else kind.name

    def send(self, kind: MessageType, payload: bytes) -> str:
        """Send one message; returns its name. A ``drop`` fault closes the socket and raises."""
        name = self._name(kind, self._sent_count)
        version = VERSION
        corrupt = False
        if self.fault is not None and self.fault.message == name:
            if self.fault.kind == "drop":
                self.sock.close()
                raise FaultInjectedError(f"fault injected: connection dropped instead of sending {name}")
            version = VERSION + 1 if self.fault.kind == "version" else VERSION
            corrupt = self.fault.kind == "corrupt"
        frame = bytearray(encode_frame(kind, self._send_seq, payload, version=version))
        if corrupt:  # one bit of the payload (of the header's type field if there is no payload)
            frame[(HEADER.size + len(payload) // 2) if payload else 6] ^= 0x40
        try:
            self.sock.sendall(frame)
        except OSError as err:
            raise ConnectionDroppedError(
                f"sending {name} to the {self.peer}: {err.strerror or err}"
            ) from None
        self._send_seq += 1
        self._sent_count[kind] += 1
        self.sent.append(name)
        self.bytes_sent += len(frame)
        return name

    def send_json(self, kind: MessageType, record: dict[str, Any]) -> str:
        return self.send(kind, encode_json(record))

    def send_error(self, reason: str, stage: str) -> None:
        """Best effort: tell the peer why this side stops (it may be gone already)."""
        with contextlib.suppress(WireError, OSError):
            self.send_json(MessageType.ERROR, {"reason": reason, "stage": stage})

    # --- receiving

    def _read(self, n: int, what: str) -> bytes:
        chunks: list[bytes] = []
        left = n
        while left:
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except TimeoutError:
                raise ConnectionDroppedError(f"waiting for {what} from the {self.peer}: timed out") from None
            except OSError as err:
                raise ConnectionDroppedError(
                    f"waiting for {what} from the {self.peer}: {err.strerror or err}"
                ) from None
            if not chunk:
                got = n - left
                raise ConnectionDroppedError(
                    f"the {self.peer} closed the connection while {what} was expected "
                    f"({got} of {n} bytes received)"
                )
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self, *expected: MessageType) -> Frame:
        """The next message, checked; ERROR from the peer raises :class:`PeerError`."""
        want = " or ".join(k.name for k in expected) or "a message"
        head = self._read(HEADER.size, want)
        arrived = time.perf_counter_ns()
        magic, version, kind_raw, seq, length, crc = HEADER.unpack(head)
        if magic != MAGIC:
            raise BadMagicError(f"expected {want} from the {self.peer}: magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise VersionMismatchError(
                f"the {self.peer} sent wire version {version}; this {self.side} speaks version {VERSION}"
            )
        if length > MAX_PAYLOAD:
            raise FrameTooLargeError(f"the {self.peer} announced {length} bytes; the limit is {MAX_PAYLOAD}")
        payload = self._read(length, want)
        self.bytes_received += HEADER.size + length
        if seq != self._recv_seq:
            raise OutOfOrderError(f"message {seq} from the {self.peer}, expected message {self._recv_seq}")
        actual = zlib.crc32(payload, zlib.crc32(head[:16]))
        try:
            kind = MessageType(kind_raw)
        except ValueError:
            kind = None
        label = kind.name if kind is not None else f"type {kind_raw}"
        if actual != crc:
            raise ChecksumMismatchError(
                f"checksum mismatch in {label} (message {seq}) from the {self.peer}: "
                f"header says {crc:#010x}, bytes give {actual:#010x}"
            )
        if kind is None:
            raise UnexpectedMessageError(
                f"unknown message type {kind_raw} from the {self.peer}, expected {want}"
            )
        self._recv_seq += 1
        name = self._name(kind, self._recv_count)
        self._recv_count[kind] += 1
        self.received.append(name)
        frame = Frame(kind, seq, payload, name)
        self.last_receive_ns = time.perf_counter_ns() - arrived
        if kind == MessageType.ERROR and MessageType.ERROR not in expected:
            record = frame.json()
            raise PeerError(str(record.get("reason", "?")), str(record.get("stage", "?")))
        if expected and kind not in expected:
            raise UnexpectedMessageError(f"expected {want} from the {self.peer}, got {name}")
        return frame
