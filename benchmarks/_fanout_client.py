"""Subscriber process for ``fanout.py``.

``python _fanout_client.py URL READERS STALLED EXPECT OUT``: opens READERS subscribers that read
everything and STALLED ones that never read (tiny receive buffers), prints ``ready``, waits for
a line on stdin (the publisher starts), and waits until every reader has EXPECT benchmark
messages (or nothing arrived for a while). Writes the publish→receive latencies (seconds, as
float64) to OUT and a JSON line of counts, closes and this process's CPU seconds to stdout, then
stays connected until another line arrives on stdin (so the server's CPU time excludes
disconnects). Timestamps are ``time.monotonic()``, which is system-wide on Linux.

The client is lean, and the same for every server measured, so that it takes as little of the
machine's CPU from the server under test as a Python client can: one ``epoll`` loop over
non-blocking sockets (no asyncio task, future or handle per message), the opening handshake by
the sans-I/O ``websockets`` :class:`~websockets.client.ClientProtocol`, and then every byte
parsed as RFC 6455 server-to-client frames (header checks, fragmented messages, ping → pong,
the closing handshake). Every text message is parsed as JSON, and its UTF-8 validated, by a
typed ``msgspec`` decoder that builds only the publisher's timestamp. The receive time is taken
when a connection's bytes reach this process, before they are parsed. (A ``websockets`` asyncio
client per connection, with a dict per message, used about as much CPU as the server under test
and put its own queueing into the latencies.)
"""

from __future__ import annotations

import array
import json
import os
import selectors
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

IDLE_TIMEOUT = 4.0
_TEXT, _CONT, _BINARY, _CLOSE, _PING, _PONG = 1, 0, 2, 8, 9, 10


class _Meta(msgspec.Struct):
    t: float | None = None


class _Activity(msgspec.Struct):
    metadata: _Meta | None = None


class _Message(msgspec.Struct):
    """The parts of a message the benchmark reads (the rest is parsed and skipped)."""

    type: str = ""
    activity: _Activity | list[Any] | None = None  # a list in mlops-hooks' snapshot


_decode = msgspec.json.Decoder(_Message).decode


def sent_at(data: bytes) -> float | None:
    """The publisher's timestamp of a benchmark message (``None``: another message)."""
    activity = _decode(data).activity
    if isinstance(activity, _Activity) and activity.metadata is not None:
        return activity.metadata.t
    return None


class ProtocolError(Exception):
    """The server sent something RFC 6455 does not allow."""


def handshake(url: str, rcvbuf: int | None = None) -> socket.socket:
    """A connected socket past the opening handshake, with no frame read yet.

    The HTTP response is peeked first so that ``websockets`` parses exactly its bytes: the
    frames behind it stay in the socket for :class:`Reader`.

    Raises:
        ConnectionError: The server closed the connection during the handshake.
        websockets.exceptions.InvalidHandshake: The server refused it.
    """
    parts = urlsplit(url)
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    ws = ClientProtocol(parse_uri(url), max_size=None)
    ws.send_request(ws.connect())
    sock.sendall(b"".join(ws.data_to_send()))
    while True:
        head = sock.recv(65536, socket.MSG_PEEK)
        if not head:
            raise ConnectionError("the server closed the connection during the handshake")
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            break
        time.sleep(0.001)  # the rest of the response is on its way
    ws.receive_data(sock.recv(end + 4, socket.MSG_WAITALL))
    events = ws.events_received()
    if ws.handshake_exc is not None:
        raise ws.handshake_exc
    if not events or not isinstance(events[0], Response):
        raise ConnectionError("no handshake response")
    sock.setblocking(False)
    return sock


class Stats:
    """What every reader of this process shares."""

    def __init__(self) -> None:
        self.latencies: array.array[float] = array.array("d")
        self.closes: list[int] = []
        self.last = time.monotonic()
        self.done = 0


class Reader:
    """One subscriber connection that reads everything and times the benchmark messages."""

    def __init__(self, sock: socket.socket, expect: int, stats: Stats) -> None:
        self.sock = sock
        self.expect = expect
        self.stats = stats
        self.count = 0
        self.finished = False
        self.closed = False
        self._rest = b""
        self._parts: list[bytes] | None = None  # of a fragmented message
        self._text = False

    def feed(self, data: bytes, now: float) -> None:
        """Parse the frames in ``data`` (with what an earlier read left of an incomplete one)."""
        if self._rest:
            data = self._rest + data
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            if b1 & 0x80 or b0 & 0x70:
                raise ProtocolError("a masked server frame, or reserved bits set")
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            self._frame(b0 & 0x80, b0 & 0x0F, data[pos + head:end], now)
            pos = end
        self._rest = data[pos:]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (_TEXT, _BINARY):
            if self._parts is not None:
                raise ProtocolError("a new message before the previous one was complete")
            if not fin:
                self._parts, self._text = [payload], opcode == _TEXT
            elif opcode == _TEXT:
                self._message(payload, now)
        elif opcode == _CONT:
            if self._parts is None:
                raise ProtocolError("a continuation frame without a message")
            self._parts.append(payload)
            if fin:
                parts, self._parts = self._parts, None
                if self._text:
                    self._message(b"".join(parts), now)
        elif opcode >= _CLOSE:
            if not fin or len(payload) > 125:
                raise ProtocolError("a fragmented or oversized control frame")
            if opcode == _PING:
                self._send(Frame(Opcode.PONG, payload))
            elif opcode == _CLOSE:
                close = Close.parse(payload)
                self._send(Frame(Opcode.CLOSE, close.serialize()))
                self.stats.closes.append(close.code)
                self.closed = True
                self.finish()
            elif opcode != _PONG:
                raise ProtocolError(f"unknown control opcode {opcode}")
        else:
            raise ProtocolError(f"unknown opcode {opcode}")

    def _message(self, data: bytes, now: float) -> None:
        sent = sent_at(data)
        if sent is None:
            return
        stats = self.stats
        stats.latencies.append(now - sent)
        stats.last = now
        self.count += 1
        if self.count == self.expect:
            self.finish()

    def _send(self, frame: Frame) -> None:
        data = frame.serialize(mask=True, extensions=[])
        self.sock.setblocking(True)  # control frames are rare and tiny
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the connection is gone: reported when its end is read
        finally:
            self.sock.setblocking(False)

    def lost(self) -> None:
        """The connection ended without a close frame (or after it)."""
        if not self.closed:
            self.closed = True
            self.stats.closes.append(1006)
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.stats.done += 1


def read_until_done(readers: list[Reader], stats: Stats) -> None:
    """Read every connection until each reader has its messages or nothing comes any more."""
    selector = selectors.DefaultSelector()
    for reader in readers:
        selector.register(reader.sock, selectors.EVENT_READ, reader)
    buffer = bytearray(1 << 18)
    view = memoryview(buffer)
    monotonic = time.monotonic
    try:
        while stats.done < len(readers):
            ready = selector.select(0.05)
            if not ready and monotonic() - stats.last > IDLE_TIMEOUT:
                return
            for key, _ in ready:
                conn: Reader = key.data
                try:
                    size = conn.sock.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    size = 0
                now = monotonic()
                if size == 0:
                    selector.unregister(conn.sock)
                    conn.lost()
                    continue
                try:
                    conn.feed(bytes(view[:size]), now)
                except (ProtocolError, msgspec.DecodeError) as exc:
                    print(f"subscriber: {exc}", file=sys.stderr)
                    selector.unregister(conn.sock)
                    conn.lost()
                if conn.closed and conn.sock.fileno() in selector.get_map():
                    selector.unregister(conn.sock)
    finally:
        selector.close()


def _cpu() -> tuple[float, float]:
    times = os.times()
    return times.user, times.system


def main() -> None:
    url, n_readers, n_stalled, expect, out = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                              int(sys.argv[4]), sys.argv[5])
    stats = Stats()
    stuck = [handshake(url, rcvbuf=4096) for _ in range(n_stalled)]
    readers = [Reader(handshake(url), expect, stats) for _ in range(n_readers)]
    print("ready", flush=True)
    sys.stdin.readline()  # the driver says the publisher starts
    cpu = _cpu()
    stats.last = time.monotonic()
    read_until_done(readers, stats)
    user, system = (now - then for now, then in zip(_cpu(), cpu, strict=True))
    with open(out, "wb") as fh:
        stats.latencies.tofile(fh)
    received = sum(reader.count for reader in readers)
    print(json.dumps({"received": received, "closes": stats.closes, "last": stats.last,
                      "cpu": user + system, "cpu_user": user}), flush=True)
    sys.stdin.readline()  # the driver has sampled the server
    for sock in [reader.sock for reader in readers] + stuck:
        sock.close()


if __name__ == "__main__":
    main()
