"""Where a layer's lock files live, and reading their metadata (venvstacks 0.8 layout).

requirements/<build-name>/pylock.<build-name>.toml       the PEP 751 lock
requirements/<build-name>/pylock.<build-name>.meta.json  hashes, lock_version, locked_at
requirements/<build-name>/packages-<build-name>.txt      human-readable summary

In the file names `.` in a build name is spelled `_`, except in the summary's (as
venvstacks names them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..names import BuildName

__all__ = [
    "LockPaths",
    "read_metadata",
]


@dataclass(frozen=True)
class LockPaths:
    """The lock files of one layer."""

    directory: Path
    build_name: BuildName

    @classmethod
    def of(cls, requirements_dir: Path, build_name: BuildName) -> LockPaths:
        return cls(requirements_dir / build_name, build_name)

    @property
    def _stem(self) -> str:
        # '.' is not allowed in the name part of a named pylock file (PEP 751)
        return self.build_name.replace(".", "_")

    @property
    def pylock(self) -> Path:
        return self.directory / f"pylock.{self._stem}.toml"

    @property
    def metadata(self) -> Path:
        return self.directory / f"pylock.{self._stem}.meta.json"

    @property
    def summary(self) -> Path:
        # venvstacks names the summary after the build name as it is (dots included)
        return self.directory / f"packages-{self.build_name}.txt"

    @property
    def legacy_summary(self) -> Path:
        """Where earlier venvlayers versions wrote the summary (`.` spelled `_`); removed."""
        return self.directory / f"packages-{self._stem}.txt"


def read_metadata(paths: LockPaths) -> dict[str, Any] | None:
    """The lock metadata, or None if missing or unreadable (an invalid lock, not an error)."""
    try:
        data = json.loads(paths.metadata.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
