"""The Redis backend's URL: what it accepts, what it refuses, and what it shows."""

from __future__ import annotations

import pytest

from mlops_hooks.server.backends import create_backend
from mlops_hooks.server.backends._redis_support import parse_redis_url


def test_defaults_and_keys() -> None:
    target = parse_redis_url("redis://localhost")
    assert target.where == "redis://localhost:6379/0"
    assert target.prefix == "mlops-hooks"
    assert target.keys == ("{mlops-hooks}:seq", "{mlops-hooks}:stream", "{mlops-hooks}:ids")
    assert target.socket_timeout == 5.0
    assert target.url == "redis://localhost/0"


def test_credentials_never_show_and_own_parameters_are_removed() -> None:
    target = parse_redis_url(
        "rediss://user:s3cret@cache.internal:6380/2?prefix=fleet-a&socket_timeout=1.5"
        "&ssl_cert_reqs=none")
    assert target.where == "rediss://cache.internal:6380/2"
    assert "s3cret" not in target.where
    assert target.prefix == "fleet-a"
    assert target.keys[1] == "{fleet-a}:stream"
    assert target.socket_timeout == 1.5
    assert "prefix" not in target.url and "s3cret" in target.url  # redis-py needs the password
    assert "socket_timeout=1.5" in target.url and "ssl_cert_reqs=none" in target.url


@pytest.mark.parametrize(("url", "message"), [
    ("memory://", "starts with redis:// or rediss://"),
    ("redis://localhost:notaport/0", "invalid port"),
    ("redis:///0", "names no host"),
    ("redis://localhost/zero", "database must be a number"),
    ("redis://localhost/0?prefix=", "prefix must be"),
    ("redis://localhost/0?prefix=a%20b", "prefix must be"),
    ("redis://localhost/0?socket_timeout=0", "socket_timeout must be"),
    ("redis://localhost/0?socket_timeout=soon", "socket_timeout must be"),
    ("redis://localhost/0?stream=x", "unknown parameter 'stream'"),
])
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_create_backend_reports_bad_urls_and_sizes() -> None:
    with pytest.raises(ValueError, match="database must be a number"):
        create_backend("redis://localhost/db1")
    with pytest.raises(ValueError, match="replay_size must be a positive integer"):
        create_backend("redis://localhost/0", replay_size=0)
