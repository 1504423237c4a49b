from __future__ import annotations

import io
import sys
import textwrap
from contextlib import redirect_stderr
from pathlib import Path

import pytest

import mlops_hooks
from mlops_hooks import events as ev
from mlops_hooks.manager import create_plugin_manager, get_plugin_manager, hookimpl

PROGRESS = ev.TrainingProgress(progress=10, stage="model_training", run_id="r")


class Raiser:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def mlops_training_progress(self, event):
        self.calls += 1
        raise RuntimeError("boom")


class TypedOnly:
    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []

    @hookimpl
    def mlops_training_progress(self, event, side):
        self.got.append(("progress", side))

    @hookimpl
    def mlops_event(self, event):
        self.got.append(("event", event.type))


def test_dispatch_calls_typed_hook_then_event_hook(pm, recorder):
    typed = TypedOnly()
    pm.register(typed, name="typed")
    pm.dispatch(PROGRESS)
    assert typed.got == [("progress", "training"), ("event", "training_progress")]
    assert recorder.events == [PROGRESS] and recorder.sides == ["training"]


def test_raising_plugin_is_isolated_and_reported_once(pm, recorder):
    raiser = Raiser()
    pm.register(raiser, name="raiser")
    err = io.StringIO()
    with redirect_stderr(err):
        for _ in range(3):
            pm.dispatch(PROGRESS)  # the caller never sees the exception
    assert raiser.calls == 3
    assert len(recorder.events) == 3  # the others still get every event
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert "'raiser'" in lines[0] and "RuntimeError: boom" in lines[0]


def test_registration_invalidates_the_dispatch_cache(pm, recorder):
    pm.dispatch(PROGRESS)
    typed = TypedOnly()
    pm.register(typed, name="typed")
    pm.dispatch(PROGRESS)
    assert len(typed.got) == 2
    pm.unregister(typed)
    pm.dispatch(PROGRESS)
    assert len(typed.got) == 2 and len(recorder.events) == 3


def test_hookwrapper_plugins_still_work(pm, recorder):
    seen = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def mlops_event(self, event):
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    pm.register(Wrapper(), name="wrapper")
    pm.dispatch(PROGRESS)
    assert seen == ["before", "after"] and recorder.events == [PROGRESS]


def test_connection_change_is_isolated(pm):
    states = []

    class Listener:
        @hookimpl
        def mlops_connection_change(self, state, detail):
            states.append((state, detail["attempt"]))

    class Broken:
        @hookimpl
        def mlops_connection_change(self, state):
            raise ValueError("nope")

    pm.register(Listener(), name="listener")
    pm.register(Broken(), name="broken")
    with redirect_stderr(io.StringIO()) as err:
        pm.notify_connection("reconnecting", {"attempt": 2})
    assert states == [("reconnecting", 2)]
    assert "'broken'" in err.getvalue()


def test_plugin_with_unknown_hook_is_rejected_with_a_clear_message():
    pm = create_plugin_manager("training", builtins=False, entrypoints=False)

    class Typo:
        @hookimpl
        def mlops_training_progres(self, event):
            pass

    with redirect_stderr(io.StringIO()) as err:
        pm._safe_register(Typo(), "typo", "test")
    assert not pm.has_plugin("typo")
    assert "mlops_training_progres" in err.getvalue() and "known hooks" in err.getvalue()


def test_plugin_with_bad_signature_is_rejected_naming_plugin_and_hook():
    pm = create_plugin_manager("training", builtins=False, entrypoints=False)

    class BadArgs:
        @hookimpl
        def mlops_event(self, event, extra):
            pass

    with redirect_stderr(io.StringIO()) as err:
        pm._safe_register(BadArgs(), "badargs", "test")
    assert not pm.has_plugin("badargs")
    assert "'badargs'" in err.getvalue() and "extra" in err.getvalue()


def test_unknown_side_is_rejected():
    with pytest.raises(ValueError, match="side must be one of"):
        create_plugin_manager("client")


def test_builtins_and_disable(monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher")
    pm = create_plugin_manager("training", entrypoints=False)
    assert pm.has_plugin("console")
    assert pm.origins["console"] == "builtin"
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "console, publisher")
    pm = create_plugin_manager("training", entrypoints=False)
    assert not pm.has_plugin("console") and pm.is_blocked("console")


def test_get_plugin_manager_is_lazy_and_per_side():
    a = get_plugin_manager("training")
    assert get_plugin_manager("training") is a
    assert get_plugin_manager("server") is not a
    assert get_plugin_manager("server").side == "server"
    assert not get_plugin_manager("server").has_plugin("console")


def test_importing_the_package_builds_no_manager():
    import subprocess

    code = ("import mlops_hooks, mlops_hooks.manager as m, sys; "
            "sys.exit(1 if m._managers else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------- third-party entry point


@pytest.fixture
def thirdparty(tmp_path: Path, monkeypatch):
    """A throwaway distribution with an ``mlops_hooks`` entry point, found on sys.path."""
    out = tmp_path / "notes.txt"
    (tmp_path / "acme_notifier.py").write_text(textwrap.dedent(f"""
        import mlops_hooks

        class Notifier:
            @mlops_hooks.hookimpl
            def mlops_training_completed(self, event, side):
                with open({str(out)!r}, "a") as f:
                    f.write(f"completed {{event.run_id}} {{side}}\\n")

            @mlops_hooks.hookimpl
            def mlops_event(self, event):
                with open({str(out)!r}, "a") as f:
                    f.write(f"event {{event.type}}\\n")
        """))
    dist = tmp_path / "acme_notifier-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-notifier\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[mlops_hooks]\nacme = acme_notifier:Notifier\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield out
    sys.modules.pop("acme_notifier", None)


def test_third_party_plugin_from_entry_point_receives_a_whole_run(thirdparty, monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher,console")
    pm = get_plugin_manager("training")
    assert pm.has_plugin("acme")
    assert pm.origins["acme"] == "acme-notifier 1.2.3"
    with mlops_hooks.track("tp", total_epochs=2, throttle=0) as run:
        run.stage("model_training")
        for epoch in range(2):
            run.step(loss=1.0)
            run.epoch_end(epoch)
    lines = thirdparty.read_text().splitlines()
    assert f"completed {run.run_id} training" in lines
    kinds = [line.split()[1] for line in lines if line.startswith("event ")]
    # start, model_training, then a step and an epoch end per epoch, then finalization; the
    # run's parameters right after the first progress (and the git commit once known)
    assert kinds[:3] == ["activity_update", "training_progress", "run_params"]
    assert [k for k in kinds if k != "run_params"] == [
        "activity_update", *["training_progress"] * 7, "training_completed", "activity_update"]


def test_disable_blocks_third_party_plugin(thirdparty, monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "acme,publisher")
    pm = create_plugin_manager("training")
    assert not pm.has_plugin("acme")


def test_broken_entry_point_is_reported_and_others_load(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mlops_hooks]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with redirect_stderr(io.StringIO()) as err:
        pm = create_plugin_manager("training")
    assert not pm.has_plugin("broken") and pm.has_plugin("console")
    assert "'broken'" in err.getvalue() and "broken-plugin 0.1" in err.getvalue()
