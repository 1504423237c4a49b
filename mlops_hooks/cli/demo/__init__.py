"""``mlops-hooks demo``: a real server, real training runs and real traffic, live.

The demo starts ``mlops-hooks serve`` (in-memory fan-out, SQLite history in the demo's
directory), prints the dashboard's URL and streams real work to it through the ordinary
publisher: a Lightning MLP on scikit-learn's digits, a learning-rate probe that diverges, a
``GridSearchCV`` with the scikit-learn callback, an upload of a CSV the demo writes, the
deployment of the best model and a burst of prediction traffic through ``PredictionMonitor``.
The server's own monitor adds ``system_metrics``, ``health_change`` and ``system_alert``, so
every event type of the protocol shows on the dashboard. Then it keeps serving until Ctrl-C.

Example:
    >>> from mlops_hooks.cli.demo import DemoOptions, run_demo
    >>> run_demo(DemoOptions(port=8002, quick=True, exit_after_work=True))  # doctest: +SKIP
    0
"""

from mlops_hooks.cli.demo._options import DemoOptions
from mlops_hooks.cli.demo._runner import run_demo

__all__ = ["DemoOptions", "run_demo"]
