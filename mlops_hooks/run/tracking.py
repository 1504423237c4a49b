"""``track()``: a :class:`~mlops_hooks.run.Run` around a hand-written training loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlops_hooks.run.lifecycle import Run
from mlops_hooks.run.params import probe_git, resolve_group, resolve_group_size, send_params
from mlops_hooks.run.signals import unwatch, watch

__all__ = ["track"]


@contextmanager
def track(
    name: str,
    *,
    total_epochs: int | None = None,
    total_steps: int | None = None,
    params: Mapping[str, Any] | None = None,
    group: str | None = None,
    group_size: int | None = None,
    **options: Any,
) -> Iterator[Run]:
    """Track a hand-written training loop; see :class:`Run` for the options.

    An exception inside the block emits ``training_failed`` and is re-raised unchanged (Ctrl-C:
    ``error_code: "INTERRUPTED"``; SIGTERM in the main thread is reported as
    ``"TERMINATED"`` before the process dies of it, see :mod:`mlops_hooks.run.signals`); a
    block that ends normally completes the run (unless ``run.complete(...)`` was called) with
    the last accuracy and validation score (``val_score``/``val_accuracy``/``val_acc``)
    given to ``epoch_end``.
    Right after the run starts, a ``run_params`` event carries ``params`` (nested mappings
    flattened with ``.``) and the process's metadata.

    Args:
        name: What is being trained (shown on the dashboard).
        total_epochs: Epochs planned, if known.
        total_steps: Optimizer steps planned, if known.
        params: The run's parameters (learning rate, batch size, ...), sent once.
        group: The sweep or study the run belongs to; defaults to ``MLOPS_HOOKS_GROUP``.
        group_size: How many runs the group plans (shown as "of N planned"); defaults to
            ``MLOPS_HOOKS_GROUP_SIZE``. Ignored when the run has no group.
        **options: Other :class:`Run` options (``steps_per_epoch``, ``run_id``, ...).

    Raises:
        TypeError: ``params`` is not a mapping.
        ValueError: ``group`` is not a non-empty string, ``group_size`` (or
            ``MLOPS_HOOKS_GROUP_SIZE``) is not a positive integer, or a :class:`Run` option
            is invalid.

    Example:
        >>> with track("mnist-cnn", total_epochs=3, steps_per_epoch=100,  # doctest: +SKIP
        ...            params={"lr": 1e-3, "batch_size": 64}) as run:
        ...     run.stage("model_training")
        ...     for epoch in range(3):
        ...         run.epoch_start(epoch)
        ...         for batch in loader:
        ...             run.step(loss=train_step(batch))
        ...         run.epoch_end(epoch, metrics={"val_loss": validate()})
        ...     run.complete(final_accuracy=0.97)
    """
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of names to values, got "
                        f"{type(params).__name__}")
    chosen_group = resolve_group(group)
    planned = resolve_group_size(group_size)
    probe_git()
    run = Run(name, total_epochs=total_epochs, total_steps=total_steps, **options)
    with run:
        watch(run)  # SIGTERM: reported as killed, then the default action (run/signals.py)
        try:
            send_params(run, params or {}, group=chosen_group, group_size=planned)
            yield run
        finally:
            unwatch(run)
