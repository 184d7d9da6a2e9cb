"""Importing a local CPython install: the session runtime, relocation, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.plugins.runtime_fixture import RuntimeCache, interpreter_prefix
from venvlayers._util import proc as _proc
from venvlayers._util.elf import read_elf
from venvlayers._util.http import HttpClient
from venvlayers._util.tools import find_patchelf as _find_patchelf
from venvlayers.cli import main
from venvlayers.errors import RuntimeSourceError
from venvlayers.platforms import build_platform
from venvlayers.runtimes import (
    RuntimeArchive,
    import_runtime,
    importing as runtime_import,
    list_runtimes,
    obtain_runtime,
    runtime_python,
    runtimes_dir,
    unpack_runtime,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="runtime import is Linux-only so far"
)

MODULES = "ssl, sqlite3, ctypes, zlib, lzma, bz2, venv"
VERSION = ".".join(map(str, sys.version_info[:3]))
MAJOR_MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _members(runtime: RuntimeArchive) -> dict[str, tarfile.TarInfo]:
    with (
        runtime.path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tf,
    ):
        return {m.name: m for m in tf}


def _run(python: Path, code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", "-c", code],
        env=_proc.clean_env(extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _cache_is_clean() -> bool:
    root = runtimes_dir()
    return not root.exists() or not any(root.iterdir())


# --------------------------------------------------------------------------- the archive


def test_session_runtime_is_imported_from_the_test_interpreter(
    runtime_archive: RuntimeArchive,
) -> None:
    assert runtime_archive.source == "import"
    assert runtime_archive.name == f"cpython@{VERSION}"
    assert runtime_archive.platform == build_platform()
    assert runtime_archive.origin == str(interpreter_prefix())
    assert runtime_archive.path.is_file()
    assert runtime_archive.size == runtime_archive.path.stat().st_size
    assert runtime_archive.size < 40 * 1024 * 1024
    assert runtime_archive.filename.endswith("-install_only.tar.zst")


def test_archive_holds_the_stdlib_only(runtime_archive: RuntimeArchive) -> None:
    members = _members(runtime_archive)
    names = set(members)
    assert all(n == "python" or n.startswith("python/") for n in names)
    stdlib = f"python/lib/python{MAJOR_MINOR}"
    assert f"{stdlib}/os.py" in names
    assert f"python/include/python{MAJOR_MINOR}/Python.h" in names
    assert {n for n in names if n.startswith("python/bin/")} == {
        "python/bin/python",
        "python/bin/python3",
        f"python/bin/python{MAJOR_MINOR}",
    }
    # bin links stay relative, so the data filter accepts them
    assert members["python/bin/python3"].linkname == f"python{MAJOR_MINOR}"
    site = f"{stdlib}/site-packages/"
    assert {n for n in names if n.startswith(site)} == {f"{site}README.txt"}
    for name in names:
        parts = name.split("/")
        assert "__pycache__" not in parts, name
        assert not {"test", "tests", "idle_test"} & set(parts[3:]), name
        assert not name.endswith((".a", ".o", ".pyc")), name
        assert not name.startswith(("python/bin/pip", "python/bin/pydoc", "python/bin/idle"))
        assert members[name].uid == 0 and members[name].uname == ""


# --------------------------------------------------------------------------- relocation


def test_moved_runtime_runs_without_the_original(
    runtime_archive: RuntimeArchive, tmp_path: Path
) -> None:
    first = tmp_path / "first" / "python"
    unpack_runtime(runtime_archive, first)
    moved = tmp_path / "somewhere else" / "runtime"
    moved.parent.mkdir()
    os.rename(first, moved)
    python = runtime_python(moved, runtime_archive.platform, runtime_archive.version)

    proc = _run(
        python,
        f"import {MODULES}, sys, ssl; print(sys.prefix); print(ssl.OPENSSL_VERSION)",
        LD_DEBUG="libs",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == str(moved)
    original = os.path.realpath(interpreter_prefix())
    assert original + "/" not in proc.stderr  # LD_DEBUG: nothing loaded from there
    # libpython (when built shared) is loaded from the moved tree
    loaded = [
        line.split("calling init:", 1)[1].strip().split(" [")[0]
        for line in proc.stderr.splitlines()
        if "calling init:" in line
    ]
    libpython = [p for p in loaded if "libpython" in os.path.basename(p)]
    assert bool(libpython) == any(moved.glob("lib/libpython*.so*")), loaded
    for path in libpython:
        assert os.path.realpath(path).startswith(f"{moved}/lib/"), path

    # and a virtual environment made from it finds the moved runtime
    venv = tmp_path / "venv"
    made = subprocess.run(
        [str(python), "-I", "-m", "venv", "--without-pip", str(venv)],
        env=_proc.clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    check = _run(venv / "bin" / "python", "import sys, ssl; print(sys.base_prefix)")
    assert check.stdout.strip() == str(moved), check.stderr


def test_elf_files_are_relocatable_and_stripped(
    runtime_archive: RuntimeArchive, tmp_path: Path
) -> None:
    dest = tmp_path / "rt"
    unpack_runtime(runtime_archive, dest)
    patchelf = _find_patchelf()
    binary = dest / "bin" / f"python{MAJOR_MINOR}"
    elves = [binary, *dest.glob("lib/libpython*.so.*"), *dest.glob("lib/python*/lib-dynload/*.so")]
    for elf in elves:
        rpath = subprocess.run(
            [str(patchelf), "--print-rpath", str(elf)], capture_output=True, text=True, check=True
        ).stdout.strip()
        for entry in filter(None, rpath.split(":")):
            assert entry.startswith("$ORIGIN") or entry.startswith(("/lib", "/usr/lib")), (
                elf,
                rpath,
            )
    readelf = shutil.which("readelf")
    if readelf is None or shutil.which("strip") is None:
        pytest.skip("binutils not installed")
    sections = subprocess.run(
        [readelf, "-S", "--wide", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    assert ".debug_info" not in sections


# --------------------------------------------------------------------------- the fixtures


def test_runtime_cache_resolves_offline(
    runtime_cache: RuntimeCache, runtime_archive: RuntimeArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert os.environ["VENVLAYERS_CACHE_DIR"] == str(runtime_cache.cache_dir)
    assert runtime_cache.name == f"cpython@{VERSION}"

    def no_network(*args: object, **kwargs: object) -> int:
        raise AssertionError("the network was used")

    monkeypatch.setattr(HttpClient, "download", no_network)
    found = obtain_runtime("cpython", VERSION, build_platform())
    assert found.sha256 == runtime_archive.sha256
    assert found.path.parent.parent == runtime_cache.cache_dir / "runtimes"
    assert [c.runtime.sha256 for c in list_runtimes()] == [runtime_archive.sha256]


def test_runtime_cache_dir_is_shared(runtime_cache_dir: RuntimeCache) -> None:
    assert runtime_cache_dir.env == {"VENVLAYERS_CACHE_DIR": str(runtime_cache_dir.cache_dir)}
    assert runtime_cache_dir.runtime.path.is_relative_to(runtime_cache_dir.cache_dir)


# --------------------------------------------------------------------------- refusals


def test_refuses_a_directory_without_python(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(RuntimeSourceError, match="no bin/python3 in it, so it is not a CPython"):
        import_runtime(tmp_path)
    with pytest.raises(RuntimeSourceError, match="not a directory"):
        import_runtime(tmp_path / "missing")
    assert _cache_is_clean()


def test_refuses_a_virtual_environment(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(RuntimeSourceError, match="is a virtual environment"):
        import_runtime(tmp_path)


def test_refuses_a_wrong_name(runtime_archive: RuntimeArchive) -> None:
    with pytest.raises(RuntimeSourceError, match=rf"holds cpython@{VERSION}, not cpython@3\.0\.1"):
        import_runtime(interpreter_prefix(), name="cpython@3.0.1")
    with pytest.raises(RuntimeSourceError, match="--name: runtime names look like"):
        import_runtime(interpreter_prefix(), name="python3")
    assert _cache_is_clean()


def test_refuses_a_runpath_outside_the_install(
    runtime_archive: RuntimeArchive, tmp_path: Path
) -> None:
    """A prefix whose interpreter also searches /opt/elsewhere/lib cannot be moved safely."""
    prefix = tmp_path / "prefix"
    unpack_runtime(runtime_archive, prefix)
    binary = prefix / "bin" / f"python{MAJOR_MINOR}"
    subprocess.run(
        [str(_find_patchelf()), "--set-rpath", "/opt/elsewhere/lib:$ORIGIN/../lib", str(binary)],
        check=True,
    )
    with pytest.raises(RuntimeSourceError) as info:
        import_runtime(prefix)
    message = str(info.value)
    assert message.startswith(f"cannot import {prefix} as a runtime:")
    assert f"bin/python{MAJOR_MINOR} loads libraries from /opt/elsewhere/lib" in message
    assert "\n" not in message
    assert _cache_is_clean()


def test_an_rpath_stays_an_rpath(runtime_archive: RuntimeArchive, tmp_path: Path) -> None:
    """DT_RPATH also applies to a file's dependencies: rewriting must not make it DT_RUNPATH."""
    prefix = tmp_path / "prefix"
    unpack_runtime(runtime_archive, prefix)
    binary = prefix / "bin" / f"python{MAJOR_MINOR}"
    subprocess.run(
        [str(_find_patchelf()), "--force-rpath", "--set-rpath", f"{prefix}/lib", str(binary)],
        check=True,
    )
    before = read_elf(binary)
    assert before is not None and before.rpath == (f"{prefix}/lib",) and before.runpath is None
    imported = import_runtime(prefix)
    dest = tmp_path / "unpacked"
    unpack_runtime(imported, dest)
    after = read_elf(dest / "bin" / f"python{MAJOR_MINOR}")
    assert after is not None
    assert after.rpath == ("$ORIGIN/../lib",)
    assert after.runpath is None


def test_cli_import_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runtime", "import", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot import {tmp_path / 'nothing'} as a runtime")
    assert err.count("\n") == 1


def test_verification_catches_a_copy_that_still_uses_the_old_prefix(
    runtime_archive: RuntimeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If RUNPATH rewriting were skipped, the LD_DEBUG check must refuse the result."""
    prefix = tmp_path / "prefix"
    unpack_runtime(runtime_archive, prefix)
    binary = prefix / "bin" / f"python{MAJOR_MINOR}"
    subprocess.run(
        [str(_find_patchelf()), "--set-rpath", str(prefix / "lib"), str(binary)], check=True
    )
    monkeypatch.setattr(runtime_import, "_rewrite_entry", lambda install, rel, entry: entry)
    with pytest.raises(RuntimeSourceError, match="still loads from the old location"):
        import_runtime(prefix)
    assert _cache_is_clean()


def test_other_systems_are_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_import.sys, "platform", "darwin")
    with pytest.raises(RuntimeSourceError, match="only supported on Linux so far"):
        import_runtime(tmp_path)
