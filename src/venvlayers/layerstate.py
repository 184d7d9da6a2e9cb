"""What is known about each layer on disk: is its lock valid, what is its deployed name.

A thin seam between the read-only views (`show`) and the locking stage, which owns
the real validity rules.
"""

from __future__ import annotations

from .lockfiles import LockPaths, read_metadata
from .names import DeployName
from .spec import LayerSpec, StackSpec
from .status import LockInfo


def lock_info_for(stack: StackSpec) -> LockInfo:
    def info(layer: LayerSpec) -> tuple[bool, DeployName | None]:
        paths = LockPaths.of(stack.requirements_dir, layer.build_name)
        meta = read_metadata(paths) if paths.pylock.exists() else None
        valid = meta is not None
        if not layer.versioned:
            return valid, DeployName(layer.build_name)
        if meta is None or not isinstance(meta.get("lock_version"), int):
            return valid, None
        return valid, DeployName(f"{layer.build_name}@{meta['lock_version']}")

    return info
