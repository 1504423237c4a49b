"""The generic webhook notifier: each alert as one JSON ``POST`` (``--webhook URL``).

The body is ``{"alert": {...spec fields}, "run": {"run_id", "model_name", "url"}, "link": ...,
"rule": ..., "value": ...}`` with ``Content-Type: application/json``. A status other than 2xx, a
refused connection or the timeout raises, and the dispatcher retries with backoff.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from mlops_hooks.manager import hookimpl
from mlops_hooks.protocol import user_agent

__all__ = ["WebhookNotifier", "check_webhook_url"]


def check_webhook_url(url: str) -> str:
    """``url`` if it is an ``http(s)://host...`` URL.

    Raises:
        ValueError: Another scheme, or no host.
    """
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError:
        has_host = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not has_host:
        raise ValueError(f"--webhook needs an http:// or https:// URL with a host, got {url!r} "
                         "(for Slack, Discord, ntfy, e-mail... use --notify with an Apprise URL)")
    return url


class WebhookNotifier:
    """POSTs each alert as JSON to one URL.

    Args:
        url: The receiver (checked with :func:`check_webhook_url`).
        timeout: Seconds for the whole request.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = check_webhook_url(url)
        self.timeout = timeout

    @hookimpl
    def mlops_notify(self, alert: dict[str, Any], run: dict[str, Any], link: str, rule: str,
                     value: float | str | None) -> None:
        """POST the alert; raise on anything but a 2xx answer."""
        body = json.dumps({"alert": alert, "run": run, "link": link, "rule": rule,
                           "value": value}).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": user_agent()})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:  # pragma: no cover - urlopen raises first
                raise OSError(f"webhook {self.url} answered {response.status}")
