"""A real local HTTP receiver for notifications: records each POST's path and JSON body.

``GET /count?path=P`` answers how many arrived at ``P`` (a training script waits on it).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.live_server import free_port


class Receiver:
    """An HTTP server on 127.0.0.1 (``port``: a free one) in a thread; ``with`` starts it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._cond:
                    receiver.posts.append((self.path, body))
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                """``GET /count?path=/hook``: how many notifications reached ``path``."""
                path = parse_qs(urlsplit(self.path).query).get("path", [""])[0]
                body = json.dumps({"count": len(receiver.on(path))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def on(self, path: str) -> list[Any]:
        with self._cond:
            return [body for p, body in self.posts if p == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Any]:
        """The bodies posted to ``path`` once there are at least ``count`` (or AssertionError)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([p for p, _ in self.posts if p == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{path}: {len(self.on_locked(path))} of {count} "
                                         f"notifications within {timeout}s: {self.posts}")
                self._cond.wait(left)
            return self.on_locked(path)

    def on_locked(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
