"""Stack spec loading: the catalogue of invalid specs and what valid specs mean."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from venvlayers import SpecError
from venvlayers.platforms import TargetPlatform
from venvlayers.spec import StackSpec

SPECS = Path(__file__).parent / "specs"
INVALID = sorted((SPECS / "invalid").glob("*.toml"))


def _make_modules(spec_dir: Path) -> None:
    """The module files the catalogue's applications refer to."""
    (spec_dir / "app.py").write_text("print('app')\n")
    (spec_dir / "helper.py").write_text("")
    (spec_dir / "sub").mkdir()
    (spec_dir / "sub" / "app.py").write_text("")
    (spec_dir / "sub" / "helper.py").write_text("")
    (spec_dir / "nomain").mkdir()
    (spec_dir / "nomain" / "__init__.py").write_text("")


def _expected(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect:").strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


def test_catalogue_is_large_enough() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec_reports_expected_problems(case: Path, tmp_path: Path) -> None:
    _make_modules(tmp_path)
    spec = tmp_path / "venvstacks.toml"
    shutil.copy(case, spec)
    with pytest.raises(SpecError) as info:
        StackSpec.load(spec)
    message = str(info.value)
    for expected in _expected(case):
        assert expected in message
    for problem in info.value.problems:
        assert "\n" not in problem  # one line each
        assert problem.startswith("venvstacks.toml") or problem.startswith(str(tmp_path))


def write_spec(tmp_path: Path, text: str) -> Path:
    _make_modules(tmp_path)
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(textwrap.dedent(text))
    return spec


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such stack spec"):
        StackSpec.load(tmp_path / "venvstacks.toml")


def test_valid_stack_layer_names_order_and_platforms(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """
        [[runtimes]]
        name = "cpython-3.11"
        python_implementation = "cpython@3.11.7"
        requirements = ["numpy>=1.26"]
        platforms = ["linux_x86_64", "macosx_arm64", "win_amd64"]

        [[frameworks]]
        name = "base"
        runtime = "cpython-3.11"
        platforms = ["linux_x86_64", "macosx_arm64"]

        [[frameworks]]
        name = "left"
        frameworks = ["base"]

        [[frameworks]]
        name = "right"
        frameworks = ["base"]
        versioned = true
        linux_target = "glibc@2.34"

        [[applications]]
        name = "diamond"
        frameworks = ["left", "right"]
        launch_module = "app.py"
        support_modules = ["helper.py"]
        platforms = ["linux_x86_64"]

        [[applications]]
        name = "off"
        runtime = "cpython-3.11"
        launch_module = "nomain/../app.py"
        platforms = []
        """,
    )
    stack = StackSpec.load(spec)
    assert stack.warnings == ()
    rt = stack.runtimes["cpython-3.11"]
    assert rt.py_version == "3.11.7" and rt.implementation == "cpython"
    assert rt.build_name == "cpython-3.11"
    app = stack.applications["diamond"]
    assert app.build_name == "app-diamond"
    assert [x.build_name for x in app.lower_layers] == [
        "framework-left",
        "framework-right",
        "framework-base",
        "cpython-3.11",
    ]
    assert app.platforms == (TargetPlatform.LINUX_X86_64,)
    assert stack.frameworks["left"].platforms == (
        TargetPlatform.LINUX_X86_64,
        TargetPlatform.MACOS_ARM64,
    )
    right = stack.frameworks["right"]
    assert right.versioned and right.linux_target is not None
    assert right.linux_target.glibc == (2, 34)
    assert app.launch_module == tmp_path / "app.py"
    assert app.launch_module_name == "app"
    assert [p.name for p in app.support_modules] == ["helper.py"]
    assert [x.build_name for x in stack.layers()] == [
        "cpython-3.11",
        "framework-base",
        "framework-left",
        "framework-right",
        "app-diamond",
    ]
    assert not stack.applications["off"].enabled


def test_typos_warn_with_suggestion_and_legacy_fields_are_accepted(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """
        [[runtimes]]
        name = "rt"
        fully_versioned_name = "cpython@3.12.7"
        build_requirements = ["setuptools"]

        [[frameworks]]
        name = "sci"
        runtime = "rt"
        requirement = ["scipy"]

        [[application]]
        name = "x"
        """,
    )
    stack = StackSpec.load(spec)
    assert stack.runtimes["rt"].python_implementation == "cpython@3.12.7"
    warnings = "\n".join(stack.warnings)
    assert "'fully_versioned_name' is obsolete" in warnings
    assert "'build_requirements' is obsolete and ignored" in warnings
    assert "key 'requirement' is unknown and ignored; did you mean 'requirements'?" in warnings
    assert "top-level key 'application' is unknown and ignored; did you mean 'applications'?" in (
        warnings
    )


def test_package_indexes_are_inherited_and_overridable(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """
        [[runtimes]]
        name = "rt"
        python_implementation = "cpython@3.11.7"
        package_indexes = { Torch = "cpu" }

        [[frameworks]]
        name = "gpu"
        runtime = "rt"
        package_indexes = { torch = "cuda" }
        index_overrides = { cpu = "cuda" }

        [[applications]]
        name = "app"
        frameworks = ["gpu"]
        launch_module = "app.py"

        [[tool.uv.index]]
        name = "cpu"
        url = "https://download.pytorch.org/whl/cpu"
        explicit = true

        [[tool.uv.index]]
        name = "cuda"
        url = "https://download.pytorch.org/whl/cu128"
        explicit = true
        """,
    )
    stack = StackSpec.load(spec)
    assert dict(stack.runtimes["rt"].package_indexes) == {"torch": "cpu"}
    assert dict(stack.frameworks["gpu"].package_indexes) == {"torch": "cuda"}
    assert dict(stack.applications["app"].package_indexes) == {"torch": "cuda"}
    assert set(stack.uv.named_indexes) == {"cpu", "cuda"}


def test_uv_config_file_beside_the_spec(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """
        [[runtimes]]
        name = "rt"
        python_implementation = "cpython@3.11.7"
        priority_indexes = ["mirror"]
        """,
    )
    (tmp_path / "venvstacks.uv.toml").write_text(
        'exclude-newer = "2025-06-01T00:00:00Z"\n'
        '[[index]]\nname = "mirror"\nurl = "https://mirror.example/simple"\n'
    )
    stack = StackSpec.load(spec)
    assert stack.uv.source == tmp_path / "venvstacks.uv.toml"
    assert stack.runtimes["rt"].priority_indexes == ("mirror",)
    assert stack.uv.exclude_newer is not None and stack.uv.exclude_newer.year == 2025


def test_inline_tool_uv_takes_precedence_over_file(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """
        [[runtimes]]
        name = "rt"
        python_implementation = "cpython@3.11.7"

        [tool.uv]
        exclude-newer = "2024-01-01"
        """,
    )
    (tmp_path / "venvstacks.uv.toml").write_text("this is not toml = = =")
    stack = StackSpec.load(spec)
    assert stack.uv.source == spec


def test_support_modules_keep_the_spec_order(tmp_path: Path) -> None:
    """venvstacks publishes `app_support_modules` in the spec's order; so do we."""
    for name in ("zeta.py", "alpha.py", "mid.py"):
        (tmp_path / name).write_text("")
    text = """
        [[runtimes]]
        name = "cpython-3.11"
        python_implementation = "cpython@3.11.7"

        [[applications]]
        name = "app"
        runtime = "cpython-3.11"
        launch_module = "app.py"
        support_modules = ["zeta.py", "alpha.py", "mid.py"]
        """
    app = StackSpec.load(write_spec(tmp_path, text)).applications["app"]
    assert [p.stem for p in app.support_modules] == ["zeta", "alpha", "mid"]
