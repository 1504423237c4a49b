"""The notifier hook, ``mlops_notify``: a server-side hook specification of its own.

Notifiers are pluggy plugins of the project's marker (``mlops_hooks.hookimpl``), called by the
server's notification threads, never on its event loop. Built in: the generic webhook
(``--webhook URL``) and Apprise (``--notify URL``). A third-party notifier is registered under
the entry-point group ``mlops_hooks.notifiers``::

    [project.entry-points."mlops_hooks.notifiers"]
    pager = "my_pager:PagerNotifier"

    class PagerNotifier:
        @mlops_hooks.hookimpl
        def mlops_notify(self, alert, run, link):
            ...  # deliver; raise to have it retried
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["NOTIFIER_GROUP", "NotifierSpec"]

hookspec = pluggy.HookspecMarker("mlops_hooks")

#: Entry-point group of third-party notifiers.
NOTIFIER_GROUP = "mlops_hooks.notifiers"


class NotifierSpec:
    """The notifier hook specification (``pluggy.PluginManager.add_hookspecs(NotifierSpec)``)."""

    @hookspec
    def mlops_notify(self, alert: dict[str, Any], run: dict[str, Any], link: str, rule: str,
                     value: float | str | None) -> None:
        """Deliver one alert to a receiver.

        Called: once per alert episode a rule raises (not for its clearing), on the notifier's own
        thread, after the ``system_alert`` is stored. Each notifier has its own bounded queue and
        thread, so a slow or unreachable receiver delays nobody else.

        Process: server.

        May: block for the delivery (its thread is its own; keep within the notify timeout).
        Raise to report a failed delivery: it is retried with exponential backoff (full jitter,
        ``[notify] retries``, ``backoff_base_s``, ``backoff_cap_s``), then dropped with a log line.

        Args:
            alert: The spec's alert object (``id``, ``title``, ``message``, ``alert_type``,
                ``priority``, ``source``, ``timestamp``, ``auto_dismiss``, ``actions``).
            run: ``run_id``, ``model_name`` (or None) and ``url`` (the run's page).
            link: The run's page on the dashboard (``--public-url`` + ``/runs/<run_id>``).
            rule: The rule's name (``divergence``, ``failed``, ...).
            value: The value that tripped it (a loss, a percentage, a state).
        """
