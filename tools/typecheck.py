"""Type-check the package as it is installed, straight from the source tree.

``pyproject.toml`` maps ``plugins/`` and ``server/`` into ``mlops_hooks``
(``[tool.setuptools.package-dir]``). mypy names a file's module from its path, so it would
see ``server/app.py`` as ``server.app``; and it cannot follow the editable install's import
hook. This script gives mypy every source file under its installed module name (read from
that same table), so the mapping needs no symlink tree, and then runs mypy with the project's
configuration (``[tool.mypy]``) and any extra command-line flags.

Usage: ``python tools/typecheck.py [MYPY FLAGS...]`` (``make typecheck``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def installed_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the distribution, by its installed name, with its source file."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = config.get("package-dir", {})
    modules: dict[str, Path] = {}
    for package in config["packages"]:
        # The longest mapped prefix names the folder (``mlops_hooks.server.stream`` → server/).
        prefix = max((p for p in mapping if package == p or package.startswith(p + ".")),
                     key=len, default="")
        folder = root / mapping.get(prefix, prefix.replace(".", "/"))
        folder = folder.joinpath(*package[len(prefix):].split(".")[1:]) if prefix else \
            root.joinpath(*package.split("."))
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def main(argv: list[str]) -> int:
    """Run mypy over :func:`installed_modules`; returns mypy's exit status."""
    from mypy import build
    from mypy.fscache import FileSystemCache
    from mypy.main import process_options
    from mypy.modulefinder import BuildSource

    fscache = FileSystemCache()
    _, options = process_options(
        ["--config-file", str(ROOT / "pyproject.toml"), *argv, "-c", "pass"], fscache=fscache)
    sources = [BuildSource(str(path), module) for module, path in installed_modules().items()]
    try:
        result = build.build(sources, options, fscache=fscache)
        messages = result.errors
    except build.CompileError as exc:
        messages = exc.messages
    for line in messages:
        print(line)
    files = len(sources)
    if messages:
        errors = sum(": error:" in line for line in messages)
        print(f"Found {errors} error(s) in {files} source files (as installed)")
        return 1
    print(f"Success: no issues found in {files} source files (as installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
