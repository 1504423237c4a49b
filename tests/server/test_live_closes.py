"""End to end, the closes a real client sees, read on bare sockets (a client library would hide
the bytes): protocol errors end with their code and a clean EOF, never a reset; a refused
handshake names the version the server speaks; a dashboard that stopped reading gets its 4008
when it reads again, and one that never does is cut off.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from mlops_hooks.protocol import CloseCode
from tests.live_server import LiveServer
from tests.server.live import (
    QUIET,
    TIMEOUT,
    never_reading,
    publish,
    publisher,
    recv_json,
    server_metric,
)
from tests.server.rawws import (
    Opcode,
    ends_cleanly,
    frame,
    handshake,
    read_close,
    read_response,
    send_handshake,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TRIES = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("closes"), extra_args=list(QUIET)) as live:
        yield live


@pytest.mark.parametrize("path", ["/ws/publish", "/ws"])
def test_an_oversize_message_gets_1009_and_a_clean_end_never_a_reset(server, path):
    for _ in range(TRIES):
        sock, pending = handshake(server.port, path)
        with sock:
            sock.sendall(frame(Opcode.TEXT, b"x" * 65_537))
            code, reason = read_close(sock, pending)
            assert code == CloseCode.MESSAGE_TOO_BIG and "65537" in reason
            assert ends_cleanly(sock)


def test_invalid_utf8_gets_1007_a_clean_end_and_one_short_log_line(server):
    for _ in range(TRIES):
        sock, pending = handshake(server.port, "/ws/publish")
        with sock:
            sock.sendall(frame(Opcode.TEXT, b'{"type": "\xff\xfe"}'))
            assert read_close(sock, pending)[0] == CloseCode.INVALID_DATA
            assert ends_cleanly(sock)
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "UnicodeDecodeError" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "UTF-8" in line]
    assert 1 <= len(lines) <= 2, lines  # rate-limited: one per interval, not one per client


def test_a_protocol_error_gets_1002_and_a_clean_end(server):
    for _ in range(TRIES):
        sock, pending = handshake(server.port, "/ws/publish")
        with sock:
            unmasked = bytes([0x81, 5]) + b"hello"  # a client must mask its frames
            sock.sendall(unmasked + frame(Opcode.TEXT, b"y" * 5000))
            assert read_close(sock, pending)[0] == CloseCode.PROTOCOL_ERROR
            assert ends_cleanly(sock)


def test_a_wrong_websocket_version_is_refused_naming_version_13(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        send_handshake(sock, "/ws", version="8")
        status, headers, _ = read_response(sock)
    assert 400 <= status < 500
    assert headers["sec-websocket-version"] == "13"


# --------------------------------------------------------------------------- a dashboard that
# stops reading: closed with 4008 by its queue budget.

#: The server used to wait this long for a stalled dashboard to drain before giving up on the
#: close frame; a dashboard that resumed reading later saw 1006.
OLD_CLOSE_WAIT = 10.0




def _server_holds(server: LiveServer, port: int) -> bool:
    """Whether the server process still has a connection from the client's ``port``."""
    assert server.proc is not None
    return any(c.raddr and c.raddr[1] == port
               for c in psutil.Process(server.proc.pid).net_connections("tcp"))


def test_a_stalled_dashboard_gets_4008_when_it_reads_again_and_a_gone_one_is_cut_off(tmp_path):
    async def scenario(server: LiveServer) -> None:
        quiet = {"ping_interval": None, "close_timeout": 1}
        late = await never_reading(server, **quiet)  # reads again, long after its close
        gone = await never_reading(server, **quiet)  # never reads again
        gone_port = gone.transport.get_extra_info("sockname")[1]
        try:
            for ws in (late, gone):
                assert (await recv_json(ws))["type"] == "snapshot"
            async with publisher(server.publish_url) as pub:
                n = 0
                while server_metric(server, "mlops_hooks_closed_slow_total") < 2:
                    for _ in range(25):
                        ack = await publish(pub, {"type": "activity_update", "activity": {
                            "id": f"a{n}", "title": f"#{n}", "description": "d" * 4000}})
                        assert ack["type"] == "ack", ack
                        n += 1
            await asyncio.sleep(OLD_CLOSE_WAIT + 1)  # the scenario: it reads again, late
            seqs: list[int] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seqs.append(json.loads(await asyncio.wait_for(late.recv(), 60))["seq"])
            assert seqs and seqs == sorted(set(seqs))  # what it had not read, in order
            assert closed.value.rcvd is not None, closed.value
            assert closed.value.rcvd.code == CloseCode.SLOW_CONSUMER
            assert closed.value.rcvd.reason == f"slow consumer: reconnect with ?since={seqs[-1]}"
            # The one that never reads is aborted after the grace, freeing what it held.
            deadline = time.monotonic() + 90
            while _server_holds(server, gone_port):
                assert time.monotonic() < deadline, "the server kept the stalled connection"
                await asyncio.sleep(0.2)
        finally:
            late.transport.abort()
            gone.transport.abort()
        health = httpx.get(server.http_url + "/healthz", timeout=TIMEOUT).json()
        assert health["subscribers"] == 0

    with LiveServer(tmp_path, extra_args=[*QUIET, "--queue-size", "256KB",
                                          "--slow-close-timeout", "20"]) as server:
        asyncio.run(scenario(server))
    assert "Traceback" not in server.log_path.read_text(errors="replace")

