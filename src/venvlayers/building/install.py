"""Installing a layer's locked packages: exactly those, from local wheels, with uv.

`uv pip sync` makes the environment hold exactly the given packages (a package
dropped from the lock disappears), checks every wheel's sha256, never builds from
source and, given local files, links them from its cache.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import tomlkit

from .._util.uv import run_uv
from ..errors import BuildError
from ..locking.pylock import LockedPackage, read_pylock
from ..progress import NULL_REPORTER, Reporter
from .wheelcache import WheelTarget, local_wheels

__all__ = [
    "install_lock_text",
    "sync_layer",
]


def sync_layer(
    python: Path,
    lock_path: Path,
    target: WheelTarget,
    *,
    search_dirs: Sequence[Path] = (),
    reporter: Reporter = NULL_REPORTER,
    layer: str = "",
) -> list[LockedPackage]:
    """Make `python`'s environment hold exactly the lock's own packages for `target`.

    Packages provided by lower layers, and those whose marker excludes this platform,
    are not installed. Returns the packages installed.
    """
    here = target.platform.marker_environment(target.py_version, target.implementation)
    packages = [
        p
        for p in read_pylock(lock_path)
        if not p.shared and (p.marker is None or p.marker.evaluate(here))
    ]
    files = local_wheels(
        packages,
        target,
        lock_dir=lock_path.parent,
        search_dirs=search_dirs,
        reporter=reporter,
        layer=layer,
    )
    with tempfile.TemporaryDirectory(prefix="venvlayers-sync-") as tmp:
        install_lock = Path(tmp) / "pylock.toml"
        install_lock.write_text(install_lock_text(packages, files), "utf-8")
        run_uv(
            [
                "pip",
                "sync",
                "--python",
                str(python),
                "--require-hashes",
                "--no-build",
                "--offline",
                "--allow-empty-requirements",
                "--quiet",
                str(install_lock),
            ],
            what=f"installing the packages of {layer}",
            error=BuildError,
        )
    return packages


def install_lock_text(packages: list[LockedPackage], files: dict[str, Path]) -> str:
    """A lock of `packages`, each with the one local wheel chosen for this machine."""
    entries = []
    for package in packages:
        entry = package.to_toml()
        entry.pop("marker", None)  # only packages needed on this platform are listed
        wheel = next(w for w in package.wheels if w.filename == files[package.name].name)
        item = tomlkit.inline_table()
        item["path"] = str(files[package.name])
        item["hashes"] = {"sha256": wheel.sha256}
        wheels = tomlkit.array()
        wheels.append(item)
        entry["wheels"] = wheels
        entries.append(entry)
    return tomlkit.dumps({"lock-version": "1.0", "created-by": "venvlayers", "packages": entries})
