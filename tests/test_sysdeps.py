"""A missing Chromium or redis-server fails under ``make test`` and is skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.sysdeps import CHROMIUM, REDIS_SERVER, REQUIRE_ENV, SystemDependency

ROOT = Path(__file__).resolve().parents[1]
#: Tests that only take the real fixtures, run by a pytest of their own.
USES_FIXTURES = '''
from tests.browser.conftest import browser_context, chromium
from tests.redis_server import redis_aof, redis_server


def test_chromium(browser_context):
    pass


def test_redis(redis_server):
    pass


def test_redis_aof(redis_aof):
    pass
'''


@pytest.mark.parametrize("dep", [CHROMIUM, REDIS_SERVER], ids=lambda d: d.package)
def test_required_and_missing_fails_naming_the_debian_package(
        dep: SystemDependency, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setenv(dep.env, "/nonexistent/bin/x")
    assert dep.find() is None
    with pytest.raises(pytest.fail.Exception) as failed:
        dep.require()
    message = str(failed.value)
    assert f"{dep.env}=/nonexistent/bin/x" in message
    assert f"install the Debian package `{dep.package}`" in message
    assert f"apt-get install {dep.package}" in message
    assert REQUIRE_ENV in message


@pytest.mark.parametrize("value", [None, "", "0"])
@pytest.mark.parametrize("dep", [CHROMIUM, REDIS_SERVER], ids=lambda d: d.package)
def test_not_required_and_missing_skips_with_the_same_reason(
        dep: SystemDependency, value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv(REQUIRE_ENV, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_ENV, value)
    monkeypatch.setenv(dep.env, "/nonexistent/bin/x")
    with pytest.raises(pytest.skip.Exception) as skipped:
        dep.require()
    assert str(skipped.value) == dep.reason()
    assert f"apt-get install {dep.package}" in str(skipped.value)


@pytest.mark.parametrize("dep", [CHROMIUM, REDIS_SERVER], ids=lambda d: d.package)
def test_the_environment_variable_chooses_the_executable(
        dep: SystemDependency, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setenv(dep.env, sys.executable)
    assert dep.require() == Path(sys.executable)
    monkeypatch.setenv(dep.env, str(ROOT / "pyproject.toml"))  # a file, not an executable
    assert dep.find() is None


def _pytest(tmp_path: Path, **env: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """Run :data:`USES_FIXTURES` in a pytest of its own with ``env`` on top of ours.

    Returns:
        The exit code, and each test's outcome (``passed``, ``error``, ``skipped``, ``failure``)
        and message, from its JUnit XML report.
    """
    (tmp_path / "test_uses_fixtures.py").write_text(USES_FIXTURES)
    environ = {k: v for k, v in os.environ.items()
               if k != REQUIRE_ENV and not k.startswith(("PYTEST_", "MLOPS_HOOKS_"))}
    environ.update(env, PYTHONPATH=str(ROOT))
    report = tmp_path / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-q",
         "-W", "error", f"--junitxml={report}", "test_uses_fixtures.py"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False)
    assert report.is_file(), result.stdout + result.stderr
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome = next((c for c in case if c.tag in ("error", "failure", "skipped")), None)
        outcomes[case.attrib["name"]] = (
            ("passed", "") if outcome is None else (outcome.tag, outcome.attrib["message"]))
    return result.returncode, outcomes


@pytest.mark.slow
def test_the_fixtures_fail_under_make_test_without_chromium_or_redis(tmp_path: Path) -> None:
    code, outcomes = _pytest(tmp_path, MLOPS_HOOKS_REQUIRE_SYSDEPS="1",
                             MLOPS_HOOKS_CHROMIUM="/nonexistent/chromium",
                             MLOPS_HOOKS_REDIS_SERVER="/nonexistent/redis-server")
    assert code == pytest.ExitCode.TESTS_FAILED, outcomes
    assert {name: kind for name, (kind, _) in outcomes.items()} == {
        "test_chromium": "error", "test_redis": "error", "test_redis_aof": "error"}
    for name, package in [("test_chromium", "chromium"), ("test_redis", "redis-server"),
                          ("test_redis_aof", "redis-server")]:
        assert f"apt-get install {package}" in outcomes[name][1], outcomes[name]
        assert f"/nonexistent/{package}" in outcomes[name][1], outcomes[name]


@pytest.mark.slow
def test_the_fixtures_skip_outside_make_test_without_chromium_or_redis(tmp_path: Path) -> None:
    code, outcomes = _pytest(tmp_path, MLOPS_HOOKS_CHROMIUM="/nonexistent/chromium",
                             MLOPS_HOOKS_REDIS_SERVER="/nonexistent/redis-server")
    assert code == pytest.ExitCode.OK, outcomes
    assert {name: kind for name, (kind, _) in outcomes.items()} == {
        "test_chromium": "skipped", "test_redis": "skipped", "test_redis_aof": "skipped"}
    for name, package in [("test_chromium", "chromium"), ("test_redis", "redis-server"),
                          ("test_redis_aof", "redis-server")]:
        assert f"apt-get install {package}" in outcomes[name][1], outcomes[name]
