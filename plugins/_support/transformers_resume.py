"""A Transformers training resumed from a checkpoint continues its run (the id in the checkpoint).

Transformers' own mechanism: a callback that is a ``transformers.trainer_callback.
ExportableState`` has its ``state()`` saved under ``stateful_callbacks`` of every checkpoint's
``trainer_state.json`` (``Trainer._save_checkpoint``, keyed by the callback's class name; a
list when the trainer has several of the class), and ``train(resume_from_checkpoint=...)``
loads that file back into the ``TrainerState`` before ``on_train_begin``. The callback's state
is ``{"args": {...its JSON-safe options...}, "attributes": {"mlops_run_id": "<run id>"}}``.

The run id is read from the resumed ``TrainerState`` itself (:func:`checkpoint_run_id`), so it
does not depend on ``TrainingArguments.restore_callback_states_from_checkpoint`` (off by
default). With that switch on, ``Trainer._load_callback_state`` replaces each stateful callback
given to the trainer by a new one built from the checkpoint's ``args`` and ``attributes``,
which would lose what is not JSON (``emit``) and leave the user's instance out of the
training. :func:`note_given` and :func:`replaced` undo that: each callback notes itself when
the trainer saves its state as training begins (before the checkpoint is loaded), and a
rebuilt callback (it has the ``mlops_run_id`` attribute Transformers set) puts the callback it
replaced back in its place in the trainer's callbacks (:func:`hand_back`).

:func:`keep_entry` works around a Transformers bug (5.25): a training resumed from a
checkpoint written without a stateful callback raises ``KeyError: '<class name>'`` at its
first save, because ``_save_checkpoint`` updates ``state.stateful_callbacks[name]`` without
creating it. The entry is created when training begins, before any save.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from typing import Any

from mlops_hooks.plugins._support.base import _warn

__all__ = ["ATTRIBUTE", "MAX_RUN_ID", "checkpoint_run_id", "exported", "hand_back", "json_safe",
           "keep_entry", "note_given", "replaced"]

#: The attribute of a callback's saved state that holds the run id.
ATTRIBUTE = "mlops_run_id"
#: The longest run id an event carries (``mlops_hooks.events.Name``).
MAX_RUN_ID = 512


def json_safe(value: Any) -> bool:
    """Whether ``value`` can be written into ``trainer_state.json`` (``json.dumps``)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def exported(options: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    """A callback's ``ExportableState.state()``: its options and the run to continue.

    Args:
        options: The constructor's keyword arguments to keep (those that are not JSON, such
            as ``emit``, are left out: ``json.dumps`` of the checkpoint must never fail).
        run_id: The run a resumed training continues (None: nothing to continue).
    """
    return {"args": {name: value for name, value in options.items() if json_safe(value)},
            "attributes": {ATTRIBUTE: run_id or None}}


def keep_entry(state: Any, name: str, entry: Mapping[str, Any]) -> None:
    """Give ``state.stateful_callbacks`` an entry ``name`` if it has none (see the module)."""
    stored = getattr(state, "stateful_callbacks", None)
    if isinstance(stored, dict) and name not in stored:
        stored[name] = dict(entry)


def _entries(stored: Any) -> list[Mapping[str, Any]]:
    values = stored if isinstance(stored, list) else [stored]
    return [value for value in values if isinstance(value, Mapping)]


def checkpoint_run_id(state: Any, name: str, index: int = 0) -> str | None:
    """The run id a resumed ``TrainerState`` holds for the callback of class ``name``.

    Args:
        state: The trainer's state (read at ``on_train_begin``).
        name: The callback's class name (Transformers' key); when the checkpoint has no
            entry under it, the first entry of any class with a run id is used (a training
            saved by ``report_to=["mlops_hooks"]`` and resumed with a callback given by hand).
        index: Which of several callbacks of the class this is (their saved order).

    Returns:
        The run id, or None when the state has none. A run id that is not a string of 1 to
        512 characters is ignored with a ``RuntimeWarning`` (the file was edited or damaged).
    """
    stored = getattr(state, "stateful_callbacks", None)
    if not isinstance(stored, Mapping):
        return None
    own = _entries(stored.get(name))
    candidates = own[index:index + 1] if len(own) > index else []
    candidates += [entry for key, value in stored.items() if key != name
                   for entry in _entries(value)]
    for entry in candidates:
        attributes = entry.get("attributes")
        if not isinstance(attributes, Mapping) or ATTRIBUTE not in attributes:
            continue
        run_id = attributes[ATTRIBUTE]
        if run_id is None:  # saved while this callback reported nothing (another one did)
            continue
        if isinstance(run_id, str) and 0 < len(run_id) <= MAX_RUN_ID and run_id.strip():
            return run_id
        _warn(f"mlops-hooks: the checkpoint's {ATTRIBUTE} must be a string of 1 to "
              f"{MAX_RUN_ID} characters, got {str(run_id)[:80]!r}; the resumed training is "
              f"reported as a new run")
        return None
    return None


#: The callbacks each trainer had as its trainings began (weak both ways).
_given: weakref.WeakKeyDictionary[Any, list[weakref.ref[Any]]] = weakref.WeakKeyDictionary()


def note_given(trainer: Any, callback: Any) -> None:
    """Remember that ``callback`` is one of ``trainer``'s callbacks (``trainer`` may be None)."""
    if trainer is None:
        return
    given = _given.setdefault(trainer, [])
    if not any(ref() is callback for ref in given):
        given.append(weakref.ref(callback))


def replaced(trainer: Any, callback: Any) -> Any:
    """The callback Transformers replaced by ``callback``, rebuilt from a checkpoint; or None.

    Only a rebuilt callback (Transformers set its ``mlops_run_id`` attribute) has one: a callback
    of the same class noted for ``trainer`` that is no longer among its callbacks.
    """
    if trainer is None or ATTRIBUTE not in vars(callback):
        return None
    current = getattr(getattr(trainer, "callback_handler", None), "callbacks", None)
    if not isinstance(current, list):
        return None
    for ref in _given.get(trainer, ()):
        given = ref()
        if given is not None and given is not callback and type(given) is type(callback) \
                and not any(c is given for c in current):
            return given
    return None


def hand_back(trainer: Any, rebuilt: Any, given: Any) -> None:
    """Put ``given`` back in ``rebuilt``'s place among ``trainer``'s callbacks."""
    callbacks = trainer.callback_handler.callbacks
    index = next(i for i, c in enumerate(callbacks) if c is rebuilt)
    callbacks[index] = given  # in place: the handler's loop over the list goes on unchanged
