"""The architecture, as rules a change cannot break silently (docs/architecture.md).

Every module of the distribution is read by its installed name (``pyproject.toml`` maps
``plugins/`` and ``server/`` into ``mlops_hooks``) and parsed; its imports are collected from
the whole file: top level, inside functions (lazy) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450
MAX_MODULES_PER_DIRECTORY = 12
#: The areas of the distribution; a module outside these three is the core.
AREAS = ("mlops_hooks.server", "mlops_hooks.plugins", "mlops_hooks.cli")
#: Server layers and the layers each must never import (at any depth, lazily or for types).
SERVER_LAYERS_FORBIDDEN = {
    "stream": ("state", "backends", "endpoints", "ingest", "core", "app", "serve"),
    "state": ("stream", "backends", "endpoints", "ingest", "core", "ops", "app", "serve"),
    "backends": ("state", "endpoints", "ingest", "core", "ops", "app", "serve"),
    "ops": ("endpoints", "ingest", "app", "serve"),
    "alerts": ("stream", "state", "backends", "endpoints", "ingest", "core", "ops", "app",
               "serve"),
    "ingest": ("endpoints", "core", "app", "serve"),
    "core": ("endpoints", "app", "serve"),
    "endpoints": ("app", "serve"),
}
FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "keras", "sklearn", "numpy",
              "starlette", "uvicorn", "psutil", "redis")
#: The one exception: the system sampler imports these optional modules (the ``system`` extra,
#: ``nvidia-ml-py``) when a publisher starts with sampling on, never at import.
OPTIONAL_IN_CORE = {"mlops_hooks._publisher.system": ("psutil", "pynvml")}


@cache
def modules() -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("typecheck_tool", ROOT / "tools/typecheck.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    found: dict[str, Path] = tool.installed_modules(ROOT)
    return found


def area(module: str) -> str:
    if module == "mlops_hooks.__main__":  # ``python -m mlops_hooks`` is the command line
        return "mlops_hooks.cli"
    return next((a for a in AREAS if module == a or module.startswith(a + ".")), "mlops_hooks")


def package_of(module: str) -> str:
    path = modules()[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


class Import:
    """One import statement's target module and the names it takes from it."""

    def __init__(self, target: str, names: tuple[str, ...], line: int) -> None:
        self.target, self.names, self.line = target, names, line


def imports(module: str) -> Iterator[Import]:
    tree = ast.parse(modules()[module].read_text(), str(modules()[module]))
    package = package_of(module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules():  # ``from package import module``
                    yield Import(sub, (), node.lineno)
                else:
                    yield Import(base, (alias.name,), node.lineno)


@cache
def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in modules():
        edges[module] = {i.target for i in imports(module) if i.target in modules()}
    return edges


def test_the_module_map_sees_every_area():
    names = set(modules())
    for expected in ("mlops_hooks.protocol", "mlops_hooks.run.lifecycle",
                     "mlops_hooks.server.stream.record", "mlops_hooks.server.backends.base",
                     "mlops_hooks.plugins.lightning", "mlops_hooks.cli.demo._runner"):
        assert expected in names


def test_no_import_cycles_lazy_and_type_only_imports_included():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _private_part(module: str) -> str | None:
    """The package a private module is private to (``a.b`` for ``a.b._c.d``), if any."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_no_private_imports_across_packages():
    problems = []
    for module in modules():
        for imp in imports(module):
            if not imp.target.startswith("mlops_hooks"):
                continue
            owner = _private_part(imp.target)
            if owner is not None and not (
                    (module == owner or module.startswith(owner + "."))
                    and area(module) == area(imp.target)):
                problems.append(f"{module}:{imp.line} imports {imp.target}, private to {owner}")
            for name in imp.names:
                if name.startswith("_") and not name.startswith("__") and \
                        package_of(module) != package_of(imp.target):
                    problems.append(f"{module}:{imp.line} imports {imp.target}.{name}")
    assert not problems, "\n".join(problems)


def test_no_private_attribute_of_another_package_is_read():
    problems = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for imp_node in ast.walk(tree):
            if isinstance(imp_node, ast.ImportFrom) and imp_node.module:
                for alias in imp_node.names:
                    target = f"{imp_node.module}.{alias.name}"
                    if target in modules():
                        aliases[alias.asname or alias.name] = target
            elif isinstance(imp_node, ast.Import):
                for alias in imp_node.names:
                    if alias.asname and alias.name in modules():
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in aliases and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                target = aliases[node.value.id]
                if package_of(target) != package_of(module):
                    problems.append(f"{module}:{node.lineno} reads {target}.{node.attr}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_over_the_line_limit(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{modules()[module]}: {lines} lines (split it by concern)"


def test_no_directory_over_the_module_limit():
    directories: dict[Path, int] = {}
    for path in modules().values():
        if path.name != "__init__.py":
            directories[path.parent] = directories.get(path.parent, 0) + 1
    crowded = {str(d.relative_to(ROOT)): n for d, n in directories.items()
               if n > MAX_MODULES_PER_DIRECTORY}
    assert not crowded, f"make sub-packages: {crowded}"


def test_areas_import_only_downwards():
    problems = []
    for module, targets in graph().items():
        mine = area(module)
        for target in targets:
            theirs = area(target)
            if mine == theirs or theirs == "mlops_hooks":
                continue  # every area may use the core
            if mine != "mlops_hooks.cli":  # the command line drives the server and adapters
                problems.append(f"{module} imports {target}")
    assert not problems, "\n".join(problems)


def _server_layer(module: str) -> str | None:
    if not module.startswith("mlops_hooks.server."):
        return None
    return module.split(".")[2]


def test_server_layers_import_only_downwards():
    problems = []
    for module, targets in graph().items():
        layer = _server_layer(module)
        for target in targets:
            if layer in SERVER_LAYERS_FORBIDDEN and \
                    _server_layer(target) in SERVER_LAYERS_FORBIDDEN[layer]:
                problems.append(f"{module} ({layer}) imports {target}")
    assert not problems, "\n".join(problems)


def test_backends_base_is_the_protocol_only_and_the_stream_owns_the_record():
    base = ast.parse(modules()["mlops_hooks.server.backends.base"].read_text())
    defined = {n.name for n in base.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert defined == {"Backend", "Published"}
    record = ast.parse(modules()["mlops_hooks.server.stream.record"].read_text())
    assert "Record" in {n.name for n in record.body if isinstance(n, ast.ClassDef)}


def test_the_wire_limits_and_close_codes_are_defined_once():
    for module, path in modules().items():
        if module == "mlops_hooks.protocol":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                assert "MAX_MESSAGE_BYTES" not in names, f"{module} defines MAX_MESSAGE_BYTES"
            if isinstance(node, ast.Constant) and node.value in (1003, 1009, 1011, 1013, 4008):
                raise AssertionError(f"{module}:{node.lineno} spells close code {node.value}; "
                                     "use mlops_hooks.protocol.CloseCode")


def test_the_core_imports_neither_server_nor_cli_nor_frameworks_when_imported():
    code = ("import sys, mlops_hooks, mlops_hooks.publisher, mlops_hooks.protocol, "
            "mlops_hooks.run, mlops_hooks.manager, mlops_hooks.serving\n"
            "mlops_hooks.get_plugin_manager('training')\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r} "
            "or m.startswith(('mlops_hooks.server', 'mlops_hooks.cli')))\n"
            "print(' '.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={"MLOPS_HOOKS_DISABLE": "", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_core_never_imports_server_cli_or_frameworks_even_lazily():
    problems = []
    for module in modules():
        if area(module) != "mlops_hooks":
            continue
        for imp in imports(module):
            top = imp.target.split(".")[0]
            if top in OPTIONAL_IN_CORE.get(module, ()):
                continue
            if top in FRAMEWORKS or imp.target.startswith(AREAS):
                problems.append(f"{module}:{imp.line} imports {imp.target}")
    assert not problems, "\n".join(problems)


def test_no_module_imports_the_package_root_for_its_version():
    for module, path in modules().items():
        assert "__version__" not in path.read_text() or module == "mlops_hooks", module
