"""The bundled example with real packages from PyPI, the way a user ships it.

`examples/sklearn` (numpy, scipy, scikit-learn, matplotlib: thousands of modules, C
extensions, vendored shared libraries, Python 2 test files that do not compile) goes
through lock, build, publish with the default options, a push to a real registry, a
deploy from it, a move, and read-only starts of both apps. Marked `slow`: it needs the
package index (CI runs `-m "not slow"`); run it with `pytest -m slow`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import verbose_imports
from tests.plugins.registry import Registry
from tests.plugins.runtime_fixture import RuntimeCache
from tests.support.fakestack import snapshot
from venvlayers import deploying, distribution
from venvlayers.building import BuildOptions, build_stack
from venvlayers.locking import LockOptions, lock_stack
from venvlayers.publishing import PublishOptions, publish_stack
from venvlayers.spec import StackSpec

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXAMPLE = Path(__file__).parents[2] / "examples" / "sklearn"


def _project(dest: Path, runtime: RuntimeCache) -> StackSpec:
    """The example with the test interpreter as its runtime (its locks kept if they fit)."""
    ignore = shutil.ignore_patterns("_build", "_artifacts", "_export", "_deploy*")
    shutil.copytree(EXAMPLE, dest, ignore=ignore)
    spec = dest / "venvstacks.toml"
    text = spec.read_text()
    assert 'python_implementation = "cpython@3.11.7"' in text
    spec.write_text(text.replace("cpython@3.11.7", runtime.name))
    return StackSpec.load(spec)


def test_the_example_ships_through_a_registry_and_starts_from_bytecode(
    runtime_cache: RuntimeCache, registry: Registry, tmp_path: Path
) -> None:
    stack = _project(tmp_path / "project", runtime_cache)
    lock_stack(stack, LockOptions(if_needed=True))
    build_dir = tmp_path / "project" / "_build"
    build_stack(stack, BuildOptions(build_dir=build_dir))
    out = tmp_path / "project" / "_artifacts"
    published = publish_stack(stack, PublishOptions(build_dir=build_dir, output_dir=out))
    for layer in published:
        # the default: the largest modules' bytecode ships, the rest is the deploy's
        shipped = layer.metadata["archive_options"]["bytecode"]
        assert shipped is False or set(shipped) == {"min_source_bytes"}, layer.deploy_name

    ref = registry.ref("examples/sklearn", "1")
    distribution.push(out, ref)
    target = tmp_path / "deployed"
    result = deploying.deploy(ref, target)
    assert {x.action for x in result.layers} == {"installed"}
    assert all(layer.compiled > 0 for layer in result.layers if layer.category != "application")

    moved = tmp_path / "moved"
    os.rename(target, moved)
    before = snapshot(moved)
    subprocess.run(["chmod", "-R", "a-w", str(moved)], check=True)
    try:
        for app in ("classify", "explore"):
            from_pyc, from_source, stdout = verbose_imports(moved / f"app-{app}", moved, module=app)
            assert from_source == [], f"{app} compiled {from_source[:5]} at start-up"
            assert any("/sklearn/" in p for p in from_pyc), app
            assert f"app-{app}:" in stdout
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(moved)], check=True)
    assert snapshot(moved) == before  # nothing written by the starts
    report = deploying.status(moved, verify=True)
    assert not report.damaged
    # a second deploy of the same reference fetches nothing
    again = deploying.deploy(ref, moved)
    assert {x.action for x in again.layers} == {"unchanged"} and again.fetched == 0
