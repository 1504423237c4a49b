"""A stand-in for the run history REST routes of issue 16, serving the real pages.

``python -m tests.browser.runs_stub PORT`` runs a small Starlette app: the page routes of
:mod:`mlops_hooks.server.endpoints.pages` and the real static files with the real security
headers, plus ``GET /api/runs``, ``/api/runs/{id}``, ``/api/runs/{id}/metrics`` answering per
the contract from an in-memory store, and a ``/ws`` that sends a snapshot and then every event
posted to ``POST /test/events`` (which also goes into the store, so a reload sees it).
``POST /test/runs`` seeds whole runs (``{"runs": [Run...], "series": {run_id: {key: [[s, v]]}}}``).
The browser tests use it until the server side of the issue serves the routes itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from tests.live_server import end_process, free_port

Json = dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Runs and series as the contract describes them, fed by events."""

    def __init__(self) -> None:
        self.runs: dict[str, Json] = {}
        self.series: dict[str, dict[str, list[list[float]]]] = {}
        self.seq = 0

    def run(self, event: Json) -> Json:
        run_id = event["run_id"]
        if run_id not in self.runs:
            self.runs[run_id] = {
                "run_id": run_id, "model_name": event.get("model_name"), "status": "running",
                "started_at": event["timestamp"], "ended_at": None, "progress": None,
                "final_accuracy": None, "params": {}, "group": None, "last_metrics": {},
                "duration_s": None, "metadata": {}}
            self.series[run_id] = {}
        return self.runs[run_id]

    def ingest(self, event: Json) -> Json:
        self.seq += 1
        event = {"timestamp": _now(), **event, "seq": self.seq}
        kind = event["type"]
        if not event.get("run_id") or kind not in (
                "training_progress", "training_completed", "training_failed", "run_params"):
            return event
        run = self.run(event)
        if event.get("model_name"):
            run["model_name"] = event["model_name"]
        if kind == "run_params":
            run["params"].update(event.get("params") or {})
            run["metadata"].update(event.get("metadata") or {})
            run["group"] = event.get("group") or run["group"]
        elif kind == "training_progress":
            run["progress"] = event.get("progress", run["progress"])
            step = event.get("current_step", event.get("current_epoch"))
            values = dict(event.get("metrics") or {})
            if event.get("current_loss") is not None:
                values["loss"] = event["current_loss"]
            if event.get("current_accuracy") is not None:
                values["accuracy"] = event["current_accuracy"]
            if step is not None:
                for key, value in values.items():
                    self.series[run["run_id"]].setdefault(key, []).append([step, value])
            run["last_metrics"].update(values)
        else:
            run["status"] = "completed" if kind == "training_completed" else "failed"
            run["ended_at"] = event["timestamp"]
            if kind == "training_completed":
                run["final_accuracy"] = event.get("final_accuracy")
                run["progress"] = 100
        return event

    def public(self, run: Json) -> Json:
        return {k: v for k, v in run.items() if k != "metadata"}


def create_app(token: str | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from mlops_hooks.server.app import security_headers
    from mlops_hooks.server.endpoints import pages, rest

    store = Store()
    sockets: set[WebSocket] = set()

    def allowed(request: Request | WebSocket) -> bool:
        """With a token, reads need it as ``?token=`` or a Bearer header (docs/security.md)."""
        return token is None or token in (
            request.query_params.get("token"),
            request.headers.get("authorization", "").removeprefix("Bearer "))

    def guarded(endpoint: Any) -> Any:
        async def check(request: Request) -> Response:
            if not allowed(request):
                return JSONResponse({"error": "token required"}, status_code=401)
            response: Response = await endpoint(request)
            return response
        return check

    async def list_runs(request: Request) -> Response:
        q = request.query_params
        runs = sorted(store.runs.values(), key=lambda r: r["started_at"], reverse=True)
        if q.get("status"):
            runs = [r for r in runs if r["status"] == q["status"]]
        if q.get("group"):
            runs = [r for r in runs if r["group"] == q["group"]]
        if q.get("q"):
            needle = q["q"].lower()
            runs = [r for r in runs if needle in (r["model_name"] or "").lower()
                    or needle in r["run_id"].lower()]
        start = int(q.get("cursor") or 0)
        limit = int(q.get("limit") or 50)
        page = runs[start:start + limit]
        more = start + limit < len(runs)
        return JSONResponse({"runs": [store.public(r) for r in page],
                             "next_cursor": str(start + limit) if more else None})

    async def one_run(request: Request) -> Response:
        run = store.runs.get(request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": "unknown run"}, status_code=404)
        return JSONResponse({"run": {**run, "series_keys": sorted(store.series[run["run_id"]])}})

    async def metrics(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if run_id not in store.runs:
            return JSONResponse({"error": "unknown run"}, status_code=404)
        keys = [k for k in request.query_params.get("keys", "").split(",") if k]
        series = store.series[run_id]
        return JSONResponse({"run_id": run_id, "series": {
            k: v[-2000:] for k, v in series.items() if not keys or k in keys}})

    async def post_events(request: Request) -> Response:
        events = [store.ingest(e) for e in await request.json()]
        for ws in list(sockets):
            for event in events:
                try:
                    await ws.send_json(event)
                except Exception:  # a closed socket leaves the set
                    sockets.discard(ws)
        return JSONResponse({"seqs": [e["seq"] for e in events]})

    async def seed(request: Request) -> Response:
        data = await request.json()
        for run in data.get("runs", []):
            full: Json = {"ended_at": None, "progress": None, "final_accuracy": None,
                          "params": {}, "group": None, "last_metrics": {}, "duration_s": None,
                          "metadata": {}, "model_name": None, "status": "completed", **run}
            store.runs[run["run_id"]] = full
            store.series[run["run_id"]] = data.get("series", {}).get(run["run_id"], {})
        return JSONResponse({"runs": len(store.runs)})

    async def ws_endpoint(ws: WebSocket) -> None:
        if not allowed(ws):
            await ws.close(1008)
            return
        await ws.accept()
        await ws.send_json({"type": "snapshot", "seq": store.seq, "server_time": _now(),
                            "models": [], "runs": [], "system": None, "health": None,
                            "activity": [], "alerts": [], "uploads": [], "connections": 1})
        sockets.add(ws)
        try:
            while True:
                msg = await ws.receive_json()
                if msg.get("type") == "ping":
                    await ws.send_json({"type": "pong", "id": msg.get("id"),
                                        "server_time": _now()})
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(ws)

    class Headers:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            host = dict(scope["headers"]).get(b"host", b"").decode()

            async def send_secured(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *security_headers(host)]
                await send(message)

            await self.app(scope, receive, send_secured)

    app = Starlette(routes=[
        Route("/", rest.index),
        Route("/runs", pages.runs_page),
        Route("/runs/{run_id:path}", pages.run_page),
        Route("/compare", pages.compare_page),
        Route("/api/runs", guarded(list_runs)),
        Route("/api/runs/{run_id}", guarded(one_run)),
        Route("/api/runs/{run_id}/metrics", guarded(metrics)),
        Route("/test/events", post_events, methods=["POST"]),
        Route("/test/runs", seed, methods=["POST"]),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/static", StaticFiles(directory=rest.STATIC_DIR), name="static"),
    ])
    return Headers(app)


class StubServer:
    """The stub in a subprocess on a free port."""

    def __init__(self, workdir: Path, token: str | None = None) -> None:
        self.token = token
        self.port = free_port()
        self.log_path = workdir / f"runs-stub-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.browser.runs_stub", str(self.port),
                 *([self.token] if self.token else [])],
                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stub exited:\n{self.log_path.read_text()}")
            try:
                httpx.get(self.http_url + "/api/runs", timeout=0.5)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"stub did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        end_process(self.proc, 2, 10)

    def post(self, *events: Json) -> list[int]:
        response = httpx.post(self.http_url + "/test/events", json=list(events), timeout=10)
        response.raise_for_status()
        return list(response.json()["seqs"])

    def seed(self, runs: list[Json], series: dict[str, Any] | None = None) -> None:
        response = httpx.post(self.http_url + "/test/runs",
                              json={"runs": runs, "series": series or {}}, timeout=30)
        response.raise_for_status()


def main() -> None:
    import uvicorn

    token = sys.argv[2] if len(sys.argv) > 2 else None
    uvicorn.run(create_app(token), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")


if __name__ == "__main__":
    main()
