"""End to end: a real uvicorn server process, real websockets clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.live_server import LiveServer
from tests.server.live import next_of, publish, publisher, recv_json, subscriber
from tests.spec_examples import optional_keys, payload_examples
from tests.timestamps import assert_iso_utc_between

TOKEN = "live-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("live")
    live = LiveServer(workdir, extra_args=[
        "--token", TOKEN, "--metrics-interval", "0.3", "--stall-timeout", "0",
        "--upload-dir", str(workdir / "uploads"), "--max-upload-size", "64KB",
        "--alert-set", "alerts.enabled=false"])  # subscribers see only what was published
    with live:
        yield live


def _examples() -> list[dict]:
    optional = optional_keys()
    return [{k: v for k, v in e.items() if k not in optional.get(e["type"], set())}
            for e in payload_examples()]


def test_every_spec_example_reaches_two_subscribers_unchanged_plus_seq(server):
    examples = _examples()
    kinds = ",".join(sorted({e["type"] for e in examples} - {"system_metrics"}))

    async def scenario() -> None:
        async with subscriber(f"{server.ws_url}?types={kinds}") as a, \
                subscriber(f"{server.ws_url}?types={kinds}") as b, \
                publisher(server.publish_url, TOKEN) as pub:
            for ws in (a, b):
                assert (await recv_json(ws))["type"] == "snapshot"
            acks = []
            for example in examples:
                if example["type"] == "system_metrics":
                    continue  # the monitor publishes these too; checked via its own seq below
                before = time.time()
                ack = await publish(pub, example)
                after = time.time()
                assert ack["type"] == "ack", ack
                acks.append((example, ack["seq"], before, after))
            assert any("timestamp" not in example for example, *_ in acks)
            for ws in (a, b):
                for example, seq, before, after in acks:
                    got = await recv_json(ws)
                    expected = {**example, "seq": seq}
                    if "timestamp" not in example:  # the server fills it on arrival
                        assert_iso_utc_between(got["timestamp"], before, after)
                        expected["timestamp"] = got["timestamp"]
                    assert got == expected

    asyncio.run(scenario())


def test_system_metrics_example_round_trips_and_the_monitor_sends_every_field(server):
    example = next(e for e in _examples() if e["type"] == "system_metrics")

    async def scenario() -> None:
        async with subscriber(f"{server.ws_url}?types=system_metrics") as sub, \
                publisher(server.publish_url, TOKEN) as pub:
            await recv_json(sub)
            await publish(pub, {"type": "model_deployed", "model_name": "Live model",
                                "model_id": "live_m", "model_accuracy": 0.91})
            await publish(pub, {"type": "prediction_volume", "total_predictions": 10,
                                "predictions_per_minute": 12, "model_id": "live_m"})
            ack = await publish(pub, example)
            while (got := await recv_json(sub))["seq"] != ack["seq"]:
                pass
            assert got == {**example, "seq": ack["seq"]}
            sampled = await next_of(sub, "system_metrics")
            assert set(example) <= set(sampled), set(example) - set(sampled)
            assert sampled["current_accuracy"] == 0.91
            assert sampled["prediction_rate"] == sampled["predictions_per_minute"] >= 12
            assert sampled["current_health"] in ("healthy", "warning", "critical")
            assert sampled["ws_response_time_ms"] > 0 and sampled["api_response_time_ms"] > 0

    asyncio.run(scenario())


BAD = [
    ("not JSON", "{oops", "malformed JSON"),
    ("unknown type", {"type": "model_exploded"}, "unknown type"),
    ("wrong type", {"type": "training_progress", "stage": "validation", "progress": "x"},
     "progress"),
    ("out of range", {"type": "model_deployed", "model_name": "m", "model_accuracy": 1.5},
     "model_accuracy"),
    ("outside its set", {"type": "training_progress", "stage": "napping"}, "'napping'"),
]


def test_each_bad_input_gets_its_error_and_the_server_keeps_serving(server):
    async def scenario() -> None:
        async with publisher(server.publish_url, TOKEN) as pub, subscriber(server.ws_url) as sub:
            await recv_json(sub)
            for _name, payload, text in BAD:
                reply = await publish(pub, payload if isinstance(payload, str)
                                      else json.dumps(payload))
                assert reply["type"] == "error" and text in reply["error"], reply
            ack = await publish(pub, {"type": "activity_update",
                                      "activity": {"id": "after-bad", "title": "still here"}})
            assert ack["type"] == "ack"
            got = await next_of(sub, "activity_update")
            assert got["activity"]["id"] == "after-bad"
        async with publisher(server.publish_url, TOKEN) as pub:
            await pub.send("x" * 70_000)
            with pytest.raises(Exception) as closed:
                await recv_json(pub)
            assert closed.value.rcvd.code == 1009  # type: ignore[attr-defined]
        async with publisher(server.publish_url, TOKEN) as pub:
            await pub.send(b"\x00\x01")
            with pytest.raises(Exception) as closed:
                await recv_json(pub)
            assert closed.value.rcvd.code == 1003  # type: ignore[attr-defined]
        for kwargs, status in (({}, 401), ({"token": "wrong"}, 401)):
            with pytest.raises(InvalidStatus) as refused:
                async with publisher(server.publish_url, **kwargs):
                    pass
            assert refused.value.response.status_code == status
            assert b"token" in refused.value.response.body
        with pytest.raises(InvalidStatus) as refused:
            async with subscriber(server.ws_url, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with subscriber(server.ws_url) as sub:  # and it still serves
            assert (await recv_json(sub))["type"] == "snapshot"

    asyncio.run(scenario())
    host = httpx.get(server.http_url + "/api/models", headers={"Host": "evil.example"})
    assert host.status_code == 400 and "DNS-rebinding" in host.json()["error"]
    no_token = httpx.post(server.http_url + "/api/events", json={"type": "model_deployed",
                                                                 "model_name": "m"})
    assert no_token.status_code == 401
    assert httpx.get(server.http_url + "/healthz").json()["status"] == "ok"


def test_upload_broadcasts_progress_then_validation(server, tmp_path):
    rows = "\n".join(f"{i},{i * 0.5},{'yes' if i % 2 else 'no'}" for i in range(2000))
    body = f"age,score,churn\n{rows}\n".encode()

    async def scenario() -> None:
        async with subscriber(f"{server.ws_url}?types=upload_progress,file_validated") as sub:
            await recv_json(sub)
            response = await asyncio.to_thread(
                httpx.post, server.http_url + "/api/files", headers=AUTH,  # a write: the token
                files={"file": ("../../../etc/customers.csv", body, "text/csv")})
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["status"] == "success" and result["filename"] == "customers.csv"
            assert result["rows"] == 2000 and result["columns"] == 3
            assert result["target_column"] == "churn"
            assert result["file_path"] == "customers.csv"  # relative to the upload directory
            assert (server.workdir / "uploads" / result["file_path"]).read_bytes() == body
            progress = await next_of(sub, "upload_progress")
            assert progress["filename"] == "customers.csv"
            final = progress
            while final.get("progress_percent") != 100:
                final = await recv_json(sub)
            assert final["bytes_uploaded"] == len(body) == final["total_bytes"]
            validated = await next_of(sub, "file_validated")
            assert validated == result  # the response is the broadcast event, seq included

    asyncio.run(scenario())
    too_big = httpx.post(server.http_url + "/api/files", headers=AUTH,
                         files={"file": ("big.csv", b"a,b\n" + b"1,2\n" * 20_000, "text/csv")})
    assert too_big.status_code == 413 and too_big.json()["status"] == "error"
    assert "upload limit" in too_big.json()["error"]
    assert not list((server.workdir / "uploads").glob(".upload-*"))
