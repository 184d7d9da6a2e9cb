"""Local copies of the wheels a build installs, content-addressed by sha256.

uv re-downloads a lock's URL wheels on every `pip sync` (it only caches them well
when it resolved them from an index itself), while local wheel paths are unpacked
once and then linked from its cache. So the build hands uv local files: each wheel
the build platform needs is downloaded once into the venvlayers cache, verified
against the lock's sha256, and reused by every later build, offline included.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag

from .._util.cache import cache_root
from .._util.fs import remove_tree
from .._util.hashing import file_sha256
from .._util.http import HttpClient
from ..errors import BuildError
from ..locking.pylock import LockedPackage, LockedWheel
from ..platforms import LinuxTarget, TargetPlatform, wheel_tags
from ..progress import NULL_REPORTER, Reporter

__all__ = [
    "WheelTarget",
    "choose_wheel",
    "local_wheels",
    "wheel_cache_dir",
]


@dataclass(frozen=True)
class WheelTarget:
    """The interpreter and platform a build installs for, as wheel tags in priority order."""

    platform: TargetPlatform
    py_version: str
    implementation: str = "cpython"
    linux_target: LinuxTarget | None = None
    macosx_target: tuple[int, int] | None = None

    def tags(self, *, local_build: bool = False) -> list[Tag]:
        """Best first; `local_build` adds `linux_<arch>` (for wheels from local files)."""
        return wheel_tags(
            self.platform,
            self.py_version,
            self.implementation,
            self.linux_target,
            self.macosx_target,
            local_build=local_build,
        )


def choose_wheel(
    package: LockedPackage, ranking: dict[Tag, int], local_ranking: dict[Tag, int] | None = None
) -> LockedWheel | None:
    """The wheel an installer would pick here: the one with the most specific tag.

    `local_ranking` ranks the wheels the lock took from local files (a lock accepts
    `linux_<arch>` local builds for their own platform only).
    """
    best: tuple[int, LockedWheel] | None = None
    for wheel in package.wheels:
        ranks_by = local_ranking if local_ranking is not None and wheel.path else ranking
        ranks = [ranks_by[t] for t in wheel.tags if t in ranks_by]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), wheel)
    return best[1] if best else None


def wheel_cache_dir() -> Path:
    return cache_root() / "wheels"


def local_wheels(
    packages: Sequence[LockedPackage],
    target: WheelTarget,
    *,
    lock_dir: Path,
    search_dirs: Sequence[Path] = (),
    reporter: Reporter = NULL_REPORTER,
    layer: str = "",
) -> dict[str, Path]:
    """A verified local file for each package's wheel for `target`, by package name."""
    ranking = {tag: i for i, tag in enumerate(target.tags())}
    local_ranking = {tag: i for i, tag in enumerate(target.tags(local_build=True))}
    chosen: dict[str, LockedWheel] = {}
    for package in packages:
        wheel = choose_wheel(package, ranking, local_ranking)
        if wheel is None:
            raise BuildError(
                f"{layer}: the lock has no wheel of {package.name} {package.version} for "
                f"{target.platform} (Python {target.py_version}); relock the layer"
            )
        chosen[package.name] = wheel

    def fetch(item: tuple[str, LockedWheel]) -> tuple[str, Path]:
        name, wheel = item
        return name, _local_copy(wheel, lock_dir, search_dirs, reporter, layer)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(fetch, sorted(chosen.items())))


def _local_copy(
    wheel: LockedWheel,
    lock_dir: Path,
    search_dirs: Sequence[Path],
    reporter: Reporter,
    layer: str,
) -> Path:
    if wheel.path is not None:
        return _find_local(wheel, lock_dir, search_dirs, layer)
    cached = wheel_cache_dir() / wheel.sha256[:2] / wheel.sha256 / wheel.filename
    if cached.is_file():
        return cached
    for directory in search_dirs:  # --local-wheels also stand in for index downloads
        candidate = Path(directory) / wheel.filename
        if candidate.is_file() and file_sha256(candidate) == wheel.sha256:
            return candidate
    if wheel.url is None:
        raise BuildError(f"{layer}: the lock gives no location for {wheel.filename}; relock")
    cached.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cached.parent.parent))
    try:
        # plain http is fine here: the lock's sha256 is checked before the file is kept
        with HttpClient(error=BuildError, insecure=True) as client:
            client.download(
                wheel.url,
                tmp / wheel.filename,
                sha256=wheel.sha256,
                size=wheel.size,
                reporter=reporter,
                hint=f"expected {wheel.filename} with sha256 {wheel.sha256}; check the network "
                "or pass a directory holding it with --local-wheels",
            )
        cached.parent.mkdir(exist_ok=True)
        os.replace(tmp / wheel.filename, cached)
    finally:
        remove_tree(tmp)
    return cached


def _find_local(
    wheel: LockedWheel, lock_dir: Path, search_dirs: Sequence[Path], layer: str
) -> Path:
    """A lock's local wheel: where the lock says, else by name in --local-wheels dirs.

    Not hashed here: uv checks every wheel against the lock's sha256 as it installs.
    """
    assert wheel.path is not None
    recorded = (lock_dir / wheel.path).resolve()
    candidates = [recorded, *(Path(d).absolute() / wheel.filename for d in search_dirs)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BuildError(
        f"{layer}: local wheel {wheel.filename} is missing (the lock expects it at {recorded});"
        " pass the directory holding it with --local-wheels"
    )
