from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_hooks
from mlops_hooks import manager
from mlops_hooks.cli import main

ROOT = Path(__file__).resolve().parents[2]


CONSOLE_HOOKS = ["mlops_model_deployed", "mlops_training_completed", "mlops_training_failed",
                 "mlops_training_progress"]


@pytest.fixture
def no_entry_points(monkeypatch):
    """Only the built-ins: a third-party plugin installed in this environment is not listed."""
    monkeypatch.setattr(manager.metadata, "entry_points", lambda group: [])


def test_plugins_lists_name_origin_and_hooks(capsys, monkeypatch, no_entry_points):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher")
    monkeypatch.delenv("MLOPS_HOOKS_JSONL", raising=False)
    assert main(["plugins"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "console  builtin  " + ", ".join(CONSOLE_HOOKS)]


def test_plugins_json(capsys, monkeypatch, no_entry_points, tmp_path):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher")
    monkeypatch.setenv("MLOPS_HOOKS_JSONL", str(tmp_path / "events.jsonl"))
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "console", "origin": "builtin", "hooks": CONSOLE_HOOKS},
        {"name": "jsonl", "origin": "builtin", "hooks": ["mlops_event"]}]
    # the server side has its own built-ins: jsonl, never the training console
    assert main(["plugins", "--json", "--side", "server"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "jsonl", "origin": "builtin", "hooks": ["mlops_event"]}]


def test_plugins_says_so_when_none_is_registered(capsys, monkeypatch, no_entry_points):
    monkeypatch.delenv("MLOPS_HOOKS_JSONL", raising=False)
    assert main(["plugins", "--side", "server"]) == 0
    assert capsys.readouterr().out == "no plugins registered\n"
    assert main(["plugins", "--json", "--side", "server"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_console_script_runs():
    exe = Path(sys.executable).with_name("mlops-hooks")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for command in ("plugins", "serve", "emit", "demo"):
        assert command in result.stdout


def test_no_top_level_plugins_or_server_module_is_installed(tmp_path):
    code = ("import importlib.util, sys; "
            "sys.exit(any(importlib.util.find_spec(m) for m in ('plugins', 'server')))")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0


def test_package_is_typed_and_public_names_exist():
    assert (Path(mlops_hooks.__file__).parent / "py.typed").is_file()
    for name in ("track", "emit", "emit_dict", "hookimpl", "get_plugin_manager", "Run"):
        assert hasattr(mlops_hooks, name)
    assert set(mlops_hooks.__all__) <= set(dir(mlops_hooks))


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_package_directory_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {name: ROOT / path for name, path in config["package-dir"].items()}
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" in rel or any(p.startswith(".") for p in rel):
                continue
            dotted = ".".join((name, *rel))
            # a sub-directory mapped elsewhere (plugins/, server/) is not part of its parent
            if not any(dotted.startswith(other + ".") or dotted == other
                       for other in roots if other != name and other.startswith(name + ".")):
                found.add(dotted)
    missing = found - set(config["packages"])
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"
