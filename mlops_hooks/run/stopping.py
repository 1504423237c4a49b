"""A run's side of "Stop from the dashboard": the flag a loop reads and how the run ends.

:class:`Stoppable` sits between :class:`~mlops_hooks.run.progress.Position` and
:class:`~mlops_hooks.run.Run`. :attr:`Stoppable.should_stop` turns true once the run's
publisher received a stop request (:mod:`mlops_hooks.run.control`), or after :meth:`Stoppable.stop`;
an adapter (or a ``track()`` loop) then leaves at its next step boundary, and
:meth:`Run.complete` reports ``stop_reason: "requested"`` with a message saying who asked
(over the reason an adapter gives for an early end, such as ``"early_stopping"``).
"""

from __future__ import annotations

from mlops_hooks.run import control
from mlops_hooks.run import messages as text
from mlops_hooks.run.progress import Position

__all__ = ["REQUESTED", "Stoppable"]

#: ``training_completed.stop_reason`` of a run stopped on request.
REQUESTED = "requested"


class Stoppable(Position):
    """The stop flag of a run (the base of :class:`~mlops_hooks.run.Run`)."""

    _run_id: str

    @property
    def should_stop(self) -> bool:
        """A stop was requested: leave the training loop at the next step boundary.

        Cheap enough for every step (one dictionary look-up). A ``track()`` loop reads it::

            for batch in loader:
                run.step(loss=train_step(batch))
                if run.should_stop:
                    break  # the block ends normally: completed, stop_reason "requested"
        """
        return control.stop_requested(self._run_id) is not None

    @property
    def stop_request(self) -> control.StopRequest | None:
        """The stop request received for this run, if any (who asked, from where)."""
        return control.stop_requested(self._run_id)

    def stop(self) -> None:
        """Ask this run to stop at its next step boundary, as the dashboard's Stop button does."""
        control.request_stop(self._run_id)

    def ending(self, message: str | None,
               reason: str | None = None) -> tuple[str | None, str | None]:
        """The ``stop_reason`` and the message of the completion that ends the run now.

        ``"requested"`` when a stop request arrived and the run had not done its whole plan
        (a run whose plan is unknown counts as stopped); the message says who asked. Else
        ``reason``. The request is forgotten: the run is over.

        Args:
            message: The caller's message (kept when given).
            reason: The caller's explicit reason for an early end (``"early_stopping"``,
                ``"pruned"``, ``"callback"``), if any.
        """
        request = control.stop_requested(self._run_id)
        control.forget(self._run_id)
        unfinished = self.stopped_early() or (self.total_epochs is None
                                              and self.planned_steps is None
                                              and (self.progress or 0.0) < 100.0)
        if request is None or not unfinished:
            if message is None and self.stopped_early():
                message = text.stopped_early_message(self.epochs_done, self.total_epochs,
                                                     self.steps, self.planned_steps)
            return reason, message
        if message is None:
            where = f"at epoch {self.epochs_done}/{self.total_epochs}" \
                if self.total_epochs is not None else f"at step {self.steps}"
            source = f" from {request.source}" if request.source else ""
            message = f"Training stopped on request {where} (by {request.requested_by}{source})"
        return REQUESTED, message
