"""Alert settings: defaults, the TOML file, ``--alert-set`` and every bad input's error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement

from mlops_hooks.server.alerts.config import RULES, AlertConfig, load_toml, parse_assignment
from mlops_hooks.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = """
[alerts]
cooldown_s = 600

[divergence]
window = 8
factor = 3.0

[plateau]
metric = "val_acc"
mode = "max"
patience = 5

[finished]
enabled = true

[gpu_memory]
percent = 90

[notify]
urls = ["json://127.0.0.1:9/hook"]
webhooks = ["https://hooks.example.com/mlops"]
retries = 3
"""


def test_defaults_enable_every_rule_but_finished():
    config = AlertConfig()
    assert config.enabled() == [name for name in RULES if name != "finished"]
    assert config.cooldown == 300.0
    assert config.rule("divergence")["factor"] == 2.0
    assert AlertConfig.build(assignments=("alerts.enabled=false",)).enabled() == []


def test_a_toml_file_then_assignments(tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(EXAMPLE)
    config = AlertConfig.build(load_toml(path), assignments=("divergence.factor=4",),
                               notify=("json://127.0.0.1:10/x",))
    assert config.cooldown == 600.0
    assert config.rule("divergence") == {**RULES["divergence"], "window": 8, "factor": 4.0}
    assert config.rule("plateau")["mode"] == "max" and "finished" in config.enabled()
    assert config.notify_urls == ("json://127.0.0.1:9/hook", "json://127.0.0.1:10/x")
    assert config.webhooks == ("https://hooks.example.com/mlops",)
    assert config.sections["notify"]["retries"] == 3


@pytest.mark.parametrize(("data", "message"), [
    ({"divergnce": {}}, "unknown alert section 'divergnce'"),
    ({"divergence": {"windw": 3}}, "unknown alert setting divergence.windw"),
    ({"divergence": {"window": 0}}, "divergence.window must be an integer >= 1, got 0"),
    ({"divergence": {"window": 2.5}}, "divergence.window must be an integer >= 1"),
    ({"divergence": {"factor": "x"}}, "divergence.factor must be a number > 0, got 'x'"),
    ({"divergence": {"factor": float("inf")}}, "divergence.factor must be a number > 0"),
    ({"plateau": {"mode": "up"}}, "plateau.mode must be one of min, max"),
    ({"stall": {"priority": "urgent"}}, "stall.priority must be one of low, medium, high"),
    ({"finished": {"enabled": 1}}, "finished.enabled must be true or false"),
    ({"notify": {"urls": [3]}}, "notify.urls must be a list of URLs"),
    ({"stall": 3}, "alert section 'stall' must be a table"),
])
def test_every_bad_setting_is_named(data, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        AlertConfig.build(data)


def test_assignments_parse_like_toml_scalars():
    assert parse_assignment("finished.enabled=true") == ("finished", "enabled", True)
    assert parse_assignment("divergence.window=5") == ("divergence", "window", 5)
    assert parse_assignment("alerts.cooldown_s=0.5") == ("alerts", "cooldown_s", 0.5)
    assert parse_assignment('plateau.metric="val_acc"') == ("plateau", "metric", "val_acc")
    with pytest.raises(ValueError, match=r"SECTION\.KEY=VALUE"):
        parse_assignment("divergence=3")


def test_a_bad_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="cannot read the alerts file"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[divergence\nwindow = ")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_toml(bad)


def test_the_server_config_links_to_run_pages_and_hides_notifier_urls():
    config = ServerConfig(port=8123, alerts=AlertConfig(notify_urls=("slack://secret",)))
    assert config.link_base == "http://127.0.0.1:8123"
    assert ServerConfig(public_url="https://ml.example.com/").link_base == \
        "https://ml.example.com"
    described = config.describe()["alerts"]
    assert described == {"rules": AlertConfig().enabled(), "notifiers": 1}
    with pytest.raises(ValueError, match=r"public_url\) must be an http"):
        ServerConfig(public_url="ml.example.com")
    in_file = AlertConfig.build({"notify": {"public_url": "https://ml.example.com"}})
    assert ServerConfig(alerts=in_file).link_base == "https://ml.example.com"
    assert ServerConfig(alerts=in_file, public_url="http://other:1").link_base == "http://other:1"


#: Load an alerts file as on Python 3.10: ``tomllib`` cannot be imported (and, with
#: ``without-tomli``, neither can ``tomli``). Prints the reader used and a value, or the error.
FALLBACK = """
import json, sys
sys.modules["tomllib"] = None
if sys.argv[2] == "without-tomli":
    sys.modules["tomli"] = None
from mlops_hooks.server.alerts.config import AlertConfig, load_toml, toml_reader
try:
    config = AlertConfig.build(load_toml(sys.argv[1]))
    print(json.dumps({"reader": toml_reader().__name__,
                      "window": config.rule("divergence")["window"]}))
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def fallback(path: Path, mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", FALLBACK, str(path), mode],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_tomllib_or_tomli_an_alerts_file_is_a_clear_error(tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(EXAMPLE)
    error = fallback(path, "without-tomli")["error"]
    assert "Python 3.11+ (tomllib) or the 'tomli' package" in error
    assert "mlops-hooks[server]" in error and "--alert-set" in error


def test_without_tomllib_the_alerts_file_is_read_with_tomli(tmp_path):
    """Python 3.10's path, for real: ``tomllib`` unimportable, the installed ``tomli`` reads it."""
    path = tmp_path / "alerts.toml"
    path.write_text(EXAMPLE)
    assert fallback(path, "with-tomli") == {"reader": "tomli", "window": 8}


def test_tomli_is_a_server_dependency_on_python_310_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [tomli] = [Requirement(r) for r in project["optional-dependencies"]["server"]
               if Requirement(r).name == "tomli"]
    assert tomli.marker is not None
    assert tomli.marker.evaluate({"python_version": "3.10"})
    assert not tomli.marker.evaluate({"python_version": "3.11"})
    assert project["requires-python"] == ">=3.10"
