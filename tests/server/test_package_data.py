"""The wheel carries every file of the dashboard, vendored uPlot included, and serves it.

The pages import ``/static/vendor/uplot/uPlot.esm.js``; a ``package-data`` pattern that misses
a sub-directory would ship a wheel whose run pages fail in the browser only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "server" / "static"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the sources: pip builds in the tree, and a build/ left there by an earlier build
    # would hand its files to this one.
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        "test-artifacts", "node_modules"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
                   check=True, cwd=source, timeout=240,
                   env={**os.environ, "PIP_NO_INDEX": "1"})
    (found,) = out.glob("mlops_hooks-*.whl")
    return found


def test_every_static_file_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"mlops_hooks/server/static/" + p.relative_to(STATIC).as_posix()
                for p in STATIC.rglob("*") if p.is_file()}
    assert "mlops_hooks/server/static/vendor/uplot/uPlot.esm.js" in expected
    assert expected - names == set()


def test_the_installed_package_serves_the_pages_and_uplot(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    server = LiveServer(tmp_path, extra_args=["--metrics-interval", "0"],
                        env={"PYTHONPATH": str(site)})
    with server:
        origin = httpx.get(server.http_url + "/static/vendor/uplot/uPlot.esm.js", timeout=10)
        assert origin.status_code == 200
        assert origin.content == (STATIC / "vendor/uplot/uPlot.esm.js").read_bytes()
        assert "javascript" in origin.headers["content-type"]
        for path in ("/runs", "/runs/some-run", "/compare?runs=a,b"):
            page = httpx.get(server.http_url + path, timeout=10)
            assert page.status_code == 200, path
            assert "script-src 'self'" in page.headers["content-security-policy"], path
        # It is the wheel's copy that answered, not the source tree's.
        check = subprocess.run(
            [sys.executable, "-c", "import mlops_hooks.server.endpoints.rest as r; "
             "print(r.STATIC_DIR)"], env={**os.environ, "PYTHONPATH": str(site)},
            capture_output=True, text=True, check=True, cwd=tmp_path)
        assert check.stdout.strip().startswith(str(site))
