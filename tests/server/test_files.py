from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from mlops_hooks.manager import create_plugin_manager, hookimpl
from mlops_hooks.server import create_app
from mlops_hooks.server.endpoints import files
from mlops_hooks.server.endpoints.csvcheck import CsvProblem, validate_csv
from mlops_hooks.server.endpoints.files import safe_filename
from tests.server.conftest import RefusingBackend, unit_config

CSV = b"age,income,plan,churn_status\n34,52000,basic,yes\n45,61000,pro,no\n29,,basic,no\n"


def upload(client, name, data, **fields):
    return client.post("/api/files", files={"file": (name, data, "text/csv")}, data=fields)


def test_happy_path_stores_validates_and_broadcasts(client, tmp_path):
    with client.websocket_connect("/ws?types=upload_progress,file_validated") as sub:
        sub.receive_json()
        response = upload(client, "customers.csv", CSV)
        frames = [sub.receive_json()]
        while frames[-1]["type"] != "file_validated":
            frames.append(sub.receive_json())
    *progress_frames, validated = frames
    progress = progress_frames[-1]
    assert response.status_code == 200
    body = response.json()
    assert body == validated
    assert body["status"] == "success" and body["filename"] == "customers.csv"
    assert (body["rows"], body["columns"], body["target_column"]) == (3, 4, "churn_status")
    assert body["file_size"] == f"{len(CSV)}B" and body["validation_time"] >= 0
    assert "3 features" in body["summary"] and "1 missing" in body["summary"]
    stored = tmp_path / "uploads" / "customers.csv"
    assert body["file_path"] == "customers.csv" and stored.read_bytes() == CSV
    assert progress["type"] == "upload_progress" and progress["progress_percent"] == 100
    assert progress["bytes_uploaded"] == progress["total_bytes"] == len(CSV)
    assert progress["upload_speed"].endswith("/s") and progress["estimated_time_remaining"] == 0
    assert not list((tmp_path / "uploads").glob(".upload-*"))


def test_target_column_given_and_semicolons(client):
    body = upload(client, "d.csv", b"a;b;c\n1;2;3\n4;5;6\n", target_column="B").json()
    assert body["status"] == "success" and body["target_column"] == "b" and body["columns"] == 3


@pytest.mark.parametrize(("name", "data", "fields", "status", "text"), [
    ("model.pkl", b"\x80\x04binary", {}, 415, "only CSV files are accepted"),
    ("empty.csv", b"", {}, 400, "the file is empty"),
    ("header.csv", b"a,b,c\n", {}, 400, "header but no data rows"),
    ("ragged.csv", b"a,b,c\n1,2,3\n4,5\n", {}, 400, "line 3 has 2 fields, expected 3"),
    ("quote.csv", b'a,b\n1,"unterminated\n', {}, 400, "line"),
    ("one.csv", b"just\none\ncolumn\n", {}, 400, "only one column"),
    ("bin.csv", b"a,b\n1,\x00\n", {}, 400, "binary data"),
    ("latin.csv", "a,b\nd\u00e9j\u00e0,1\n".encode("latin-1"), {}, 400, "not UTF-8"),
    ("dup.csv", b"a,a,b\n1,2,3\n", {}, 400, "duplicate column names: 'a'"),
    ("t.csv", b"a,b\n1,2\n", {"target_column": "label"}, 400,
     "target column 'label' is not in the header (columns: a, b)"),
])
def test_each_bad_file_gets_its_error_and_is_not_kept(client, tmp_path, name, data, fields,
                                                      status, text):
    with client.websocket_connect("/ws?types=file_validated") as sub:
        sub.receive_json()
        response = upload(client, name, data, **fields)
        broadcast = sub.receive_json()
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and text in body["error"], body["error"]
    assert body == broadcast and body["filename"] == name
    assert "file_path" not in body
    assert not [p for p in (tmp_path / "uploads").glob("*") if p.is_file()]
    assert client.get("/healthz").status_code == 200


def _multipart(name: str, chunks: list[bytes]):
    yield (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name.encode()
           + b"\"\r\nContent-Type: text/csv\r\n\r\n")
    yield from chunks
    yield b"\r\n--B--\r\n"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_over_the_limit_is_refused_or_cut_off(make_client, tmp_path, declared):
    client = make_client(max_upload_bytes=1000)
    chunks = [b"a,b\n"] + [b"1,2\n" * 100] * 20
    body = _multipart("big.csv", chunks)
    content = b"".join(body) if declared else body
    response = client.post("/api/files", content=content,
                           headers={"content-type": "multipart/form-data; boundary=B"})
    assert response.status_code == 413
    result = response.json()
    assert result["status"] == "error" and result["filename"] == "big.csv"
    assert "over the upload limit of 1000B" in result["error"]
    assert not [p for p in (tmp_path / "uploads").glob("*") if p.is_file()]


@pytest.mark.parametrize(("raw", "safe"), [
    ("../../etc/passwd.csv", "passwd.csv"),
    ("..\\..\\windows\\system.csv", "system.csv"),
    ("/abs/path/x.csv", "x.csv"),
    ("..", "upload.csv"),
    ("", "upload.csv"),
    (".hidden.csv", "hidden.csv"),
    ("a\x00b\nc.csv", "abc.csv"),
    ("con.csv", "_con.csv"),
    ('we<i>rd:"na|me?*.csv', "weirdname.csv"),
    ("x" * 300 + ".csv", "x" * 196 + ".csv"),
])
def test_safe_filename(raw, safe):
    assert safe_filename(raw) == safe


def test_crafted_names_stay_in_the_upload_dir(client, tmp_path):
    for name in ("../../escape.csv", "..\\..\\escape2.csv", "/tmp/escape3.csv"):
        body = upload(client, name, CSV).json()
        assert body["status"] == "success"
        assert (tmp_path / "uploads" / body["filename"]).is_file()
    assert not (tmp_path / "escape.csv").exists()


def test_request_errors(client):
    not_multipart = client.post("/api/files", content=b"a,b\n1,2\n",
                                headers={"content-type": "text/csv"})
    assert not_multipart.status_code == 415
    assert "multipart/form-data" in not_multipart.json()["error"]
    no_file = client.post("/api/files", data={"target_column": "x"},
                          files={"other": ("x.csv", b"a,b\n1,2\n")})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]
    broken = client.post("/api/files", content=b"--XYZ\r\ngarbage",
                         headers={"content-type": "multipart/form-data; boundary=XYZ"})
    assert broken.status_code == 400


def test_uploads_need_the_subscriber_token_when_set(make_client):
    client = make_client(subscriber_token="v")
    assert upload(client, "a.csv", CSV).status_code == 401
    ok = client.post("/api/files?token=v", files={"file": ("a.csv", CSV)})
    assert ok.status_code == 200


def test_validate_csv_guesses_the_target(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("f1,label,f2\n1,a,2\n3,b,4\n")
    assert validate_csv(path, "x.csv").target_column == "label"
    path.write_text("f1,f2,f3\n1,2,3\n")
    assert validate_csv(path, "x.csv").target_column == "f3"
    with pytest.raises(CsvProblem):
        validate_csv(path, "x.json")


def test_an_upload_works_while_the_backend_refuses_events(make_client, tmp_path):
    backend = RefusingBackend()
    client = make_client(backend=backend)
    backend.down = True  # Redis away: nothing can be broadcast
    response = upload(client, "down.csv", CSV)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["rows"] == 3 and "seq" not in body
    assert (tmp_path / "uploads" / "down.csv").read_bytes() == CSV
    # progress (at the first bytes, and the final one) and validation were offered, and refused
    assert backend.refused_types == ["upload_progress", "upload_progress", "file_validated"]


def test_too_many_form_fields_are_refused(client, tmp_path):
    fields = {f"f{i}": "x" for i in range(40)}
    response = upload(client, "many.csv", CSV, **fields)
    assert response.status_code == 400 and "too many form fields" in response.json()["error"]
    assert not list((tmp_path / "uploads").glob("*"))


def test_an_upload_directory_that_cannot_be_used_is_a_clear_500(make_client, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the upload directory should be")
    client = make_client(upload_dir=str(blocker))
    response = upload(client, "x.csv", CSV)
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "error" and body["filename"] == "x.csv"
    assert f"could not store the upload in {blocker}" in body["error"]


class _Clock:
    """A ``time`` module stand-in whose ``monotonic`` the test moves (binary fractions: exact)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.perf_counter = time.perf_counter

    def monotonic(self) -> float:
        return self.now


class _Lockstep:
    """Two request bodies that hand over each chunk together, at one clock reading per chunk."""

    def __init__(self, clock: _Clock, parties: int) -> None:
        self.clock, self.parties = clock, parties
        self.arrived = 0
        self.released = asyncio.Event()

    async def at(self, now: float) -> None:
        """Once every body asks for its next chunk (the app handled the last), set the time."""
        released = self.released
        self.arrived += 1
        if self.arrived == self.parties:
            self.clock.now = now
            self.arrived = 0
            self.released = asyncio.Event()
            released.set()
        else:
            await released.wait()


def test_upload_progress_is_at_most_4_per_second_per_file_then_100(tmp_path, monkeypatch):
    """Two uploads under a controlled clock, each body in 40 chunks 1/16 s apart (2.5 s)."""
    clock = _Clock()
    monkeypatch.setattr(files, "time", clock)
    seen: list[tuple[str, float, int, float | None]] = []

    class Watch:
        @hookimpl
        def mlops_upload_progress(self, event):
            seen.append((event.filename, clock.now, event.bytes_uploaded, event.progress_percent))

    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(Watch(), name="watch")
    app = create_app(unit_config(tmp_path), plugins=pm)
    rows = [b"aaaaaa,bbbbbb\n"] + [b"%06d,%06d\n" % (i, i) for i in range(639)]  # 14 B each
    data = b"".join(rows)
    chunk = len(data) // 40
    assert chunk * 40 == len(data) and b"\r" not in data
    tail = b"\r\n--XyZ--\r\n"

    def head(name: str) -> bytes:
        return (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                b"Content-Type: text/csv\r\n\r\n" % name.encode())

    async def body(name: str, step: _Lockstep) -> AsyncIterator[bytes]:
        await step.at(0.0)
        yield head(name)
        for k in range(1, 41):
            await step.at(k / 16)  # the app asks for chunk k only once it handled chunk k-1
            yield data[(k - 1) * chunk:k * chunk]
        await step.at(41 / 16)
        yield tail

    async def scenario() -> list[httpx.Response]:
        step = _Lockstep(clock, 2)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            return list(await asyncio.gather(*(
                http.post("/api/files", content=body(name, step), headers={
                    "content-type": "multipart/form-data; boundary=XyZ",
                    "content-length": str(len(head(name)) + len(data) + len(tail))})
                for name in ("one.csv", "two.csv"))))

    for response in asyncio.run(scenario()):
        assert response.status_code == 200 and response.json()["rows"] == 639
    for name in ("one.csv", "two.csv"):  # each file has its own budget
        *during, final = [entry[1:] for entry in seen if entry[0] == name]
        # The first chunk reports at once; then one report per 4 chunks (1/4 s), never more.
        assert [(t, n) for t, n, _ in during] == [(k / 16, k * chunk) for k in range(1, 41, 4)]
        assert all(b[0] - a[0] >= 0.25 for a, b in itertools.pairwise(during))
        assert [p for _, _, p in during] == sorted(p for _, _, p in during)
        assert final == (41 / 16, len(data), 100.0)
