"""mlops-hooks: watch machine-learning runs live.

Add one callback (or ``with mlops_hooks.track(...)``) to a training script and every progress
step, stage, loss, ETA, completion, failure, deployment and prediction milestone streams to a
WebSocket dashboard and to any plugin.
"""

from mlops_hooks.api import emit, emit_dict
from mlops_hooks.events import EventError
from mlops_hooks.manager import get_plugin_manager, hookimpl
from mlops_hooks.run import Run, track
from mlops_hooks.serving import PredictionMonitor, deploy

__all__ = [
    "EventError",
    "PredictionMonitor",
    "Run",
    "deploy",
    "emit",
    "emit_dict",
    "get_plugin_manager",
    "hookimpl",
    "track",
]


def __getattr__(name: str) -> str:
    """``mlops_hooks.__version__``, read from the installed metadata on first use."""
    if name == "__version__":
        from mlops_hooks.protocol import version

        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
