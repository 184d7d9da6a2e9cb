"""Trees and hand-made (possibly hostile) archives for the archive tests."""

from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import zstandard

CLAMP = 1_700_000_000  # 2023-11-14
OLD = 1_000_000_000  # 2001-09-09, older than the clamp

LONG_NAME = "d" * 60 + "/" + "x" * 70 + ".txt"  # over tar's 100-byte ustar name field


def make_tree(root: Path, *, mtime: float = OLD) -> Path:
    """A small layer-like tree with every kind of entry an archive must carry."""
    (root / "bin").mkdir(parents=True)
    (root / "lib/pkg/sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    (root / "bin/tool").chmod(0o755)
    (root / "lib/pkg/__init__.py").write_text("VALUE = 1\n")
    (root / "lib/pkg/data.bin").write_bytes(bytes(range(256)) * 64)
    (root / "lib/pkg/empty.txt").write_bytes(b"")
    (root / "lib/pkg/sub/ünïcode.txt").write_text("ü\n", encoding="utf-8")
    long = root / LONG_NAME
    long.parent.mkdir(parents=True)
    long.write_text("long\n")
    os.link(root / "lib/pkg/data.bin", root / "lib/pkg/data-hardlink.bin")
    (root / "bin/tool-link").symlink_to("tool")
    (root / "lib/current").symlink_to("pkg")
    (root / "lib/pkg/sub/up").symlink_to("../__init__.py")
    set_mtimes(root, mtime)
    return root


def add_bulk(root: Path, megabytes: int, *, seed: int = 1) -> None:
    """Compressible pseudo-random files, enough to span several compression chunks."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(2000)]
    bulk = root / "bulk"
    bulk.mkdir(exist_ok=True)
    for i in range(megabytes):
        data = b" ".join(rng.choices(words, k=180_000))[: 1 << 20]
        (bulk / f"part{i:03d}.txt").write_bytes(data)


def set_mtimes(root: Path, mtime: float) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def copy_tree(src: Path, dst: Path) -> Path:
    """A copy with the same content but fresh mtimes, like a second build directory."""
    shutil.copytree(src, dst, symlinks=True)
    # copytree copies hard-linked files twice; restore the link to keep the trees equal
    (dst / "lib/pkg/data-hardlink.bin").unlink()
    os.link(dst / "lib/pkg/data.bin", dst / "lib/pkg/data-hardlink.bin")
    return dst


def tar_member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    linkname: str = "",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = OLD
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar written by `tarfile` itself, which stores whatever it is given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    payload = raw.getvalue()
    name = path.name
    if name.endswith(".tar.zst"):
        payload = zstandard.ZstdCompressor().compress(payload)
    elif name.endswith(".tar.gz"):
        import gzip

        payload = gzip.compress(payload, mtime=0)
    elif name.endswith(".tar.xz"):
        import lzma

        payload = lzma.compress(payload)
    path.write_bytes(payload)
    return path


def write_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """A zip of (name, data, st_mode) members, written by `zipfile` as given."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, st_mode in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = st_mode << 16
            zf.writestr(info, data)
    return path
