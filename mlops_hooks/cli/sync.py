"""``mlops-hooks sync PATH...``: send runs kept on disk to a server, once.

A run directory (``events.jsonl`` and ``run.json``, :mod:`mlops_hooks.offline`) is
sent in order, in batches, to ``POST /api/events`` with its events' own ``timestamp`` and
``event_id``, so the run lands in the history as if it had streamed live. Idempotent twice over:

* the server stores an ``event_id`` once (within its idempotency window), so a batch sent again
  after an interruption adds nothing;
* ``sync.json`` in the run directory records, per server, how far the server has acknowledged
  (byte offset and line), updated after every acknowledged batch: a sync interrupted resumes
  there, and a sync months later (past the server's window) sends only lines added since.

A line that is not a valid event is reported as ``file:line: why`` and skipped; the rest of the
run still goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc
from mlops_hooks.offline import EVENTS, SYNC, read_json, write_json
from mlops_hooks.protocol import MAX_MESSAGE_BYTES
from mlops_hooks.publisher import DEFAULT_URL, server_base

__all__ = ["SyncError", "Totals", "add_sync", "find_runs", "server_base", "sync_run"]

_MAX_BODY = 900 * 1024  # below the server's 1 MiB request limit
_RETRIES = 5  # a 503 (the server's store is down) is retried this often, with a growing pause


class SyncError(Exception):
    """What stops a sync (unreachable server, refused token, unreadable path); says why."""


@dataclass
class Totals:
    """What a sync did, for one run or all of them."""

    runs: int = 0
    sent: int = 0  # new on the server
    duplicates: int = 0  # the server had them already (an earlier, interrupted sync)
    skipped: int = 0  # synced before, per sync.json
    corrupt: list[str] = field(default_factory=list)  # "file:line: why"

    def add(self, other: Totals) -> None:
        """Add another run's counts."""
        self.runs += other.runs
        self.sent += other.sent
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.corrupt += other.corrupt


def find_runs(paths: list[str]) -> list[Path]:
    """The run directories named by ``paths`` (each a run directory or a parent of runs).

    Raises:
        SyncError: A path does not exist or holds no run.
    """
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise SyncError(f"no such file or directory: {text}")
        if path.is_file() and path.name == EVENTS:
            path = path.parent
        if (path / EVENTS).is_file():
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if (p / EVENTS).is_file()) \
            if path.is_dir() else []
        if not children:
            raise SyncError(f"{text} holds no run: neither {EVENTS} in it nor a directory "
                            f"with one (offline runs are under MLOPS_HOOKS_DIR, default "
                            "./mlops-hooks-runs)")
        found += children
    return list(dict.fromkeys(found))


class _Poster:
    """``POST /api/events`` with the publisher's token; errors become :class:`SyncError`."""

    def __init__(self, base: str, token: str | None, timeout: float) -> None:
        self.url = base + "/api/events"
        self.base = base
        self.token = token
        self.timeout = timeout

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        for attempt in range(_RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.status, _json(response.read())
            except urllib.error.HTTPError as exc:
                status, reply = exc.code, _json(exc.read())
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise SyncError(f"cannot reach {self.base}: {reason} (is the server running? "
                                "--url or MLOPS_HOOKS_URL names it)") from None
            if status in (401, 403):
                raise SyncError(f"{self.base} refused the token (HTTP {status}: "
                                f"{reply.get('error', '')}); pass the publisher token with "
                                "--token or MLOPS_HOOKS_TOKEN")
            if status != 503 or attempt == _RETRIES:
                return status, reply
            time.sleep(0.5 * 2 ** attempt)  # the server's store is down for a moment
        raise AssertionError("unreachable")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {"error": data[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {}


def _lines(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` for every complete line from ``offset`` on."""
    with path.open("rb") as file:
        file.seek(offset)
        for raw in file:
            if not raw.endswith(b"\n"):
                return  # being written: the next sync takes it
            offset += len(raw)
            yield offset, raw.rstrip(b"\r\n")


def _count_lines(path: Path, offset: int) -> int:
    with path.open("rb") as file:
        file.seek(offset)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


class _Bar:
    """A plain progress bar on stderr: ``name [#####.....] n/total events``."""

    def __init__(self, name: str, total: int, out: TextIO) -> None:
        self.name, self.total, self.out = name[:40], total, out
        self.last = 0.0

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        filled = 30 * done // self.total if self.total else 30
        self.out.write(f"\r{self.name} [{'#' * filled}{'.' * (30 - filled)}] "
                       f"{done}/{self.total} events" + ("\n" if final else ""))
        self.out.flush()


def sync_run(run: Path, poster: _Poster, batch_size: int, err: TextIO = sys.stderr) -> Totals:
    """Send one run directory's events not yet acknowledged by this server.

    Raises:
        SyncError: The server is unreachable, refused the token or answered in a way that
            stops the sync; what was acknowledged before is recorded.
    """
    events = run / EVENTS
    record = read_json(run / SYNC) or {}
    servers = record.setdefault("servers", {})
    done = servers.get(poster.base, {})
    offset, line_no = int(done.get("offset", 0)), int(done.get("lines", 0))
    totals = Totals(runs=1, skipped=line_no)
    bar = _Bar(run.name, _count_lines(events, offset), err)
    progress = 0
    batch: list[tuple[int, bytes]] = []  # (line number, line)
    size = 0
    end, end_line = offset, line_no

    def send() -> None:
        nonlocal batch, size, progress
        while batch:
            status, reply = poster.post(b"[" + b",".join(line for _, line in batch) + b"]")
            if status == 200:
                dup = len(reply.get("duplicates", []))
                totals.duplicates += dup
                totals.sent += len(batch) - dup
                break
            index = reply.get("index")
            if status == 400 and isinstance(index, int) and 0 <= index < len(batch):
                where = f"{events}:{batch[index][0]}: rejected by the server: {reply.get('error')}"
                err.write(f"\nmlops-hooks sync: {where}\n")
                totals.corrupt.append(where)
                del batch[index]
                continue
            raise SyncError(f"{poster.url} answered HTTP {status}: {reply.get('error', reply)}")
        progress += len(batch)
        batch, size = [], 0
        servers[poster.base] = {"offset": end, "lines": end_line, "synced_at": iso_utc(),
                                "sent": int(done.get("sent", 0)) + totals.sent,
                                "duplicates": int(done.get("duplicates", 0)) + totals.duplicates}
        write_json(run / SYNC, record)
        bar.show(progress + len(totals.corrupt))

    for line_end, line in _lines(events, offset):
        line_no += 1
        problem = _check(line)
        if problem is not None:
            where = f"{events}:{line_no}: {problem}"
            err.write(f"\nmlops-hooks sync: {where}\n")
            totals.corrupt.append(where)
        else:
            if size + len(line) + 1 > _MAX_BODY and batch:
                send()
            batch.append((line_no, line))
            size += len(line) + 1
        end, end_line = line_end, line_no
        if len(batch) >= batch_size:
            send()
    if batch or end != offset:
        send()
    bar.show(progress + len(totals.corrupt), final=True)
    return totals


def _check(line: bytes) -> str | None:
    """Why ``line`` cannot be sent, or ``None``."""
    if not line.strip():
        return "empty line"
    if len(line) > MAX_MESSAGE_BYTES:
        return f"{len(line)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit of one event"
    try:
        event = ev.decode(line)
    except ev.EventError as exc:
        return f"not a valid event: {exc}"
    if event.event_id is None or event.timestamp is None:
        return "no event_id or timestamp (it could not be sent exactly once)"
    return None


def _cmd_sync(args: argparse.Namespace) -> int:
    try:
        base = server_base(args.url or os.environ.get("MLOPS_HOOKS_URL", "").strip()
                           or DEFAULT_URL)
    except ValueError as exc:
        print(f"mlops-hooks sync: --url: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"mlops-hooks sync: --batch-size must be at least 1, got {args.batch_size}",
              file=sys.stderr)
        return 2
    try:
        runs = find_runs(args.paths)
    except (SyncError, OSError) as exc:
        print(f"mlops-hooks sync: {exc}", file=sys.stderr)
        return 2
    token = args.token if args.token is not None else (os.environ.get("MLOPS_HOOKS_TOKEN")
                                                       or None)
    poster = _Poster(base, token, args.timeout)
    totals = Totals()
    try:
        for run in runs:
            one = sync_run(run, poster, args.batch_size)
            totals.add(one)
            print(f"{run.name}: {one.sent} sent, {one.duplicates} already on the server, "
                  f"{one.skipped} skipped (synced before), {len(one.corrupt)} bad line(s)")
    except (SyncError, OSError) as exc:
        print(f"mlops-hooks sync: {exc}", file=sys.stderr)
        return 1
    finally:
        print(f"synced {totals.runs} run(s) to {base}: {totals.sent} event(s) sent, "
              f"{totals.duplicates} already there, {totals.skipped} skipped (synced before), "
              f"{len(totals.corrupt)} bad line(s)")
    return 1 if totals.corrupt else 0


def add_sync(sub: Any) -> None:
    """Register ``mlops-hooks sync``."""
    p = sub.add_parser(
        "sync", help="send runs kept on disk (offline or spilled) to a server",
        description="Send runs kept under MLOPS_HOOKS_DIR (MLOPS_HOOKS_MODE=offline, or an "
        "online run whose server stayed unreachable) to a server, with their original "
        "timestamps, exactly once: a second sync adds nothing, an interrupted one resumes. "
        "Exit status: 0 done, 1 server unreachable, token refused or bad lines skipped, "
        "2 bad arguments or paths.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory, or a directory of runs (such as ./mlops-hooks-runs)")
    p.add_argument("--url", default=None,
                   help="server URL (default: $MLOPS_HOOKS_URL or ws://127.0.0.1:8001/ws)")
    p.add_argument("--token", default=None, help="publisher token (default: $MLOPS_HOOKS_TOKEN)")
    p.add_argument("--batch-size", type=int, default=500, metavar="N",
                   help="events per request (default: 500)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds to wait for each request (default: 30)")
    p.set_defaults(handler=_cmd_sync)
