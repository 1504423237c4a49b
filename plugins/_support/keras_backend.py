"""The Keras backend :mod:`mlops_hooks.plugins.keras` imports Keras with.

Keras 3 reads its backend once, when it is first imported: ``KERAS_BACKEND``, else the
``backend`` of ``keras.json`` (``$KERAS_HOME``, else ``~/.keras``), else TensorFlow. On a
machine with Keras and PyTorch (or JAX) but no TensorFlow, a bare ``import keras`` fails with
"No module named 'tensorflow'". When Keras is not imported yet and no backend was chosen
(``KERAS_BACKEND`` unset), :func:`choose_backend` picks an installed one (TensorFlow, JAX,
PyTorch, in Keras' order of preference) by setting ``KERAS_BACKEND``, which child processes
inherit. A backend the user chose is never changed: when it is missing,
:func:`backend_import_error` says which one and how to pick another.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

__all__ = ["PREFERENCE", "backend_import_error", "choose_backend", "configured_backend"]

#: Backends tried, in order, when the configured one is not installed: (name, module).
PREFERENCE = (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch"))
_MODULES = dict(PREFERENCE)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _config_file() -> str:
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return os.path.join(home, "keras.json")


def configured_backend() -> tuple[str, str]:
    """The backend Keras would import now and where that choice comes from.

    Returns:
        ``(backend, source)``; source is ``"KERAS_BACKEND"``, the path of ``keras.json`` or
        ``"Keras' default"``.
    """
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen, "KERAS_BACKEND"
    path = _config_file()
    try:
        with open(path, encoding="utf-8") as file:
            backend = json.load(file).get("backend")
        if isinstance(backend, str) and backend:
            return backend, path
    except (OSError, ValueError, AttributeError):
        pass
    return "tensorflow", "Keras' default"


def choose_backend() -> str | None:
    """Set ``KERAS_BACKEND`` to an installed backend if Keras would import a missing one.

    Does nothing when Keras is already imported, when ``KERAS_BACKEND`` is set, or when the
    configured backend is installed.

    Returns:
        The backend chosen, or None when nothing was changed.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    backend, _ = configured_backend()
    if _installed(_MODULES.get(backend, backend)) or not _installed("keras"):
        return None
    for name, module in PREFERENCE:
        if _installed(module):
            os.environ["KERAS_BACKEND"] = name
            return name
    return None


def backend_import_error(error: ImportError) -> ImportError | None:
    """The ImportError to raise when Keras is installed but failed to import, else None.

    Names the backend Keras tried, where that choice came from, and the installed backends
    ``KERAS_BACKEND`` could pick instead.
    """
    if not _installed("keras"):
        return None
    backend, source = configured_backend()
    available = [name for name, module in PREFERENCE if _installed(module)]
    pick = (f"pick an installed one with KERAS_BACKEND={available[0]} (installed: "
            f"{', '.join(available)})" if available else
            "install one of: tensorflow, jax, torch (e.g. pip install torch), then set "
            "KERAS_BACKEND to it")
    message = (f"mlops_hooks.plugins.keras: Keras 3 is installed, but importing it failed "
               f"with the backend {backend!r} (from {source}): {error}. Install that backend, "
               f"or {pick}, before Keras is imported")
    result = ImportError(message)
    result.__cause__ = error
    return result
