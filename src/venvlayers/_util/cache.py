"""Where venvlayers keeps downloaded and imported runtimes (and other caches)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["cache_root", "data_root"]


def cache_root() -> Path:
    """`$VENVLAYERS_CACHE_DIR`, else the platform's per-user cache directory."""
    return _user_dir("VENVLAYERS_CACHE_DIR", "Cache", "Library/Caches", "XDG_CACHE_HOME", ".cache")


def data_root() -> Path:
    """`$VENVLAYERS_DATA_DIR`, else the platform's per-user data directory.

    Unlike the cache, what lives here (deployments made by `run --from`) is not
    disposable while an app from it may be running.
    """
    return _user_dir(
        "VENVLAYERS_DATA_DIR",
        "Data",
        "Library/Application Support",
        "XDG_DATA_HOME",
        ".local/share",
    )


def _user_dir(explicit_var: str, windows: str, macos: str, xdg_var: str, xdg_default: str) -> Path:
    """Our folder of one kind: the variable's value, else the platform's convention
    (`%LOCALAPPDATA%\\venvlayers\\<windows>`, `~/<macos>/venvlayers`, XDG on the rest)."""
    explicit = os.environ.get(explicit_var)
    if explicit:
        return Path(explicit).expanduser().absolute()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "venvlayers" / windows
    if sys.platform == "darwin":
        return Path.home() / macos / "venvlayers"
    xdg = os.environ.get(xdg_var)
    return (Path(xdg) if xdg else Path.home() / xdg_default) / "venvlayers"
