"""Who may connect: tokens, browser Origins, the Host header, and the connection cap.

* Publishers (``/ws/publish``, ``POST /api/events``) present ``Authorization: Bearer <token>``
  when the server has a token.
* Readers (``/ws``, every ``GET /api/...`` read, ``/metrics``) present the subscriber token,
  when one is set, as ``?token=`` (browsers cannot set headers on WebSockets) or as a Bearer
  header; the publisher token is accepted too.
* Uploads (``POST /api/files``) are writes: with a publisher token they need it; with only a
  subscriber token they need that one (docs/security.md).
* A browser's ``Origin`` must be the page's own origin (same host and port as ``Host``), a
  loopback origin (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or an allowed origin.
  Requests without ``Origin`` (scripts, the publisher) are not browsers and pass.
* ``Host`` must be an IP address, ``localhost`` (or ``*.localhost``), this machine's name, the
  bound name, or an allowed host: a DNS-rebinding page arrives with its own domain name there.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from starlette.datastructures import Headers, QueryParams

from mlops_hooks.server.config import ServerConfig

__all__ = ["Denied", "Guard"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Denied(Exception):
    """A request or handshake refused; ``status`` is the HTTP status to answer with.

    Args:
        status: 400 (bad Host), 401 (token), 403 (Origin), 503 (connection cap).
        message: What is wrong and how to fix it.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _split_host(value: str) -> tuple[str, str]:
    """``'Name:8001'`` → ``('name', '8001')``; handles ``[::1]:8001``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.lstrip(":")
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback_name(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.endswith(".localhost")


def _token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class Guard:
    """The checks of one server, precomputed from its config.

    Args:
        config: The server's settings.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.any_host = "*" in config.allowed_hosts
        names = {"localhost", socket.gethostname().lower(), config.host.lower()}
        names.update(h.lower() for h in config.allowed_hosts)
        self.any_origin = "*" in config.allowed_origins
        self.origins: set[str] = set()
        for origin in config.allowed_origins:
            if origin == "*":
                continue
            normal = origin.rstrip("/").lower()
            self.origins.add(normal)
            names.add(_split_host(urlsplit(normal).netloc)[0])
        self.host_names = frozenset(n for n in names if n)

    # ------------------------------------------------------------------ individual checks

    def check_host(self, headers: Headers) -> None:
        """Refuse a ``Host`` that is neither an address nor a known name.

        Raises:
            Denied: 400 with the name that arrived and what is accepted.
        """
        if self.any_host:
            return
        raw = headers.get("host", "")
        host, _ = _split_host(raw)
        if not host or _is_ip(host) or _is_loopback_name(host) or host in self.host_names:
            return
        raise Denied(400, f"Host header {raw!r} is not allowed (DNS-rebinding guard); use an IP "
                          "address or localhost, or start the server with --allowed-host "
                          f"{host}")

    def check_origin(self, headers: Headers) -> None:
        """Refuse a browser ``Origin`` that is not this server, loopback, or allowed.

        Raises:
            Denied: 403 naming the origin and the flag that would allow it.
        """
        origin = headers.get("origin")
        if origin is None or self.any_origin:
            return
        normal = origin.rstrip("/").lower()
        if normal in self.origins:
            return
        parts = urlsplit(normal)
        if parts.scheme in ("http", "https") and parts.netloc:
            host, port = _split_host(parts.netloc)
            if _is_loopback_name(host):
                return
            request_host = _split_host(headers.get("host", ""))
            default = "443" if parts.scheme == "https" else "80"
            if (host, port or default) == (request_host[0], request_host[1] or default):
                return  # same origin as the page this server served
        raise Denied(403, f"Origin {origin!r} is not allowed; start the server with "
                          f"--allowed-origin {origin} to allow it")

    def check_publisher(self, headers: Headers) -> None:
        """Require the publisher token, when the server has one.

        Raises:
            Denied: 401 saying whether the token is missing or wrong.
        """
        expected = self.config.token
        if expected is None:
            return
        given = _bearer(headers)
        if given is None:
            raise Denied(401, "this server requires a publisher token: send "
                              "'Authorization: Bearer <token>' (MLOPS_HOOKS_TOKEN)")
        if not _token_matches(given, expected):
            raise Denied(401, "the publisher token is wrong (check MLOPS_HOOKS_TOKEN)")

    def check_subscriber(self, headers: Headers, query: QueryParams) -> None:
        """Require the subscriber token (or the publisher token), when one is set.

        Raises:
            Denied: 401 saying whether the token is missing or wrong.
        """
        expected = self.config.subscriber_token
        if expected is None:
            return
        given = query.get("token") or _bearer(headers)
        if given is None:
            raise Denied(401, "this server requires a subscriber token: connect with "
                              "?token=<token> or 'Authorization: Bearer <token>'")
        accepted = [expected] + ([self.config.token] if self.config.token else [])
        if not any(_token_matches(given, t) for t in accepted):
            raise Denied(401, "the subscriber token is wrong")

    def check_uploader(self, headers: Headers, query: QueryParams) -> None:
        """Require the token an upload needs.

        The publisher token when the server has one (an upload broadcasts events and writes
        to disk), else the subscriber token when one is set.

        Raises:
            Denied: 401 saying which token is missing or wrong.
        """
        expected = self.config.token
        if expected is None:
            self.check_subscriber(headers, query)
            return
        given = _bearer(headers) or query.get("token")
        if given is None:
            raise Denied(401, "uploads on this server need the publisher token: send "
                              "'Authorization: Bearer <token>' (open the dashboard with "
                              "?token=<publisher token> to upload from it)")
        if not _token_matches(given, expected):
            raise Denied(401, "uploads need the publisher token, and the token sent is not it")

    def check_capacity(self, connections: int, *, publisher: bool = False) -> None:
        """Refuse a WebSocket beyond its budget: dashboards and publishers have one each.

        Args:
            connections: Open connections of the same kind (``/ws``, or ``/ws/publish``).
            publisher: Check the publishers' budget instead of the dashboards'.

        Raises:
            Denied: 503 with the cap.
        """
        cap = self.config.max_publishers if publisher else self.config.max_connections
        if connections >= cap:
            kind = "publisher" if publisher else "dashboard"
            raise Denied(503, f"too many {kind} connections ({connections} of {cap}); "
                              "retry later")
