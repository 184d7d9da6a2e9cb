"""The package's shape: public faces, `__all__`, lazy imports and no import cycles."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import venvlayers

PACKAGE = Path(venvlayers.__file__).parent
STAGES = (
    "archives",
    "building",
    "cli",
    "deploying",
    "distribution",
    "locking",
    "planning",
    "publishing",
    "runtimes",
    "signing",
    "spec",
)
STABLE_API = {
    "StackSpec",
    "lock_stack",
    "build_stack",
    "publish_stack",
    "export_stack",
    "deploy",
    "run_app",
    "status",
    "remove",
    "Reporter",
    "VenvLayersError",
    "SpecError",
    "LockError",
    "BuildError",
    "ArchiveError",
    "DeployError",
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "_injected":
            continue  # runs inside layers, on their own interpreter
        parts = ["venvlayers", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split(".")[1:])


def test_the_stable_api_is_at_the_top() -> None:
    assert set(venvlayers.__all__) >= STABLE_API
    for name in venvlayers.__all__:
        assert getattr(venvlayers, name) is not None


@pytest.mark.parametrize("module", [m for m, _ in _modules() if _is_public(m)])
def test_every_public_module_has_all(module: str) -> None:
    imported = importlib.import_module(module)
    names = getattr(imported, "__all__", None)
    assert isinstance(names, list), f"{module} has no __all__"
    for name in names:
        assert hasattr(imported, name), f"{module}.__all__ names {name!r}, which it lacks"


@pytest.mark.parametrize("stage", ["venvlayers", *(f"venvlayers.{s}" for s in STAGES)])
def test_faces_type_what_they_export(stage: str) -> None:
    """The `TYPE_CHECKING` imports of a face name exactly what it exports lazily."""
    path = (
        PACKAGE / (stage.removeprefix("venvlayers").lstrip(".").replace(".", "/")) / ("__init__.py")
    )
    tree = ast.parse(path.read_text())
    typed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                typed |= {alias.asname or alias.name for alias in imp.names}
    module = importlib.import_module(stage)
    lazy = {n for n in module.__all__ if n not in module.__dict__}
    if typed or lazy:
        assert lazy <= typed, f"{stage}: exported but untyped: {sorted(lazy - typed)}"
        assert typed <= set(module.__all__), f"{stage}: typed, not exported: {typed - lazy}"


def _imports(module: str, path: Path) -> set[str]:
    """Every venvlayers module `module` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("venvlayers")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("venvlayers"):
                target = node.module or ""
            else:
                continue
            found.add(target)
            for alias in node.names:  # `from . import state` imports a module
                candidate = f"{target}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).is_file():
                    found.add(candidate)
    return found


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_no_import_cycles() -> None:
    """Not at run time, nor hidden behind TYPE_CHECKING or inside functions.

    A module importing its own package's face counts: the face imports it back.
    """
    graph = {module: _imports(module, path) for module, path in _modules()}
    for module, targets in graph.items():
        graph[module] = {t for t in targets if t in graph and t not in _parents(module)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycles.append([*path[path.index(node) :], node])
            return
        state[node] = 1
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_stages_stand_on_lower_stages_only() -> None:
    """The pipeline's direction: no stage imports one above it."""
    order = [
        # below the pipeline: what several stages share without one owning it (runtimes
        # unpack with the one safe extractor; publishing signs and deploying verifies)
        "archives",
        "signing",
        "bytecode",
        "published",
        "selection",
        # the pipeline
        "spec",
        "runtimes",
        "locking",
        "planning",
        "building",
        "publishing",
        "distribution",
        "deploying",
        "cli",
    ]
    rank = {stage: i for i, stage in enumerate(order)}
    wrong = []
    for module, path in _modules():
        stage = module.split(".")[1] if module.count(".") else ""
        if stage not in rank:
            continue
        for target in _imports(module, path):
            other = target.split(".")[1] if target.count(".") else ""
            if other in rank and rank[other] > rank[stage]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("command", "forbidden"),
    [
        ("--help", ("venvlayers.deploying.operations", "venvlayers.locking.lock", "httpx")),
        ("--version", ("venvlayers.spec.stack", "venvlayers.archives.archive")),
    ],
)
def test_cli_imports_stages_only_when_a_command_runs(
    command: str, forbidden: tuple[str, ...]
) -> None:
    code = (
        "import sys\n"
        "from venvlayers.cli import main\n"
        f"code = main([{command!r}])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split()[-1:] and result.stdout.splitlines()[-1].split())
    assert not (loaded & set(forbidden)), loaded & set(forbidden)
