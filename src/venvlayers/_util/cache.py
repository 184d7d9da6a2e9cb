"""Where venvlayers keeps downloaded and imported runtimes (and other caches)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["cache_root", "data_root"]


def cache_root() -> Path:
    """`$VENVLAYERS_CACHE_DIR`, else the platform's per-user cache directory."""
    explicit = os.environ.get("VENVLAYERS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "venvlayers" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "venvlayers"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "venvlayers"


def data_root() -> Path:
    """`$VENVLAYERS_DATA_DIR`, else the platform's per-user data directory.

    Unlike the cache, what lives here (deployments made by `run --from`) is not
    disposable while an app from it may be running.
    """
    explicit = os.environ.get("VENVLAYERS_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "venvlayers" / "Data"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "venvlayers"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "venvlayers"
