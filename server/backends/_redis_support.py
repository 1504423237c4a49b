"""What the Redis backend needs besides its class: the URL it takes, key names and Lua scripts.

Three keys per stream, all under one hash tag so that a Redis Cluster would keep them in one
slot (the scripts touch them together):

* ``{prefix}:seq`` — the counter that numbers events (``INCR``);
* ``{prefix}:stream`` — the Redis Stream of encoded events; entry ids are ``<seq>-0``, so
  ``XRANGE`` and ``XREAD`` address events by ``seq`` directly; trimmed with ``MAXLEN ~``;
* ``{prefix}:ids`` — a sorted set ``event_id → seq`` (score), trimmed to the newest entries:
  the idempotency space every server shares.

:data:`PUBLISH_LUA` checks the idempotency key, numbers the event and appends it in one atomic
step, so two servers can never give one ``event_id`` two numbers, nor one number two events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from mlops_hooks.server.stream.record import Record

__all__ = ["FLOOR_LUA", "PUBLISH_LUA", "RedisTarget", "parse_redis_url", "record_seq", "seq_of"]

#: Query parameters the backend itself reads (removed before redis-py sees the URL).
OWN_PARAMS = ("prefix",)
#: Query parameters passed on to redis-py's connection pool.
REDIS_PARAMS = (
    "db", "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval",
    "protocol", "client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile",
    "ssl_keyfile", "ssl_check_hostname", "ssl_min_version",
)
_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

#: KEYS: seq, stream, ids. ARGV: has_id ('1'/'0'), event_id, data, maxlen, floor, ids_max,
#: origin (the publishing server, kept in the entry's ``o`` field). Returns
#: ``{seq, duplicate (0/1)}``.
PUBLISH_LUA = """
local has_id = ARGV[1] == '1'
local event_id = ARGV[2]
if has_id then
  local known = redis.call('ZSCORE', KEYS[3], event_id)
  if known then
    return {tonumber(known), 1}
  end
end
local current = redis.call('GET', KEYS[1])
local floor = tonumber(ARGV[5])
if not current then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if top[1] then
    floor = math.max(floor, tonumber(string.match(top[1][1], '^(%d+)')))
  end
  redis.call('SET', KEYS[1], floor)
elseif tonumber(current) < floor then
  redis.call('SET', KEYS[1], floor)
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'd', ARGV[3], 'o', ARGV[7])
if has_id then
  redis.call('ZADD', KEYS[3], seq, event_id)
  local size = redis.call('ZCARD', KEYS[3])
  local keep = tonumber(ARGV[6])
  if size > keep then
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, size - keep - 1)
  end
end
return {seq, 0}
"""

#: KEYS: seq, stream. ARGV: floor. Raises the counter to at least ``floor`` (and past the
#: stream's newest entry). Returns ``{counter before (-1 when absent), counter after}``.
FLOOR_LUA = """
local current = redis.call('GET', KEYS[1])
local before = -1
if current then before = tonumber(current) end
local floor = tonumber(ARGV[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  floor = math.max(floor, tonumber(string.match(top[1][1], '^(%d+)')))
end
if before < floor then
  redis.call('SET', KEYS[1], floor)
  return {before, floor}
end
return {before, before}
"""


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``--backend`` URL.

    Attributes:
        url: The URL handed to redis-py (the backend's own parameters removed).
        where: The URL without credentials, for messages, ``/healthz`` and logs.
        prefix: Key prefix: servers with the same Redis and prefix share one stream.
        socket_timeout: Seconds a Redis reply may take before the connection counts as broken.
    """

    url: str
    where: str
    prefix: str
    socket_timeout: float

    @property
    def keys(self) -> tuple[str, str, str]:
        """The counter, stream and idempotency-set keys."""
        tag = "{" + self.prefix + "}"
        return f"{tag}:seq", f"{tag}:stream", f"{tag}:ids"


def parse_redis_url(url: str, *, default_timeout: float = 5.0) -> RedisTarget:
    """Check a ``redis://[user:password@]host[:port][/db][?prefix=NAME&...]`` URL.

    Args:
        url: The URL (``rediss://`` for TLS).
        default_timeout: Socket timeout unless the URL sets ``socket_timeout``.

    Returns:
        The target.

    Raises:
        ValueError: The scheme, port, database number, prefix or a query parameter is invalid;
            the message names it and what is accepted.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis backend URL starts with redis:// or rediss://, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"the Redis URL {_redact(parts)!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"the Redis URL {_redact(parts)!r} names no host "
                         "(expected redis://host:port/db)")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis URL's database must be a number such as /0, got /{path}")
    prefix = "mlops-hooks"
    timeout = default_timeout
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            if not _PREFIX.match(value):
                raise ValueError("the Redis URL's prefix must be 1-64 letters, digits or ._:- "
                                 f"characters, got {value!r}")
            prefix = value
            continue
        if name not in REDIS_PARAMS:
            known = ", ".join((*OWN_PARAMS, *REDIS_PARAMS))
            raise ValueError(f"unknown parameter {name!r} in the Redis URL; known: {known}")
        if name == "socket_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise ValueError(f"the Redis URL's socket_timeout must be a number of seconds "
                                 f"> 0, got {value!r}")
        passed.append((name, value))
    clean = urlunsplit((parts.scheme, parts.netloc, "/" + (path or "0"), urlencode(passed), ""))
    return RedisTarget(clean, _redact(parts), prefix, timeout)


def _redact(parts: SplitResult) -> str:
    """``scheme://host:port/db`` without user, password or query."""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = str(parts.port or 6379)
    except ValueError:
        port = "?"
    return f"{parts.scheme}://{host}:{port}/{parts.path.strip('/') or '0'}"


def seq_of(entry_id: bytes | str) -> int:
    """The ``seq`` of a stream entry id (``b"42-0"`` → 42)."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.partition("-")[0])


def record_seq(record: Record) -> int:
    """A record's ``seq`` (a sort key)."""
    return record.seq
