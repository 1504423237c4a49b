from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from starlette.testclient import WebSocketDenialResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from tests.live_server import LiveServer
from tests.server.conftest import progress
from tests.server.live import QUIET, TIMEOUT


def _denied(client, url, **kwargs):
    with pytest.raises(WebSocketDenialResponse) as info, \
            client.websocket_connect(url, **kwargs):
        pass
    return info.value.status_code, info.value.json()["error"]


def test_publisher_token_on_websocket_and_http(make_client):
    client = make_client(token="s3cret")
    assert _denied(client, "/ws/publish")[0] == 401
    status, error = _denied(client, "/ws/publish", headers={"Authorization": "Bearer nope"})
    assert status == 401 and "wrong" in error
    with client.websocket_connect("/ws/publish",
                                  headers={"Authorization": "Bearer s3cret"}) as pub:
        pub.send_json(progress())
        assert pub.receive_json()["type"] == "ack"
    missing = client.post("/api/events", json=progress())
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    ok = client.post("/api/events", json=progress(), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    with client.websocket_connect("/ws") as sub:  # dashboards need no publisher token
        assert sub.receive_json()["type"] == "snapshot"


def test_subscriber_token(make_client):
    client = make_client(subscriber_token="view", token="pub")
    status, error = _denied(client, "/ws")
    assert status == 401 and "?token=" in error
    assert _denied(client, "/ws?token=bad")[0] == 401
    for url in ("/ws?token=view", "/ws?token=pub"):
        with client.websocket_connect(url) as sub:
            assert sub.receive_json()["type"] == "snapshot"


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8001",
                                    "http://[::1]:9", "http://testserver",
                                    "https://dash.example.com"])
def test_allowed_origins(make_client, origin):
    client = make_client(allowed_origins=("https://dash.example.com",))
    with client.websocket_connect("/ws", headers={"Origin": origin}) as sub:
        assert sub.receive_json()["type"] == "snapshot"


@pytest.mark.parametrize("path", ["/ws", "/ws/publish"])
def test_foreign_origin_is_refused(client, path):
    status, error = _denied(client, path, headers={"Origin": "http://evil.example"})
    assert status == 403 and "--allowed-origin http://evil.example" in error


def test_foreign_origin_cannot_post_events(client):
    response = client.post("/api/events", json=progress(), headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert client.get("/healthz").json()["seq"] == 0


def test_foreign_host_is_refused_and_the_server_keeps_serving(client):
    response = client.get("/api/models", headers={"Host": "evil.example:8001"})
    assert response.status_code == 400 and "DNS-rebinding" in response.json()["error"]
    status, _ = _denied(client, "/ws", headers={"Host": "rebind.attacker.test"})
    assert status == 400
    for host in ("127.0.0.1:8001", "localhost:8001", "[::1]:8001", "10.0.0.5"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_dashboards_and_publishers_have_a_connection_budget_each(make_client):
    client = make_client(max_connections=1, max_publishers=1)
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws/publish") as b:
        a.receive_json()
        b.send_json({"type": "ping", "id": 1})
        b.receive_json()
        status, error = _denied(client, "/ws")
        assert status == 503 and "too many dashboard connections (1 of 1)" in error
        status, error = _denied(client, "/ws/publish")
        assert status == 503 and "too many publisher connections (1 of 1)" in error
    with client.websocket_connect("/ws") as c:
        assert c.receive_json()["connections"] == 1


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_allowed_host_flag_lets_that_name_in_and_no_other(tmp_path):
    """``serve --allowed-host``, on a real server: HTTP and the WebSocket handshake."""
    with LiveServer(tmp_path, extra_args=[*QUIET, "--allowed-host", "dash.example",
                                          "--allowed-host", "Ops.Example"]) as server:
        port = server.port

        def get(host: str) -> httpx.Response:
            return httpx.get(f"{server.http_url}/api/models", headers={"Host": host},
                             timeout=TIMEOUT)

        def subscribe(host: str) -> Any:  # the URL's name is the Host header, sent to 127.0.0.1
            sock = socket.create_connection(("127.0.0.1", port))
            return sync_connect(f"ws://{host}:{port}/ws", sock=sock, compression=None,
                                open_timeout=TIMEOUT)

        for host in ("dash.example", "ops.example"):  # names compare case-insensitively
            assert get(f"{host}:{port}").status_code == 200
            with subscribe(host) as ws:
                assert json.loads(ws.recv(TIMEOUT))["type"] == "snapshot"
        refused = get(f"evil.example:{port}")
        assert refused.status_code == 400
        assert "--allowed-host evil.example" in refused.json()["error"]
        assert get(f"sub.dash.example:{port}").status_code == 400  # no wildcard subdomains
        with pytest.raises(InvalidStatus) as info:
            subscribe("evil.example")
        assert info.value.response.status_code == 400
        assert "DNS-rebinding" in json.loads(bytes(info.value.response.body or b""))["error"]
        assert get(f"127.0.0.1:{port}").status_code == 200  # addresses always pass
