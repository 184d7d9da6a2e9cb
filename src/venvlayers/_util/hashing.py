"""Content hashes in the `algorithm:hexdigest` form venvstacks metadata uses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def hash_strings(items: Iterable[str], algorithm: str = "sha256") -> str:
    """Hash a sequence of strings; each is length-prefixed so boundaries count."""
    h = hashlib.new(algorithm)
    for item in items:
        raw = item.encode("utf-8")
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return f"{algorithm}:{h.hexdigest()}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content (no prefix), read in chunks."""
    with path.open("rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def hash_tree(path: Path, *, exclude_names: frozenset[str] = frozenset()) -> str:
    """Hash a file or a directory tree by relative paths and file contents.

    Order-independent of the filesystem (entries are sorted); names in
    `exclude_names` (e.g. `__pycache__`) are skipped at any depth.
    """
    h = hashlib.sha256()
    if path.is_file():
        h.update(b"F")
        h.update(bytes.fromhex(file_sha256(path)))
        return f"sha256:{h.hexdigest()}"
    for entry in sorted(_walk_files(path, exclude_names)):
        rel = entry.relative_to(path).as_posix().encode("utf-8")
        h.update(len(rel).to_bytes(8, "big"))
        h.update(rel)
        if entry.is_symlink():
            h.update(b"L" + str(entry.readlink()).encode("utf-8"))
        else:
            h.update(b"F" + bytes.fromhex(file_sha256(entry)))
    return f"sha256:{h.hexdigest()}"


def _walk_files(root: Path, exclude_names: frozenset[str]) -> Iterable[Path]:
    for entry in root.iterdir():
        if entry.name in exclude_names:
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_files(entry, exclude_names)
        else:
            yield entry
