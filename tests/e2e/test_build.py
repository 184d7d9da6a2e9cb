"""Building: chained, relocatable, exact layer environments (issue 5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Built, run_app_json, run_layer_python, scrubbed_env


def _layer_of(path: str, build_dir: Path) -> str:
    return Path(path).resolve().relative_to(build_dir.resolve()).parts[0]


def test_each_import_comes_from_the_expected_layer(layered_stack: Built) -> None:
    root = layered_stack.build_dir
    report = run_app_json(root / "app-one", "one")
    expected = {
        "vl_alpha": "framework-base",
        "vl_beta": "cpython-rt",
        "vl_epsilon": "framework-left",  # both frameworks have it; left comes first
        "vl_fooext": "app-one",
        "vl_foolib": "framework-base",
        "vl_gamma": "framework-left",
        "vl_pth_added": "framework-base",
        "vl_tool": "framework-left",
    }
    assert {m: _layer_of(report[m], root) for m in expected} == expected
    assert report["answer"] == 42  # the C extension found libvlfoo.so in framework-base
    two = run_app_json(root / "app-two", "two")
    assert _layer_of(two["helper"], root) == "app-two"
    assert _layer_of(two["vl_zeta"], root) == "app-two"
    assert _layer_of(two["vl_epsilon"], root) == "framework-right"
    assert two["vl_gamma_visible"] is False


def test_versioned_layers_have_deployed_name_aliases(layered_stack: Built) -> None:
    root = layered_stack.build_dir
    assert (root / "framework-right@1").is_symlink()
    assert os.readlink(root / "framework-right@1") == "framework-right"
    assert (root / "app-two@1").is_symlink()
    config = json.loads((root / "app-one/share/venv/metadata/venvstacks_layer.json").read_text())
    assert config["python"] == "bin/python"
    assert config["base_python"].startswith("../cpython-rt/bin/python3.")
    assert config["pylib_dirs"] == [
        f"../{name}/{config['site_dir']}"
        for name in ("framework-left", "framework-right@1", "framework-base", "cpython-rt")
    ]
    assert config["launch_module"] == "one"
    assert any("framework-base" in d for d in config["dynlib_dirs"])


def test_nothing_absolute_inside_layers(layered_stack: Built) -> None:
    root = layered_stack.build_dir
    for layer in ("framework-base", "framework-left", "framework-right", "app-one", "app-two"):
        for path in (root / layer).rglob("*"):
            if path.is_symlink():
                assert not os.readlink(path).startswith("/"), path
            elif path.is_file() and path.suffix in ("", ".py", ".cfg", ".json", ".txt", ".pth"):
                assert str(root) not in path.read_text(errors="replace"), path


def test_console_scripts_run_in_place_and_after_relocation(
    layered_stack: Built, tmp_path: Path
) -> None:
    root = layered_stack.build_dir
    hello = root / "framework-left" / "bin" / "vl-hello"
    out = json.loads(
        subprocess.run(
            [hello], capture_output=True, text=True, env=scrubbed_env(), check=True
        ).stdout
    )
    assert _layer_of(out["module"], root) == "framework-left"
    moved = tmp_path / "moved" / "_build"
    shutil.copytree(root, moved, symlinks=True)
    for layer in ("framework-left", "app-two"):
        script = moved / layer / "bin" / "vl-hello"
        proc = subprocess.run([script, "x"], capture_output=True, text=True, env=scrubbed_env())
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["prefix"].startswith(str(moved))


def test_relocated_stack_runs_after_the_original_is_gone(
    layered_stack: Built, tmp_path: Path
) -> None:
    # copy, then hide the original by renaming it for the duration of the test
    root = layered_stack.build_dir
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved, symlinks=True)
    hidden = root.with_name("_build.hidden")
    root.rename(hidden)
    try:
        report = run_app_json(moved / "app-one", "one", "a", "b")
        assert report["answer"] == 42
        assert report["args"] == ["a", "b"]
        assert all(str(moved) in report[m] for m in ("vl_alpha", "vl_beta", "vl_fooext"))
        two = run_app_json(moved / "app-two@1", "two")
        assert str(moved) in two["vl_epsilon"]
        # an embedding program: the runtime's python with the app's site dir on sys.path
        config = json.loads(
            (moved / "app-one/share/venv/metadata/venvstacks_layer.json").read_text()
        )
        code = (
            "import sys; sys.path[:0] = sys.argv[1:]; import vl_fooext; print(vl_fooext.answer())"
        )
        dirs = [str(moved / "app-one" / config["site_dir"])] + [
            os.path.normpath(moved / "app-one" / d) for d in config["pylib_dirs"]
        ]
        proc = subprocess.run(
            [moved / "app-one" / config["base_python"], "-c", code, *dirs],
            capture_output=True,
            text=True,
            env=scrubbed_env(),
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "42"
    finally:
        hidden.rename(root)


def test_exit_code_and_no_ld_library_path_leak(layered_stack: Built) -> None:
    root = layered_stack.build_dir
    proc = run_layer_python(root / "app-one", "-m", "one", "3", check=False)
    assert proc.returncode == 3
    proc = run_layer_python(
        root / "app-one", "-c", "import os, vl_fooext; print(os.environ.get('LD_LIBRARY_PATH'))"
    )
    assert proc.stdout.strip() == "None"


def test_unchanged_rebuild_does_nothing(layered_stack: Built) -> None:
    results = layered_stack.build()
    assert {r.action for r in results} == {"unchanged"}


def test_removed_requirement_disappears_on_rebuild(layered_stack: Built) -> None:
    spec = layered_stack.spec
    original = spec.read_text()
    try:
        spec.write_text(
            original.replace('requirements = ["vl-zeta", "vl-tool"]', 'requirements = ["vl-zeta"]')
        )
        layered_stack.lock(if_needed=True)
        results = {r.build_name: r.action for r in layered_stack.build()}
        assert results["app-two"] == "built"
        assert results["app-one"] == "unchanged"
        site = layered_stack.build_dir / "app-two" / "lib"
        assert not list(site.glob("python*/site-packages/vl_tool*"))
        assert not (layered_stack.build_dir / "app-two" / "bin" / "vl-hello").exists()
    finally:
        spec.write_text(original)
        layered_stack.lock(if_needed=True)
        layered_stack.build()


def test_interrupted_build_is_never_taken_for_finished(
    layered_stack: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    import venvlayers.building.build as building

    stamp = layered_stack.build_dir / "app-one" / "share/venv/metadata/venvlayers_build.json"
    real_finish = building._finish

    def crash(plan: object, *args: object) -> None:
        if getattr(plan, "build_name", "") == "app-one":
            raise KeyboardInterrupt  # Ctrl-C in the middle of finishing the layer
        real_finish(plan, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(building, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        layered_stack.build(include=("app-one",), clean=True)
    assert not stamp.exists()  # unfinished: no build stamp
    monkeypatch.setattr(building, "_finish", real_finish)
    results = {r.build_name: r.action for r in layered_stack.build()}
    assert results["app-one"] == "built"
    assert stamp.exists()
    assert run_app_json(layered_stack.build_dir / "app-one", "one")["answer"] == 42
