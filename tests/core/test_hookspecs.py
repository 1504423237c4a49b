from __future__ import annotations

import inspect

import pytest

from mlops_hooks import events as ev
from mlops_hooks import hookspecs

SPECS = [(name, fn) for name, fn in vars(hookspecs).items()
         if name.startswith("mlops_") and callable(fn)]


def test_one_hook_per_event_type_plus_event_and_connection():
    names = {name for name, _ in SPECS}
    assert names == {f"mlops_{t}" for t in (*ev.EVENT_TYPES, *ev.EXTENSION_TYPES)} | {
        "mlops_event", "mlops_connection_change", "mlops_relaunch_request"}
    assert ev.EXTENSION_TYPES == ("run_params", "host_metrics", "run_state")


@pytest.mark.parametrize(("name", "fn"), SPECS, ids=[n for n, _ in SPECS])
def test_every_hook_is_documented(name, fn):
    doc = inspect.getdoc(fn) or ""
    for section in ("Called:", "Process:", "May:", "Args:"):
        assert section in doc, f"{name} lacks a {section!r} section"
    for param in inspect.signature(fn).parameters:
        assert f"    {param}:" in doc, f"{name} does not document its argument {param!r}"
    assert fn.mlops_hooks_spec is not None  # marked with the project's hookspec marker


def test_connection_states_are_the_specs():
    assert hookspecs.CONNECTION_STATES == (
        "connected", "disconnected", "reconnecting", "error", "max_reconnect_attempts")
