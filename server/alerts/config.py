"""Alert settings: every rule's thresholds and the notifiers', with defaults, a file and flags.

Settings are sections of ``key = value`` pairs: one section per rule (``[divergence]``), plus
``[alerts]`` (the cool-down) and ``[notify]`` (notifier URLs, retries, timeouts). A value's type
is its default's: an integer stays an integer, a number is finite and positive, ``mode`` is
``min`` or ``max``. The file is TOML (``--alerts-config PATH``; read with :mod:`tomllib`, or
``tomli`` on Python 3.10, where the ``server`` extra installs it); ``--alert-set
SECTION.KEY=VALUE`` overrides one value (on every Python). Anything unknown or of the wrong
type is a :class:`ValueError` naming it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["DEFAULTS", "RULES", "AlertConfig", "load_toml", "parse_assignment"]

Value = bool | int | float | str

#: The rules, in the order they are evaluated, and their settings with the defaults.
RULES: dict[str, dict[str, Value]] = {
    "loss_nan": {"enabled": True, "priority": "high"},
    "divergence": {"enabled": True, "priority": "high", "window": 5, "factor": 2.0},
    "plateau": {"enabled": True, "priority": "medium", "metric": "val_loss", "mode": "min",
                "patience": 10, "min_delta": 0.0},
    "stall": {"enabled": True, "priority": "high"},
    "throughput": {"enabled": True, "priority": "medium", "fraction": 0.5, "min_samples": 10,
                   "recent": 3},
    "failed": {"enabled": True, "priority": "high"},
    "finished": {"enabled": False, "priority": "low"},
    "host_memory": {"enabled": True, "priority": "high", "percent": 90.0, "hysteresis": 5.0},
    "gpu_memory": {"enabled": True, "priority": "medium", "percent": 95.0, "hysteresis": 5.0},
    "gpu_idle": {"enabled": True, "priority": "medium", "util_percent": 10.0, "samples": 3},
}
#: The sections that are not rules.
DEFAULTS: dict[str, dict[str, Value]] = {
    "alerts": {"enabled": True, "cooldown_s": 300.0},
    "notify": {"timeout_s": 10.0, "retries": 5, "backoff_base_s": 1.0, "backoff_cap_s": 60.0,
               "queue_size": 1000, "public_url": ""},
}
_LISTS = {"notify": ("urls", "webhooks")}
_CHOICES = {"priority": ("low", "medium", "high"), "mode": ("min", "max")}
_MAY_BE_ZERO = {"min_delta", "cooldown_s", "hysteresis", "util_percent", "backoff_base_s"}


def _check(section: str, key: str, value: object, default: Value) -> Value:
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"alert setting {name} must be true or false, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"alert setting {name} must be a string, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ValueError(f"alert setting {name} must be one of {', '.join(_CHOICES[key])}, "
                             f"got {value!r}")
        return value
    given = value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = math.nan
    if isinstance(default, int):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"alert setting {name} must be an integer >= 1, got {given!r}")
        return value
    zero = key in _MAY_BE_ZERO
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ValueError(f"alert setting {name} must be a number {'>= 0' if zero else '> 0'}, "
                         f"got {given!r}")
    return number


def _urls(section: str, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip()
                                                        for v in value):
        raise ValueError(f"alert setting {section}.{key} must be a list of URLs, got {value!r}")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class AlertConfig:
    """The alert rules' and notifiers' settings (defaults unless told otherwise).

    Attributes:
        sections: Every section's settings, complete (defaults filled in).
        notify_urls: Apprise URLs (``--notify``).
        webhooks: Generic JSON webhook URLs (``--webhook``).
    """

    sections: dict[str, dict[str, Value]] = field(default_factory=dict)
    notify_urls: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        full = {name: dict(values) for name, values in {**RULES, **DEFAULTS}.items()}
        for section, values in self.sections.items():
            if section not in full:
                raise ValueError(f"unknown alert section {section!r} (known: "
                                 f"{', '.join(full)})")
            if not isinstance(values, Mapping):
                raise ValueError(f"alert section {section!r} must be a table of settings")
            for key, value in values.items():
                if key not in full[section]:
                    raise ValueError(f"unknown alert setting {section}.{key} (known: "
                                     f"{', '.join(full[section])})")
                full[section][key] = _check(section, key, value, full[section][key])
        object.__setattr__(self, "sections", full)
        object.__setattr__(self, "notify_urls", tuple(self.notify_urls))
        object.__setattr__(self, "webhooks", tuple(self.webhooks))

    def rule(self, name: str) -> dict[str, Value]:
        """The settings of rule ``name``."""
        return self.sections[name]

    @property
    def cooldown(self) -> float:
        """Seconds after an alert clears before the same alert may fire again."""
        return float(self.sections["alerts"]["cooldown_s"])

    def enabled(self) -> list[str]:
        """The names of the rules that are on (none when ``[alerts] enabled`` is false)."""
        if not self.sections["alerts"]["enabled"]:
            return []
        return [name for name in RULES if self.sections[name]["enabled"]]

    @classmethod
    def build(cls, data: Mapping[str, Any] | None = None, *,
              assignments: tuple[str, ...] = (), notify: tuple[str, ...] = (),
              webhooks: tuple[str, ...] = ()) -> AlertConfig:
        """Settings from a parsed file, then ``SECTION.KEY=VALUE`` assignments and flag URLs.

        Raises:
            ValueError: An unknown section or key, or a value of the wrong type.
        """
        sections: dict[str, dict[str, Any]] = {}
        urls: dict[str, tuple[str, ...]] = {"urls": (), "webhooks": ()}
        for section, values in (data or {}).items():
            if not isinstance(values, Mapping):
                raise ValueError(f"alert section {section!r} must be a table of settings, "
                                 f"got {values!r}")
            plain = dict(values)
            for key in _LISTS.get(section, ()):
                if key in plain:
                    urls[key] = _urls(section, key, plain.pop(key))
            sections[section] = plain
        for text in assignments:
            section, key, value = parse_assignment(text)
            sections.setdefault(section, {})[key] = value
        return cls(sections, notify_urls=(*urls["urls"], *notify),
                   webhooks=(*urls["webhooks"], *webhooks))


def parse_assignment(text: str) -> tuple[str, str, Value]:
    """``'divergence.factor=3'`` → ``('divergence', 'factor', 3)`` (TOML-like scalars).

    Raises:
        ValueError: Not of the form ``SECTION.KEY=VALUE``.
    """
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ValueError(f"--alert-set expects SECTION.KEY=VALUE (e.g. divergence.factor=3), "
                         f"got {text!r}")
    raw = raw.strip()
    value: Value
    if raw in ("true", "false"):
        value = raw == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw.strip('"')
    return section, key.strip(), value


def toml_reader() -> ModuleType:
    """The TOML reader: :mod:`tomllib` (Python 3.11+), else ``tomli``.

    The ``server`` extra installs ``tomli`` on Python 3.10.

    Raises:
        ValueError: Neither can be imported.
    """
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ValueError("--alerts-config needs Python 3.11+ (tomllib) or the 'tomli' package "
                     "(pip install 'mlops-hooks[server]' installs it on Python 3.10); or set "
                     "values with --alert-set SECTION.KEY=VALUE")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read an alerts file.

    Raises:
        ValueError: The file cannot be read or is not TOML, or no TOML reader is available
            (Python 3.10 without ``tomli``).
    """
    toml = toml_reader()
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = toml.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read the alerts file {str(path)!r}: {exc}") from None
    except toml.TOMLDecodeError as exc:
        raise ValueError(f"the alerts file {str(path)!r} is not valid TOML: {exc}") from None
    return data
