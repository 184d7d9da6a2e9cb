"""Reading archives we did not write: hostile, damaged or cut short, and full disks."""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import CLAMP, add_bulk, make_tree, tar_member, write_tar, write_zip
from venvlayers.archives import (
    ArchiveFormat,
    archive as archives,
    extract as _archive_extract,
    extract_archive,
    write_archive,
)
from venvlayers.errors import ArchiveError

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


def refused(archive: Path, dest: Path, **kwargs: Any) -> str:
    """Extract expecting refusal; nothing may be left behind. Returns the message."""
    with pytest.raises(ArchiveError) as caught:
        extract_archive(archive, dest, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert str(archive) in message or archive.name in message
    assert list(dest.iterdir()) == []
    return message


def good_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        tar_member("top", DIR),
        tar_member("top/lib", DIR),
        tar_member("top/lib/a.py", data=b"a = 1\n"),
    ]


# -- hostile tar members ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (tar_member("top/../evil.txt", data=b"x"), r"member 'top/\.\./evil\.txt': '\.\.'"),
        (tar_member("/etc/evil", data=b"x"), r"member '/etc/evil': absolute path"),
        (tar_member("top/a\\..\\..\\b", data=b"x"), "backslash"),
        (tar_member("top/./x", data=b"x"), "empty or '.' path component"),
        (tar_member("top/link", SYM, linkname="/etc/passwd"), "link to an absolute path"),
        (tar_member("top/link", SYM, linkname="../../etc"), "rejected by the data filter"),
        (tar_member("top/lib/link", SYM, linkname="../../x"), "points outside the tree"),
        (tar_member("top/hard", LNK, linkname="/etc/passwd"), "rejected by the data filter"),
        (tar_member("top/hard", LNK, linkname="top/../../x"), "rejected by the data filter"),
        (tar_member("top/hard", LNK, linkname="top/missing"), "not an earlier regular file"),
        (tar_member("top/hard", LNK, linkname="top/lib"), "not an earlier regular file"),
        (tar_member("top/dev", tarfile.CHRTYPE), "a device file or fifo"),
        (tar_member("top/disk", tarfile.BLKTYPE), "a device file or fifo"),
        (tar_member("top/fifo", tarfile.FIFOTYPE), "a device file or fifo"),
        (tar_member("other/x.py", data=b"x"), "a second top folder besides 'top'"),
        (tar_member("loose.txt", data=b"x"), "top-level entry that is not a folder"),
        (tar_member("top/lib/a.py", data=b"again"), "duplicate or conflicting member"),
        (tar_member("top/lib", data=b"file over dir"), "duplicate or conflicting member"),
        (tar_member("top/lib/a.py/x", data=b"x"), "'top/lib/a.py' is a file, not a directory"),
    ],
)
@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst"])
def test_hostile_tar_members_are_refused(
    member: tuple[tarfile.TarInfo, bytes], reason: str, suffix: str, tmp_path: Path, dest: Path
) -> None:
    archive = write_tar(tmp_path / f"bad{suffix}", [*good_members(), member])
    message = refused(archive, dest)
    assert message.startswith(f"refusing to extract unsafe archive {archive}: member ")
    assert repr(member[0].name) in message
    assert _search(reason, message)


def _search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_names_from_pax_and_gnu_long_name_records_are_checked(tmp_path: Path, dest: Path) -> None:
    pax, data = tar_member("top/harmless", data=b"x")
    pax.pax_headers = {"path": "top/../../escape"}
    archive = write_tar(tmp_path / "pax.tar.gz", [*good_members(), (pax, data)])
    assert "member 'top/../../escape': '..' in member name" in refused(archive, dest)

    long = "top/" + "d" * 120 + "/../../x"
    archive = tmp_path / "gnu.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tf:
        info, _ = tar_member(long)
        tf.addfile(info)
    assert "'..' in member name" in refused(archive, dest)


def test_symlink_escaping_through_another_symlink_is_refused(tmp_path: Path, dest: Path) -> None:
    # "top/a/b/hop/.." reads as "top/a/b", but hop first climbs to "top", so the OS
    # resolves it to the directory above the layer.
    archive = write_tar(
        tmp_path / "chain.tar.xz",
        [
            tar_member("top", DIR),
            tar_member("top/a/b", DIR),
            tar_member("top/a/b/hop", SYM, linkname="../.."),
            tar_member("top/sneaky", SYM, linkname="a/b/hop/.."),
        ],
    )
    assert "'top/sneaky': symlink: link target 'a/b/hop/..' points outside" in refused(
        archive, dest
    )


def test_link_loops_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(
        tmp_path / "loop.tar.gz",
        [
            tar_member("top", DIR),
            tar_member("top/a", SYM, linkname="b"),
            tar_member("top/b", SYM, linkname="a"),
        ],
    )
    assert "too many levels of symbolic links" in refused(archive, dest)


@pytest.mark.parametrize(
    "members",
    [
        # a file written through a symlinked directory, in either order
        [("top/dir", SYM, "/tmp"), ("top/dir/x", REG, "")],
        [("top/dir/x", REG, ""), ("top/dir", SYM, "sub")],
        [("top/dir", SYM, "."), ("top/dir/x", REG, "")],
    ],
)
def test_nothing_is_written_through_a_symlink(
    members: list[tuple[str, bytes, str]], tmp_path: Path, dest: Path
) -> None:
    archive = write_tar(
        tmp_path / "through.tar.gz",
        [tar_member("top", DIR)]
        + [tar_member(n, k, b"x" if k == REG else b"", linkname=t) for n, k, t in members],
    )
    message = refused(archive, dest)
    assert "'top/dir'" in message or "top/dir/x" in message


def test_symlink_as_top_folder_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "t.tar.gz", [tar_member("top", SYM, linkname=".")])
    assert "top-level entry that is not a folder" in refused(archive, dest)


def test_wrong_top_folder_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "app.tar.gz", good_members())
    message = refused(archive, dest, expected_root="app")
    assert "top folder is 'top', expected 'app'" in message


def test_empty_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "empty.tar.gz", [])
    assert "truncated or corrupt: it contains no members" in refused(archive, dest)


def test_dest_must_be_empty(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "ok.tar.gz", good_members())
    (dest / "already-here").write_text("x")
    with pytest.raises(ArchiveError, match="is not empty"):
        extract_archive(archive, dest)


def test_hand_made_good_archive_is_accepted(tmp_path: Path, dest: Path) -> None:
    members = [
        *good_members(),
        tar_member("top/lib/link", SYM, linkname="a.py"),
        tar_member("top/lib/up", SYM, linkname=".."),
        tar_member("top/lib/hard", LNK, linkname="top/lib/a.py"),
        tar_member("top/bin/tool", data=b"#!", mode=0o4777),  # setuid and world-writable
    ]
    layer = extract_archive(write_tar(tmp_path / "ok.tar.gz", members), dest)
    assert [e.path for e in layer.manifest] == [
        "bin/tool",
        "lib/a.py",
        "lib/hard",
        "lib/link",
        "lib/up",
    ]
    assert (layer.path / "bin/tool").stat().st_mode & 0o7777 == 0o755  # as the data filter
    assert (layer.path / "lib/up").resolve() == layer.path


# -- hostile zip members ----------------------------------------------------------------

_REG, _LNK, _DIR = 0o100644, 0o120777, 0o040755


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (("top/../x", b"x", _REG), r"'\.\.' in member name"),
        (("/abs", b"x", _REG), "absolute path"),
        (("C:/windows/x", b"x", _REG), "absolute path"),
        (("top/link", b"/etc", _LNK), "absolute link target"),
        (("top/link", b"../..", _LNK), "points outside the tree"),
        (("top/dev", b"", 0o020644), "a device file, fifo or socket"),
        (("top/a.py", b"again", _REG), "duplicate or conflicting member"),
        (("second/x", b"x", _REG), "a second top folder"),
    ],
)
def test_hostile_zip_members_are_refused(
    member: tuple[str, bytes, int], reason: str, tmp_path: Path, dest: Path
) -> None:
    members = [("top/", b"", _DIR), ("top/a.py", b"a = 1\n", _REG), member]
    archive = write_zip(tmp_path / "bad.zip", members)
    message = refused(archive, dest)
    assert message.startswith(f"refusing to extract unsafe archive {archive}: member ")
    assert _search(reason, message)


def test_zip_symlinks_are_created_as_symlinks(tmp_path: Path, dest: Path) -> None:
    members = [("top/a.py", b"a = 1\n", _REG), ("top/link", b"a.py", _LNK)]
    layer = extract_archive(write_zip(tmp_path / "ok.zip", members), dest)
    assert os.readlink(layer.path / "link") == "a.py"


def test_encrypted_zip_members_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "enc.zip", [("top/a.py", b"a = 1\n", _REG)])
    data = bytearray(archive.read_bytes())
    # set the "encrypted" flag in the local and central headers
    for signature in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.index(signature) + (6 if signature == b"PK\x03\x04" else 8)
        data[at] |= 0x01
    archive.write_bytes(bytes(data))
    assert "an encrypted member" in refused(archive, dest)


# -- damaged archives -------------------------------------------------------------------


@pytest.fixture(scope="module")
def published_once(tmp_path_factory: pytest.TempPathFactory) -> dict[ArchiveFormat, Path]:
    """One multi-chunk archive per format, written once for the whole module."""
    out = tmp_path_factory.mktemp("published")
    tree = make_tree(out / "tree")
    add_bulk(tree, 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archives, "_XZ_CHUNK", 256 * 1024)
        patch.setattr(archives, "_DEFLATE_CHUNK", 64 * 1024)
        return {
            fmt: write_archive(
                tree, out / f"a.{fmt.value}", root_name="a", fmt=fmt, level=1, clamp_mtime=CLAMP
            ).path
            for fmt in ArchiveFormat
        }


@pytest.fixture
def published(
    published_once: dict[ArchiveFormat, Path], tmp_path: Path
) -> dict[ArchiveFormat, Path]:
    """Copies each test may damage."""
    return {fmt: Path(shutil.copy(path, tmp_path)) for fmt, path in published_once.items()}


@pytest.mark.parametrize("fmt", list(ArchiveFormat))
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_archives_are_reported(
    fmt: ArchiveFormat, keep: float, published: dict[ArchiveFormat, Path], dest: Path
) -> None:
    archive = published[fmt]
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep)])
    assert f"archive {archive} is truncated or corrupt: " in refused(archive, dest)


def test_xz_cut_between_streams_is_reported(
    published: dict[ArchiveFormat, Path], dest: Path
) -> None:
    # Cut exactly after a complete .xz stream: the decompressor sees a valid, shorter
    # file, so only the missing tar end marker gives the truncation away.
    archive = published[ArchiveFormat.TAR_XZ]
    data = archive.read_bytes()
    footer = data.index(b"YZ", 0) + 2  # end of the first stream's footer
    assert footer < len(data) // 2
    archive.write_bytes(data[:footer])
    message = refused(archive, dest)
    assert "truncated or corrupt" in message


@pytest.mark.parametrize("fmt", list(ArchiveFormat))
def test_corrupted_byte_is_reported(
    fmt: ArchiveFormat, published: dict[ArchiveFormat, Path], dest: Path
) -> None:
    archive = published[fmt]
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert f"archive {archive} is truncated or corrupt: " in refused(archive, dest)


def test_plain_tar_without_end_marker_is_reported(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "cut.tar", good_members())
    data = archive.read_bytes()
    archive.write_bytes(data[:2048])  # three headers and one data block, no end marker
    assert "end-of-archive marker is missing" in refused(archive, dest)


def test_garbage_after_the_end_marker_is_reported(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "junk.tar", good_members())
    archive.write_bytes(archive.read_bytes() + b"appended junk".ljust(512, b"\0"))
    assert "unexpected data after the end of the archive" in refused(archive, dest)


def test_not_an_archive(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "notes.tar.zst"
    archive.write_text("just some text, long enough to not be a header" * 20)
    assert "truncated or corrupt" in refused(archive, dest)


# -- the target disk --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_ZST, ArchiveFormat.ZIP])
def test_disk_full_during_extraction(
    fmt: ArchiveFormat,
    published: dict[ArchiveFormat, Path],
    dest: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_open = os.open
    opened = 0

    def open_then_fill(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        nonlocal opened
        if flags & os.O_CREAT and str(path).startswith(str(dest)):
            opened += 1
            if opened > 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(_archive_extract.os, "open", open_then_fill)
    message = refused(published[fmt], dest)
    assert message == f"disk full while extracting a.{fmt.value} into {dest}"


def test_other_write_errors_name_the_file(
    published: dict[ArchiveFormat, Path], dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(_archive_extract.os, "mkdir", denied)
    message = refused(published[ArchiveFormat.TAR_GZ], dest)
    assert "cannot extract a.tar.gz" in message
    assert "Permission denied" in message


@pytest.mark.parametrize(
    ("name", "kind", "linkname"),
    [
        (name, kind, linkname)
        for name in ("top/x", "top/a/b/x", "top/a/x")
        for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE)
        for linkname in (
            "y",
            "../y",
            "../../y",
            "../../../y",
            "a/../../y",
            "./../y",
            "/etc/passwd",
            "top/y",
            "top/../y",
            "top/../../y",
            "a/b/../../../../y",
            "..",
            ".",
            "a//b",
        )
    ],
)
def test_our_data_filter_refuses_what_tarfiles_refuses(
    name: str, kind: bytes, linkname: str, tmp_path: Path
) -> None:
    """`data_filter_refusal` decides on names what `tarfile.data_filter` decides with
    realpath, in a destination holding no links (as ours does while extracting)."""
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    try:
        tarfile.data_filter(member, str(tmp_path))
        theirs = ""
    except tarfile.FilterError as exc:
        theirs = str(exc)
    ours = _archive_extract.data_filter_refusal(member)
    assert bool(ours) == bool(theirs), (ours, theirs)
