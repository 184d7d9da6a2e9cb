"""Writing layer archives: reproducible bytes, round trips, atomic output, verification."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.support.archives import (
    CLAMP,
    LONG_NAME,
    OLD,
    add_bulk,
    copy_tree,
    make_tree,
    set_mtimes,
)
from tests.support.reporting import RecordingReporter
from venvlayers.archives import (
    DEFAULT_FORMAT,
    ArchiveFormat,
    ManifestEntry,
    archive as archives,
    cleanup_partials,
    default_level,
    extract_archive,
    hash_installed_tree,
    verify_file,
    verify_tree,
    write as _archive_write,
    write_archive,
)
from venvlayers.errors import ArchiveError

ALL_FORMATS = list(ArchiveFormat)
TAR_FORMATS = [f for f in ArchiveFormat if f is not ArchiveFormat.ZIP]


def publish(
    src: Path, out_dir: Path, fmt: ArchiveFormat, *, name: str = "layer", **kwargs: Any
) -> archives.ArchiveInfo:
    kwargs.setdefault("clamp_mtime", CLAMP)
    kwargs.setdefault("level", 1 if fmt is not ArchiveFormat.TAR_XZ else 0)
    return write_archive(src, out_dir / f"{name}.{fmt.value}", root_name=name, fmt=fmt, **kwargs)


def open_tar(path: Path) -> tarfile.TarFile:
    """A tar reader for our formats, zst included (tarfile before 3.14 has no zstd)."""
    if path.name.endswith(".zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(
            path.open("rb"), read_across_frames=True
        )
        return tarfile.open(fileobj=reader, mode="r|")
    return tarfile.open(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "build-a" / "env")


# -- reproducibility --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_same_content_elsewhere_gives_identical_bytes(
    fmt: ArchiveFormat, tree: Path, tmp_path: Path
) -> None:
    other = copy_tree(tree, tmp_path / "build-b" / "somewhere-else")
    set_mtimes(other, time.time())  # a fresh build: everything newer than the clamp
    set_mtimes(tree, CLAMP + 10)
    for path in [other, *other.rglob("*")]:  # a different umask
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod((mode | 0o020) if path.is_dir() or mode & 0o100 else 0o664)
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # and another owner, if we may
            os.chown(path, 1234, 5678, follow_symlinks=False)
    first = publish(tree, tmp_path / "out-a", fmt)
    old = os.umask(0o077)
    try:
        second = publish(other, tmp_path / "out-b", fmt)
    finally:
        os.umask(old)
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_thread_count_does_not_change_the_bytes(
    fmt: ArchiveFormat, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks so that even this tree is compressed as many parallel pieces.
    monkeypatch.setattr(archives, "_XZ_CHUNK", 256 * 1024)
    monkeypatch.setattr(archives, "_DEFLATE_CHUNK", 64 * 1024)
    add_bulk(tree, 6)
    digests = {publish(tree, tmp_path / f"t{n}", fmt, threads=n).sha256 for n in (1, 2, 5)}
    assert len(digests) == 1


def test_archive_info_matches_the_file(tree: Path, tmp_path: Path) -> None:
    info = publish(tree, tmp_path, ArchiveFormat.TAR_ZST)
    data = info.path.read_bytes()
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    verify_file(info.path, size=info.size, sha256=info.sha256)
    verify_file(info.path, size=info.size, sha256=f"sha256:{info.sha256}")


def test_tar_headers_are_normalised(tree: Path, tmp_path: Path) -> None:
    new = tree / "lib/pkg/new.py"
    new.write_text("x = 1\n")
    os.utime(new, (CLAMP + 1000, CLAMP + 1000))
    info = publish(tree, tmp_path, ArchiveFormat.TAR_GZ)
    with tarfile.open(info.path) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[0] == "layer"
    by_name = {m.name: m for m in members}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert "mtime" not in m.pax_headers and "atime" not in m.pax_headers
        assert 0 <= m.mtime <= CLAMP
    assert by_name["layer/lib/pkg/new.py"].mtime == CLAMP
    assert by_name["layer/lib/pkg/__init__.py"].mtime == OLD
    assert by_name["layer/lib/pkg/__init__.py"].mode == 0o644
    assert by_name["layer/bin/tool"].mode == 0o755
    assert by_name["layer/lib"].mode == 0o755
    assert by_name["layer/lib/current"].issym()
    assert by_name["layer/lib/current"].linkname == "pkg"
    # the first of the two names in sorted order holds the content
    hard = by_name["layer/lib/pkg/data-hardlink.bin"], by_name["layer/lib/pkg/data.bin"]
    assert hard[0].isreg() and hard[1].islnk()
    assert hard[1].linkname == "layer/lib/pkg/data-hardlink.bin"
    assert f"layer/{LONG_NAME}" in by_name


def test_gzip_header_has_no_name_and_no_time(tree: Path, tmp_path: Path) -> None:
    head = publish(tree, tmp_path, ArchiveFormat.TAR_GZ).path.read_bytes()[:10]
    assert head[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA flags
    assert head[4:8] == b"\0\0\0\0"


def test_zip_members_are_normalised(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ancient.txt").write_text("old\n")
    (src / "tool").write_text("#!/bin/sh\n")
    (src / "tool").chmod(0o700)
    (src / "link").symlink_to("tool")
    set_mtimes(src, 0)  # 1970: before anything zip can store
    info = publish(src, tmp_path, ArchiveFormat.ZIP, name="z")
    with zipfile.ZipFile(info.path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert list(infos) == sorted(infos)
        assert zf.testzip() is None
    assert list(infos) == ["z/", "z/ancient.txt", "z/link", "z/tool"]
    for i in infos.values():
        assert i.date_time == (1980, 1, 1, 0, 0, 0)
        assert i.create_system == 3
        assert not i.extra  # no timestamps or uid/gid extra fields
    assert infos["z/tool"].external_attr >> 16 == 0o100755
    assert infos["z/ancient.txt"].external_attr >> 16 == 0o100644
    assert infos["z/link"].external_attr >> 16 == 0o120777
    assert infos["z/"].external_attr >> 16 == 0o040755


def test_zip_dates_are_utc_and_clamped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.utime(src / "f", (time.time(), time.time()))
    info = publish(src, tmp_path, ArchiveFormat.ZIP, name="z")
    with zipfile.ZipFile(info.path) as zf:
        stamp = zf.getinfo("z/f").date_time
    clamped = time.gmtime(CLAMP)
    assert stamp == (*clamped[:5], clamped.tm_sec // 2 * 2)


def test_exclude_drops_paths_and_their_contents(tree: Path, tmp_path: Path) -> None:
    cache = tree / "lib/pkg/__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"pyc")
    (tree / "lib/pkg/stray.pyc").write_bytes(b"pyc")
    seen: list[str] = []

    def exclude(rel: str) -> bool:
        seen.append(rel)
        return rel.endswith((".pyc", "/__pycache__"))

    info = publish(tree, tmp_path, ArchiveFormat.TAR_GZ, exclude=exclude)
    with tarfile.open(info.path) as tf:
        names = tf.getnames()
    assert not [n for n in names if "pyc" in n]
    assert "lib/pkg/__pycache__" in seen
    assert "lib/pkg/__pycache__/x.cpython-311.pyc" not in seen  # not even looked at


# -- round trips ------------------------------------------------------------------------


def assert_same_tree(extracted: Path, original: Path) -> None:
    expected = hash_installed_tree(original)
    assert hash_installed_tree(extracted) == expected
    assert (extracted / "empty").is_dir()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_round_trip(fmt: ArchiveFormat, tree: Path, tmp_path: Path) -> None:
    (tree / "lib/pkg/__init__.py").chmod(0o600)  # becomes 0644: the archive normalises
    (tree / "bin/tool").chmod(0o700)  # becomes 0755
    info = publish(tree, tmp_path, fmt)
    dest = tmp_path / "deploy"
    dest.mkdir()
    result = extract_archive(info.path, dest, expected_root="layer")
    assert result.path == dest / "layer"
    assert result.root_name == "layer"
    (tree / "lib/pkg/__init__.py").chmod(0o644)
    (tree / "bin/tool").chmod(0o755)
    assert_same_tree(result.path, tree)
    assert result.manifest == hash_installed_tree(result.path)
    assert verify_tree(result.path, result.manifest) == []
    assert os.readlink(result.path / "lib/current") == "pkg"
    assert (result.path / "lib/pkg/sub/ünïcode.txt").read_text("utf-8") == "ü\n"
    assert os.stat(result.path / "lib/pkg/__init__.py").st_mtime == OLD
    assert stat_mode(result.path / "lib") == 0o755
    hard = [result.path / "lib/pkg/data.bin", result.path / "lib/pkg/data-hardlink.bin"]
    if fmt is ArchiveFormat.ZIP:
        assert not os.path.samefile(*hard)  # zip has no hard links: stored twice
    else:
        assert os.path.samefile(*hard)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_round_trip_of_multi_chunk_archives(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "_XZ_CHUNK", 256 * 1024)
    monkeypatch.setattr(archives, "_DEFLATE_CHUNK", 64 * 1024)
    add_bulk(tree, 3)
    for fmt in ALL_FORMATS:
        info = publish(tree, tmp_path / "out", fmt, threads=3)
        dest = tmp_path / f"deploy-{fmt.value}"
        dest.mkdir()
        extracted = extract_archive(info.path, dest).path
        assert_same_tree(extracted, tree)


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_GZ])
def test_tarfile_data_filter_accepts_our_archives(
    fmt: ArchiveFormat, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "_XZ_CHUNK", 256 * 1024)  # several concatenated xz streams
    add_bulk(tree, 1)
    info = publish(tree, tmp_path, fmt)
    with tarfile.open(info.path, mode=f"r:{fmt.value[4:]}") as tf:
        tf.extractall(tmp_path / "x", filter="data")
    assert_same_tree(tmp_path / "x/layer", tree)


def test_tarfile_data_filter_accepts_our_zst_archives(tree: Path, tmp_path: Path) -> None:
    info = publish(tree, tmp_path, ArchiveFormat.TAR_ZST)
    with open_tar(info.path) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    assert_same_tree(tmp_path / "x/layer", tree)


def test_zst_archives_are_one_frame(tree: Path, tmp_path: Path) -> None:
    # A single frame also works with readers that stop after the first one.
    info = publish(tree, tmp_path, ArchiveFormat.TAR_ZST)
    reader = zstandard.ZstdDecompressor().stream_reader(info.path.open("rb"))
    with tarfile.open(fileobj=reader, mode="r|") as tf:
        assert any(m.name == "layer/bin/tool" for m in tf)


_CLI_CHECKS: dict[ArchiveFormat, list[list[str]]] = {
    ArchiveFormat.TAR_XZ: [["xz", "-t"], ["tar", "-xJf"]],
    ArchiveFormat.TAR_GZ: [["gzip", "-t"], ["tar", "-xzf"]],
    ArchiveFormat.TAR_ZST: [["zstd", "-q", "-t"], ["tar", "--zstd", "-xf"]],
    ArchiveFormat.ZIP: [["unzip", "-tq"], ["unzip", "-q"]],
}


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_command_line_tools_read_our_archives(
    fmt: ArchiveFormat, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "_XZ_CHUNK", 256 * 1024)
    monkeypatch.setattr(archives, "_DEFLATE_CHUNK", 64 * 1024)
    add_bulk(tree, 1)
    info = publish(tree, tmp_path, fmt, threads=2)
    check, extract = _CLI_CHECKS[fmt]
    if not shutil.which(check[0]) or not shutil.which(extract[0]):
        pytest.skip(f"{check[0]} or {extract[0]} is not installed")
    subprocess.run([*check, str(info.path)], check=True, capture_output=True)
    out = tmp_path / "cli"
    out.mkdir()
    proc = subprocess.run([*extract, str(info.path)], cwd=out, capture_output=True, text=True)
    if proc.returncode and "zstd" in proc.stderr:
        pytest.skip(f"this tar cannot run zstd: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert_same_tree(out / "layer", tree)


# -- refusing to write ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "target", "reason"),
    [
        ("abs", "/usr/bin/python3", "absolute link target"),
        ("lib/up", "../../outside", "points outside the tree"),
    ],
)
def test_links_leaving_the_tree_are_refused(
    tree: Path, tmp_path: Path, link: str, target: str, reason: str
) -> None:
    (tree / link).symlink_to(target)
    with pytest.raises(ArchiveError, match=reason) as caught:
        publish(tree, tmp_path / "out", ArchiveFormat.TAR_ZST)
    assert str(tree / link) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_link_escaping_through_another_link_is_refused(tree: Path, tmp_path: Path) -> None:
    # Textually "deep/er/hop/.." is "deep/er", but hop goes up two levels first.
    (tree / "deep/er").mkdir(parents=True)
    (tree / "deep/er/hop").symlink_to("../..")
    (tree / "sneaky").symlink_to("deep/er/hop/..")
    with pytest.raises(ArchiveError, match=r"sneaky.*outside the tree"):
        publish(tree, tmp_path, ArchiveFormat.TAR_GZ)


def test_special_files_are_refused(tree: Path, tmp_path: Path) -> None:
    os.mkfifo(tree / "lib/queue")
    with pytest.raises(ArchiveError, match=r"lib/queue: it is a fifo"):
        publish(tree, tmp_path, ArchiveFormat.TAR_GZ)


def test_bad_parameters_are_refused(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="top folder name"):
        publish(tree, tmp_path, ArchiveFormat.ZIP, name="../x")
    with pytest.raises(ArchiveError, match=r"level 30 is not valid for tar\.zst"):
        publish(tree, tmp_path, ArchiveFormat.TAR_ZST, level=30)
    with pytest.raises(ArchiveError, match="not a directory"):
        publish(tree / "bin/tool", tmp_path, ArchiveFormat.ZIP)
    assert not list(tmp_path.glob("layer*"))


def test_defaults() -> None:
    assert DEFAULT_FORMAT is ArchiveFormat.TAR_ZST
    assert default_level(ArchiveFormat.TAR_XZ) == 6
    assert ArchiveFormat.from_path(Path("a/app@1.tar.zst")) is ArchiveFormat.TAR_ZST
    assert ArchiveFormat.from_path(Path("x.TGZ")) is ArchiveFormat.TAR_GZ
    assert ArchiveFormat.from_path(Path("x.tar")) is None


# -- atomic output ----------------------------------------------------------------------


def failing_after(calls: int, error: BaseException) -> Callable[..., None]:
    real = _archive_write._read_file
    count = 0

    def read_file(*args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        if count > calls:
            raise error
        real(*args, **kwargs)

    return read_file


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_ZST, ArchiveFormat.ZIP])
def test_interrupted_write_leaves_nothing_that_looks_complete(
    fmt: ArchiveFormat,
    error: BaseException,
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    previous = publish(tree, out, fmt)
    before = previous.path.read_bytes()
    (tree / "bin/new-tool").write_text("changed\n")
    monkeypatch.setattr(_archive_write, "_read_file", failing_after(2, error))
    with pytest.raises(type(error)):
        publish(tree, out, fmt)
    assert previous.path.read_bytes() == before  # the old archive is untouched
    assert sorted(p.name for p in out.iterdir()) == [previous.path.name]


def test_cleanup_partials_removes_only_abandoned_files(tmp_path: Path) -> None:
    stale = tmp_path / ".app.tar.zst.partial-123-abcd"
    stale.write_bytes(b"half an archive")
    keep = tmp_path / "app.tar.zst"
    keep.write_bytes(b"a finished archive")
    in_use = archives._PartialFile(tmp_path / "other.tar.zst")
    try:
        assert cleanup_partials(tmp_path) == [stale]
        assert in_use.tmp.exists()
    finally:
        in_use.__exit__(None, None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.tar.zst"]


def test_disk_full_while_writing(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archives._PartialFile, "write", full)
    with pytest.raises(ArchiveError, match=r"disk full while writing archive .*layer\.tar\.gz"):
        publish(tree, tmp_path / "out", ArchiveFormat.TAR_GZ)
    assert not list((tmp_path / "out").iterdir())


def test_file_changing_while_read_is_an_error(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_scan = _archive_write.scan_tree

    def scan_then_grow(*args: Any, **kwargs: Any) -> list[_archive_write.SourceEntry]:
        entries = real_scan(*args, **kwargs)
        with (tree / "lib/pkg/__init__.py").open("a") as f:
            f.write("# appended\n")
        return entries

    monkeypatch.setattr(archives, "scan_tree", scan_then_grow)
    with pytest.raises(ArchiveError, match=r"__init__\.py: the file changed while"):
        publish(tree, tmp_path, ArchiveFormat.TAR_ZST)


def test_progress_counts_bytes_read(tree: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    publish(tree, tmp_path, ArchiveFormat.TAR_XZ, reporter=reporter, report_key="app")
    total = sum(
        p.stat().st_size
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != "data-hardlink.bin"
    )
    assert reporter.events[0] == ("begin", "app", total)
    assert sum(int(str(e[2])) for e in reporter.events if e[0] == "advance") == total
    assert reporter.events[-1] == ("end", "app", "done")


# -- verification -----------------------------------------------------------------------


def test_verify_file_reports_size_then_hash(tree: Path, tmp_path: Path) -> None:
    info = publish(tree, tmp_path, ArchiveFormat.TAR_GZ)
    with pytest.raises(ArchiveError, match=rf"wrong size: {info.size} bytes, expected 12"):
        verify_file(info.path, size=12, sha256=info.sha256)
    data = bytearray(info.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    info.path.write_bytes(bytes(data))
    with pytest.raises(
        ArchiveError, match=rf"wrong sha256: [0-9a-f]{{64}}, expected {info.sha256}"
    ):
        verify_file(info.path, size=info.size, sha256=info.sha256)
    with pytest.raises(ArchiveError, match="cannot read archive"):
        verify_file(tmp_path / "missing.zip", size=1, sha256=info.sha256)


def test_verify_tree_names_every_difference(tree: Path, tmp_path: Path) -> None:
    info = publish(tree, tmp_path, ArchiveFormat.TAR_ZST)
    dest = tmp_path / "deploy"
    dest.mkdir()
    layer = extract_archive(info.path, dest)
    root = layer.path
    (root / "lib/pkg/__init__.py").write_text("VALUE = 2\n")  # same size, new content
    (root / "lib/pkg/empty.txt").write_text("now longer")
    (root / "bin/tool").chmod(0o644)
    (root / "lib/pkg/data.bin").unlink()
    (root / "lib/current").unlink()
    (root / "lib/current").symlink_to("pkg/sub")
    (root / "extra.txt").write_text("new")
    (root / "lib/pkg/__pycache__").mkdir()
    (root / "lib/pkg/__pycache__/x.pyc").write_bytes(b"")

    problems = verify_tree(root, layer.manifest, exclude=lambda rel: rel.endswith("__pycache__"))
    assert problems == [
        "file changed: lib/pkg/__init__.py has different content",
        "file changed: lib/pkg/empty.txt has 10 bytes, expected 0",
        "missing file: lib/pkg/data.bin",
        "mode changed: bin/tool is 0644, expected 0755",
        "symlink changed: lib/current -> pkg/sub (expected -> pkg)",
        "unexpected file: extra.txt",
    ]
    assert "unexpected file: extra.txt" not in verify_tree(root, layer.manifest, allow_extra=True)


def test_manifest_entries_round_trip_through_json(tree: Path) -> None:
    import json

    entries = hash_installed_tree(tree)
    text = json.dumps([e.to_dict() for e in entries])
    assert tuple(ManifestEntry.from_dict(d) for d in json.loads(text)) == entries
    with pytest.raises(ArchiveError, match="malformed manifest entry"):
        ManifestEntry.from_dict({"path": "x", "kind": "file"})


def test_byte_stream_of_a_fixed_tree_is_stable(tmp_path: Path) -> None:
    """Pins the uncompressed tar layout: a change here breaks reproducibility promises."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a/f.txt").write_text("hello\n")
    (src / "a/link").symlink_to("f.txt")
    set_mtimes(src, OLD)
    entries = _archive_write.scan_tree(src, clamp_mtime=CLAMP, exclude=None)
    stream = io.BytesIO()
    _archive_write.write_tar(entries, src, "root", stream.write, lambda n: None)
    digest = hashlib.sha256(stream.getvalue()).hexdigest()
    assert len(stream.getvalue()) == 10240
    assert digest == "f5611ddd77298185838024058c0b15cedd5e9b0438473bf0e4ef82508e64db64"


# -- ZIP64 ------------------------------------------------------------------------------


def test_zip64_members(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the 16 KiB data file is past the 4 GiB limit: it gets ZIP64 sizes.
    monkeypatch.setattr(_archive_write, "_ZIP64_MEMBER", 10_000)
    info = publish(tree, tmp_path, ArchiveFormat.ZIP)
    with zipfile.ZipFile(info.path) as zf:
        assert zf.testzip() is None
        assert zf.getinfo("layer/lib/pkg/data.bin").extra[:2] == b"\x01\x00"
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(info.path)], check=True, capture_output=True)
    dest = tmp_path / "deploy"
    dest.mkdir()
    assert_same_tree(extract_archive(info.path, dest).path, tree)


def test_zip64_end_records_for_many_entries(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from venvlayers.archives.codecs import OrderedOutput

    count = 0x10000 + 5  # more than the classic end record can count
    entries = [_archive_write.SourceEntry("", "dir", 0o755, CLAMP)] + [
        _archive_write.SourceEntry(f"d{i:05d}", "dir", 0o755, CLAMP) for i in range(count)
    ]
    sink = io.BytesIO()
    with ThreadPoolExecutor(1) as pool:
        out = OrderedOutput(sink.write, max_pending=2)
        writer = _archive_write.ZipStreamWriter(out, pool=pool, level=1, piece_size=1 << 20)
        for entry in entries:
            writer.add(entry, tmp_path, "many", lambda n: None)
        writer.finish()
        out.flush()
    with zipfile.ZipFile(io.BytesIO(sink.getvalue())) as zf:
        names = zf.namelist()
    assert len(names) == count + 1
    assert names[-1] == f"many/d{count - 1:05d}/"


def test_killed_writer_leaves_only_a_recognisable_partial_file(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    add_bulk(tree, 8)  # several seconds of xz -6 on one thread
    out = tmp_path / "out"
    script = (
        "import sys; from pathlib import Path; from venvlayers.archives import *\n"
        "write_archive(Path(sys.argv[1]), Path(sys.argv[2]), root_name='layer',"
        " fmt=ArchiveFormat.TAR_XZ, level=6, clamp_mtime=0, threads=1)\n"
    )
    dest = out / "layer.tar.xz"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tree), str(dest)])
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and list(out.glob(".*"))):
            assert proc.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        assert proc.poll() is None, "the writer finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not dest.exists()
    (partial,) = out.iterdir()
    assert partial.name.startswith(".layer.tar.xz.partial-")
    assert cleanup_partials(out) == [partial]
    assert not list(out.iterdir())
