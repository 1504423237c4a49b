"""The plugin manager: built-in plugins, entry-point plugins, blocking, isolated dispatch.

The manager is built by a function, never at import time. :func:`get_plugin_manager` returns the
process-wide manager of a side (``"training"`` or ``"server"``), building it on first use;
:func:`create_plugin_manager` builds a fresh one (tests, embedding).

Dispatch is isolated: a plugin that raises is reported once on stderr with its name and the hook,
the other plugins still receive the event, and the caller never sees the exception.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable
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
    "reset_plugin_managers",
]

#: The marker plugin authors decorate their hook implementations with.
hookimpl = pluggy.HookimplMarker("mlops_hooks")

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


class PluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` for the ``mlops_hooks`` project with isolated dispatch.

    Attributes:
        side: ``"training"`` or ``"server"``: the process this manager serves.
        origins: Where each registered plugin came from (``"builtin"``, or the distribution's
            name and version).
    """

    def __init__(self, side: str = "training") -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        super().__init__("mlops_hooks")
        self.add_hookspecs(hookspecs)
        self.side = side
        self.origins: dict[str, str] = {}
        self._calls: dict[str, list[tuple[str, _Call]]] = {}
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    # -- registration keeps the dispatch cache honest ------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (see :meth:`pluggy.PluginManager.register`)."""
        result = super().register(plugin, name)
        self._calls = {}
        return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister ``plugin`` (see :meth:`pluggy.PluginManager.unregister`)."""
        result = super().unregister(plugin, name)
        self._calls = {}
        return result

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
        """Load third-party plugins from the entry-point group, isolating broken ones."""
        for ep in metadata.entry_points(group=group):
            if self.is_blocked(ep.name) or self.has_plugin(ep.name):
                continue
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
            try:
                plugin = ep.load()
                if isinstance(plugin, type):
                    plugin = plugin()
            except Exception as exc:
                self._report(ep.name, f"loading entry point {ep.value!r} ({origin})", exc)
                continue
            self._safe_register(plugin, ep.name, origin)

    def _safe_register(self, plugin: object, name: str, origin: str) -> None:
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._report(name, "registration", exc)
            return
        unknown = [
            impl.name
            for impl in self._plugin_hook_names(plugin)
            if impl.name.startswith("mlops_") and not hasattr(hookspecs, impl.name)
        ]
        if unknown:
            self.unregister(plugin)
            known = ", ".join(n for n in dir(hookspecs) if n.startswith("mlops_"))
            self._report(
                name,
                "registration",
                ValueError(f"unknown hook(s) {', '.join(unknown)}; known hooks: {known}"),
            )
            return
        self.origins[name] = origin

    def _plugin_hook_names(self, plugin: object) -> list[Any]:
        callers = self.get_hookcallers(plugin) or []
        return [c for c in callers if c.spec is None]

    def describe(self) -> list[dict[str, Any]]:
        """Each registered plugin's name, origin and implemented hooks (for ``plugins``)."""
        rows = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(c.name for c in self.get_hookcallers(plugin) or [])
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

