from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_hooks.cli import build_parser
from mlops_hooks.server.backends import MemoryBackend, create_backend
from mlops_hooks.server.config import ServerConfig, data_dir
from mlops_hooks.server.serve import HTTP_ROOM, fit_budgets


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"port": 70000}, "port must be an integer 0-65535"),
    ({"replay_size": 0}, "replay_size must be an integer > 0"),
    ({"metrics_interval": -1}, "metrics_interval must be a number >= 0"),
    ({"token": " "}, "token must be a non-empty string"),
    ({"backend": "redis"}, "backend must be a URL"),
    ({"max_publishers": 0}, "max_publishers must be an integer > 0"),
    ({"max_open_connections": 0}, "max_open_connections must be an integer > 0"),
    ({"request_timeout": 0}, "request_timeout must be a number > 0"),
])
def test_bad_settings_are_named(kwargs, text):
    with pytest.raises(ValueError, match=text):
        ServerConfig(**kwargs)


def test_defaults_live_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    config = ServerConfig()
    assert config.db_path == str(tmp_path / "mlops-hooks" / "history.sqlite3")
    assert config.upload_path == tmp_path / "mlops-hooks" / "uploads"
    assert data_dir() == tmp_path / "mlops-hooks"
    assert config.host == "127.0.0.1" and config.port == 8001
    assert ServerConfig(token="x").describe()["token"] == "set"


def test_websocket_budgets_are_fitted_under_the_cap_on_open_connections():
    config = ServerConfig(max_connections=1000, max_publishers=100)
    assert fit_budgets(config, 10_000) is config
    fitted = fit_budgets(config, 124)
    assert fitted.max_connections + fitted.max_publishers <= 124 - HTTP_ROOM
    assert fitted.max_publishers >= 1 and fitted.max_connections >= 1


def test_backends_by_url():
    assert isinstance(create_backend("memory://"), MemoryBackend)
    with pytest.raises(ValueError, match="scheme must be one of"):
        create_backend("kafka://x")


def test_serve_flags_parse():
    args = build_parser().parse_args([
        "serve", "--port", "9000", "--token", "t", "--allowed-origin", "http://a",
        "--allowed-origin", "http://b", "--queue-size", "512KB", "--max-upload-size", "2MB"])
    assert args.port == 9000 and args.allowed_origin == ["http://a", "http://b"]
    assert args.queue_size == 512 * 1024 and args.max_upload_size == 2 * 1024**2


def _serve(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_hooks", "serve", *argv],
                          capture_output=True, text=True, timeout=60)


def test_serve_reports_bad_settings_and_unusable_databases(tmp_path):
    bad = _serve("--replay-size", "0", "--port", "0")
    assert bad.returncode == 2 and "replay_size must be" in bad.stderr
    blocked = tmp_path / "file"
    blocked.write_text("x")
    db = _serve("--db", str(blocked / "sub" / "h.sqlite3"), "--port", "0")
    assert db.returncode == 2 and "cannot open the history database" in db.stderr
    heartbeat = _serve("--heartbeat-timeout", "0", "--port", "0")
    assert heartbeat.returncode == 2
    assert "heartbeat_timeout must be a number > 0" in heartbeat.stderr
    assert build_parser().parse_args(["serve", "--heartbeat-timeout", "12.5"]
                                     ).heartbeat_timeout == 12.5
    size = _serve("--queue-size", "lots")
    assert size.returncode == 2 and "expected a size" in size.stderr
