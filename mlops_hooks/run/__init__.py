"""The framework-agnostic training run: the state machine every adapter drives.

:class:`Run` (:mod:`.lifecycle`) is what adapters and ``track()`` users call; the maths of
progress and ETA (:mod:`.progress`), the English of the events (:mod:`.messages`) and the
activity-feed entries (:mod:`.activity`) live beside it, one concern each; ``track()``
(:mod:`.tracking`) wraps a hand-written loop, and :mod:`.params` sends a run's parameters.
"""

from mlops_hooks.run.lifecycle import Emit, Outcome, Run
from mlops_hooks.run.tracking import track

__all__ = ["Emit", "Outcome", "Run", "track"]
