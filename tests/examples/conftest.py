from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for the examples of a module (each example uses its own names)."""
    workdir: Path = tmp_path_factory.mktemp("examples-server")
    with LiveServer(workdir, extra_args=["--upload-dir", str(workdir / "uploads"),
                                         "--metrics-interval", "0"]) as live:
        yield live
