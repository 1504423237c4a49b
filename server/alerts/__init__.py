"""Alert rules and notifiers, evaluated on the server's copy of every run's stream.

``config`` (settings) · ``finding`` (what a rule reports, the rules' base) · ``training``,
``lifecycle``, ``host`` (the rules) · ``engine`` (episodes, cool-down, ``system_alert`` events)
· ``dispatch`` (notifier queues and threads, retries) · ``hookspec`` (``mlops_notify``) ·
``webhook``, ``apprise_notifier`` (the built-in notifiers) · ``service`` (the server's alerts,
raised off ingest's path). See docs/alerts.md.
"""

from mlops_hooks.server.alerts.config import AlertConfig, load_toml
from mlops_hooks.server.alerts.engine import AlertEngine
from mlops_hooks.server.alerts.service import Alerts

__all__ = ["AlertConfig", "AlertEngine", "Alerts", "load_toml"]
