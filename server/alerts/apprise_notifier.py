"""The Apprise notifier (``--notify URL``): Slack, Discord, Telegram, ntfy, e-mail and 100+ more.

`Apprise <https://github.com/caronc/apprise>`_ is the optional extra ``notify``
(``pip install 'mlops-hooks[notify]'``). Each ``--notify`` URL is checked when the server
starts (Apprise parses it), so a typo is an error before any alert is due, not a lost alert.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from mlops_hooks.manager import hookimpl

__all__ = ["AppriseNotifier", "redact"]

_TYPES = {"high": "failure", "medium": "warning", "low": "info"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Apprise's plugin modules, imported on its first use, warn on newer Pythons (``imghdr``).

    Used at start-up only (on the main thread: ``catch_warnings`` is process-wide): the first
    ``add`` loads every plugin module, so sending imports nothing more.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def redact(url: str) -> str:
    """``slack://T000/B000/XXX`` → ``slack://…`` (URLs carry tokens; errors show the scheme)."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://…" if sep else "…"


class AppriseNotifier:
    """Sends each alert to one Apprise URL.

    Args:
        url: An Apprise URL (``slack://...``, ``tgram://...``, ``json://host:port/path``).

    Raises:
        ValueError: Apprise is not installed, or does not accept ``url``.
    """

    def __init__(self, url: str) -> None:
        try:
            with _quiet():
                import apprise
        except ImportError:
            raise ValueError("--notify needs Apprise, the optional extra 'notify': "
                             "pip install 'mlops-hooks[notify]'") from None
        self._apprise = apprise
        self.app = apprise.Apprise()
        with _quiet():  # loads the scheme's plugin module
            accepted = self.app.add(url)
        if not accepted:
            raise ValueError(f"--notify {redact(url)} is not a URL Apprise accepts (an unknown "
                             "scheme or a malformed URL; see https://github.com/caronc/apprise"
                             "/wiki for the URL of each service)")
        self.scheme = url.partition("://")[0]

    @hookimpl
    def mlops_notify(self, alert: dict[str, Any], run: dict[str, Any], link: str, rule: str,
                     value: float | str | None) -> None:
        """Send the alert; raise when Apprise reports the delivery failed."""
        name = run.get("model_name")
        label = f"{name} ({run['run_id']})" if name and name != run["run_id"] else run["run_id"]
        lines = [str(alert.get("message") or alert.get("title")), "",
                 f"Run: {label}", f"Rule: {rule} (value: {value})"]
        if link:
            lines.append(f"Run page: {link}")
        kind = getattr(self._apprise.NotifyType,
                       _TYPES.get(str(alert.get("priority")), "info").upper())
        if not self.app.notify(title=f"[mlops-hooks] {alert.get('title')}",
                               body="\n".join(lines), notify_type=kind):
            raise OSError(f"Apprise could not deliver to {self.scheme}://…")
