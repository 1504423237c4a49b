"""``POST /api/files``: stream a CSV upload to disk, report progress, validate it.

The body (``multipart/form-data``: a ``file`` part, optionally ``target_column``) is parsed as
it arrives, with python-multipart's streaming parser; file bytes go to a temporary file in the
upload directory through a worker thread. While bytes arrive, ``upload_progress`` events are
broadcast (at most four a second, plus the final one); then the file is validated and a
``file_validated`` event (success or error) is broadcast and returned. A file over the limit
is cut off and removed. The stored name is the client's name reduced to a safe base name, so
no crafted name can leave the upload directory; an upload never replaces an earlier file (a
name already taken gets ``-1``, ``-2``... before its suffix), ``file_path`` is that stored name,
relative to the upload directory, and the directory's total size is capped
(``ServerConfig.upload_quota_bytes``, 507 above it). An upload is a write: it needs the
publisher token when the server has one. A client that disconnects mid-upload leaves no partial
file behind; its upload is reported as an error so dashboards do not show it as in
progress forever. While the backend cannot accept events (Redis away) uploads still work: the
progress is not broadcast and the returned ``file_validated`` carries no ``seq``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from mlops_hooks import events as ev
from mlops_hooks.formatting import format_bytes, format_rate
from mlops_hooks.protocol import problem
from mlops_hooks.server.endpoints.csvcheck import CsvProblem, check_suffix, validate_csv
from mlops_hooks.server.security import Denied

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["safe_filename", "upload"]

log = logging.getLogger("mlops_hooks.server")
PROGRESS_INTERVAL = 0.25
_WRITE_BATCH = 1024 * 1024
_MAX_FIELD = 1024
#: Form fields besides the file (``target_column``) accepted at most.
_MAX_FIELDS = 16
#: Numbered names tried for a file whose name is taken (``train-1.csv`` ... ``train-999.csv``).
_MAX_SAME_NAME = 1000
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


def safe_filename(raw: str | None) -> str:
    r"""Reduce a client-supplied file name to a safe base name.

    Directory parts (``/`` and ``\\``), control characters, characters Windows forbids and
    leading dots are removed; an empty result becomes ``upload.csv``.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKC", name)
    name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*/\\')
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    if not name:
        return "upload.csv"
    stem, dot, suffix = name.rpartition(".")
    if dot and stem.lower() in _RESERVED:
        name = f"_{name}"
    if len(name.encode()) > 200:
        suffix = Path(name).suffix[:16]
        name = name.encode()[: 200 - len(suffix.encode())].decode(errors="ignore") + suffix
    return name


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.data = bytearray()


class _Collector:
    """Parser callbacks that turn a chunk of body into a list of actions for the handler."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Any]] = []
        self.part = _Part()
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self.part.filename = options[b"filename"].decode("utf-8", "replace")
            self.actions.append(("file_begin", self.part))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.filename is not None:
            self.actions.append(("file_data", data[start:end]))
        else:
            self.part.data += data[start:end]
            if len(self.part.data) > _MAX_FIELD:
                raise FormParserError(f"form field {self.part.name!r} is over {_MAX_FIELD} bytes")

    def on_part_end(self) -> None:
        if self.part.filename is not None:
            self.actions.append(("file_end", self.part))
        else:
            self.actions.append(("field", (self.part.name, bytes(self.part.data))))


class _UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Upload:
    """One upload in flight: the temp file, counters and progress events."""

    def __init__(self, core: Core, request: Request, boundary_len: int) -> None:
        self.core = core
        self.limit = core.config.max_upload_bytes
        declared = request.headers.get("content-length", "")
        self.body_total = int(declared) if declared.isdigit() else None
        self.trailer = boundary_len + 8  # "\r\n--" boundary "--\r\n"
        self.body_seen = 0
        self.file_bytes = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.handle: IO[bytes] | None = None
        self.temp: Path | None = None
        self.pending = bytearray()
        self.started = time.monotonic()
        self.next_progress = 0.0
        self.quota = core.config.upload_quota_bytes
        self.used = 0

    def _estimate_total(self) -> int | None:
        if self.body_total is None:
            return None
        overhead = self.body_seen - self.file_bytes
        return max(self.file_bytes, self.body_total - overhead - self.trailer)

    async def begin(self, part: _Part) -> None:
        if self.filename is not None:
            raise _UploadError(400, "send one file per request (field 'file')")
        if part.name != "file":
            raise _UploadError(400, f"the file must be sent in the multipart field 'file', got "
                                    f"{part.name!r}")
        self.filename = safe_filename(part.filename)
        try:
            check_suffix(self.filename)
        except CsvProblem as exc:
            raise _UploadError(415, str(exc)) from None
        total = self._estimate_total()
        if total is not None and total > self.limit:
            raise _UploadError(413, self._over_limit(total))
        directory = self.core.config.upload_path
        self.used = await asyncio.to_thread(_usage, directory)
        self._check_quota(total or 0)
        self.handle, self.temp = await asyncio.to_thread(_open_temp, directory)

    def _check_quota(self, size: int) -> None:
        if self.used + size > self.quota:
            raise _UploadError(507, f"the upload directory is full: it holds "
                                    f"{format_bytes(self.used)} of its "
                                    f"{format_bytes(self.quota)} quota (--upload-quota), and "
                                    f"this file needs {format_bytes(size)}")

    def _over_limit(self, size: int) -> str:
        return (f"the file is over the upload limit of {format_bytes(self.limit)} (at least "
                f"{format_bytes(size)})")

    async def data(self, chunk: bytes) -> None:
        self.file_bytes += len(chunk)
        if self.file_bytes > self.limit:
            raise _UploadError(413, self._over_limit(self.file_bytes))
        self._check_quota(self.file_bytes)
        self.pending += chunk
        if len(self.pending) >= _WRITE_BATCH:
            await self._write()
        now = time.monotonic()
        if now >= self.next_progress:
            self.next_progress = now + PROGRESS_INTERVAL
            await self.progress(final=False)

    async def _write(self) -> None:
        if self.pending and self.handle is not None:
            data, self.pending = bytes(self.pending), bytearray()
            await asyncio.to_thread(self.handle.write, data)

    async def progress(self, *, final: bool) -> None:
        assert self.filename is not None
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.file_bytes / elapsed
        total = self.file_bytes if final else self._estimate_total()
        percent = 100.0 if final else (
            min(100.0, round(self.body_seen * 100 / self.body_total, 1))
            if self.body_total else None)
        remaining = 0.0 if final else (
            round((total - self.file_bytes) / rate, 1) if total is not None and rate > 0 else None)
        event = ev.UploadProgress(
            filename=self.filename, bytes_uploaded=self.file_bytes, total_bytes=total,
            progress_percent=percent, upload_speed=format_rate(rate),
            estimated_time_remaining=max(0.0, remaining) if remaining is not None else None)
        try:
            await self.core.ingest.submit(event)
        except ConnectionError as exc:  # the backend is away: the upload goes on unreported
            log.debug("mlops-hooks: upload progress not published: %s", exc)

    async def finish(self) -> None:
        await self._write()
        handle, self.handle = self.handle, None
        if handle is not None:
            await asyncio.to_thread(handle.close)  # may fail: the last buffer is written now
        await self.progress(final=True)

    async def discard(self) -> None:
        self.pending = bytearray()
        handle, temp = self.handle, self.temp
        self.handle = self.temp = None
        if handle is not None:
            await asyncio.to_thread(handle.close)
        if temp is not None:
            await asyncio.to_thread(temp.unlink, True)


def _problem(exc: Exception, directory: Path) -> tuple[int, str]:
    """The status and message answering an upload that failed with ``exc``."""
    if isinstance(exc, _UploadError):
        return exc.status, str(exc)
    if isinstance(exc, FormParserError):
        return 400, f"malformed multipart: {exc}"
    log.warning("mlops-hooks: storing an upload in %s failed: %s", directory, exc)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return 500, f"the server could not store the upload in {directory}: {reason}"


def _open_temp(directory: Path) -> tuple[IO[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
    return os.fdopen(fd, "wb"), Path(name)


def _usage(directory: Path) -> int:
    """Bytes of the files in the upload directory (in-flight uploads included)."""
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:  # removed meanwhile
            continue
    return total


def _place(temp: Path, directory: Path, filename: str) -> Path:
    """Move ``temp`` to ``filename`` in ``directory``, or to the first free numbered name.

    The name is reserved with an exclusive create, so two uploads of the same name never
    replace each other (nor an earlier file).

    Raises:
        CsvProblem: The name would leave the directory (never, after :func:`safe_filename`).
        _UploadError: 409 when the name and all its numbered variants are taken.
    """
    root = directory.resolve()
    stem, suffix = os.path.splitext(filename)
    for n in range(_MAX_SAME_NAME):
        target = (root / (filename if n == 0 else f"{stem}-{n}{suffix}")).resolve()
        if target.parent != root:  # defence in depth: safe_filename already prevents this
            raise CsvProblem(f"refusing to store {filename!r} outside the upload directory")
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        os.replace(temp, target)  # replaces only the empty file reserved just now
        return target
    raise _UploadError(409, f"{filename!r} and {_MAX_SAME_NAME - 1} numbered copies of it are "
                            "already stored; rename the file")


async def _validated(core: Core, fields: dict[str, Any], status: int) -> Response:
    """Broadcast the ``file_validated`` event (when the backend takes it) and return it."""
    event = ev.FileValidated(**fields)
    try:
        await core.ingest.submit(event)
    except ConnectionError as exc:  # the result still answers the upload; seq stays null
        log.warning("mlops-hooks: the validation of %s was not broadcast: %s", event.filename,
                    exc)
    return JSONResponse(ev.to_dict(event), status_code=status)


async def upload(request: Request) -> Response:
    """``POST /api/files``: returns the ``file_validated`` event (as broadcast)."""
    core: Core = request.app.state.core
    try:
        core.guard.check_origin(request.headers)
        core.guard.check_uploader(request.headers, request.query_params)
    except Denied as denied:
        return JSONResponse(problem(denied.message), status_code=denied.status)
    media, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        return JSONResponse({"error": "send the file as multipart/form-data with a 'file' field "
                                      f"(got Content-Type {media.decode() or 'none'!r})"},
                            status_code=415)
    state = _Upload(core, request, len(boundary))
    try:
        return await _receive(core, request, state, boundary)
    except ClientDisconnect:
        log.debug("mlops-hooks: a client disconnected during the upload of %s", state.filename)
        if state.filename is not None:  # dashboards showing its progress learn it ended
            await _validated(core, {
                "status": "error", "filename": state.filename,
                "error": "the upload was interrupted: the client disconnected after "
                         f"{format_bytes(state.file_bytes)}",
                "file_size": format_bytes(state.file_bytes)}, 400)
        return Response(status_code=400)  # nobody reads it
    finally:
        await state.discard()  # a partial file never stays (a stored one was moved away)


async def _receive(core: Core, request: Request, state: _Upload, boundary: bytes) -> Response:
    """Stream, store and validate the upload; the ``file_validated`` response."""
    collector = _Collector()
    started = time.perf_counter()
    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        })
        async for chunk in request.stream():
            state.body_seen += len(chunk)
            parser.write(chunk)
            actions, collector.actions = collector.actions, []
            for kind, value in actions:
                if kind == "file_begin":
                    await state.begin(value)
                elif kind == "file_data":
                    await state.data(value)
                elif kind == "field":
                    state.fields[value[0]] = value[1].decode("utf-8", "replace").strip()
                    if len(state.fields) > _MAX_FIELDS:
                        raise _UploadError(400, f"too many form fields (over {_MAX_FIELDS}); "
                                                "send 'file' and optionally 'target_column'")
        parser.finalize()
        if state.filename is None or state.temp is None:
            raise _UploadError(400, "no file in the request: send it in the multipart field "
                                    "'file'")
        await state.finish()
    except (_UploadError, FormParserError, OSError) as exc:  # OSError: the disk, not the client
        await state.discard()
        status, message = _problem(exc, core.config.upload_path)
        if state.filename is None:
            return JSONResponse({"error": message}, status_code=status)
        return await _validated(core, {
            "status": "error", "filename": state.filename, "error": message,
            "file_size": format_bytes(state.file_bytes),
            "validation_time": round(time.perf_counter() - started, 3)}, status)
    filename, temp = state.filename, state.temp
    directory = core.config.upload_path
    target = state.fields.get("target_column") or None
    checked = time.perf_counter()
    try:
        report = await asyncio.to_thread(validate_csv, temp, filename, target)
        path = await asyncio.to_thread(_place, temp, directory, filename)
        state.temp = None  # stored under its name: nothing to discard
    except (CsvProblem, _UploadError, OSError) as exc:  # upload()'s finally removes the temp
        status, message = (400, str(exc)) if isinstance(exc, CsvProblem) else \
            _problem(exc, directory)
        return await _validated(core, {
            "status": "error", "filename": filename, "error": message,
            "file_size": format_bytes(state.file_bytes),
            "validation_time": round(time.perf_counter() - checked, 3)}, status)
    return await _validated(core, {
        "status": "success", "filename": filename, "file_path": path.name,
        "rows": report.rows, "columns": report.columns,
        "file_size": format_bytes(state.file_bytes), "target_column": report.target_column,
        "summary": report.summary,
        "validation_time": round(time.perf_counter() - checked, 3)}, 200)
