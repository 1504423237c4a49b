"""System dependencies of the suite (Debian packages): required under ``make test``, else skipped.

``make test`` (and so CI) exports ``MLOPS_HOOKS_REQUIRE_SYSDEPS=1``: a missing Chromium or
``redis-server`` then fails the tests that need it, with a message naming the Debian package and
how to install it, so a failed or removed package can never pass as a run of skips. Without the
variable (a plain ``pytest`` in a checkout) such tests are skipped with the same message.

``MLOPS_HOOKS_CHROMIUM`` and ``MLOPS_HOOKS_REDIS_SERVER`` name the executable to use instead of
the default location.

Example:
    path = REDIS_SERVER.require()        # inside a fixture: fails or skips when missing
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

#: Set (to anything but ``""`` or ``"0"``) by ``make test``: a missing dependency fails.
REQUIRE_ENV = "MLOPS_HOOKS_REQUIRE_SYSDEPS"


def required() -> bool:
    """Whether a missing dependency fails (``MLOPS_HOOKS_REQUIRE_SYSDEPS`` set) or skips."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Fail (under ``MLOPS_HOOKS_REQUIRE_SYSDEPS``) or skip the current test with ``reason``.

    Args:
        reason: What is missing and how to install it.

    Raises:
        pytest.fail.Exception: When dependencies are required.
        pytest.skip.Exception: Otherwise.
    """
    if required():
        pytest.fail(f"{reason} [{REQUIRE_ENV} is set, so this fails instead of skipping]",
                    pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class SystemDependency:
    """An executable the suite runs, from a Debian package.

    Args:
        package: The Debian package that installs it.
        env: The environment variable that overrides where it is looked for.
        defaults: Where it is looked for without ``env``, in order: a name on ``PATH`` or an
            absolute path.
    """

    package: str
    env: str
    defaults: tuple[str, ...]

    def find(self) -> Path | None:
        """The executable (``$env`` if set, else the first of ``defaults`` found), or ``None``."""
        override = os.environ.get(self.env)
        for candidate in (override,) if override else self.defaults:
            found = shutil.which(candidate)
            if found:
                return Path(found)
        return None

    def reason(self) -> str:
        """Why it is missing, naming the package and how to install it."""
        override = os.environ.get(self.env)
        looked = (f"{self.env}={override}" if override
                  else f"{' or '.join(self.defaults)} (set {self.env} to override)")
        return (f"{self.package} is not installed: no executable at {looked}; install the "
                f"Debian package `{self.package}` (sudo apt-get install {self.package}, "
                "or `make sysdeps`)")

    def require(self) -> Path:
        """The executable; fails or skips the current test (see :func:`missing`) without it."""
        path = self.find()
        if path is None:
            missing(self.reason())
        return path


#: Debian's Chromium, which Playwright drives (never ``playwright install``'s download).
CHROMIUM = SystemDependency("chromium", "MLOPS_HOOKS_CHROMIUM", ("/usr/bin/chromium",))
REDIS_SERVER = SystemDependency("redis-server", "MLOPS_HOOKS_REDIS_SERVER",
                                ("redis-server", "/usr/bin/redis-server"))
