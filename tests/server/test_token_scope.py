"""Token scope and uploads against a real server (issue 22, item 5; docs/security.md).

With a subscriber token every read needs it (REST included); with a publisher token an upload
needs it; an upload never replaces an earlier file; the upload directory has a quota.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import QUIET, recv_json, subscriber

pytestmark = pytest.mark.timeout(60)

READS = ("/api/models", "/api/monitoring/system", "/api/activity", "/api/runs", "/metrics")
CSV = b"a,b,label\n1,2,yes\n3,4,no\n"


def _serve(tmp_path: Path, *flags: str) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path, extra_args=[*QUIET, "--upload-dir", str(tmp_path / "uploads"),
                                            *flags])
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with a publisher token ``pub`` and a subscriber token ``sub``."""
    yield from _serve(tmp_path, "--token", "pub", "--subscriber-token", "sub")


def upload(server: LiveServer, name: str, data: bytes,
           token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(server.http_url + "/api/files", files={"file": (name, data, "text/csv")},
                      headers=headers, timeout=10)


def stored(server: LiveServer) -> dict[str, bytes]:
    directory = server.workdir / "uploads"
    return {p.name: p.read_bytes() for p in directory.glob("*")} if directory.exists() else {}


def test_every_read_needs_the_subscriber_token(guarded: LiveServer) -> None:
    for path in READS:
        anonymous = httpx.get(guarded.http_url + path, timeout=10)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert "subscriber token" in anonymous.json()["error"]
        wrong = httpx.get(guarded.http_url + path, params={"token": "nope"}, timeout=10)
        assert wrong.status_code == 401, path
        for params, headers in (({"token": "sub"}, {}), ({}, {"Authorization": "Bearer sub"}),
                                ({}, {"Authorization": "Bearer pub"})):
            allowed = httpx.get(guarded.http_url + path, params=params, headers=headers,
                                timeout=10)
            assert allowed.status_code == 200, (path, params, headers, allowed.text)
    # /healthz: liveness for anyone, the details only with the token.
    assert httpx.get(guarded.http_url + "/healthz", timeout=10).json() == {"status": "ok"}
    full = httpx.get(guarded.http_url + "/healthz", params={"token": "sub"}, timeout=10).json()
    assert full["status"] == "ok" and "seq" in full and "subscribers" in full
    # The page and its files hold no data: public.
    assert httpx.get(guarded.http_url + "/", timeout=10).status_code == 200


def test_an_upload_is_a_write_it_needs_the_publisher_token(guarded: LiveServer) -> None:
    async def watch() -> list[str]:
        async with subscriber(f"{guarded.ws_url}?token=sub") as sub:
            await recv_json(sub)  # the snapshot
            for token in (None, "sub", "wrong"):
                refused = await asyncio.to_thread(upload, guarded, "train.csv", CSV, token)
                assert refused.status_code == 401, (token, refused.text)
                assert "publisher token" in refused.json()["error"]
            accepted = await asyncio.to_thread(upload, guarded, "train.csv", CSV, "pub")
            assert accepted.status_code == 200, accepted.text
            types: list[str] = []
            while "file_validated" not in types:
                types.append((await recv_json(sub))["type"])
            return types

    types = asyncio.run(watch())
    assert types.count("file_validated") == 1  # the refused uploads broadcast nothing
    assert stored(guarded) == {"train.csv": CSV}


def test_an_upload_never_replaces_an_earlier_file(guarded: LiveServer) -> None:
    first = upload(guarded, "train.csv", CSV, "pub")
    assert first.status_code == 200 and first.json()["file_path"] == "train.csv"
    other = CSV.replace(b"yes", b"maybe")
    second = upload(guarded, "../train.csv", other, "pub")
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["filename"] == "train.csv" and body["file_path"] == "train-1.csv"
    assert not Path(body["file_path"]).is_absolute()
    assert stored(guarded) == {"train.csv": CSV, "train-1.csv": other}


def test_the_upload_directory_has_a_quota(tmp_path: Path) -> None:
    for server in _serve(tmp_path, "--upload-quota", "1KB"):
        data = b"a,b\n" + b"1,2\n" * 150  # 604 bytes
        assert upload(server, "one.csv", data).status_code == 200
        refused = upload(server, "two.csv", data)
        assert refused.status_code == 507, refused.text
        body = refused.json()
        assert body["status"] == "error" and "quota" in body["error"]
        assert "--upload-quota" in body["error"]
        assert stored(server) == {"one.csv": data}  # nothing partial left behind
