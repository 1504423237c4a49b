"""A WebSocket client on a bare socket, for tests that need the bytes a library would hide.

Example:
    sock, pending = handshake(server.port, "/ws/publish")
    sock.sendall(frame(Opcode.TEXT, b"x" * 65_537))
    code, reason = read_close(sock, pending)
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

from websockets.frames import Opcode

__all__ = ["Opcode", "ends_cleanly", "frame", "handshake", "read_close", "read_frame",
           "read_response", "send_handshake"]

TIMEOUT = 10.0


def frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def send_handshake(sock: socket.socket, path: str, *, version: str = "13",
                   headers: dict[str, str] | None = None) -> None:
    """Send the opening handshake's request."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             f"Sec-WebSocket-Version: {version}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and what followed the head so far."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed during the handshake's response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, rest


def handshake(port: int, path: str, headers: dict[str, str] | None = None,
              ) -> tuple[socket.socket, bytearray]:
    """An open WebSocket connection on a bare socket (its response must be 101).

    Returns:
        The socket and what the server sent after its response so far (pass it to
        :func:`read_frame` or :func:`read_close`).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        send_handshake(sock, path, headers=headers)
        status, _, rest = read_response(sock)
        assert status == 101, status
    except BaseException:
        sock.close()
        raise
    return sock, bytearray(rest)


def _exact(sock: socket.socket, n: int, buffer: bytearray) -> bytes:
    while len(buffer) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the connection ended inside a frame")
        buffer += chunk
    out = bytes(buffer[:n])
    del buffer[:n]
    return out


def read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """The next (unmasked, server) frame: its opcode and payload."""
    b0, b1 = _exact(sock, 2, buffer)
    size = b1 & 0x7F
    if size == 126:
        size = struct.unpack("!H", _exact(sock, 2, buffer))[0]
    elif size == 127:
        size = struct.unpack("!Q", _exact(sock, 8, buffer))[0]
    return b0 & 0x0F, _exact(sock, size, buffer)


def read_close(sock: socket.socket, buffer: bytearray | None = None) -> tuple[int, str]:
    """Skip frames up to the server's close frame; its code and reason."""
    buffer = bytearray() if buffer is None else buffer
    while True:
        opcode, payload = read_frame(sock, buffer)
        if opcode == Opcode.CLOSE:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def ends_cleanly(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """Read until the connection ends: ``True`` on EOF, ``False`` on a reset."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return False
    raise TimeoutError("the server kept the connection open")
