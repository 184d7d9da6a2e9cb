"""One real runtime archive per test session, imported from the interpreter running pytest.

Fixtures:

- `runtime_archive` (session): the `RuntimeArchive` made by `venvlayers runtime import`
  from `sys.base_prefix`. It is kept under pytest's cache dir, keyed by the
  interpreter (path, version, binary mtime and size) and a hash of the import code, so
  only the first run pays for the import (a few seconds); later runs reuse it.
- `runtime_cache_dir` (session): a `RuntimeCache` whose `cache_dir` is a venvlayers
  cache holding that archive. For session or module scoped fixtures of end-to-end
  tests: set `VENVLAYERS_CACHE_DIR` to it yourself, and treat it as read-only.
- `runtime_cache` (function): a fresh venvlayers cache holding the archive, with
  `VENVLAYERS_CACHE_DIR` pointing at it for the test; `runtime_cache.name` (e.g.
  `cpython@3.11.7`) is what a spec's `python_implementation` should say, and it
  resolves offline.

Register with `pytest_plugins = ["tests.plugins.runtime_fixture"]` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import venvlayers
from venvlayers._util.fs import remove_tree
from venvlayers.errors import RuntimeSourceError
from venvlayers.platforms import TargetPlatform
from venvlayers.runtimes import (
    RuntimeArchive,
    add_runtime_archive,
    import_runtime,
    list_runtimes,
)

_CACHE_PREFIX = "venvlayers-runtime-"
# the code whose behaviour shapes the archive: a change to it makes a new one
_IMPORT_CODE = ("runtimes/importing.py", "runtimes/tree.py", "runtimes/cache.py")


@dataclass(frozen=True)
class RuntimeCache:
    """A venvlayers cache dir in which `name` resolves to `runtime` without a network."""

    cache_dir: Path
    runtime: RuntimeArchive

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def version(self) -> str:
        return self.runtime.version

    @property
    def platform(self) -> TargetPlatform:
        return self.runtime.platform

    @property
    def env(self) -> dict[str, str]:
        """Environment entries that make a subprocess (or the API) use this cache."""
        return {"VENVLAYERS_CACHE_DIR": str(self.cache_dir)}


def interpreter_prefix() -> Path:
    """The install prefix of the interpreter running the tests (not its venv)."""
    return Path(sys.base_prefix)


def _import_key(prefix: Path, minor: str | None = None) -> str:
    h = hashlib.sha256()
    h.update(str(prefix.resolve()).encode())
    h.update(sys.version.encode() if minor is None else minor.encode())
    minor = minor or f"{sys.version_info[0]}.{sys.version_info[1]}"
    binary = prefix / "bin" / f"python{minor}"
    for path in (binary, *sorted(prefix.glob("lib/libpython*.so*"))):
        with contextlib.suppress(OSError):
            st = path.stat()
            h.update(f"{path.name}:{st.st_mtime_ns}:{st.st_size}".encode())
    package = Path(venvlayers.__file__).parent
    for name in _IMPORT_CODE:
        h.update((package / name).read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise the import between pytest-xdist workers sharing one cache."""
    try:
        import fcntl
    except ImportError:  # Windows: imports are not supported there anyway
        yield
        return
    with (directory / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pytest_cache_dir(request: pytest.FixtureRequest, name: str) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider: import once per session instead
        base = request.getfixturevalue("tmp_path_factory")
        return Path(base.mktemp(name))
    return Path(cache.mkdir(name))


@pytest.fixture(scope="session")
def runtime_archive(request: pytest.FixtureRequest) -> RuntimeArchive:
    """A real runtime archive of the test interpreter, imported once and cached."""
    if not sys.platform.startswith("linux"):
        pytest.skip("importing a runtime from a local install is supported on Linux only")
    prefix = interpreter_prefix()
    key = _import_key(prefix)
    home = _pytest_cache_dir(request, _CACHE_PREFIX + key)
    for stale in home.parent.glob(_CACHE_PREFIX + "*"):
        # other Pythons (`venvlayers-runtime-3.12-KEY`, see import_cached) are kept
        if stale != home and "." not in stale.name.removeprefix(_CACHE_PREFIX):
            with contextlib.suppress(OSError):
                remove_tree(stale)
    version = ".".join(map(str, sys.version_info[:3]))
    with pytest.MonkeyPatch.context() as mp, _locked(home):
        mp.setenv("VENVLAYERS_CACHE_DIR", str(home))
        for cached in reversed(list_runtimes()):
            if cached.runtime.source == "import" and cached.runtime.version == version:
                return cached.runtime
        try:
            return import_runtime(prefix)
        except RuntimeSourceError as exc:
            pytest.fail(f"cannot import the test interpreter as a runtime: {exc}")


def local_cpython(minor: str) -> Path | None:
    """The install prefix of a CPython `minor` (e.g. "3.12") on this machine, if any.

    Looked for where pyenv and the usual installs put them; `VENVLAYERS_TEST_PYTHON_3_12`
    (and so on) names one explicitly.
    """
    explicit = os.environ.get(f"VENVLAYERS_TEST_PYTHON_{minor.replace('.', '_')}")
    candidates = [Path(explicit)] if explicit else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(pyenv.glob(f"{minor}.*"), reverse=True)
    candidates += [Path("/usr/local"), Path("/usr")]
    for prefix in candidates:
        if (prefix / "bin" / f"python{minor}").is_file() and (
            prefix / "lib" / f"python{minor}"
        ).is_dir():
            return prefix
    return None


def import_cached(request: pytest.FixtureRequest, prefix: Path, minor: str) -> RuntimeArchive:
    """`venvlayers runtime import` of another local CPython, cached like `runtime_archive`."""
    home = _pytest_cache_dir(request, f"{_CACHE_PREFIX}{minor}-{_import_key(prefix, minor)}")
    with pytest.MonkeyPatch.context() as mp, _locked(home):
        mp.setenv("VENVLAYERS_CACHE_DIR", str(home))
        for cached in reversed(list_runtimes()):
            if cached.runtime.source == "import" and cached.runtime.version.startswith(minor + "."):
                return cached.runtime
        try:
            return import_runtime(prefix)
        except RuntimeSourceError as exc:
            pytest.fail(f"cannot import {prefix} as a runtime: {exc}")


def seed_cache(cache_dir: Path, *runtimes: RuntimeArchive) -> list[RuntimeCache]:
    """A venvlayers cache in `cache_dir` holding each of `runtimes`."""
    return [_seed(cache_dir, runtime) for runtime in runtimes]


def _seed(cache_dir: Path, runtime: RuntimeArchive) -> RuntimeCache:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VENVLAYERS_CACHE_DIR", str(cache_dir))
        seeded = add_runtime_archive(
            runtime.path,
            implementation=runtime.implementation,
            version=runtime.version,
            platform=runtime.platform,
            source=runtime.source,
            origin=runtime.origin,
        )
    return RuntimeCache(cache_dir, seeded)


@pytest.fixture(scope="session")
def runtime_cache_dir(
    runtime_archive: RuntimeArchive, tmp_path_factory: pytest.TempPathFactory
) -> RuntimeCache:
    """A shared, read-only venvlayers cache holding the test runtime."""
    return _seed(tmp_path_factory.mktemp("venvlayers-cache"), runtime_archive)


@pytest.fixture
def runtime_cache(
    runtime_archive: RuntimeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RuntimeCache:
    """A fresh venvlayers cache with the test runtime, used by this test via the env."""
    cache = _seed(tmp_path / "venvlayers-cache", runtime_archive)
    monkeypatch.setenv("VENVLAYERS_CACHE_DIR", str(cache.cache_dir))
    return cache


__all__ = [
    "RuntimeCache",
    "import_cached",
    "interpreter_prefix",
    "local_cpython",
    "runtime_archive",
    "runtime_cache",
    "runtime_cache_dir",
    "seed_cache",
]
