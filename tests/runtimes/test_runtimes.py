"""Obtaining runtimes without the network: a local HTTP server, file mirrors, the cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.httpd import serving
from tests.support.reporting import RecordingReporter
from venvlayers._util.cache import cache_root
from venvlayers._util.http import TIMEOUT_ENV
from venvlayers.cli import main
from venvlayers.errors import RuntimeSourceError
from venvlayers.platforms import TargetPlatform
from venvlayers.runtimes import (
    MIRROR_ENV,
    add_runtime_archive,
    list_runtimes,
    obtain_runtime,
    parse_runtime_name,
    pbs as _pbs,
    prune_runtimes,
    runtime_python,
    runtime_python_relpath,
    runtimes_dir,
    unpack_runtime,
)

PLATFORM = TargetPlatform.LINUX_X86_64
FILENAME = "cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz"


def _fake_pbs_archive(marker: str = "") -> bytes:
    """A tiny tar.gz in the python-build-standalone layout (not a working Python)."""
    # incompressible filler, so the archive is large enough to be cut in the middle
    filler = b"".join(hashlib.sha256(f"{marker}{i}".encode()).digest() for i in range(2000))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (
            ("python/bin/python3.11", b"#!/bin/sh\necho fake\n"),
            ("python/lib/python3.11/os.py", filler),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("python/bin/python3")
        link.type = tarfile.SYMTYPE
        link.linkname = "python3.11"
        tf.addfile(link)
    return buf.getvalue()


ARCHIVE = _fake_pbs_archive()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


@dataclass
class Server:
    """A local HTTP server whose paths choose a behaviour: ok, truncated, stall, ..."""

    url: str
    hits: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[Server]:
    state: Server

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.hits.append(self.path)
            mode = self.path.split("/")[1]
            if mode == "missing":
                self.send_error(404, "Not Found")
                return
            if mode == "stall-headers":
                state.release.wait(10)
                return
            body = _fake_pbs_archive("other") if mode == "wronghash" else ARCHIVE
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "truncated":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if mode == "stall-body":
                self.wfile.write(body[:1000])
                self.wfile.flush()
                state.release.wait(10)
                return
            self.wfile.write(body)

    with serving(Handler) as url:
        state = Server(url)
        try:
            yield state
        finally:
            state.release.set()  # a handler stalled on purpose ends before the server


def _point_table_at(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str = SHA256) -> None:
    """Make pbs-installer's table answer cpython 3.11.7 with `url`."""

    def fake(implementation: str, version: str, os_name: str, arch: str) -> tuple[str, str, str]:
        if (implementation, os_name, arch) != ("cpython", "linux", "x86_64") or not (
            "3.11.7".startswith(version)
        ):
            raise ValueError("not in the fake table")
        return "3.11.7", url, sha256

    monkeypatch.setattr(_pbs, "_download_link", fake)


def _cache_is_clean() -> bool:
    root = runtimes_dir()
    return not root.exists() or not any(root.iterdir())


# --------------------------------------------------------------------------- names, table


def test_parse_runtime_name() -> None:
    assert parse_runtime_name("cpython@3.11.7") == ("cpython", "3.11.7")
    assert parse_runtime_name("pypy@3.10") == ("pypy", "3.10")
    for bad in ("cpython-3.11", "jython@2.7", "cpython@3", "cpython@latest", "@3.11"):
        with pytest.raises(ValueError, match="runtime names look like"):
            parse_runtime_name(bad)


@pytest.mark.parametrize("platform", TargetPlatform.all())
def test_table_resolves_every_target_platform(platform: TargetPlatform) -> None:
    release = _pbs.find_release("cpython", "3.12", platform)
    assert release.version.startswith("3.12.")
    assert release.url.startswith("https://")
    assert platform.pbs_triple in release.filename
    assert "install_only" in release.filename
    assert release.sha256 is not None and len(release.sha256) == 64
    # pbs-installer's table records no sizes: the size is checked while downloading
    assert release.size is None


def test_table_exact_version_and_unknown_version() -> None:
    release = _pbs.find_release("cpython", "3.11.7", TargetPlatform.MACOS_ARM64)
    assert release.version == "3.11.7"
    assert release.filename.startswith("cpython-3.11.7+")
    with pytest.raises(RuntimeSourceError, match=r"no python-build-standalone release of "):
        _pbs.find_release("cpython", "3.99.1", PLATFORM)


def test_runtime_python_paths(tmp_path: Path) -> None:
    assert runtime_python(tmp_path, PLATFORM, "3.11.7") == tmp_path / "bin" / "python3.11"
    assert runtime_python_relpath(TargetPlatform.WIN_AMD64, "3.12.1") == "python.exe"
    assert runtime_python_relpath(TargetPlatform.MACOS_ARM64, "3.13") == "bin/python3.13"


# --------------------------------------------------------------------------- downloads


def test_download_verifies_and_caches(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_table_at(monkeypatch, f"{server.url}/ok/{FILENAME}")
    reporter = RecordingReporter()
    runtime = obtain_runtime("cpython", "3.11.7", PLATFORM, reporter=reporter)
    assert runtime.sha256 == SHA256
    assert runtime.size == len(ARCHIVE)
    assert runtime.source == "download"
    assert runtime.path == runtimes_dir() / SHA256 / FILENAME
    assert runtime.path.read_bytes() == ARCHIVE
    assert reporter.without_keys()[0] == ("begin", len(ARCHIVE))
    assert reporter.without_keys()[-1] == ("end", "done")
    record = json.loads((runtimes_dir() / SHA256 / "runtime.json").read_text())
    assert record["origin"] == f"{server.url}/ok/{FILENAME}"
    assert [p.name for p in runtimes_dir().iterdir()] == [SHA256]  # no temp files

    # the second use needs no network: the server is not asked again
    again = obtain_runtime("cpython", "3.11.7", PLATFORM)
    assert again == runtime
    assert len(server.hits) == 1
    # a partial version resolves through the table, then to the cache
    assert obtain_runtime("cpython", "3.11", PLATFORM) == runtime
    assert len(server.hits) == 1


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("missing", r"HTTP 404 Not Found"),
        ("truncated", r"(cut off after \d+ of \d+ bytes|truncated)"),
        ("wronghash", r"does not match its sha256 \(got [0-9a-f]{64}"),
        ("stall-headers", r"no data for 0\.5s"),
        ("stall-body", r"no data for 0\.5s after 1000 bytes"),
    ],
)
def test_download_failures_leave_the_cache_clean(
    server: Server, monkeypatch: pytest.MonkeyPatch, mode: str, message: str
) -> None:
    url = f"{server.url}/{mode}/{FILENAME}"
    _point_table_at(monkeypatch, url)
    started = time.monotonic()
    with pytest.raises(RuntimeSourceError, match=message) as info:
        obtain_runtime("cpython", "3.11.7", PLATFORM, timeout=0.5)
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert "\n" not in text
    assert url in text
    assert f"{FILENAME} with sha256 {SHA256}" in text
    assert MIRROR_ENV in text and "venvlayers runtime import" in text
    assert _cache_is_clean()
    assert list_runtimes() == []


def test_download_timeout_from_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_table_at(monkeypatch, f"{server.url}/stall-headers/{FILENAME}")
    monkeypatch.setenv(TIMEOUT_ENV, "0.3")
    with pytest.raises(RuntimeSourceError, match=r"no data for 0\.3s"):
        obtain_runtime("cpython", "3.11.7", PLATFORM)
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(RuntimeSourceError, match="is not a number of seconds"):
        obtain_runtime("cpython", "3.11.7", PLATFORM)


def test_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _point_table_at(monkeypatch, f"http://127.0.0.1:9/ok/{FILENAME}")
    with pytest.raises(RuntimeSourceError, match=r"cannot download http://127\.0\.0\.1:9/"):
        obtain_runtime("cpython", "3.11.7", PLATFORM, timeout=2)
    assert _cache_is_clean()


def test_no_sha256_in_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _pbs, "_download_link", lambda *a: ("3.11.7", f"https://example.invalid/{FILENAME}", None)
    )
    with pytest.raises(RuntimeSourceError, match="has no sha256"):
        obtain_runtime("cpython", "3.11.7", PLATFORM)


# --------------------------------------------------------------------------- mirrors


def test_mirror_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_table_at(monkeypatch, f"https://example.invalid/{FILENAME}")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(
        RuntimeSourceError, match=re.escape(f"put {FILENAME} into the mirror")
    ) as info:
        obtain_runtime("cpython", "3.11.7", PLATFORM)
    assert SHA256 in str(info.value)
    assert _cache_is_clean()

    (mirror / FILENAME).write_bytes(ARCHIVE)
    runtime = obtain_runtime("cpython", "3.11.7", PLATFORM)
    assert runtime.source == "mirror"
    assert runtime.sha256 == SHA256

    # a mirror file with other content is refused
    monkeypatch.setenv("VENVLAYERS_CACHE_DIR", str(tmp_path / "other-cache"))
    (mirror / FILENAME).write_bytes(_fake_pbs_archive("tampered"))
    with pytest.raises(RuntimeSourceError, match="does not match its sha256"):
        obtain_runtime("cpython", "3.11.7", PLATFORM)
    assert _cache_is_clean()


def test_mirror_url(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_table_at(monkeypatch, f"https://example.invalid/{FILENAME}")
    monkeypatch.setenv(MIRROR_ENV, f"{server.url}/ok/")
    runtime = obtain_runtime("cpython", "3.11.7", PLATFORM)
    assert runtime.source == "mirror"
    assert server.hits == [f"/ok/{FILENAME.replace('+', '%2B')}"]


# --------------------------------------------------------------------------- explicit


def test_explicit_archive_path(tmp_path: Path) -> None:
    spec_dir = tmp_path / "project"
    (spec_dir / "runtimes").mkdir(parents=True)
    (spec_dir / "runtimes" / FILENAME).write_bytes(ARCHIVE)
    runtime = obtain_runtime(
        "cpython",
        "3.11.7",
        PLATFORM,
        archive=f"runtimes/{FILENAME}",
        archive_sha256=f"sha256:{SHA256.upper()}",
        spec_dir=spec_dir,
    )
    assert runtime.source == "archive"
    assert runtime.path == spec_dir / "runtimes" / FILENAME

    with pytest.raises(RuntimeSourceError, match="needs python_archive_sha256"):
        obtain_runtime("cpython", "3.11.7", PLATFORM, archive=FILENAME, spec_dir=spec_dir)
    with pytest.raises(RuntimeSourceError, match="must be 64 hex digits"):
        obtain_runtime("cpython", "3.11.7", PLATFORM, archive=FILENAME, archive_sha256="abc")
    with pytest.raises(
        RuntimeSourceError, match=rf"does not exist \(expected a file with sha256 {SHA256}"
    ):
        obtain_runtime(
            "cpython",
            "3.11.7",
            PLATFORM,
            archive="nope.tar.gz",
            archive_sha256=SHA256,
            spec_dir=spec_dir,
        )
    with pytest.raises(RuntimeSourceError, match=rf"has sha256 {SHA256}, but the spec expects"):
        obtain_runtime(
            "cpython",
            "3.11.7",
            PLATFORM,
            archive=f"runtimes/{FILENAME}",
            archive_sha256="0" * 64,
            spec_dir=spec_dir,
        )


def test_explicit_archive_url_is_cached(server: Server) -> None:
    url = f"{server.url}/ok/{FILENAME}"
    runtime = obtain_runtime("cpython", "3.11.7", PLATFORM, archive=url, archive_sha256=SHA256)
    assert runtime.source == "archive"
    assert runtime.path.parent == runtimes_dir() / SHA256
    assert (
        obtain_runtime("cpython", "3.11.7", PLATFORM, archive=url, archive_sha256=SHA256) == runtime
    )
    assert len(server.hits) == 1
    with pytest.raises(RuntimeSourceError, match="HTTP 404"):
        obtain_runtime(
            "cpython",
            "3.11.7",
            PLATFORM,
            archive=f"{server.url}/missing/x.tar.gz",
            archive_sha256="1" * 64,
        )


# --------------------------------------------------------------------------- cache


def _seed(tmp_path: Path, marker: str, version: str = "3.11.7") -> str:
    path = tmp_path / f"{marker}.tar.gz"
    path.write_bytes(_fake_pbs_archive(marker))
    return add_runtime_archive(
        path, implementation="cpython", version=version, platform=PLATFORM, source="import"
    ).sha256


def test_newest_cached_runtime_wins_and_prune_keeps_it(tmp_path: Path) -> None:
    old = _seed(tmp_path, "old")
    new = _seed(tmp_path, "new")
    other = _seed(tmp_path, "other", "3.12.1")
    assert obtain_runtime("cpython", "3.11.7", PLATFORM).sha256 == new
    leftover = runtimes_dir() / ".tmp-leftover"
    leftover.mkdir()
    (leftover / "part").write_bytes(b"x" * 10)
    fresh = runtimes_dir() / ".tmp-running"
    fresh.mkdir()
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))

    dry = prune_runtimes(dry_run=True)
    assert [c.runtime.sha256 for c in dry.removed] == [old]
    assert dry.leftovers == (leftover,)
    assert (runtimes_dir() / old).exists() and leftover.exists()

    result = prune_runtimes()
    assert [c.runtime.sha256 for c in result.removed] == [old]
    assert {c.runtime.sha256 for c in result.kept} == {new, other}
    assert not (runtimes_dir() / old).exists() and not leftover.exists()
    assert fresh.exists()  # may belong to a download still running

    result = prune_runtimes(["cpython@3.12.1"], everything=True)
    assert [c.runtime.sha256 for c in result.removed] == [new]
    assert [c.runtime.sha256 for c in list_runtimes()] == [other]


def test_broken_cache_entries_are_ignored_and_pruned(tmp_path: Path) -> None:
    sha = _seed(tmp_path, "a")
    entry = runtimes_dir() / sha
    archive = next(p for p in entry.iterdir() if p.name.endswith(".tar.gz"))
    archive.write_bytes(archive.read_bytes()[:100])  # truncated behind our back
    assert list_runtimes() == []
    with pytest.raises(RuntimeSourceError):
        obtain_runtime("cpython", "3.99.1", PLATFORM)
    assert prune_runtimes().leftovers == (entry,)
    assert _cache_is_clean()


def test_cache_root_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENVLAYERS_CACHE_DIR", str(tmp_path / "c"))
    assert runtimes_dir() == tmp_path / "c" / "runtimes"
    assert cache_root() == tmp_path / "c"


# --------------------------------------------------------------------------- unpacking


def test_unpack_runtime_makes_python_dir_the_destination(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(ARCHIVE)
    dest = tmp_path / "rt"
    unpack_runtime(path, dest)
    assert (dest / "bin" / "python3.11").is_file()
    assert os.readlink(dest / "bin" / "python3") == "python3.11"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([FILENAME, "rt"])
    with pytest.raises(RuntimeSourceError, match="already exists"):
        unpack_runtime(path, dest)


def _tar(members: list[tarfile.TarInfo], path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["traversal", "absolute-link", "two-tops"])
def test_unpack_refuses_unsafe_archives(tmp_path: Path, kind: str) -> None:
    members = [tarfile.TarInfo("python/bin/python3.11")]
    members[0].size = 1
    if kind == "traversal":
        evil = tarfile.TarInfo("python/../../evil")
        evil.size = 1
        members.append(evil)
    elif kind == "absolute-link":
        link = tarfile.TarInfo("python/lib/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        members.append(link)
    else:
        other = tarfile.TarInfo("other/file")
        other.size = 1
        members.append(other)
    archive = _tar(members, tmp_path / "bad.tar.gz")
    dest = tmp_path / "out" / "rt"
    with pytest.raises(RuntimeSourceError, match=str(archive)):
        unpack_runtime(archive, dest)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_fetch_list_prune(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _point_table_at(monkeypatch, f"{server.url}/ok/{FILENAME}")
    assert main(["runtime", "fetch", "cpython@3.11.7", "--platform", "linux_x86_64", "--json"]) == 0
    fetched = json.loads(capsys.readouterr().out)
    assert fetched["sha256"] == SHA256 and fetched["source"] == "download"

    assert main(["runtime", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["cpython@3.11.7"]

    assert main(["runtime", "list"]) == 0
    out = capsys.readouterr().out
    assert "cpython@3.11.7" in out and SHA256[:12] in out and "download" in out

    assert main(["runtime", "prune", "--all", "--dry-run"]) == 0
    assert "would remove cpython@3.11.7" in capsys.readouterr().out
    assert main(["runtime", "prune", "--all"]) == 0
    assert "removed 1 runtime(s)" in capsys.readouterr().out
    assert main(["runtime", "list"]) == 0
    assert "no runtimes cached" in capsys.readouterr().out


def test_cli_errors_are_one_line(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _point_table_at(monkeypatch, f"{server.url}/missing/{FILENAME}")
    assert main(["runtime", "fetch", "cpython@3.11.7", "--platform", "linux_x86_64"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download") and err.count("\n") == 1
    assert main(["runtime", "fetch", "cpython-3.11"]) == 2
    assert main(["runtime", "prune", "--keep", "nonsense"]) == 1
    assert "--keep 'nonsense'" in capsys.readouterr().err
