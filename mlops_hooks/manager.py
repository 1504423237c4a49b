"""The plugin manager: pluggy composed with built-ins, blocking and isolated dispatch.

Built like tox's (``tox/plugin/manager.py``): a :class:`pluggy.PluginManager` inside, names
blocked from ``MLOPS_HOOKS_DISABLE`` (``set_blocked``), the built-ins registered, third-party
plugins loaded with ``load_setuptools_entrypoints("mlops_hooks")``, then ``check_pending()``
rejects hooks no spec declares. What this module adds is only what per-plugin isolation needs:
a plugin that raises (in a hook, while loading, or failing validation) is reported once on
stderr with its name and the hook, the other plugins still receive the event, and the caller
never sees the exception.

The manager is built by a function, never at import time. :func:`get_plugin_manager` returns
the process-wide manager of a side (``"training"`` or ``"server"``), building it on first
use; :func:`create_plugin_manager` builds a fresh one (tests, embedding).

A third-party plugin is an object (a module, or a class, instantiated once) named by an entry
point of the ``mlops_hooks`` group::

    # pyproject.toml of the plugin's distribution
    [project.entry-points.mlops_hooks]
    slack = "mlops_slack:SlackNotifier"

    # mlops_slack.py
    import mlops_hooks

    class SlackNotifier:
        @mlops_hooks.hookimpl
        def mlops_training_failed(self, event, side):
            ...
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any

import pluggy

from mlops_hooks import hookspecs
from mlops_hooks.events import Event

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginManager",
    "create_plugin_manager",
    "get_plugin_manager",
    "hookimpl",
    "registered_in",
    "reset_plugin_managers",
]

#: The project name pluggy knows the markers by.
PROJECT = "mlops_hooks"

#: The marker plugin authors decorate their hook implementations with.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Entry-point group third-party plugins register under.
ENTRY_POINT_GROUP = "mlops_hooks"

#: Built-in plugins per side: ``(name, "module:factory")``. A factory returns the plugin object,
#: or ``None`` when the plugin has nothing to do in this process (e.g. no JSONL path set).
BUILTIN_PLUGINS: dict[str, tuple[tuple[str, str], ...]] = {
    "training": (
        ("console", "mlops_hooks.plugins.console:make_plugin"),
        ("jsonl", "mlops_hooks.plugins.jsonl:make_plugin"),
        ("publisher", "mlops_hooks.publisher:make_plugin"),
    ),
    "server": (("jsonl", "mlops_hooks.plugins.jsonl:make_plugin"),),
}

SIDES = ("training", "server")
_Call = Callable[[Event, str], object]
_KNOWN_HOOKS: Sequence[str] = tuple(n for n in dir(hookspecs) if n.startswith("mlops_"))


def _adapt(function: Callable[..., object], argnames: tuple[str, ...]) -> _Call:
    """Give every implementation the same ``(event, side)`` calling shape."""
    if argnames == ("event", "side"):
        return function
    if argnames == ("event",):
        return lambda event, side: function(event)
    if argnames == ("side", "event"):
        return lambda event, side: function(side, event)

    def call(event: Event, side: str) -> object:
        values = {"event": event, "side": side}
        return function(**{name: values[name] for name in argnames})

    return call


class PluginManager:
    """The ``mlops_hooks`` plugins of one process side, with isolated dispatch.

    A :class:`pluggy.PluginManager` (:attr:`pluggy`) holds the plugins and validates them; this
    class adds :meth:`dispatch` and :meth:`notify_connection`, which call each implementation
    in pluggy's order but one by one, so that one plugin's exception neither reaches the caller
    nor stops the others. Because dispatch calls implementations directly rather than through
    ``pm.hook``, pluggy's tracing and call monitoring (``enable_tracing``,
    ``add_hookcall_monitoring``) do not see it; calling ``pm.hook.mlops_<name>(...)`` yourself
    still goes through pluggy (without the isolation).

    Args:
        side: ``"training"`` or ``"server"``: the process this manager serves.

    Raises:
        ValueError: ``side`` is not one of those.

    Attributes:
        pluggy: The pluggy manager inside, for anything this class does not forward.
        side: ``"training"`` or ``"server"``.
        origins: Where each plugin loaded by the manager came from (``"builtin"``, or the
            distribution's name and version).
    """

    def __init__(self, side: str = "training") -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.pluggy = pluggy.PluginManager(PROJECT)
        self.pluggy.add_hookspecs(hookspecs)
        self.side = side
        self.origins: dict[str, str] = {}
        self._calls: dict[str, list[tuple[str, _Call]]] = {}
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    # -- pluggy's registry, forwarded (registration resets the dispatch cache) -------------

    @property
    def hook(self) -> pluggy.HookRelay:
        """Pluggy's hook relay: ``pm.hook.mlops_event(event=..., side=...)`` (not isolated)."""
        return self.pluggy.hook

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (see :meth:`pluggy.PluginManager.register`)."""
        result = self.pluggy.register(plugin, name)
        self._calls = {}
        return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister ``plugin`` (see :meth:`pluggy.PluginManager.unregister`)."""
        result = self.pluggy.unregister(plugin, name)
        self._calls = {}
        return result

    def set_blocked(self, name: str) -> None:
        """Block ``name``: it is unregistered and never registered again."""
        self.pluggy.set_blocked(name)
        self._calls = {}

    def is_blocked(self, name: str) -> bool:
        """Whether ``name`` is blocked."""
        return self.pluggy.is_blocked(name)

    def is_registered(self, plugin: object) -> bool:
        """Whether ``plugin`` is registered."""
        return self.pluggy.is_registered(plugin)

    def has_plugin(self, name: str) -> bool:
        """Whether a plugin named ``name`` is registered."""
        return self.pluggy.has_plugin(name)

    def get_plugin(self, name: str) -> Any | None:
        """The plugin registered as ``name``, or ``None``."""
        return self.pluggy.get_plugin(name)

    def list_name_plugin(self) -> list[tuple[str, object]]:
        """``(name, plugin)`` of every registered plugin."""
        return self.pluggy.list_name_plugin()

    # -- dispatch -------------------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """Call ``mlops_<type>`` and then ``mlops_event`` for ``event``, isolating plugins."""
        calls = self._calls.get(event.type)
        if calls is None:
            calls = self._build_calls(event.type)
        side = self.side
        for name, call in calls:
            try:
                call(event, side)
            except Exception as exc:
                self._report(name, f"mlops_{event.type}/mlops_event", exc)

    def notify_connection(self, state: str, detail: dict[str, object]) -> None:
        """Call ``mlops_connection_change`` on every plugin, isolating plugins."""
        for impl in reversed(self.hook.mlops_connection_change.get_hookimpls()):
            kwargs = {"state": state, "detail": detail}
            try:
                impl.function(**{n: kwargs[n] for n in impl.argnames})
            except Exception as exc:
                self._report(impl.plugin_name, "mlops_connection_change", exc)

    def _build_calls(self, event_type: str) -> list[tuple[str, _Call]]:
        calls: list[tuple[str, _Call]] = []
        for hook_name in (f"mlops_{event_type}", "mlops_event"):
            caller = getattr(self.hook, hook_name)
            impls = caller.get_hookimpls()
            if any(i.hookwrapper or i.wrapper for i in impls):
                calls.append(("<wrappers>", self._whole_hook(caller)))
                continue
            for impl in reversed(impls):  # pluggy's call order: last registered first
                calls.append((impl.plugin_name, _adapt(impl.function, tuple(impl.argnames))))
        self._calls[event_type] = calls
        return calls

    @staticmethod
    def _whole_hook(caller: Any) -> _Call:
        return lambda event, side: caller(event=event, side=side)

    def _report(self, plugin_name: str, hook_name: str, exc: BaseException) -> None:
        with self._lock:
            if plugin_name in self._reported:
                return
            self._reported.add(plugin_name)
        sys.stderr.write(
            f"mlops-hooks: plugin {plugin_name!r} raised in {hook_name}: "
            f"{type(exc).__name__}: {exc} (training goes on; further errors from this "
            "plugin are not reported)\n"
        )

    # -- loading --------------------------------------------------------------------------

    def load_builtins(self, specs: Iterable[tuple[str, str]]) -> None:
        """Register built-in plugins from ``(name, "module:factory")`` pairs, skipping blocked."""
        for name, target in specs:
            if self.is_blocked(name) or self.has_plugin(name):
                continue
            module_name, _, attr = target.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    continue  # not part of this installation (yet)
                raise
            plugin = getattr(module, attr)() if attr else module
            if plugin is not None:
                self._safe_register(plugin, name, "builtin")

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load third-party plugins with pluggy, one entry point at a time (isolating each).

        An entry point naming a class registers one instance of it.
        """
        for ep in metadata.entry_points(group=group):
            if self.is_blocked(ep.name) or self.has_plugin(ep.name):
                continue
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
            try:
                self.pluggy.load_setuptools_entrypoints(group, name=ep.name)
                plugin = self.pluggy.get_plugin(ep.name)
                if isinstance(plugin, type):
                    self.pluggy.unregister(plugin, ep.name)
                    self.pluggy.register(plugin(), ep.name)
            except Exception as exc:
                if self.pluggy.has_plugin(ep.name):
                    self.pluggy.unregister(name=ep.name)
                self._report(ep.name, f"loading entry point {ep.value!r} ({origin})", exc)
                continue
            finally:
                self._calls = {}
            if self._check_pending(ep.name):
                self.origins[ep.name] = origin

    def _safe_register(self, plugin: object, name: str, origin: str) -> None:
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._report(name, "registration", exc)
            return
        if self._check_pending(name):
            self.origins[name] = origin

    def _check_pending(self, name: str) -> bool:
        """Run pluggy's ``check_pending()``, unregistering (and reporting) each offender.

        Returns:
            Whether the plugin registered as ``name`` passed.
        """
        while True:
            try:
                self.pluggy.check_pending()
                return True
            except pluggy.PluginValidationError as exc:
                offender = self.pluggy.get_name(exc.plugin) or repr(exc.plugin)
                self.unregister(exc.plugin)
                known = ", ".join(_KNOWN_HOOKS)
                self._report(offender, "registration", ValueError(f"{exc}; known hooks: {known}"))
                if offender == name:
                    return False

    def describe(self) -> list[dict[str, Any]]:
        """Each registered plugin's name, origin and implemented hooks (for ``plugins``)."""
        rows = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(c.name for c in self.pluggy.get_hookcallers(plugin) or [])
            rows.append({"name": name, "origin": self.origins.get(name, "registered"),
                         "hooks": hooks})
        return rows


def create_plugin_manager(
    side: str = "training",
    *,
    builtins: bool = True,
    entrypoints: bool = True,
    disable: Iterable[str] | None = None,
) -> PluginManager:
    """Build a plugin manager for ``side``.

    Args:
        side: ``"training"`` or ``"server"``.
        builtins: Register the built-in plugins of that side.
        entrypoints: Load third-party plugins from the ``mlops_hooks`` entry-point group.
        disable: Plugin names to block; defaults to ``MLOPS_HOOKS_DISABLE`` (a comma list).

    Raises:
        ValueError: ``side`` is not one of ``"training"``, ``"server"``.
    """
    pm = PluginManager(side)
    if disable is None:
        disable = os.environ.get("MLOPS_HOOKS_DISABLE", "").split(",")
    for name in disable:
        if name.strip():
            pm.set_blocked(name.strip())
    if builtins:
        pm.load_builtins(BUILTIN_PLUGINS[side])
    if entrypoints:
        pm.load_entrypoints()
    return pm


_managers: dict[str, PluginManager] = {}
_managers_lock = threading.Lock()


def get_plugin_manager(side: str = "training") -> PluginManager:
    """Return the process-wide plugin manager of ``side``, building it on first use."""
    pm = _managers.get(side)
    if pm is None:
        with _managers_lock:
            pm = _managers.get(side)
            if pm is None:
                pm = _managers[side] = create_plugin_manager(side)
    return pm


def registered_in(plugin: object) -> PluginManager | None:
    """The process-wide manager ``plugin`` is registered in, if any (never builds one)."""
    for pm in list(_managers.values()):
        if pm.is_registered(plugin):
            return pm
    return None


def reset_plugin_managers() -> None:
    """Forget the process-wide managers (their plugins are unregistered and closed)."""
    with _managers_lock:
        managers = list(_managers.values())
        _managers.clear()
    for pm in managers:
        for _name, plugin in list(pm.list_name_plugin()):
            if plugin is None:
                continue
            pm.unregister(plugin)
            close = getattr(plugin, "close", None)
            if callable(close):
                close()

