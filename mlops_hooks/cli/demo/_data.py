"""The demo's data: scikit-learn's digits, written as a CSV and uploaded to the server.

The upload is a plain ``multipart/form-data`` POST to ``/api/files`` (standard library only),
streamed in chunks over a second or two so the dashboard's upload bar has something to show;
the server broadcasts ``upload_progress`` while the bytes arrive, validates the CSV and
broadcasts ``file_validated``.
"""

from __future__ import annotations

import csv
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Digits", "load", "upload_csv", "write_csv"]

TARGET = "digit"
CHUNK = 16 * 1024


@dataclass(frozen=True)
class Digits:
    """The digits split into training and test parts (pixels scaled to 0-1)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any

    @property
    def features(self) -> int:
        """Pixels per image (64)."""
        return int(self.x_train.shape[1])


def load(rows: int | None = None, seed: int = 0) -> Digits:
    """Load scikit-learn's digits (8x8 images of 0-9), stratified 80/20 split.

    Args:
        rows: Use only this many rows (``None``: all 1,797).
        seed: Random seed of the split.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    if rows is not None:
        x, y = x[:rows], y[:rows]
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        random_state=seed)
    return Digits(x_train, y_train, x_test, y_test)


def write_csv(path: Path, data: Digits) -> int:
    """Write every row of ``data`` (pixel columns and the ``digit`` target) to ``path``.

    Returns:
        The number of data rows written.
    """
    import numpy as np

    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"pixel_{i}" for i in range(x.shape[1])] + [TARGET])
        for row, label in zip(x, y, strict=True):
            writer.writerow([f"{v:.4g}" for v in row] + [int(label)])
    return len(y)


def _body(path: Path, target: str, boundary: str) -> tuple[bytes, bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"target_column\"\r\n\r\n"
            f"{target}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, path.read_bytes(), tail


def _chunks(parts: tuple[bytes, bytes, bytes], seconds: float) -> Iterator[bytes]:
    head, data, tail = parts
    yield head
    count = max(1, -(-len(data) // CHUNK))
    pause = seconds / count
    for i in range(count):
        yield data[i * CHUNK:(i + 1) * CHUNK]
        if pause > 0:
            time.sleep(pause)
    yield tail


def upload_csv(http_url: str, path: Path, target: str = TARGET, *,
               seconds: float = 0.0, timeout: float = 60.0) -> dict[str, Any]:
    """Upload ``path`` to ``POST /api/files`` and return the ``file_validated`` event.

    Args:
        http_url: The server (``http://host:port``).
        path: The CSV file.
        target: Its target column.
        seconds: Spread the upload over about this long (0: as fast as possible).
        timeout: Seconds to wait for the server.

    Returns:
        The server's ``file_validated`` event (``status`` ``success`` or ``error``).

    Raises:
        OSError: The server could not be reached, or answered without a JSON event.
    """
    boundary = f"mlops-hooks-demo-{uuid.uuid4().hex}"
    parts = _body(path, target, boundary)
    length = sum(len(p) for p in parts)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(length)}
    token = os.environ.get("MLOPS_HOOKS_TOKEN")
    if token:  # an upload is a write: a server with a publisher token requires it
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        http_url + "/api/files", data=_chunks(parts, seconds), method="POST", headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:  # 4xx: the body is the file_validated error event
        body = exc.read()
        exc.close()
    try:
        event = json.loads(body)
    except ValueError:
        raise OSError(f"the server answered the upload with something else than JSON: "
                      f"{body[:200]!r}") from None
    if not isinstance(event, dict):
        raise OSError(f"unexpected upload answer: {event!r}")
    return event
