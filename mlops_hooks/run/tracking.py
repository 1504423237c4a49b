"""``track()``: a :class:`~mlops_hooks.run.Run` around a hand-written training loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlops_hooks.run.lifecycle import Run

__all__ = ["track"]


@contextmanager
def track(
    name: str,
    *,
    total_epochs: int | None = None,
    total_steps: int | None = None,
    **options: Any,
) -> Iterator[Run]:
    """Track a hand-written training loop; see :class:`Run` for the options.

    An exception inside the block emits ``training_failed`` and is re-raised unchanged; a
    block that ends normally completes the run (unless ``run.complete(...)`` was called) with
    the last accuracy and validation score (``val_score``/``val_accuracy``/``val_acc``)
    given to ``epoch_end``.

    Example:
        >>> with track("mnist-cnn", total_epochs=3, steps_per_epoch=100) as run:  # doctest: +SKIP
        ...     run.stage("model_training")
        ...     for epoch in range(3):
        ...         run.epoch_start(epoch)
        ...         for batch in loader:
        ...             run.step(loss=train_step(batch))
        ...         run.epoch_end(epoch, metrics={"val_loss": validate()})
        ...     run.complete(final_accuracy=0.97)
    """
    run = Run(name, total_epochs=total_epochs, total_steps=total_steps, **options)
    with run:
        yield run
