from __future__ import annotations

import pytest

from mlops_hooks._publisher.config import Settings, env_float, env_int, is_loopback
from mlops_hooks.publisher import Publisher, make_plugin, publish_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ws://127.0.0.1:8001/ws", "ws://127.0.0.1:8001/ws/publish"),
        ("ws://127.0.0.1:8001/ws/", "ws://127.0.0.1:8001/ws/publish"),
        ("ws://127.0.0.1:8001/ws/publish", "ws://127.0.0.1:8001/ws/publish"),
        ("http://localhost:8001/ws", "ws://localhost:8001/ws/publish"),
        ("https://mlops.example.com/team/ws", "wss://mlops.example.com/team/ws/publish"),
        ("wss://mlops.example.com", "wss://mlops.example.com/ws/publish"),
        ("HTTP://h:1/", "ws://h:1/ws/publish"),
        ("ws://h:1/ws?tenant=a", "ws://h:1/ws/publish?tenant=a"),
    ],
)
def test_publish_url_is_derived_from_the_server_url(given, expected):
    assert publish_url(given) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("ftp://h/ws", "must start with ws://"),
        ("127.0.0.1:8001/ws", "must start with ws://"),
        ("ws:///ws", "no host"),
        ("ws://h:1/api/events", "must end in /ws"),
    ],
)
def test_bad_server_urls_are_named(given, words):
    with pytest.raises(ValueError, match=words) as info:
        publish_url(given)
    assert repr(given) in str(info.value)


def test_loopback_hosts_are_recognised():
    assert is_loopback("ws://127.0.0.1:1/ws/publish")
    assert is_loopback("ws://localhost:1/ws/publish")
    assert is_loopback("ws://[::1]:1/ws/publish")
    assert not is_loopback("wss://mlops.example.com/ws/publish")


def test_env_numbers_are_validated_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_BUFFER", "20_000")
    assert env_int("MLOPS_HOOKS_BUFFER", 5) == 20_000
    monkeypatch.setenv("MLOPS_HOOKS_BUFFER", "lots")
    with pytest.raises(ValueError, match="MLOPS_HOOKS_BUFFER must be an integer >= 1, got 'lots'"):
        env_int("MLOPS_HOOKS_BUFFER", 5)
    monkeypatch.setenv("MLOPS_HOOKS_BUFFER", "0")
    with pytest.raises(ValueError, match="MLOPS_HOOKS_BUFFER"):
        env_int("MLOPS_HOOKS_BUFFER", 5)
    monkeypatch.delenv("MLOPS_HOOKS_BUFFER")
    assert env_int("MLOPS_HOOKS_BUFFER", 5) == 5
    monkeypatch.setenv("MLOPS_HOOKS_FLUSH_TIMEOUT", "2.5")
    assert env_float("MLOPS_HOOKS_FLUSH_TIMEOUT", 5.0) == 2.5
    for bad in ("-1", "nan", "inf", "soon"):
        monkeypatch.setenv("MLOPS_HOOKS_FLUSH_TIMEOUT", bad)
        with pytest.raises(ValueError, match="MLOPS_HOOKS_FLUSH_TIMEOUT"):
            env_float("MLOPS_HOOKS_FLUSH_TIMEOUT", 5.0)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("buffer_size", 0, "buffer_size must be an integer >= 1"),
        ("max_inflight", 2.5, "max_inflight must be an integer >= 1"),
        ("flush_timeout", -1, "flush_timeout must be a number of seconds >= 0"),
        ("poll_interval", 0, "poll_interval must be > 0"),
        ("backoff_cap", 0.1, "backoff_cap (0.1) must be >= backoff_base (0.25)"),
    ],
)
def test_settings_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings(url="ws://h:1/ws/publish", **{field: value})


def test_publisher_reads_its_defaults_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_URL", "http://10.1.2.3:9000/ws")
    monkeypatch.setenv("MLOPS_HOOKS_TOKEN", "s3cret")
    monkeypatch.setenv("MLOPS_HOOKS_BUFFER", "12345")
    monkeypatch.setenv("MLOPS_HOOKS_FLUSH_TIMEOUT", "1.5")
    settings = Publisher().settings
    assert settings.url == "ws://10.1.2.3:9000/ws/publish"
    assert settings.token == "s3cret"
    assert settings.buffer_size == 12345
    assert settings.flush_timeout == 1.5
    explicit = Publisher("ws://h:1/ws", token="t", buffer_size=7, flush_timeout=0).settings
    assert (explicit.url, explicit.token, explicit.buffer_size, explicit.flush_timeout) == \
        ("ws://h:1/ws/publish", "t", 7, 0)


def test_default_url_and_buffer(monkeypatch):
    for name in ("MLOPS_HOOKS_URL", "MLOPS_HOOKS_BUFFER", "MLOPS_HOOKS_FLUSH_TIMEOUT",
                 "MLOPS_HOOKS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Publisher().settings
    assert settings.url == "ws://127.0.0.1:8001/ws/publish"
    assert settings.buffer_size == 10_000
    assert settings.flush_timeout == 5.0
    assert settings.token is None


def test_make_plugin_with_a_bad_setting_disables_the_publisher_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOOKS_URL", "tcp://nowhere/ws")
    assert make_plugin() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "publisher disabled" in err and "tcp://nowhere/ws" in err
