"""Fuzzing the publish endpoints of a real server with >= 10,000 generated bad inputs.

``POST /api/events`` gets ``POST_BODIES`` bodies (with assorted ``Content-Type``s) and
``WS /ws/publish`` gets ``WS_BODIES`` messages (text and binary), from
:mod:`tests.reliability.fuzz_inputs`, plus hand-picked edge cases, while a subscriber is
attached. At least ``MALFORMED`` inputs per endpoint are refused (10,000 in all; the rest are
valid by chance and accepted). Checked: every answer is a clear 200/400/413/415 (never a 500)
or an ack/error reply (or the documented close code), the server never crashes or logs a
traceback, and everything broadcast is an event :func:`mlops_hooks.events.decode` accepts,
with a ``seq`` the server acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from mlops_hooks import events as ev
from tests.live_server import LiveServer
from tests.redis.fleet import wait_until
from tests.reliability.fuzz_inputs import EDGE_CASES, body

#: Bodies sent to each endpoint (drawn eight per Hypothesis example: generation is the cost).
POST_BODIES = 5600
WS_BODIES = 5600
#: Of those, at least this many per endpoint must be refused (the rest were valid by chance).
MALFORMED = 5000
PER_EXAMPLE = 8
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 10 + ["application/vnd.api+json", "application/json; charset=utf-8",
                                 "text/plain", "", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x"])

def fuzz(examples: int) -> settings:
    """Hypothesis settings: many examples, a fixed seed (reproducible in CI), no database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class Watcher(threading.Thread):
    """A subscriber attached for the whole fuzz, keeping every message it receives.

    Like a dashboard, it reconnects with ``?since=`` when closed as a slow consumer (4008: a
    large valid batch can outgrow its queue). Keepalive pings are off: websockets draws their
    payloads from the global ``random``, which Hypothesis reports when another thread changes
    it during generation.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.texts: list[str] = []
        self.close_code: int | None = None
        self.reconnects = 0
        #: The stream position reached (live events, or a snapshot/replay covering them).
        self.position = 0
        self.stopping = threading.Event()
        self.ws: ClientConnection | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        last = None
        while not self.stopping.is_set():
            url = self.url if last is None else f"{self.url}?since={last}"
            with connect(url, max_size=None, open_timeout=20, ping_interval=None) as ws:
                self.ws = ws
                self.ready.set()
                try:
                    for message in ws:
                        text = message if isinstance(message, str) else message.decode()
                        self.texts.append(text)
                        data = json.loads(text)
                        seq = data.get("to") if data.get("type") == "replay" else data.get("seq")
                        if isinstance(seq, int) and seq > 0:  # events, snapshot and replay
                            last = self.position = max(self.position, seq)
                except ConnectionClosed:
                    pass
            if ws.close_code != 4008:
                self.close_code = ws.close_code if not self.stopping.is_set() else None
                return
            self.reconnects += 1

    def stop(self) -> None:
        self.stopping.set()
        if self.ws is not None:
            self.ws.close()
        self.join(10)

    def events(self) -> list[dict[str, Any]]:
        """The events publishers sent (not those the server raised: run states, rule alerts)."""
        return [m for m in map(json.loads, list(self.texts))
                if m.get("type") in ev.EVENT_CLASSES and not _server_raised(m)]


def _server_raised(message: dict[str, Any]) -> bool:
    alert = message.get("alert")
    return isinstance(alert, dict) and alert.get("source") == "alert_rules"


@dataclass
class Target:
    server: LiveServer
    watcher: Watcher
    http: httpx.Client
    accepted: set[int] = field(default_factory=set)
    answers: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1

    def verify(self) -> None:
        """The server is alive and clean; the subscriber got only valid, acknowledged events."""
        assert self.server.proc is not None and self.server.proc.poll() is None, "server died"
        top = max(self.accepted, default=0)
        wait_until(lambda: self.watcher.position >= top, 30, f"seq {top} at the subscriber")
        assert self.watcher.is_alive(), f"subscriber closed: {self.watcher.close_code}"
        events = self.watcher.events()
        for text in self.watcher.texts:
            data = json.loads(text)
            if data.get("type") in ev.ALL_EVENT_CLASSES:  # run_state: raised by the server
                ev.decode(text)  # raises EventError on anything invalid
            else:
                assert data.get("type") in ("snapshot", "replay", "pong", "error"), data
        assert {e["seq"] for e in events} <= self.accepted
        log = self.server.log()
        assert "Traceback" not in log and "Exception in ASGI" not in log, log
        assert self.http.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    server = LiveServer(workdir, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                             "--queue-size", "64MB"])
    with server:
        watcher = Watcher(server.ws_url)
        watcher.start()
        assert watcher.ready.wait(20)
        with httpx.Client(base_url=server.http_url, timeout=30) as http:
            yield Target(server, watcher, http)
        watcher.stop()


def post(target: Target, payload: str | bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = target.http.post("/api/events", content=payload, headers=headers)
    target.count(str(response.status_code))
    assert response.status_code in (200, 400, 413, 415), (payload[:300], response.text)
    answer = response.json()  # always a JSON body
    if response.status_code == 200:
        assert answer["accepted"] + len(answer["duplicates"]) == len(answer["seqs"])
        target.accepted.update(answer["seqs"])
    else:
        assert isinstance(answer["error"], str) and answer["error"], answer


@pytest.mark.timeout(240)
def test_fuzz_post_events(target: Target) -> None:
    calls = 0

    @fuzz(POST_BODIES // PER_EXAMPLE)
    @given(payloads=st.lists(st.tuples(body(), CONTENT_TYPES), min_size=PER_EXAMPLE,
                             max_size=PER_EXAMPLE))
    def some(payloads: list[tuple[str | bytes, str]]) -> None:
        nonlocal calls
        for payload, content_type in payloads:
            calls += 1
            post(target, payload, content_type)

    some()
    for payload in EDGE_CASES:
        post(target, payload, "application/json")
    print(f"POST /api/events: {calls} generated + {len(EDGE_CASES)} edge-case bodies; "
          f"answers {sorted(target.answers.items())}")
    assert calls >= POST_BODIES
    refused = sum(n for code, n in target.answers.items() if code in ("400", "413", "415"))
    assert refused >= MALFORMED
    assert target.answers.get("200", 0) > 0 and target.answers.get("415", 0) > 0
    target.verify()


class Publisher:
    """A ``/ws/publish`` connection that is reopened when the server closes it (1003/1009)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.open()
        self.reopened = 0

    def open(self) -> ClientConnection:
        return self.stack.enter_context(connect(self.url, open_timeout=20, ping_interval=None))

    def send(self, target: Target, payload: str | bytes) -> None:
        self.ws.send(payload)
        try:
            reply = json.loads(self.ws.recv(timeout=20))
        except ConnectionClosed:
            code = self.ws.close_code
            target.count(f"close {code}")
            too_big = isinstance(payload, str) and len(payload.encode(errors="replace")) > 65536
            assert code == (1009 if too_big else 1003), (code, payload[:200])
            self.ws = self.open()
            self.reopened += 1
            return
        target.count(reply["type"])
        assert reply["type"] in ("ack", "error", "pong"), reply
        if reply["type"] == "ack":
            target.accepted.add(reply["seq"])
        elif reply["type"] == "error":
            assert isinstance(reply["error"], str) and reply["error"], reply
            assert reply["field"] is not None  # a field-less error means "server unavailable"


@pytest.mark.timeout(240)
def test_fuzz_ws_publish(target: Target) -> None:
    publisher = Publisher(target.server.publish_url)
    calls = 0

    @fuzz(WS_BODIES // PER_EXAMPLE)
    @given(payloads=st.lists(body(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def some(payloads: list[str | bytes]) -> None:
        nonlocal calls
        for payload in payloads:
            calls += 1
            publisher.send(target, payload)

    try:
        some()
        for payload in EDGE_CASES:
            publisher.send(target, payload)
    finally:
        publisher.stack.close()
    print(f"WS /ws/publish: {calls} generated + {len(EDGE_CASES)} edge-case messages; "
          f"answers so far {sorted(target.answers.items())}; reopened {publisher.reopened}; "
          f"subscriber reconnects {target.watcher.reconnects}")
    assert calls >= WS_BODIES
    refused = sum(n for kind, n in target.answers.items() if kind == "error" or "close" in kind)
    assert refused >= MALFORMED
    assert target.answers.get("ack", 0) > 0 and publisher.reopened > 0
    target.verify()
