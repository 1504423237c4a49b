"""The publisher against a real server process: order, outages, restarts, states, auth."""

from __future__ import annotations

import json
import threading
import time

import pytest
from websockets.sync.client import connect

from mlops_hooks import events as ev
from mlops_hooks.run import Run
from tests.publisher.support import Server, activity, free_port, marks, progress
from tests.timestamps import assert_iso_utc_between

pytestmark = pytest.mark.timeout(60)


def replay_from_start(server: Server, run_id: str) -> list[dict]:
    """Everything the server broadcast for ``run_id``, read by a subscriber with ?since=0."""
    with connect(f"{server.ws_url}?since=0") as ws:
        header = json.loads(ws.recv(timeout=10))
        assert header["type"] == "replay", header
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(header["count"])]
    return [f for f in frames if f.get("run_id") == run_id]


def test_server_down_at_start_then_up_every_event_arrives_in_order(tmp_path, make_publisher,
                                                                     states):
    port = free_port()
    publisher = make_publisher(f"ws://127.0.0.1:{port}/ws")
    run_id = "down-then-up"
    sent = [progress(i, run_id) if i % 4 else activity(i, run_id) for i in range(400)]
    before = time.time()
    for event in sent:
        publisher.publish(event)
    after = time.time()
    states.wait_for(lambda names: names.count("error") >= 2)  # really down, really retrying
    assert publisher.status()["buffered"] == 400

    server = Server(tmp_path / "server", port=port)
    with server:
        assert publisher.flush(20)
        frames = replay_from_start(server, run_id)
    # every event reached the server's ingest (its hooks), in the order it was emitted
    rows = server.received(run_id)
    assert marks(rows) == [f"#{i}" for i in range(400)]
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 400
    # each stamped by the publisher when emitted, and keyed "<process prefix>-<n>" in order
    for row in rows:
        assert_iso_utc_between(row["timestamp"], before, after)
    (prefix,) = {r["event_id"].rsplit("-", 1)[0] for r in rows}
    assert [r["event_id"] for r in rows] == [f"{prefix}-{n}" for n in range(1, 401)]
    # and a subscriber replaying from the start sees them in that order (the server coalesces
    # superseded progress for subscribers; lifecycle events all arrive)
    assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)
    assert [m for m in marks(frames) if int(m[1:]) % 4 == 0] == \
        [f"#{i}" for i in range(0, 400, 4)]
    assert set(marks(frames)) <= set(marks(rows))
    status = publisher.status()
    assert (status["acked"], status["duplicates"], status["dropped"]) == (400, 0, 0)
    assert "connected" in states.names()


@pytest.mark.timeout(120)
def test_server_killed_and_restarted_loses_and_duplicates_nothing(server, make_publisher,
                                                                  states):
    publisher = make_publisher(server.ws_url)
    run_id = "kill-restart"
    for i in range(150):
        publisher.publish(progress(i, run_id) if i % 3 else activity(i, run_id))
    assert publisher.flush(20)
    server.kill()  # SIGKILL, like a crash: no close frame
    for i in range(150, 300):  # the run goes on while the server is gone
        publisher.publish(progress(i, run_id) if i % 3 else activity(i, run_id))
    states.wait_for(lambda names: "disconnected" in names)
    server.start()  # same port, same database
    for i in range(300, 450):
        publisher.publish(progress(i, run_id) if i % 3 else activity(i, run_id))
    assert publisher.flush(20)

    rows = server.received(run_id)
    assert marks(rows) == [f"#{i}" for i in range(450)]  # none lost, none twice, in order
    assert len({r["event_id"] for r in rows}) == 450
    seqs = [r["seq"] for r in rows]  # the restarted server never reuses a seq
    assert seqs == sorted(seqs) and len(set(seqs)) == 450
    status = publisher.status()
    assert status["duplicates"] == 0  # nothing acknowledged was ever sent again
    assert status["acked"] == 450 and status["reconnects"] >= 1


@pytest.mark.timeout(120)
def test_kill_with_events_in_flight_loses_nothing(server, make_publisher, states):
    publisher = make_publisher(server.ws_url)
    run_id = "in-flight"
    stop = threading.Event()
    count = 0

    def training() -> None:
        nonlocal count
        while not stop.is_set() and count < 3000:
            publisher.publish(progress(count, run_id) if count % 5 else activity(count, run_id))
            count += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=training)
    thread.start()
    states.wait_for(lambda names: "connected" in names)
    deadline = time.monotonic() + 30
    while publisher.status()["acked"] < 200:
        assert time.monotonic() < deadline, publisher.status()
        time.sleep(0.01)
    server.kill()
    states.wait_for(lambda names: "disconnected" in names)
    server.start()
    stop.set()
    thread.join()
    assert publisher.flush(30)

    rows = server.received(run_id)
    first_seen: dict[str, int] = {}
    for index, mark in enumerate(marks(rows)):
        first_seen.setdefault(mark, index)
    order = sorted(first_seen, key=first_seen.__getitem__)
    assert len(order) == count, (len(order), count, publisher.status())
    assert order == [f"#{i}" for i in range(count)]
    # A resend is only ever of an unacknowledged event: the server recognises it by event_id
    # (its idempotency keys are persisted), so at most the few in flight at the kill repeat.
    assert len(rows) - count <= publisher.settings.max_inflight


def test_connection_states_follow_the_spec(tmp_path, make_publisher, states):
    port = free_port()
    publisher = make_publisher(f"ws://127.0.0.1:{port}/ws", backoff_base=0.01, backoff_cap=0.05,
                               ping_interval=60)  # no quality update in between
    publisher.publish(activity(0, "states"))
    states.wait_for(lambda names: names.count("error") >= 8)
    names = states.names()
    assert names[:3] == ["error", "reconnecting", "error"]
    assert names.count("max_reconnect_attempts") == 1
    fifth_error = [i for i, n in enumerate(names) if n == "error"][4]
    assert names[fifth_error + 1] == "max_reconnect_attempts"
    assert "connected" not in names
    _, detail = states.calls[names.index("max_reconnect_attempts")]
    assert detail["attempt"] == 5 and detail["max_delay"] == 0.05
    assert "connection refused" in str(detail["error"])
    assert detail["buffered"] == 1
    errors = [d for s, d in states.calls if s == "error"]
    assert all(0 <= float(d["delay"]) <= 0.05 for d in errors)

    server = Server(tmp_path / "server", port=port)
    with server:
        states.wait_for(lambda names: "connected" in names)
        _, detail = states.calls[states.names().index("connected")]
        assert detail["quality"] in ("excellent", "good", "fair", "poor")
        assert isinstance(detail["latency_ms"], float) and detail["url"] == publisher.settings.url
        assert publisher.flush(10)
        before = len(states.calls)
    # a graceful shutdown closes the connection cleanly: disconnected, then reconnecting
    states.wait_for(lambda names: "disconnected" in names[before:])
    after = states.names()[before:]
    assert after[0] == "disconnected", states.calls[before:]  # uvicorn closes with 1012
    states.wait_for(lambda names: "reconnecting" in names[before:])
    assert states.threads == {"mlops-hooks-publisher"}  # never the training thread
    assert publisher.status()["quality"] == detail["quality"]


def test_a_wrong_token_is_reported_and_the_right_one_delivers(tmp_path, make_publisher, states):
    server = Server(tmp_path / "server", extra_args=["--token", "s3cret"])
    with server:
        wrong = make_publisher(server.ws_url, token="guess")
        wrong.publish(activity(0, "auth"))
        states.wait_for(lambda names: "error" in names)
        error = next(d for s, d in states.calls if s == "error")["error"]
        assert "refused the handshake" in str(error) and "MLOPS_HOOKS_TOKEN" in str(error)
        assert not wrong.flush(0.3)

        right = make_publisher(server.ws_url, token="s3cret")
        right.publish(activity(1, "auth"))
        assert right.flush(10)
        assert marks(server.received("auth")) == ["#1"]


def test_invalid_events_are_dropped_with_one_warning_and_never_sent(shared_server, make_publisher,
                                                                    capfd):
    publisher = make_publisher(shared_server.ws_url)
    publisher.publish(ev.TrainingProgress(stage="model_training", progress=150, run_id="v"))
    publisher.publish(ev.TrainingProgress(stage="model_training", progress=250, run_id="v"))
    publisher.publish(progress(1, "v"))
    assert publisher.flush(10)
    assert marks(shared_server.received("v")) == ["#1"]
    err = capfd.readouterr().err.splitlines()
    warnings = [line for line in err if "invalid" in line]
    assert len(warnings) == 1
    assert "training_progress.progress" in warnings[0] and "never sent" in warnings[0]
    assert publisher.status()["invalid"] == 2


def test_a_run_streams_through_the_plugin_manager(shared_server, make_publisher, plugin_manager):
    publisher = make_publisher(shared_server.ws_url)
    run = Run("digits-mlp", total_epochs=2, steps_per_epoch=5, emit=plugin_manager.dispatch,
              run_id="run-e2e", throttle=0)
    with run:
        run.stage("model_training")
        for epoch in range(2):
            run.epoch_start(epoch)
            for _ in range(5):
                run.step(loss=0.5)
            run.epoch_end(epoch, metrics={"val_loss": 0.4})
        run.complete(final_accuracy=0.9)
    assert publisher.flush(10)
    rows = shared_server.received("run-e2e")
    types = [r["type"] for r in rows]
    assert types[0] == "activity_update" and types[-2:] == ["training_completed",
                                                              "activity_update"]
    assert [r["progress"] for r in rows if r["type"] == "training_progress"][-1] == 100


def test_lazy_start_one_thread_on_the_first_event(shared_server, make_publisher):
    before = {t.name for t in threading.enumerate()}
    publisher = make_publisher(shared_server.ws_url)
    assert {t.name for t in threading.enumerate()} == before
    assert publisher.status()["state"] == "idle"
    publisher.publish(activity(0, "lazy"))
    publisher.publish(activity(1, "lazy"))
    named = [t for t in threading.enumerate() if t.name == "mlops-hooks-publisher"]
    assert len(named) == 1 and named[0].daemon
    assert publisher.close()
    assert not named[0].is_alive()
    assert publisher.status()["state"] == "closed"
    publisher.publish(activity(2, "lazy"))  # ignored after close, and harmless
    assert marks(shared_server.received("lazy")) == ["#0", "#1"]


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_neither_blocks_emit_nor_close(make_publisher):
    import socket

    with socket.socket() as listener:  # accepts TCP, never completes the handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        publisher = make_publisher(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws",
                                   open_timeout=1.0)
        for i in range(2000):
            publisher.publish(progress(i, "slow"))
        assert not publisher.flush(0.2)
        assert publisher.status()["buffered"] == 2000
        assert not publisher.close(0.2)


def test_an_idle_publisher_sleeps_pings_and_still_delivers(shared_server, make_publisher):
    publisher = make_publisher(shared_server.ws_url, ping_interval=0.05)
    publisher.publish(activity(0, "idle"))
    assert publisher.flush(10)
    deadline = time.monotonic() + 10
    while publisher.status()["pongs"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    status = publisher.status()
    assert status["pongs"] >= 5 and status["quality"] in ("excellent", "good", "fair", "poor")
    while publisher._mailbox.fast and time.monotonic() < deadline:  # idle: it sleeps until
        time.sleep(0.02)                                             # woken (or the next ping)
    assert not publisher._mailbox.fast
    publisher.publish(activity(1, "idle"))
    assert publisher.flush(10)
    assert marks(shared_server.received("idle")) == ["#0", "#1"]


@pytest.mark.timeout(90)
def test_events_the_server_cannot_store_right_now_are_kept_and_sent_again(tmp_path, redis_server,
                                                                          make_publisher):
    server = Server(tmp_path / "server", extra_args=["--backend", redis_server.url])
    with server:
        publisher = make_publisher(server.ws_url)
        for i in range(20):
            publisher.publish(activity(i, "backend"))
        assert publisher.flush(20)
        redis_server.kill()  # the server stays up but cannot store events
        for i in range(20, 40):
            publisher.publish(activity(i, "backend"))
        deadline = time.monotonic() + 20
        while "could not take an event" not in str(publisher.status()["last_error"]):
            assert time.monotonic() < deadline, publisher.status()
            time.sleep(0.05)
        assert publisher.status()["rejected"] == 0  # kept, not dropped
        redis_server.start()
        assert publisher.flush(40)
        rows = server.wait_received("backend", 40)
    assert marks(rows) == [f"#{i}" for i in range(40)]


@pytest.mark.parametrize(("refusal", "kept"), [
    ({"field": "", "retry": True}, True),     # keyed on retry, whatever the field says
    ({"field": None}, True),                  # a server older than the retry flag
    ({"field": None, "retry": False}, False),
], ids=["retry-true", "older-server", "retry-false"])
def test_an_error_reply_is_retried_exactly_when_the_server_says_so(make_publisher, refusal,
                                                                   kept):
    from websockets.sync.server import serve

    acked: list[str] = []
    refused: list[str] = []

    def handler(conn):  # refuses each event the first time it sees it, acks it after that
        for text in conn:
            message = json.loads(text)
            if message["type"] == "ping":
                conn.send(json.dumps({"type": "pong", "id": message["id"]}))
            elif message["event_id"] not in refused:
                refused.append(message["event_id"])
                conn.send(json.dumps({"type": "error", "error": "not now",
                                      "event_id": message["event_id"], **refusal}))
            else:
                acked.append(message["event_id"])
                conn.send(json.dumps({"type": "ack", "seq": len(acked),
                                      "event_id": message["event_id"]}))

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        publisher = make_publisher(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws")
        publisher.publish(activity(0, "retry"))
        assert publisher.flush(10)
        status = publisher.status()
        publisher.close(0)
    assert refused and acked == (refused if kept else [])
    assert status["rejected"] == (0 if kept else 1)
