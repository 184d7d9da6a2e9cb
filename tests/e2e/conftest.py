"""Whole-stack scenarios: each directory under `stacks/` is a spec with its modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.runtime_fixture import RuntimeCache
from venvlayers.building import BuildOptions, build_stack
from venvlayers.locking import LockOptions, lock_stack
from venvlayers.platforms import build_platform
from venvlayers.spec import StackSpec

STACKS = Path(__file__).parent / "stacks"


def scrubbed_env(**extra: str) -> dict[str, str]:
    """What a user's clean shell would have: no PYTHON*, PIP_*, UV_*, VIRTUAL_ENV."""
    env = {"PATH": os.defpath, "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    env.update(extra)
    return env


def copy_scenario(name: str, dest: Path, runtime: RuntimeCache) -> Path:
    """Copy a scenario and fill in the test runtime's name and this machine's platform."""
    shutil.copytree(STACKS / name, dest)
    spec = dest / "venvstacks.toml"
    text = spec.read_text().replace("PYTHON", runtime.name)
    spec.write_text(text.replace("PLATFORM", str(build_platform())))
    return spec


@dataclass
class Built:
    spec: Path
    build_dir: Path
    wheels: Path

    @property
    def stack(self) -> StackSpec:
        return StackSpec.load(self.spec)

    def lock(self, **options: Any) -> None:
        lock_stack(self.stack, LockOptions(local_wheels=(self.wheels,), use_index=False, **options))

    def build(self, **options: Any) -> list[Any]:
        options.setdefault("build_dir", self.build_dir)
        opts = BuildOptions(local_wheels=(self.wheels,), **options)
        return build_stack(self.stack, opts)


def verbose_imports(
    app_dir: Path, root: Path, code: str = "", module: str = "one"
) -> tuple[list[str], list[str], str]:
    """Modules below `root` that `python -v` loaded from a .pyc, those it compiled from
    source, and stdout, for the app in `app_dir` started as a user would: with
    PYTHONDONTWRITEBYTECODE, as most container images set it.

    CPython's verbose import log says `code object from '<pyc>'` for bytecode it used
    and `code object from <py>` for a source it had to compile.
    """
    args = ["-v", "-P", *(["-c", code] if code else ["-m", module])]
    proc = subprocess.run(
        [str(app_dir / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        env=scrubbed_env(PYTHONDONTWRITEBYTECODE="1"),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from_pyc, from_source = [], []
    for line in proc.stderr.splitlines():
        if line.startswith("# code object from "):
            where = line.removeprefix("# code object from ")
            if where.startswith("'") and where.strip("'").startswith(str(root)):
                from_pyc.append(where.strip("'"))
            elif where.startswith(str(root)):
                from_source.append(where)
    return from_pyc, from_source, proc.stdout


def run_layer_python(
    layer_dir: Path, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(layer_dir / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        env=scrubbed_env(**env),
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{layer_dir.name} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_app_json(layer_dir: Path, module: str, *args: str) -> dict[str, Any]:
    proc = run_layer_python(layer_dir, "-m", module, *args)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def layered_stack(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_cache_dir: RuntimeCache,
    wheelhouse_initial: Path,
) -> Iterator[Built]:
    """The `layered` scenario, locked and built once per test module."""
    root = tmp_path_factory.mktemp("layered")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_cache_dir.env.items():
            mp.setenv(key, value)
        spec = copy_scenario("layered", root / "project", runtime_cache_dir)
        built = Built(spec, root / "project" / "_build", wheelhouse_initial)
        built.lock()
        built.build()
        yield built
