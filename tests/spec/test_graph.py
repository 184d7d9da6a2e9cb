"""C3 ordering, --include selection and dependency levels."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from venvlayers.errors import SelectionError
from venvlayers.spec import StackSpec
from venvlayers.spec.c3 import c3_linearize
from venvlayers.spec.graph import dependency_levels, select_layers


def _lin(graph: dict[str, list[str]], declared: list[str]) -> list[str]:
    memo: dict[str, list[str]] = {}

    def deps(node: str) -> list[str]:
        if node not in memo:
            memo[node] = c3_linearize(graph[node], deps, str)
        return memo[node]

    return c3_linearize(declared, deps, str)


def test_c3_diamond_keeps_declared_order_and_puts_shared_base_last() -> None:
    graph = {"base": [], "left": ["base"], "right": ["base"]}
    assert _lin(graph, ["left", "right"]) == ["left", "right", "base"]
    assert _lin(graph, ["right", "left"]) == ["right", "left", "base"]


def test_c3_conflict_is_described() -> None:
    graph = {"base": [], "top": ["base"]}
    with pytest.raises(ValueError, match="no consistent framework order"):
        _lin(graph, ["base", "top"])


@pytest.fixture
def stack(tmp_path: Path) -> StackSpec:
    (tmp_path / "app.py").write_text("")
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [[runtimes]]
            name = "rt"
            python_implementation = "cpython@3.11.7"
            [[runtimes]]
            name = "rt2"
            python_implementation = "cpython@3.12.1"
            [[frameworks]]
            name = "base"
            runtime = "rt"
            [[frameworks]]
            name = "left"
            frameworks = ["base"]
            [[frameworks]]
            name = "right"
            frameworks = ["base"]
            [[frameworks]]
            name = "other"
            runtime = "rt2"
            [[applications]]
            name = "one"
            frameworks = ["left", "right"]
            launch_module = "app.py"
            [[applications]]
            name = "two"
            frameworks = ["other"]
            launch_module = "app.py"
            [[applications]]
            name = "off"
            runtime = "rt"
            launch_module = "app.py"
            platforms = []
            """
        )
    )
    return StackSpec.load(spec)


def names(layers: list) -> list[str]:  # type: ignore[type-arg]
    return [x.build_name for x in layers]


def test_no_patterns_selects_every_enabled_layer(stack: StackSpec) -> None:
    assert names(select_layers(stack, None).layers) == [
        "rt",
        "rt2",
        "framework-base",
        "framework-left",
        "framework-right",
        "framework-other",
        "app-one",
        "app-two",
    ]


def test_include_adds_dependencies_and_derived_layers(stack: StackSpec) -> None:
    sel = select_layers(stack, ["framework-left"])
    assert names(list(sel.matched)) == ["framework-left"]
    assert names(list(sel.dependencies)) == ["framework-base", "rt"]
    assert names(list(sel.derived)) == ["app-one"]
    assert names(sel.layers) == ["rt", "framework-base", "framework-left", "app-one"]


def test_include_without_related_layers(stack: StackSpec) -> None:
    sel = select_layers(stack, ["app-*"], dependencies=False, derived=False)
    assert names(sel.layers) == ["app-one", "app-two"]


def test_unmatched_pattern(stack: StackSpec) -> None:
    with pytest.raises(SelectionError, match="matches no layer"):
        select_layers(stack, ["app-off"])  # disabled layers are not selectable
    assert names(select_layers(stack, ["nope", "rt2"], allow_missing=True).matched) == ["rt2"]


def test_dependency_levels(stack: StackSpec) -> None:
    levels = dependency_levels(stack.layers())
    assert [names(level) for level in levels] == [
        ["rt", "rt2"],
        ["framework-base", "framework-other"],
        ["framework-left", "framework-right", "app-two"],
        ["app-one"],
    ]
